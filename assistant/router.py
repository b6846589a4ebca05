"""Turn one chat message into an `Intent`: what the user asked for, in plain data.

Owns the chat's vocabulary: the slash commands (/undo, /goto 3, /export jpeg, ...),
the plain-language phrases that mean the same things ("go back to #3", "try again",
"save as webp"), and the rule that every other message is an edit of the current
image, or a fresh generation while there is no image yet.

Does not know whether image #3 exists, what the head is, how a model runs, or
anything about Chainlit. It reads the text plus two facts about the context (is
there a current image, how many files came with the message) and does no I/O. The
service checks intents against the store; the handler renders help and refusals.

Rules worth knowing:
- A command matches only when the whole message is a command phrase (anchored
  patterns), so "make the undo button red" and "undo the blur" are edits.
- "branch from #2 and make it night" / "from #2, add a hat" / "go back to #3 and
  make it night" are edits with `base` set; the node reference must say "#2" or
  "image 2", or be followed by an explicit separator (",", "and", "then").
- Variations: "try again", "another one", "a variation" ask for 1; a plural with no
  number ("variations", "more variations", /variations) asks for DEFAULT_VARIATIONS;
  more than MAX_VARIATIONS is refused rather than quietly cut down.
- Files attached: with no text the message is an upload; with text it is an edit
  that uses them as references, whatever the words (a generate phrase included).
  Slash commands are explicit and keep their meaning even with files attached.
- A refusal (bad argument, unknown command, nothing to make) comes back as a
  `help` intent whose `text` says what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = (
    "generate", "edit", "upload", "undo", "redo", "checkout",
    "variations", "export", "history", "help",
)
EXPORT_FORMATS = ("png", "jpeg", "webp", "history")
DEFAULT_EXPORT_FORMAT = "png"
# Each variation is a full model run; eight keeps one request from hogging the GPU.
MAX_VARIATIONS = 8
# What "variations" / "more variations" / "/variations" mean without a number.
DEFAULT_VARIATIONS = 3

# Usage lines for the help the handler renders, in the order to show them.
COMMANDS = {
    "undo": "/undo [n] - step back n images (default 1)",
    "redo": "/redo [n] - step forward again after an undo",
    "goto": "/goto N (or #N) - make image #N the current one",
    "branch": "/branch N [instruction] - continue from image #N, optionally editing it",
    "variations": (
        f"/variations [n] - n new takes on the last request"
        f" (default {DEFAULT_VARIATIONS}, at most {MAX_VARIATIONS})"
    ),
    "export": "/export [png|jpeg|webp|history] - download the image, or the whole history",
    "history": "/history - show the tree of images",
    "new": "/new <prompt> - start a fresh image from a description",
    "help": "/help - this list",
}


@dataclass(frozen=True)
class Intent:
    """One thing to do. `base` is a node number (#N) to start from, None for the head."""

    kind: str
    text: str = ""
    base: int | None = None
    count: int = 1
    fmt: str | None = None
    # True when the user asked for "variations" without saying how many: the service
    # may then use the conversation's own setting instead of DEFAULT_VARIATIONS.
    default_count: bool = False

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


class _Refusal(Exception):
    """A message the user should read instead of anything happening."""


def route(text: str | None, *, has_image: bool, attachments: int = 0) -> Intent:
    """Decide what one message asks for. Never raises for user input."""
    if attachments < 0:
        raise ValueError(f"attachments must be >= 0, got {attachments}")
    raw = (text or "").strip()
    try:
        if not raw:
            return Intent("upload") if attachments else Intent("help")
        if _SLASH.match(raw):
            return _slash_command(raw)
        if attachments:
            return _with_attachments(raw)
        return _plain_language(raw, has_image=has_image)
    except _Refusal as refusal:
        return Intent("help", text=str(refusal))


# ---------------------------------------------------------------- numbers

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
_QUANTITY_WORDS = {
    "a": 1, "an": 1, "another": 1, "once": 1, "twice": 2, "thrice": 3,
    "a couple": 2, "a couple of": 2, "couple": 2, "couple of": 2, "a few": 3, "few": 3,
}
_NUM = r"(?:\d+|" + "|".join(_NUMBER_WORDS) + r")"
# A node reference that cannot be mistaken for a quantity: "#3", "image 3", "picture #3".
_REF = r"(?:#\s*\d+|(?:image|picture|pic|photo|version|node|number|no\.|nr\.?)\s*#?\s*\d+)"
# In a whole-message command a bare number is a node too: "revert to 3".
_REF_OR_NUMBER = rf"(?:{_REF}|\d+)"


def _number(token: str) -> int:
    token = " ".join(token.lower().split())
    if token.isdigit():
        return int(token)
    if token in _NUMBER_WORDS:
        return _NUMBER_WORDS[token]
    return _QUANTITY_WORDS[token]


def _node_number(ref: str) -> int:
    number = int(re.search(r"\d+", ref).group())
    if number < 1:
        raise _Refusal(f"There is no image #{number}; images are numbered from #1.")
    return number


def _variation_count(count: int) -> int:
    if count < 1:
        raise _Refusal("Ask for at least one variation, like /variations 2.")
    if count > MAX_VARIATIONS:
        raise _Refusal(f"I can make at most {MAX_VARIATIONS} variations at a time, like /variations {MAX_VARIATIONS}.")
    return count


def _step_count(count: int, kind: str) -> int:
    if count < 1:
        raise _Refusal(f"{kind.capitalize()} needs at least one step, like /{kind} 1.")
    return count


# ---------------------------------------------------------------- slash commands

_SLASH = re.compile(r"/(?:[A-Za-z][\w-]*)?(?=\s|$)")
_ALIASES = {"checkout": "goto", "variation": "variations", "generate": "new"}


def _slash_command(raw: str) -> Intent:
    name, args = re.match(r"/(\S*)\s*(.*)", raw, re.S).groups()
    args = args.strip()
    command = _ALIASES.get(name.lower(), name.lower())
    handler = _SLASH_HANDLERS.get(command)
    if handler is None:
        raise _Refusal(f"Unknown command /{name}")
    return handler(args)


def _slash_steps(kind: str):
    def handler(args: str) -> Intent:
        if not args:
            return Intent(kind)
        if not re.fullmatch(_NUM, args, re.I):
            raise _Refusal(f"/{kind} takes a number of steps, like /{kind} 2.")
        return Intent(kind, count=_step_count(_number(args), kind))
    return handler


def _slash_goto(args: str) -> Intent:
    if not re.fullmatch(_REF_OR_NUMBER, args, re.I):
        raise _Refusal("Say which image: /goto 3")
    return Intent("checkout", base=_node_number(args))


def _slash_branch(args: str) -> Intent:
    m = re.match(rf"({_REF_OR_NUMBER})(?=[\s,:;]|$)[\s,:;]*(.*)", args, re.I | re.S)
    if not m:
        raise _Refusal("Say which image to branch from: /branch 3 make it night")
    base = _node_number(m.group(1))
    instruction = _clean_instruction(m.group(2))
    return Intent("edit", text=instruction, base=base) if instruction else Intent("checkout", base=base)


def _slash_variations(args: str) -> Intent:
    if not args:
        return Intent("variations", count=DEFAULT_VARIATIONS, default_count=True)
    if not re.fullmatch(_NUM, args, re.I):
        raise _Refusal("/variations takes a number, like /variations 4.")
    return Intent("variations", count=_variation_count(_number(args)))


def _slash_export(args: str) -> Intent:
    return Intent("export", fmt=_export_format(args) if args else DEFAULT_EXPORT_FORMAT)


def _slash_new(args: str) -> Intent:
    if not args:
        raise _Refusal(_NOTHING_TO_MAKE)
    return Intent("generate", text=args)


_SLASH_HANDLERS = {
    "undo": _slash_steps("undo"),
    "redo": _slash_steps("redo"),
    "goto": _slash_goto,
    "branch": _slash_branch,
    "variations": _slash_variations,
    "export": _slash_export,
    # Extra words after these are harmless, so they are ignored rather than refused.
    "history": lambda args: Intent("history"),
    "help": lambda args: Intent("help"),
    "new": _slash_new,
}

_NOTHING_TO_MAKE = "Say what to make, like: /new a cat on a roof"

_FORMAT_ALIASES = {
    "png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp",
    "history": "history", "zip": "history", "all": "history", "everything": "history", "tree": "history",
}


def _export_format(word: str) -> str:
    fmt = _FORMAT_ALIASES.get(word.lower().lstrip("."))
    if fmt is None:
        raise _Refusal(f"Unknown export format {word!r}: use png, jpeg, webp or history.")
    return fmt


# ---------------------------------------------------------------- cleaning

# Politeness in front of a request; stripping it keeps the instruction readable
# ("can you make it look like a watercolor?" -> "make it look like a watercolor").
_POLITE_PREFIX = re.compile(
    r"(?:please|pls|plz|kindly|(?:can|could|would|will)\s+(?:you|u|we)(?:\s+please)?"
    r"|i(?:['’]d|\s+would)\s+like\s+you\s+to|i\s+(?:want|need)\s+you\s+to|go\s+ahead\s+and"
    r"|let['’]?s|now|just|ok(?:ay)?|hey|hi|hello|alright|oops|ugh)\b[\s,.!:;-]*",
    re.I,
)
# Interjections only matter for recognising commands ("no, undo that"); they are
# never cut from an edit, where "no" can carry meaning ("no rain").
_INTERJECTION = re.compile(
    r"(?:(?:no|nah|nope|wait|actually|well|oh|ah|yes|yeah|yep|great|nice|cool|good|hm+|uh+|um+)\s*[,.!]+"
    r"|(?:hm+|argh|right|so)\b)\s*",
    re.I,
)
# Thanks only counts after punctuation: "add a sign that says thank you" keeps its words.
_POLITE_SUFFIX = re.compile(
    r"(?:\s*[,.!]\s*(?:thanks|thank\s+you|thx|cheers)|[\s,]+(?:please|pls|plz))+[\s.!?]*$", re.I
)
_LEADING_JOINER = re.compile(r"(?:(?:and\s+then|and|then)\b|[,:;-])\s*", re.I)


def _strip_polite(text: str) -> str:
    while m := _POLITE_PREFIX.match(text):
        text = text[m.end():]
    return text


def _clean_instruction(text: str) -> str:
    """Drop politeness and joiners around an instruction, keeping its words and case."""
    previous = None
    while text != previous:
        previous = text
        text = _strip_polite(text.strip())
        if m := _LEADING_JOINER.match(text):
            text = text[m.end():]
    text = _POLITE_SUFFIX.sub("", text)
    return text.rstrip(" \t\r\n,;:?")


def _for_matching(text: str) -> str:
    """Lower-case, single-spaced, with politeness, interjections and end punctuation gone."""
    text = " ".join(text.lower().replace("’", "'").split())
    previous = None
    while text != previous:
        previous = text
        text = _strip_polite(text)
        if m := _INTERJECTION.match(text):
            text = text[m.end():]
        text = _POLITE_SUFFIX.sub("", text)
        text = text.strip(" .!?,;:")
    return text


# ---------------------------------------------------------------- plain language

def _plain_language(raw: str, *, has_image: bool) -> Intent:
    core = _strip_polite(raw)
    command = _whole_message_command(_for_matching(core))
    if command is not None:
        return command
    based = _based_request(core)
    if based is not None:
        return based
    prompt = _generate_prompt(core)
    if prompt is not None:
        return Intent("generate", text=prompt)
    if not has_image:
        # Nothing to edit yet: the whole message describes the first picture.
        return Intent("generate", text=raw)
    return Intent("edit", text=_clean_instruction(raw) or raw)


def _with_attachments(raw: str) -> Intent:
    """The user gave images, so the words say how to use them: always an edit."""
    core = _strip_polite(raw)
    split = _split_base(core)
    if split is not None:
        base, rest = split
        return Intent("edit", text=rest, base=base)
    command = _whole_message_command(_for_matching(core))
    if command is not None and command.kind == "checkout":
        return Intent("edit", base=command.base)
    return Intent("edit", text=_clean_instruction(raw) or raw)


def _whole_message_command(s: str) -> Intent | None:
    if not s:
        return Intent("help")  # only politeness or punctuation: nothing to do
    for pattern, build in _COMMANDS:
        if m := pattern.fullmatch(s):
            intent = build(m)
            if intent is not None:
                return intent
    return None


def _steps(kind: str):
    def build(m: re.Match) -> Intent:
        count, times = m.group("count"), m.group("times")
        steps = _number(count) if count else _number(times) if times else 1
        return Intent(kind, count=_step_count(steps, kind))
    return build


def _checkout(m: re.Match) -> Intent:
    return Intent("checkout", base=_node_number(m.group("ref")))


def _export(m: re.Match) -> Intent | None:
    fmt_word = m.group("fmt")
    base = _node_number(m.group("ref")) if m.group("ref") else None
    if fmt_word is None:
        return Intent("export", base=base, fmt=DEFAULT_EXPORT_FORMAT)
    if m.group("as") is None and fmt_word.lstrip(".") not in _FORMAT_ALIASES:
        return None  # "save cat" is not an export request
    return Intent("export", base=base, fmt=_export_format(fmt_word))


def _variations(m: re.Match) -> Intent:
    groups = m.groupdict()
    quantity = groups.get("qty")
    default = False
    if quantity and quantity != "some":
        count = _number(quantity)
    elif (groups.get("noun") or "").endswith("s") or quantity == "some":
        count, default = DEFAULT_VARIATIONS, True
    else:
        count = 1
    base = _node_number(groups["ref"]) if groups.get("ref") else None
    return Intent("variations", count=_variation_count(count), base=base, default_count=default)


def _fixed(kind: str, **fields):
    return lambda m: Intent(kind, **fields)


_THIS = r"(?:it|this|that|this\s+one|that\s+one)"
# Verbs that move to a node with "to": "go back to #3", "switch to image 3".
_MOVE_TO = r"(?:(?:go|jump|switch|move|return|get|take\s+me|roll|head|revert|reset|rewind)\s+)?(?:back\s+)?to"
_STEP_NOUN = r"(?:\s+(?:ones?|steps?|changes?|edits?|times?|images?|versions?))?"
_STEP_COUNT = rf"(?:\s+(?P<count>{_NUM}|a|an))?{_STEP_NOUN}(?:\s+(?P<times>once|twice|thrice))?"
_LAST = r"(?:\s+(?:that|it|this))?(?:\s+(?:the\s+)?last)?"
_SHOW = r"(?:show|view|see|display|list|print|open)(?:\s+(?:me|us))?"
_VARIATION_LEAD = (
    r"(?:(?:give|show|make|generate|create|get|render|do|produce)(?:\s+(?:me|us))?\s+"
    r"|(?:see|let\s+me\s+see|i\s+want|i'd\s+like|how\s+about)\s+)?"
)
_VARIATION_QTY = (
    rf"(?:(?P<qty>{_NUM}|a\s+few|a\s+couple(?:\s+of)?|couple(?:\s+of)?|few|some|a|an|another)\s+)?"
    r"(?:(?:more|other|different|new|alternative|random)\s+)*"
)
_VARIATION_NOUN = r"(?P<noun>variations?|versions?|alternatives?|options?|variants?|takes?|tries|attempts?)"
_VARIATION_OF = rf"(?:\s+(?:of|for|from|on)\s+(?:{_THIS}|the\s+last\s+one|(?P<ref>{_REF_OR_NUMBER})))?"
_EXPORT_OBJECT = (
    rf"(?:\s+(?:{_THIS}|image|the\s+(?:image|picture|photo|result|file|current\s+(?:one|image))"
    rf"|(?P<ref>{_REF_OR_NUMBER})))?"
)

# Whole-message command phrases, tried in order against the _for_matching form.
_COMMANDS = [(re.compile(p, re.I), build) for p, build in [
    # help and small talk: nothing to run, so show what the chat can do
    (r"help(?:\s+me)?|what\s+can\s+(?:you|i)\s+do|what\s+do\s+you\s+do|how\s+does\s+(?:this|it)\s+work"
     r"|how\s+do\s+i\s+use\s+(?:this|you|it)|(?:(?:show|list)\s+)?(?:the\s+|your\s+)?commands"
     r"|what\s+are\s+(?:the|your)\s+commands|usage|instructions|\?+", _fixed("help")),
    (r"thanks|thank\s+you|thx|ok(?:ay)?|cool|nice|great|perfect|awesome|lol|hi|hello|hey", _fixed("help")),
    # history
    (rf"(?:{_SHOW}\s+)?(?:the\s+|my\s+)?(?:whole\s+|full\s+|entire\s+)?(?:edit\s+|image\s+)?(?:history|tree|timeline)"
     rf"|{_SHOW}\s+(?:all\s+)?(?:the\s+|my\s+)?(?:images|pictures)|where\s+am\s+i", _fixed("history")),
    # export: the whole history first, so "export everything" is not a format
    (r"(?:export|download|save)(?:\s+(?:the|my))?(?:\s+(?:whole|entire|full|complete))?(?:\s+(?:edit|image))?"
     r"\s+(?:history|tree|everything|session|conversation|all(?:\s+(?:the\s+)?(?:images|pictures|of\s+(?:them|it)))?)"
     r"(?:\s+(?:as\s+(?:a\s+)?)?zip(?:\s+file)?)?", _fixed("export", fmt="history")),
    (rf"(?:export|download|save){_EXPORT_OBJECT}(?:\s+(?P<as>as|to|in|into)(?:\s+(?:a|an))?)?"
     r"(?:\s+(?P<fmt>\.?\w+))?(?:\s+(?:file|format|image))?", _export),
    # undo
    (rf"undo{_LAST}{_STEP_COUNT}", _steps("undo")),
    (rf"(?:(?:go|step|move|jump|take\s+(?:me|it))\s+)?back{_STEP_COUNT}", _steps("undo")),
    (r"revert(?:\s+(?:that|it|this|the\s+last(?:\s+(?:one|change|edit|step))?))?"
     r"|(?:go\s+(?:back\s+)?to\s+)?(?:the\s+)?previous(?:\s+(?:one|image|picture|version|step))?", _fixed("undo")),
    # redo
    (r"undo\s+(?:the|that|my)\s+undo", _fixed("redo")),
    (rf"re-?do{_LAST}{_STEP_COUNT}", _steps("redo")),
    (rf"(?:(?:go|step|move|jump)\s+)?forward{_STEP_COUNT}", _steps("redo")),
    (r"(?:go\s+to\s+)?(?:the\s+)?next(?:\s+(?:one|image|picture|version|step))?", _fixed("redo")),
    # variations
    (rf"{_VARIATION_LEAD}{_VARIATION_QTY}{_VARIATION_NOUN}{_VARIATION_OF}", _variations),
    (rf"{_VARIATION_LEAD}(?P<qty>{_NUM})\s+more(?:\s+(?:ones|times|please))?", _variations),
    (rf"{_VARIATION_LEAD}another\s+(?P<qty>{_NUM})(?:\s+(?:ones|times))?", _variations),
    (rf"{_VARIATION_LEAD}(?:one\s+more|another)(?:\s+(?:one|time|try|go|attempt|shot))?", _variations),
    (r"(?:(?:try|do|run|make|generate|render|roll)(?:\s+(?:it|that|this|one))?\s+)?"
     r"(?:again|once\s+more|one\s+more\s+time)"
     r"|re-?roll(?:\s+(?:it|that|this))?|re-?generate(?:\s+(?:it|that|this))?|retry"
     r"|new\s+seed|different\s+seed|surprise\s+me",
     _variations),
    # checkout
    (rf"(?P<ref>{_REF_OR_NUMBER})", _checkout),
    (rf"{_MOVE_TO}\s+(?P<ref>{_REF_OR_NUMBER})",
     _checkout),
    (rf"(?:show(?:\s+me)?|open|view|see|display|checkout|check\s+out|select|load|restore|pick|choose|use"
     r"|(?:continue|start(?:\s+(?:over|again))?|work)\s+from|from|switch|(?:let's\s+)?go\s+with"
     rf"|i\s+(?:like|prefer))\s+(?P<ref>{_REF_OR_NUMBER})",
     _checkout),
    (rf"(?:branch|fork)(?:\s+(?:from|off(?:\s+of)?|at|on))?\s+(?P<ref>{_REF_OR_NUMBER})", _checkout),
]]


# "branch from #2 and ...", "go back to #3, ...", "take #4 and ...", "#3: ..."
_BASE_LEAD = re.compile(
    r"(?:(?P<from>(?:(?:branch|fork|start(?:\s+(?:over|again))?|continue|work|edit|go\s+on|carry\s+on)\s+)?"
    r"(?:from|off(?:\s+of)?|on))"
    rf"|(?P<to>{_MOVE_TO})"
    r"|(?P<take>take|open|load|restore|checkout|check\s+out|select))\s+"
    rf"(?P<ref>{_REF_OR_NUMBER})"
    r"|(?P<hash>#\s*\d+)",
    re.I,
)
_EXPLICIT_SEPARATOR = re.compile(r"\s*[,:;]\s*|\s+-+\s+|\s+(?:and\s+then|and|then)\s+", re.I)


def _split_base(core: str) -> tuple[int, str] | None:
    """Split "<node reference><separator><instruction>"; None if the text is not that."""
    m = _BASE_LEAD.match(core)
    if not m:
        return None
    ref = m.group("ref") or m.group("hash")
    rest = core[m.end():]
    separator = _EXPLICIT_SEPARATOR.match(rest)
    # Without a comma or "and", only "from #2 ..." / "back to #2 ..." are clear enough;
    # "on 3 sides ..." or "take #2 as ..." must stay ordinary edits.
    words_only = (m.group("from") or m.group("to")) and re.fullmatch(_REF, ref, re.I)
    if separator is None and not (words_only and rest[:1].isspace()):
        return None
    instruction = _clean_instruction(rest)
    if not instruction:
        return None
    return _node_number(ref), instruction


def _based_request(core: str) -> Intent | None:
    split = _split_base(core)
    if split is None:
        return None
    base, rest = split
    follow_up = _whole_message_command(_for_matching(rest))
    if follow_up is not None and follow_up.kind == "variations":
        return Intent("variations", count=follow_up.count, base=base)
    return Intent("edit", text=rest, base=base)


# Words that only say "make a new picture"; whatever follows is the prompt.
_GENERATE_LEADS = [re.compile(p, re.I | re.S) for p in (
    r"(?:start\s+(?:over|again|fresh|afresh)|begin\s+again|from\s+scratch)\b"
    r"(?:\s*[,:;-]\s*|\s+)?(?:(?:with|of|showing)\b\s*)?(?P<rest>.*)",
    r"(?:a\s+)?(?:brand\s+)?new\s+(?:image|picture|pic)\s*(?:of|showing|with|:)\s*(?P<rest>.*)",
    r"(?:generate|create|draw|paint|render|make|sketch|produce|design|give\s+me|show\s+me)(?:\s+(?:me|us))?\s+"
    r"(?:a\s+new\s+|a\s+|an\s+|new\s+|another\s+)?(?:image|picture|pic)"
    r"\s*(?:of|showing|with|depicting|featuring|:)\s*(?P<rest>.*)",
    # The medium is part of the prompt: "draw a watercolor painting of a harbor".
    r"(?:generate|create|draw|paint|render|sketch|design|make)(?:\s+(?:me|us))?\s+"
    r"(?P<rest>(?:a|an)\s+(?:[\w-]+\s+){0,2}?(?:photo|photograph|painting|drawing|illustration|sketch|portrait"
    r"|rendering|poster|watercolou?r|cartoon|wallpaper)\s+of\s+.+)",
    r"(?:draw|paint|sketch|create|make)\s+me\s+(?P<rest>(?:a|an|some)\s+.+)",
    r"generate\b(?:\s+(?:me|us)\b)?\s*(?P<rest>.*)",
)]


def _generate_prompt(core: str) -> str | None:
    for pattern in _GENERATE_LEADS:
        if m := pattern.fullmatch(core):
            prompt = _clean_instruction(m.group("rest"))
            if not prompt:
                raise _Refusal(_NOTHING_TO_MAKE)
            return prompt
    return None
