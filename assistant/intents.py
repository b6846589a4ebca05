"""What a chat message asks for, as plain data: the `Intent`, its kinds and limits.

Owns the shape every reader of messages agrees on (the router makes intents, the
service applies them, buttons build them) and the usage lines /help shows. No
parsing here: that is `router.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = (
    "generate", "edit", "upload", "undo", "redo", "checkout",
    "variations", "export", "history", "help", "ask", "sample", "op", "squash", "final",
)
EXPORT_FORMATS = ("png", "jpeg", "webp", "history")
DEFAULT_EXPORT_FORMAT = "png"
# Each variation is a full model run; eight keeps one request from hogging the GPU.
MAX_VARIATIONS = 8
# What "variations" / "more variations" / "/variations" mean without a number.
DEFAULT_VARIATIONS = 3
ROLES = ("subject", "reference")  # what attached photos are for an edit
ANCHORS = ("original", "latest", "previous")
READINGS = ("move", "edit")

# Usage lines for the help the handler renders, in the order to show them.
COMMANDS = {
    "undo": "/undo [n] - step back n images (default 1)",
    "redo": "/redo [n] - step forward again after an undo",
    "goto": "/goto N (or #N, \"the original\") - make image #N the current one",
    "branch": "/branch N [instruction] - continue from image #N, optionally editing it",
    "variations": (
        f"/variations [n] - n new takes on the last request"
        f" (default {DEFAULT_VARIATIONS}, at most {MAX_VARIATIONS})"
    ),
    "export": "/export [png|jpeg|webp|history] - download the image, or the whole history",
    "history": "/history - show the tree of images",
    "squash": "/squash - redo the current line of edits as one edit of its first image (a new branch)",
    "final": "/final [N] - render image #N (default the current one) again in full quality, same seed",
    "new": "/new <prompt> - start a fresh image from a description",
    "sample": "/sample [instruction] - try the app on a sample photo",
    "help": "/help - this list",
}


@dataclass(frozen=True)
class Intent:
    """One thing to do.

    `base` is a node number (#N) to start from, None for the head; `anchor` names one
    by place instead ("original", "latest", "previous"). `role` says what attached
    photos are for an edit. `then` is a second intent to apply after this one.
    `options` holds the two readings of an `ask`. `op` is an exact image operation
    (`pipelines.exact`: {"name": "rotate", "degrees": 90}, ...) for kind "op".
    """

    kind: str
    text: str = ""
    base: int | None = None
    count: int = 1
    fmt: str | None = None
    # True when the user asked for "variations" without saying how many: the service
    # may then use the conversation's own setting instead of DEFAULT_VARIATIONS.
    default_count: bool = False
    anchor: str | None = None
    role: str | None = None
    then: "Intent | None" = None
    options: tuple = ()
    op: dict | None = None
    region: str | None = None  # sha256 of a painted mask (white = may change), for an edit
    verbatim: bool = False  # "!make it red": the words go to the model as typed, no polish

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown intent kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.base is not None and self.base < 1:
            raise ValueError(f"base must be a node number of at least 1, got {self.base}")
        if self.kind == "export" and self.fmt not in EXPORT_FORMATS:
            raise ValueError(f"export needs fmt in {EXPORT_FORMATS}, got {self.fmt!r}")
        if self.kind != "export" and self.fmt is not None:
            raise ValueError("fmt is only for export intents")
        if self.anchor is not None and (self.anchor not in ANCHORS or self.base is not None):
            raise ValueError(f"anchor must be one of {ANCHORS}, and not given with a base")
        if self.role is not None and (self.role not in ROLES or self.kind != "edit"):
            raise ValueError(f"role must be one of {ROLES}, and only on an edit")
        if (self.kind == "ask") != bool(self.options):
            raise ValueError("an ask intent, and only an ask, has its options")
        if (self.kind == "op") != (self.op is not None):
            raise ValueError("an op intent, and only an op, has its op")
        if self.region is not None and self.kind != "edit":
            raise ValueError("only an edit has a painted region")
