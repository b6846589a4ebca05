"""Applies intents to a conversation: head moves on the store, image work as jobs.

Owns what each intent means: which image an edit starts from and which are its
references, what a variation re-runs, how image work becomes a job row before any
model time is spent and then runs on the job queue, and what is recorded on each
new node so it can be reproduced. Knows nothing of chainlit: handlers and the
HTTP API call ``apply`` and render the ``Outcome``; buttons and typed commands call
the same methods.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from PIL import Image

import pipelines
from pipelines import BackendError, Cancelled, EditRequest, GenerateRequest, backend_names, exact, fidelity, polish
from pipelines.base import MAX_INPUT_IMAGES, Backend
from pipelines.sizes import VAE_AREA, pipeline_size
from sessions import HistoryError, Job, Node, Store
from sessions.export import MIME as EXPORT_MIME
from sessions.store import CRASH_REASON

from .queue import JobQueue, QueueFull, Ticket
from .router import COMMANDS, MAX_VARIATIONS, ROLES, Intent, route
from .uploads import UploadError, decoding, load_upload

# Errors whose message is shown to the user as is.
USER_ERRORS = (HistoryError, BackendError, UploadError)
HEAD = "head"  # an edit's base to be read when its job starts
SIZE_CHOICES = ("keep", "1mp", "1:1", "4:3", "3:4", "16:9", "9:16")
POLISH_HISTORY = 4  # earlier instructions of the branch the polisher sees
DRAFT_STEPS = 8  # a draft's steps (Lightning's 8-step schedule where the model has it)
FINAL_STEPS = 40  # "/final": the model card's steps ...
FINAL_CFG = 4.0  # ... with true CFG
# The photo /sample uploads: Chelsea the cat, CC0 (see assistant/samples/LICENSE.md).
SAMPLE_PHOTO = Path(__file__).resolve().parent / "samples" / "chelsea.png"


@dataclass(frozen=True)
class ChatSettings:
    """Per-conversation choices from the settings panel (None = the model's default)."""

    backend: Optional[str] = None
    model: Optional[str] = None  # None = the backend's configured model
    steps: Optional[int] = None
    guidance: Optional[float] = None
    seed: Optional[int] = None  # None = a new random seed every run
    size: str = "keep"
    variations: int = 3
    # The drift guard: after an edit, untouched pixels come from the input exactly.
    guard: bool = True
    polish: Optional[str] = None  # prompt polish engine: off | local | remote (None = the server's)
    # Draft mode: fast takes (DRAFT_STEPS, no true CFG; the Lightning LoRA where the
    # backend has it); "/final" renders a chosen draft again in full quality.
    draft: bool = False
    loras: tuple = ()  # names of the server's LoRA adapters to use (their configured scales)

    def __post_init__(self) -> None:
        # Values come back from the browser: refuse what no control could have sent.
        if self.size not in SIZE_CHOICES:
            raise HistoryError(f"Output size must be one of {', '.join(SIZE_CHOICES)}.")
        if not (isinstance(self.variations, int) and 1 <= self.variations <= MAX_VARIATIONS):
            raise HistoryError(f"Variations per request must be 1 to {MAX_VARIATIONS}.")
        if self.steps is not None and not 2 <= self.steps <= 200:
            raise HistoryError("Steps must be 2 to 200 (or 0 for the model's default).")
        if self.guidance is not None and not 0 <= self.guidance <= 20:
            raise HistoryError("Guidance must be 0 to 20.")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise HistoryError("The seed must be a whole number from 0 to 2^63-1.")
        object.__setattr__(self, "loras", tuple(self.loras or ()))  # JSON brings a list back
        if not all(isinstance(n, str) for n in self.loras):
            raise HistoryError("LoRAs are picked by name.")
        if not isinstance(self.guard, bool) or not isinstance(self.draft, bool):
            raise HistoryError("The drift guard and draft mode are on or off.")
        if self.polish is not None and self.polish not in polish.ENGINES:
            raise HistoryError(f"Prompt polish must be one of {', '.join(polish.ENGINES)}.")
        if self.backend is not None and self.backend not in backend_names():
            raise HistoryError(f"Unknown backend {self.backend!r}; choose {', '.join(backend_names())}.")

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "ChatSettings":
        """Settings saved earlier; anything no longer valid falls back to the defaults."""
        d = dict(d or {})
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        try:
            return cls(**known)
        except (HistoryError, TypeError):
            return cls()

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def settings_from_panel(values: dict, *, allowed_models: Optional[list] = None,
                        offered_loras: Optional[list] = None) -> ChatSettings:
    """ChatSettings from the settings panel's values, which come back from the browser.

    0 means "the model's default" for steps and guidance; an empty seed means random.
    ``allowed_models`` (None = any) limits the model a user may pick; only the LoRAs
    the server offers (``offered_loras``) can be picked, in both modes.
    """
    def number(key, kind):
        raw = values.get(key)
        if raw in (None, "", 0, "0"):
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise HistoryError(f"{key.capitalize()} must be a number, not {raw!r}.") from None
        if kind is int and not value.is_integer():
            raise HistoryError(f"{key.capitalize()} must be a whole number, not {raw!r}.")
        return kind(value)

    seed_text = str(values.get("seed") or "").strip()
    if seed_text and not seed_text.isdigit():
        raise HistoryError(f"The seed must be a whole number; {seed_text!r} is not. "
                           f"Leave it empty for a random seed.")
    model = str(values.get("model") or "").strip() or None
    if model is not None and allowed_models is not None and model not in allowed_models:
        raise HistoryError(f"This server offers the models: {', '.join(allowed_models) or 'the configured one'}.")
    return ChatSettings(
        backend=values.get("backend") or None, model=model,
        steps=number("steps", int), guidance=number("guidance", float),
        seed=int(seed_text) if seed_text else None,
        size=values.get("size") or "keep",
        variations=number("variations", int) or 3,
        guard=values.get("guard") is not False,
        polish=values.get("polish") or None,
        draft=values.get("draft") is True,
        loras=_picked_loras(values.get("loras"), offered_loras or []),
    )


def _picked_loras(picked, offered: list) -> tuple:
    picked = list(picked or [])
    unknown = [n for n in picked if n not in offered]
    if unknown:
        raise HistoryError(f"This server offers the LoRAs: {', '.join(offered) or 'none'}; not "
                           f"{', '.join(map(str, unknown))}.")
    return tuple(picked)


@dataclass
class RunEvent:
    kind: str  # "started" | "polishing" | "progress"
    step: int = 0
    total: int = 0
    preview: Optional[Image.Image] = None
    eta_s: Optional[float] = None


@dataclass
class RunResult:
    node: Node
    source: Optional[Node]
    seed: int
    steps: int
    elapsed_s: float


@dataclass(eq=False)
class Run:
    """One image job in flight."""

    job: Job
    ticket: Ticket
    description: str
    ahead: int = 0  # jobs that will start before this one, when it was queued
    # Who hears progress: the tab that asked, and any tab that reopens the conversation.
    listeners: list = field(default_factory=list)
    last_event: Optional[RunEvent] = None
    # How the message was read, shown under the result ("Edited your new photo (#2)."),
    # and the other reading, for the button that switches to it (a Reading payload).
    note: str = ""
    switch: Optional[dict] = None

    def listen(self, sink: EventSink) -> None:
        self.listeners.append(sink)

    def emit(self, event: RunEvent) -> None:
        self.last_event = event
        for sink in list(self.listeners):
            try:
                sink(self, event)
            except Exception:  # a closed tab must not break the job
                self.listeners.remove(sink)

    @property
    def future(self) -> Future:
        return self.ticket.future

    def wait(self, timeout: Optional[float] = None) -> RunResult:
        return self.ticket.future.result(timeout)


@dataclass
class Export:
    filename: str
    data: bytes
    mime: str
    fmt: str = "png"
    number: Optional[int] = None  # the image exported; None for the whole history


@dataclass
class Outcome:
    message: str = ""
    node: Optional[Node] = None
    runs: list = field(default_factory=list)
    export: Optional[Export] = None
    show_history: bool = False
    is_error: bool = False
    # An ask: the readings to choose from, as (label, payload for the "reading" button).
    choices: list = field(default_factory=list)
    # The outcome of a second request in the same message, shown after this one.
    after: Optional["Outcome"] = None

    def chain(self) -> list["Outcome"]:
        """This outcome and the ones after it, in order."""
        out, o = [], self
        while o is not None:
            out.append(o)
            o = o.after
        return out


EventSink = Callable[[Run, RunEvent], None]


class BackendPool:
    """One loaded backend per (name, model), built on first use (loading is slow).

    A model switch closes the backend loaded before it (its GPU memory is given
    back), so two large models are never held at once.
    """

    def __init__(self, default: str, factory: Callable[[str, Optional[str]], Backend],
                 configured_model: Optional[str] = None) -> None:
        self.default = default
        # The model the server's settings give the qwen backend (QEC_MODEL, .env included):
        # what runs when a conversation names none.
        self.configured_model = configured_model
        self._factory = factory
        self._backends: dict[tuple, Backend] = {}
        self._lock = threading.Lock()

    def get(self, name: Optional[str] = None, model: Optional[str] = None) -> Backend:
        key = (name or self.default, model)
        with self._lock:
            if key not in self._backends:
                for old in self._backends.values():
                    close = getattr(old, "close", None)
                    if close is not None:
                        close()
                self._backends.clear()
                self._backends[key] = self._factory(*key)
            return self._backends[key]


class ChatService:
    def __init__(self, store: Store, backends: BackendPool, queue: JobQueue, *,
                 job_timeout: float = 1800.0, cap_per_conversation: bool = False,
                 polish_settings: Optional[dict] = None) -> None:
        self.store = store
        # The prompt polish engine conversations start with, and the remote engine's
        # url/model/api_key/timeout.
        self.polish_settings = {"engine": "off", **(polish_settings or {})}
        # The local mode has one person, so every API client shares one owner: its
        # waiting-jobs cap (and turn-taking) then applies per conversation instead.
        self.cap_per_conversation = cap_per_conversation
        self.backends = backends
        self.queue = queue
        self.job_timeout = job_timeout
        self._runs: dict[str, list[Run]] = {}
        self._lock = threading.Lock()
        self._remote = None  # the remote polisher, made on first use
        self._pictures: dict = {}  # (backend, model) -> pictures per edit

    # ---- uploads ----------------------------------------------------------------------

    def add_uploads(self, conversation_id: str, files: list[tuple[str, bytes]]) -> list[Node]:
        """Check and keep uploaded files as nodes (the head does not move yet).

        All files are checked before any is kept, so a bad one loses nothing else.
        """
        # One picture's pixels at a time, each within the process-wide decode budget:
        # several files are all checked first (and dropped), then decoded again to keep.
        if len(files) > 1:
            for name, data in files:
                with decoding(data):
                    load_upload(data, name)
        nodes = []
        for name, data in files:
            with decoding(data):
                img = load_upload(data, name)
                nodes.append(self.store.add_node(conversation_id, img, kind="upload",
                                                 instruction=name, move_head=False))
                del img
        return nodes

    # ---- intents ----------------------------------------------------------------------

    def intent_for(self, conversation_id: str, text: str, *, attachments: int = 0,
                   role: Optional[str] = None, reading: Optional[str] = None) -> Intent:
        """What a typed message means here (it depends on whether there is an image yet)."""
        has_image = self.store.head(conversation_id) is not None
        return route(text, has_image=has_image, attachments=attachments, role=role, reading=reading)

    def apply(self, conversation_id: str, intent: Intent, *, uploads: list[Node] = (),
              settings: Optional[ChatSettings] = None, on_event: Optional[EventSink] = None,
              ) -> Outcome:
        settings = settings or ChatSettings()
        try:
            if intent.then is not None:
                return self._apply_both(conversation_id, intent, list(uploads), settings, on_event)
            intent = self._resolve_anchor(conversation_id, intent)
            if intent.kind in ("generate", "edit") and intent.text:
                self._title_if_untitled(conversation_id, intent.text)
            handler = getattr(self, f"_do_{intent.kind}")
            return handler(conversation_id, intent, list(uploads), settings, on_event)
        except USER_ERRORS as e:
            return Outcome(message=str(e), is_error=True)

    def switch_reading(self, conversation_id: str, payload: dict, *,
                       settings: Optional[ChatSettings] = None,
                       on_event: Optional[EventSink] = None) -> Outcome:
        """Re-run an edit with its photos read the other way (the button under a result).

        ``payload`` is a Run's ``switch``, back from the browser, so it is checked: the
        photos must be uploads of this conversation.
        """
        try:
            role, text = payload.get("role"), payload.get("text")
            numbers, base = payload.get("uploads"), payload.get("base")
            if (role not in ROLES or not isinstance(text, str) or not isinstance(numbers, list)
                    or not numbers or not all(_whole(n) for n in numbers)
                    or (base is not None and not _whole(base))):
                raise HistoryError("That button no longer applies; send the message again.")
            uploads = [self.store.node(conversation_id, n) for n in numbers]
            if any(n.kind != "upload" for n in uploads):
                raise HistoryError("That button no longer applies; send the message again.")
        except USER_ERRORS as e:
            return Outcome(message=str(e), is_error=True)
        intent = Intent("edit", text=text, base=base if role == "reference" else None, role=role)
        return self.apply(conversation_id, intent, uploads=uploads, settings=settings, on_event=on_event)

    def _do_final(self, conv, intent, uploads, settings, on_event) -> Outcome:
        """A draft again without the draft shortcuts: same words, inputs and seed, full quality."""
        node = self.store.node(conv, intent.base) if intent.base else self.store.head(conv)
        if node is None:
            raise HistoryError("There is no image yet: describe one, or upload a photo.")
        changes = dict(steps=FINAL_STEPS, true_cfg_scale=FINAL_CFG, draft=False, final_of=node.number)
        if (node.params.get("polish") or {}).get("polished"):
            changes["polished_prompt"] = node.prompt  # the same words as the draft was given
        return self._rerun(conv, node, changes, settings, on_event,
                           f"Rendering #{node.number} in full quality")

    def use_my_words(self, conv: str, number: int, *, settings: Optional[ChatSettings] = None,
                     on_event: Optional[EventSink] = None) -> Outcome:
        """Run image #N's request again with the user's own words, unpolished (same seed)."""
        try:
            node = self.store.node(conv, number)
            return self._rerun(conv, node, {"polish": "off", "prompt": node.instruction},
                               settings or ChatSettings(), on_event, f"#{number} again, with your own words",
                               drop=("polished_prompt",))
        except USER_ERRORS as e:
            return Outcome(message=str(e), is_error=True)

    def _rerun(self, conv: str, node: Node, changes: dict, settings: ChatSettings,
               on_event: Optional[EventSink], description: str, drop: tuple = ()) -> Outcome:
        """Node #N's recorded request again, with its seed and ``changes`` (and without the
        keys in ``drop``), as its sibling."""
        recorded = dict(node.params.get("request") or {})
        if not recorded:
            raise HistoryError(f"#{node.number} is an {node.kind}, not something the model made: there "
                               f"is nothing to run again.")
        recorded.update(seed=node.params.get("seed"), **changes)
        for key in drop:
            recorded.pop(key, None)
        run = self._submit(conv, kind=node.kind, request=recorded, inputs=list(node.input_numbers),
                           parent=node.parent_number, instruction=node.instruction, settings=settings,
                           on_event=on_event, description=description)
        return Outcome(runs=[run])

    def check_picture_count(self, settings: ChatSettings, count: int) -> None:
        """Refuse, before anything is kept, a message with more pictures than an edit takes."""
        most = self.max_pictures(settings)
        if count > most:
            raise HistoryError(f"This message brought {count} images; an edit with this model takes at most "
                               f"{most}: the image to edit and {_count(most - 1, 'reference')}. Send fewer.")

    def max_pictures(self, settings: ChatSettings) -> int:
        """Pictures one edit takes with the conversation's backend and model (loads nothing;
        remembered per backend and model, since every edit and upload asks)."""
        name = settings.backend or self.backends.default
        model = settings.model or (self.backends.configured_model if name == "qwen" else None)
        key = (name, model)
        if key not in self._pictures:
            try:
                self._pictures[key] = pipelines.max_pictures(name, model)
            except Exception:  # an unknown or unavailable backend: the job will say so itself
                return MAX_INPUT_IMAGES
        return self._pictures[key]

    def _polish_engine(self, settings: ChatSettings, intent: Intent) -> str:
        if intent.verbatim:
            return "off"
        return settings.polish or self.polish_settings["engine"]

    def _polished(self, run: Run, conv: str, request: dict, backend, images, parent, cancel):
        """The prompt to send, and what polish did (None when it was off)."""
        engine = request.get("polish") or "off"
        if request.get("polished_prompt"):
            return request["polished_prompt"], {"engine": engine, "polished": True, "reused": True}
        if engine == "off":
            return request["prompt"], None
        run.emit(RunEvent("polishing"))
        history = ()
        if request["op"] == "edit" and parent is not None:
            history = tuple(n.instruction for n in self.store.lineage(conv, parent)
                            if n.kind != "upload" and n.instruction)[-POLISH_HISTORY:]
        job = polish.PolishRequest(request["prompt"], history=history, images=tuple(images),
                                   op=request["op"])
        try:
            polisher = self._polisher(engine, backend)
        except ValueError as e:
            return request["prompt"], {"engine": engine, "polished": False, "reason": str(e)}
        done = polisher.polish(job, cancel=cancel)
        return done.prompt, {"engine": done.engine, "polished": done.polished, "reason": done.reason,
                             "elapsed_s": round(done.elapsed_s, 3)}

    def _polisher(self, engine: str, backend):
        """A local polisher per job (it holds the text encoder); one remote client for good."""
        cfg = self.polish_settings
        if engine != "remote":
            return polish.make_polisher(engine, backend=backend)
        with self._lock:
            if self._remote is None:
                self._remote = polish.make_polisher(
                    "remote", url=cfg.get("url"), model=cfg.get("model"), api_key=cfg.get("api_key") or "EMPTY",
                    timeout=cfg.get("timeout") or polish.REMOTE_TIMEOUT_S)
            return self._remote

    def anchor_number(self, conv: str, anchor: str) -> int:
        """The image a place names: the current line's original, the newest, the one before."""
        head = self.store.head(conv)
        if head is None:
            raise HistoryError("There are no images yet: describe one, or upload a photo.")
        if anchor == "latest":
            return max(n.number for n in self.store.nodes(conv))
        if anchor == "previous":
            if head.parent_number is None:
                raise HistoryError(f"#{head.number} is where its line of images starts; nothing comes before it.")
            return head.parent_number
        node = head  # "original": where the current image's line starts
        while node.parent_number is not None:
            node = self.store.node(conv, node.parent_number)
        return node.number

    def _resolve_anchor(self, conv: str, intent: Intent) -> Intent:
        if intent.anchor is None:
            return intent
        return replace(intent, base=self.anchor_number(conv, intent.anchor), anchor=None)

    def _apply_both(self, conv, intent, uploads, settings, on_event) -> Outcome:
        """Two requests in one message, in order; the second only if the first worked."""
        first = self.apply(conv, replace(intent, then=None), uploads=uploads, settings=settings,
                           on_event=on_event)
        if first.is_error:
            return first
        second = self.apply(conv, intent.then, settings=settings, on_event=on_event)
        first.message = f"1 of 2 · {first.message}" if first.message else "1 of 2 done."
        if second.message or not second.runs:
            second.message = f"2 of 2 · {second.message}".rstrip()
        for run in second.runs:
            run.description = f"2 of 2 · {run.description}"
        first.after = second
        return first

    def _do_ask(self, conv, intent, uploads, settings, on_event) -> Outcome:
        move, edit = intent.options
        head = self.store.head(conv)
        back = f" (back to #{head.parent_number})" if head is not None and head.parent_number else ""
        choices = [(f"Step back{back}", {"text": intent.text, "reading": "move"}),
                   (f"Edit: “{_short(edit.text)}”", {"text": intent.text, "reading": "edit"})]
        return Outcome(message=f"Do you mean a step back in the history{back}, or an edit of the "
                               f"current image that says “{_short(edit.text)}”? Pick one:",
                       choices=choices)

    def _do_op(self, conv, intent, uploads, settings, on_event) -> Outcome:
        """An exact whole-picture operation: no model, no job, a node of kind "op"."""
        source = self.store.node(conv, intent.base) if intent.base else self.store.head(conv)
        if source is None:
            raise HistoryError("There is no image to change yet: describe one, or upload a photo.")
        if (self.store.conversation(conv).meta.get("region") or {}).get("base") == source.number:
            # A region is painted on it: "make it brighter" there is a local change, the model's.
            return self._do_edit(conv, Intent("edit", text=intent.text, base=intent.base), uploads,
                                 settings, on_event)
        try:
            op = exact.validate(intent.op)
            image = exact.apply(self.store.image(source), op)
        except ValueError as e:
            raise HistoryError(str(e)) from None
        node = self.store.add_node(conv, image, kind="op", parent=source.number, inputs=[source.number],
                                   instruction=intent.text, prompt="", params={"op": op})
        return Outcome(message=f"Exact: {exact.describe(op)}.", node=node)

    def _do_squash(self, conv, intent, uploads, settings, on_event) -> Outcome:
        """The current line of edits again, as one edit of its first image: a new branch."""
        line = self.store.lineage(conv)
        if not line:
            raise HistoryError("There are no images yet: describe one, or upload a photo.")
        root, steps = line[0], [n for n in line[1:] if n.instruction]
        if len(steps) < 2:
            raise HistoryError(f"#{line[-1].number} is {len(steps)} edit(s) from #{root.number}: "
                               f"there is nothing to squash. Squash needs two edits or more in a line.")
        refs: list[int] = []
        for n in steps:
            for ref in n.input_numbers[1:]:
                if ref not in refs:
                    refs.append(ref)
        most = self.max_pictures(settings)
        if len(refs) > most - 1:
            raise HistoryError(f"That line of edits used {len(refs)} reference images; one edit with this "
                               f"model can use at most {most - 1}. Squash a shorter line.")
        merged = merge_instructions([n.instruction for n in steps])
        request = {"op": "edit", "prompt": merged, **self._options(settings),
                   **self._size(settings, root), "guard": settings.guard,
                   "squash": [n.number for n in steps]}
        run = self._submit(conv, kind="edit", request=request, inputs=[root.number] + refs,
                           parent=root.number, instruction=merged, settings=settings, on_event=on_event,
                           description=f"Squashing #{steps[0].number}–#{steps[-1].number} into one edit of #{root.number}")
        run.note = (f"One edit of #{root.number} doing what #{steps[0].number}–#{steps[-1].number} did in "
                    f"{len(steps)} steps, on a new branch beside them: “{_short(merged, 200)}”")
        return Outcome(runs=[run])

    def set_region(self, conv: str, mask_data: bytes, *, base: Optional[int] = None) -> dict:
        """Keep a painted region for the next edit of ``base`` (default the head).

        ``mask_data`` is an image of any size (white = may change); it is scaled to the
        picture when the edit runs. Returns the pending region {"sha", "base"}.
        """
        node = self.store.node(conv, base) if base else self.store.head(conv)
        if node is None:
            raise HistoryError("There is no image to paint on yet.")
        sha = self.store.put_mask(load_mask(mask_data))
        region = {"sha": sha, "base": node.number}
        self.store.update_meta(conv, {"region": region})
        return region

    def _pending_region(self, conv: str, base_node: Optional[Node]) -> Optional[str]:
        """A region painted on ``base_node`` and not used yet: this edit uses it up."""
        pending = self.store.conversation(conv).meta.get("region")
        if not pending or base_node is None or pending.get("base") != base_node.number:
            return None
        self.store.update_meta(conv, {"region": None})
        return pending.get("sha")

    def _do_sample(self, conv, intent, uploads, settings, on_event) -> Outcome:
        with SAMPLE_PHOTO.open("rb") as f:
            node = self.add_uploads(conv, [("sample photo: Chelsea the cat (CC0)", f.read())])[0]
        if not intent.text:
            self.store.checkout(conv, node.number)
            return Outcome(message=f"Here is a sample photo, kept as #{node.number}. Tell me what to change.",
                           node=node)
        return self._do_edit(conv, Intent("edit", text=intent.text, role="subject"), [node], settings, on_event)

    def _do_help(self, conv, intent, uploads, settings, on_event) -> Outcome:
        lines = [intent.text, ""] if intent.text else []
        lines += ["Describe a picture to generate it, or attach a photo and say what to change.",
                  "A photo sent with words is the new picture to edit, unless the words make it a "
                  "reference (\"put the hat from this photo on him\", \"in the style of this\"); "
                  "a button under the result switches the reading. Up to two references per edit.",
                  "Name images by number (#3), by place (\"the original\", \"the last one\", "
                  "\"the previous one\") or by order (\"the second image\").", ""]
        lines += [f"- `{usage.split(' - ')[0]}` - {usage.split(' - ', 1)[1]}" for usage in COMMANDS.values()]
        return Outcome(message="\n".join(lines), is_error=bool(intent.text))

    def _do_upload(self, conv, intent, uploads, settings, on_event) -> Outcome:
        if not uploads:
            return Outcome(message="Attach a PNG, JPEG or WebP image to upload it.", is_error=True)
        node = self.store.checkout(conv, uploads[0].number)
        extra = ""
        if len(uploads) > 1:
            others = ", ".join(f"#{n.number}" for n in uploads[1:])
            extra = f" Also kept {others}; attach images with an instruction to use them as references."
        return Outcome(message=f"Uploaded as #{node.number}. Tell me what to change.{extra}", node=node)

    def _do_undo(self, conv, intent, uploads, settings, on_event) -> Outcome:
        head = self.store.head(conv)
        if intent.base is not None and (head is None or intent.base != head.number):
            # Undo under an older image: back to that image's parent.
            source = self.store.node(conv, intent.base)
            if source.parent_number is None:
                raise HistoryError(f"Nothing to undo: #{source.number} is where its line of images starts.")
            node = self.store.checkout(conv, source.parent_number)
        else:
            node = self.store.undo(conv, intent.count)
        return Outcome(message=f"Back to #{node.number}.", node=node)

    def _do_redo(self, conv, intent, uploads, settings, on_event) -> Outcome:
        node = self.store.redo(conv, intent.count)
        return Outcome(message=f"Forward to #{node.number}.", node=node)

    def _do_checkout(self, conv, intent, uploads, settings, on_event) -> Outcome:
        node = self.store.checkout(conv, intent.base)
        return Outcome(message=f"Now at #{node.number}. The next edit starts from here.", node=node)

    def _do_history(self, conv, intent, uploads, settings, on_event) -> Outcome:
        if not self.store.nodes(conv):
            return Outcome(message="No images yet.")
        return Outcome(show_history=True)

    def _do_export(self, conv, intent, uploads, settings, on_event) -> Outcome:
        return Outcome(export=self.export(conv, intent.fmt or "png", intent.base))

    def _do_generate(self, conv, intent, uploads, settings, on_event) -> Outcome:
        request = {"op": "generate", "prompt": intent.text, **self._options(settings),
                   "polish": self._polish_engine(settings, intent)}
        request.update(self._size(settings, None))
        run = self._submit(conv, kind="generate", request=request, inputs=[], parent=None,
                           instruction=intent.text, settings=settings, on_event=on_event,
                           description="Generating")
        return Outcome(runs=[run])

    def _do_edit(self, conv, intent, uploads, settings, on_event) -> Outcome:
        refs = [n.number for n in uploads]
        base = intent.base
        head = self.store.head(conv)
        if base is None and head is None and not refs:
            # Nothing to edit yet: treat the words as a description to generate.
            return self._do_generate(conv, intent, uploads, settings, on_event)
        # Attached photos: the first is the picture to edit when the words said so, or
        # when there is nothing else to edit; otherwise they are references.
        subject = bool(refs) and base is None and (intent.role == "subject" or head is None)
        if subject:
            base, refs = refs[0], refs[1:]
        most = self.max_pictures(settings)
        if 1 + len(refs) > most:
            raise HistoryError(
                f"An edit with this model can use at most {most} images: the image to edit and "
                f"{_count(most - 1, 'reference')}. This message brought {len(refs)} references; "
                f"send at most {most - 1}.")
        base_node = self.store.node(conv, base) if base is not None else head
        request = {"op": "edit", "prompt": intent.text, **self._options(settings),
                   "polish": self._polish_engine(settings, intent)}
        request.update(self._size(settings, base_node))
        request["guard"] = settings.guard
        region = intent.region or self._pending_region(conv, base_node)
        if region is not None:
            request["region"] = region
        if uploads:
            request["reading"] = "subject" if subject else "reference"
        if base is None and self.active_runs(conv):
            # Sent while earlier work runs: it edits whatever is current when its turn
            # comes, so "make it darker" then "add rain" chain instead of branching.
            parent, description = HEAD, "Editing the latest image"
        else:
            parent, description = base_node.number, f"Editing #{base_node.number}"
        run = self._submit(conv, kind="edit", request=request, inputs=[parent] + refs,
                           parent=parent, instruction=intent.text, settings=settings,
                           on_event=on_event, description=description)
        if uploads:
            run.note, run.switch = _reading(intent.text, uploads, subject=subject, base=parent, head=head)
        return Outcome(runs=[run])

    def _do_variations(self, conv, intent, uploads, settings, on_event) -> Outcome:
        source = self.store.node(conv, intent.base) if intent.base else self.store.head(conv)
        if source is None:
            raise HistoryError("There is nothing to vary yet: describe an image or upload one.")
        recorded = source.params.get("request")
        if not recorded:
            raise HistoryError(
                f"#{source.number} is an {source.kind}, not something the model made, so there "
                f"is nothing to re-run. Describe an edit first.")
        count = settings.variations if intent.default_count else intent.count
        runs = []
        for i in range(count):
            request = dict(recorded, seed=None)  # a fresh seed each time
            if (source.params.get("polish") or {}).get("polished"):
                request["polished_prompt"] = source.prompt  # the same request: not polished again
            runs.append(self._submit(
                conv, kind="variation", request=request, inputs=list(source.input_numbers),
                parent=source.parent_number, instruction=source.instruction,
                settings=settings, on_event=on_event,
                description=f"Variation {i + 1} of {count} of #{source.number}"))
        return Outcome(runs=runs)

    def _title_if_untitled(self, conv: str, text: str) -> None:
        if self.store.conversation(conv).title is None:
            title = " ".join(text.split())
            self.store.rename_conversation(conv, title if len(title) <= 60 else title[:59] + "…")

    # ---- the same operations for buttons and the API ---------------------------------

    def export(self, conv: str, fmt: str = "png", number: Optional[int] = None) -> Export:
        title = _slug(self.store.conversation(conv).title or "conversation")
        if fmt == "history":
            return Export(f"{title}-history.zip", self.store.export_history(conv), "application/zip",
                          fmt="history")
        node = self.store.node(conv, number) if number else self.store.head(conv)
        if node is None:
            raise HistoryError("There is no image to export yet.")
        ext = "jpg" if fmt in ("jpeg", "jpg") else fmt
        mime = EXPORT_MIME.get(ext)
        if mime is None:
            raise HistoryError(f"Cannot export as {fmt!r}; choose png, jpeg, webp or history.")
        return Export(f"{title}-{node.number}.{ext}", self.store.export_image(conv, node.number, fmt), mime,
                      fmt="jpeg" if ext == "jpg" else fmt, number=node.number)

    def retry(self, conv: str, job_id: str, *, settings: Optional[ChatSettings] = None,
              on_event: Optional[EventSink] = None) -> Outcome:
        """Run a failed or stopped job again with the same request (and seed, if one was set)."""
        try:
            job = self.store.job(job_id)
            if job.conversation_id != conv:
                raise HistoryError("There is no such job in this conversation.")
            if job.status not in ("failed", "cancelled"):
                raise HistoryError(f"That job is {job.status}; only failed or stopped ones can be retried.")
            recorded = dict(job.request)
            inputs, parent = recorded.pop("inputs", []), recorded.pop("parent", None)
            chosen = ChatSettings(backend=recorded.pop("backend", None), model=recorded.pop("model", None))
            run = self._submit(conv, kind=job.kind, request=recorded, inputs=list(inputs), parent=parent,
                               instruction=recorded.get("prompt", ""), settings=chosen,
                               on_event=on_event, description="Trying again")
            return Outcome(runs=[run])
        except USER_ERRORS as e:
            return Outcome(message=str(e), is_error=True)

    def interrupted_jobs(self, conv: str) -> list[Job]:
        """Jobs a server stop cut short that nobody has been told about yet; marks them told."""
        told = set(self.store.conversation(conv).meta.get("crash_reported", []))
        jobs = [j for j in self.store.jobs(conv, status="failed")
                if j.error == CRASH_REASON and j.id not in told]
        if jobs:
            self.store.update_meta(conv, {"crash_reported": sorted(told | {j.id for j in jobs})})
        return jobs

    def delete_conversation(self, conv: str) -> int:
        """Stop the conversation's jobs, then remove it and every image nothing else uses."""
        self.cancel(conv)
        return self.store.delete_conversation(conv)

    def cancel(self, conversation_id: str) -> int:
        """Stop every queued or running job of the conversation; returns how many."""
        with self._lock:
            runs = list(self._runs.get(conversation_id, []))
        for run in runs:
            if self.queue.cancel(run.ticket):
                self._finish_cancelled(run.job.id, "Stopped before it started.")
        return len(runs)

    def active_runs(self, conversation_id: str) -> list[Run]:
        with self._lock:
            return [r for r in self._runs.get(conversation_id, []) if not r.future.done()]

    # ---- jobs -------------------------------------------------------------------------

    def _options(self, settings: ChatSettings) -> dict:
        loras = {"loras": list(settings.loras)} if settings.loras else {}
        if settings.draft:  # fast: few steps, no true CFG (half the model calls per step)
            return {"seed": settings.seed, "steps": DRAFT_STEPS, "true_cfg_scale": 1.0,
                    "negative_prompt": None, "draft": True, **loras}
        return {"seed": settings.seed, "steps": settings.steps, "true_cfg_scale": settings.guidance,
                "negative_prompt": None, **loras}

    def _size(self, settings: ChatSettings, base: Optional[Node]) -> dict:
        if settings.size == "keep":
            return {"width": None, "height": None}
        if settings.size == "1mp":
            # Exactly Picture 1's VAE grid: no shift, no zoom from rounding.
            size = pipeline_size(base.width, base.height, VAE_AREA) if base else megapixel_size(1.0)
        else:
            w, h = (int(x) for x in settings.size.split(":"))
            size = megapixel_size(w / h)
            if base is not None and pipeline_size(base.width, base.height, VAE_AREA) == size:
                size = pipeline_size(base.width, base.height, VAE_AREA)
        return dict(zip(("width", "height"), size))

    def _submit(self, conv: str, *, kind: str, request: dict, inputs: list[int],
                parent: Optional[int], instruction: str, settings: ChatSettings,
                on_event: Optional[EventSink], description: str) -> Run:
        backend = (settings.backend, settings.model)
        job = self.store.create_job(conv, kind=kind, request={
            **request, "inputs": inputs, "parent": parent,
            "backend": settings.backend, "model": settings.model})
        holder: dict = {}

        def task(cancel: threading.Event) -> RunResult:
            return self._execute(holder["run"], conv, kind=kind, request=request, inputs=inputs,
                                 parent=parent, instruction=instruction, backend=backend,
                                 cancel=cancel)

        try:
            owner = self.store.conversation(conv).owner
            if self.cap_per_conversation:
                owner = f"{owner}/{conv}"
            ticket = self.queue.submit(conv, task, label=description, owner=owner)
        except QueueFull as e:
            self._finish_cancelled(job.id, str(e))
            raise HistoryError(str(e)) from None
        run = Run(job=job, ticket=ticket, description=description)
        if on_event is not None:
            run.listen(on_event)
        holder["run"] = run
        run.ahead = self.queue.position(ticket)
        with self._lock:
            self._runs.setdefault(conv, []).append(run)
        run.future.add_done_callback(lambda _: self._forget(conv, run))
        return run

    def _forget(self, conv: str, run: Run) -> None:
        with self._lock:
            runs = [r for r in self._runs.get(conv, []) if r is not run]
            if runs:
                self._runs[conv] = runs
            else:
                self._runs.pop(conv, None)

    def _execute(self, run: Run, conv: str, *, kind, request, inputs, parent, instruction,
                 backend, cancel: threading.Event) -> RunResult:
        job_id = run.job.id
        self.store.start_job(job_id)
        if parent == HEAD:  # resolved now, after the jobs queued before it have committed
            parent = self.store.head(conv).number
            inputs = [parent] + list(inputs[1:])
        timed_out = threading.Event()

        def on_timeout():
            timed_out.set()
            cancel.set()

        timer = threading.Timer(self.job_timeout, on_timeout)
        timer.daemon = True
        timer.start()
        started = time.monotonic()

        def progress(step: int, total: int, preview) -> None:
            elapsed = time.monotonic() - started
            eta = elapsed / step * (total - step) if step else None
            run.emit(RunEvent("progress", step, total, preview, eta))

        try:
            run.emit(RunEvent("started"))
            be = self.backends.get(*backend)
            images = tuple(self.store.image(self.store.node(conv, n)) for n in inputs)
            opts = {k: request.get(k) for k in ("seed", "steps", "true_cfg_scale",
                                                 "negative_prompt", "width", "height")}
            if request.get("loras"):
                opts["loras"] = tuple(request["loras"])
            prompt, polished = self._polished(run, conv, request, be, images, parent, cancel)
            if cancel.is_set():
                raise Cancelled()
            if request["op"] == "edit":
                result = be.edit(EditRequest(prompt, images=images, **opts),
                                 progress=progress, cancel=cancel)
            else:
                result = be.generate(GenerateRequest(prompt, **opts),
                                     progress=progress, cancel=cancel)
            if cancel.is_set():
                raise Cancelled()
            image, kept = result.image, None
            if request["op"] == "edit":
                image, kept = self._keep_untouched(images[0], image, request)
        except Cancelled:
            if timed_out.is_set():
                msg = f"The image took longer than {self.job_timeout:.0f} s and was stopped. Nothing was saved."
                self._fail(job_id, msg)
                raise BackendError(msg) from None
            self._finish_cancelled(job_id, "Stopped by the user.")
            raise
        except USER_ERRORS as e:
            self._fail(job_id, str(e))
            raise
        except Exception as e:
            msg = f"The image backend failed ({type(e).__name__}: {e}). The current image is unchanged; try again."
            self._fail(job_id, msg)
            raise BackendError(msg) from e
        finally:
            timer.cancel()
        params = {
            "seed": result.seed, "steps": result.steps,
            "true_cfg_scale": result.info.get("true_cfg_scale", opts["true_cfg_scale"]),
            "negative_prompt": result.info.get("negative_prompt", opts["negative_prompt"]),
            "width": opts["width"], "height": opts["height"],
            "backend": result.info.get("backend"), "model": result.info.get("model"),
            "elapsed_s": round(result.elapsed_s, 3),
            "guard": kept,
            "polish": polished,
            "draft": bool(request.get("draft")),
            # Each adapter's name, file sha256 and scale: replay says which it needs.
            "loras": result.info.get("loras") or [],
            "final_of": request.get("final_of"),
            # What "variations" re-runs: the request as asked, before defaults were filled in.
            "request": {k: v for k, v in request.items()},
            "info": result.info,
        }
        try:
            node = self.store.finish_job(job_id, image, kind=kind, parent=parent, inputs=inputs,
                                         instruction=instruction, prompt=prompt, params=params)
        except HistoryError as e:  # e.g. stopped at the last moment: nothing was saved
            self._fail(job_id, str(e))
            raise
        except Exception as e:
            msg = f"The image was made but could not be saved ({type(e).__name__}: {e}). Try again."
            self._fail(job_id, msg)
            raise BackendError(msg) from e
        source = self.store.node(conv, parent) if parent is not None else None
        return RunResult(node=node, source=source, seed=result.seed, steps=result.steps,
                         elapsed_s=result.elapsed_s)

    def _keep_untouched(self, before: Image.Image, after: Image.Image, request: dict):
        region = request.get("region")
        return keep_untouched(before, after, request, self.store.mask(region) if region else None)

    def _fail(self, job_id: str, message: str) -> None:
        try:
            self.store.fail_job(job_id, message)
        except HistoryError:
            pass  # already final (e.g. cancelled meanwhile)

    def _finish_cancelled(self, job_id: str, reason: str) -> None:
        try:
            self.store.cancel_job(job_id, reason)
        except HistoryError:
            pass


def _reading(text: str, uploads: list[Node], *, subject: bool, base, head: Optional[Node]):
    """What an edit with attached photos took as what, and the button for the other way."""
    numbers = [n.number for n in uploads]
    yours = "your photo" if len(numbers) == 1 else "your photos"
    listed = " and ".join(f"#{n}" for n in numbers)
    if subject:
        rest = numbers[1:]
        note = f"Edited your new photo (#{numbers[0]})"
        if rest:
            note += f", with {' and '.join(f'#{n}' for n in rest)} as {'a reference' if len(rest) == 1 else 'references'}"
        if head is None:  # nothing else was there to edit: only one reading
            return note + ".", None
        return note + ".", {"label": f"Use it as a reference for #{head.number} instead",
                            "text": text, "role": "reference", "base": head.number, "uploads": numbers}
    target = "the latest image" if base == HEAD else f"#{base}"
    note = f"Edited {target} using {yours} {listed} as {'a reference' if len(numbers) == 1 else 'references'}."
    return note, {"label": "Edit the new photo instead" if len(numbers) == 1 else "Edit the first new photo instead",
                  "text": text, "role": "subject", "base": None, "uploads": numbers}


def keep_untouched(before: Image.Image, after: Image.Image, request: dict,
                   mask: Optional[Image.Image] = None):
    """The drift guard, or a painted region: untouched pixels come from ``before``.

    One code path for the chat's jobs and `qwen-edit-chat replay`. Returns the image
    to keep and the figures for the node (None when the guard is off, or when the user
    asked for another size, so there is no input pixel to keep).
    """
    if not request.get("guard") and mask is None:  # off, or recorded before the guard existed
        return after, None
    asked = (request.get("width"), request.get("height"))
    if asked != (None, None) and asked != before.size and mask is None:
        return after, None
    kept = fidelity.guard(before, after, region=mask)
    return kept.image, kept.summary()


def merge_instructions(instructions: list[str]) -> str:
    """A line of edit instructions as one: "make it darker; then add rain; then ..."."""
    parts = [" ".join(i.split()).rstrip(" .;,") for i in instructions if i and i.strip()]
    return "; then ".join(parts)


def load_mask(data: bytes) -> Image.Image:
    """A painted region from an uploaded image: mode L, white = may change."""
    with decoding(data):
        return load_upload(data, "The mask", as_mask=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _whole(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 1


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def megapixel_size(aspect: float, area: int = 1024 * 1024, multiple: int = 32) -> tuple[int, int]:
    """Width and height of about ``area`` pixels at ``aspect``, in multiples of 32.

    32 is the edit model's VAE grid (8x VAE, 2x2 patches, and its input resize): a
    size off that grid shifts and zooms the picture a little on every turn.
    """
    w = (area * aspect) ** 0.5
    h = w / aspect
    return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:48] or "conversation"


__all__ = ["ChatService", "ChatSettings", "BackendPool", "Outcome", "Run", "RunEvent",
           "RunResult", "Export", "USER_ERRORS", "megapixel_size"]
