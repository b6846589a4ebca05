"""Turn one chat message into an `Intent`: what the user asked for, in plain data.

Owns how a message is read: the slash commands (/undo, /goto 3, /export jpeg, ...),
plain-language moves in the tree ("go back to #3", "the original", "one more",
"what have we done so far"), which attached photo is the picture to edit, and the
rule that every other message is an edit of the current image, or a fresh
generation while there is no image yet. The words themselves (the phrase tables)
live in `phrases.py`, the `Intent` itself in `intents.py`.

Does not know whether image #3 exists, what the head is, how a model runs, or
anything about Chainlit. It reads the text plus a few facts about the context (is
there a current image, how many files came with the message, a reading the user
chose) and does no I/O. The service checks intents against the store and resolves
anchors ("the original", "the last one"); the handler renders help and refusals.

Rules worth knowing:
- A command matches only when the whole message is a command phrase (anchored
  patterns), so "make the undo button red", "make the first car red" and
  "one more cat" are edits.
- Images can be named by number ("#3", "image 3"), by ordinal ("the third one",
  "the first image": #3, #1), or by place: "the original" (the root of the current
  image's line), "the last one" (the newest image), "the previous one" / "the one
  before" (a step back). Places become `anchor`, resolved by the service.
- "branch from #2 and make it night" / "using #2, add snow" / "take the first image
  and remove the car" are edits with `base` (or `anchor`) set; the reference must be
  explicit ("#2", "image 2", an ordinal), or be followed by a separator (",", "and").
- Two requests in one message run in order when the first is a whole command:
  "undo that and make it blue instead", "go back to #2 and export it as jpeg" give an
  intent with `then` set.
- Variations: "try again", "one more", "again but different" ask for 1; a plural with
  no number ("variations", /variations) asks for DEFAULT_VARIATIONS; more than
  MAX_VARIATIONS is refused rather than quietly cut down.
- Files attached: with no text the message is an upload; with text it is an edit.
  With no current image the first file is the picture to edit. With one, an attached
  photo is the new picture to edit (`role="subject"`) unless the words make it a
  source for the current image ("put the hat from this photo on him", "in the style
  of this picture", "Picture 2"): then `role="reference"`. A `role` given by the
  caller (the API's form field, the switch button) wins over the words. Slash
  commands keep their meaning with files attached.
- A move verb on something that is not an image ("undo the rain", "revert the
  colors") could be either, so it becomes an `ask` intent with both readings in
  `options`; the caller passes `reading="move"` or `"edit"` to pick one.
- A message that starts with "!" is an edit (or a generation) whose words go to
  the model as typed (`verbatim`): no commands, no prompt polish.
- A refusal (bad argument, unknown command, nothing to make) comes back as a
  `help` intent whose `text` says what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import replace

from . import op_words
from . import phrases as P

from .intents import (  # re-exported: callers import them from the router (see __all__)
    ANCHORS,
    COMMANDS,
    DEFAULT_EXPORT_FORMAT,
    DEFAULT_VARIATIONS,
    EXPORT_FORMATS,
    KINDS,
    MAX_VARIATIONS,
    READINGS,
    ROLES,
    Intent,
)


class _Refusal(Exception):
    """A message the user should read instead of anything happening."""


def route(text: str | None, *, has_image: bool, attachments: int = 0,
          role: str | None = None, reading: str | None = None) -> Intent:
    """Decide what one message asks for. Never raises for user input.

    ``role`` ("subject" / "reference") states what attached photos are, overriding
    the words; ``reading`` ("move" / "edit") picks one reading of a message that
    would otherwise be an `ask`.
    """
    if attachments < 0:
        raise ValueError(f"attachments must be >= 0, got {attachments}")
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if reading is not None and reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    raw = (text or "").strip()
    try:
        if not raw:
            return Intent("upload") if attachments else Intent("help")
        if _SLASH.match(raw):
            return _slash_command(raw)
        if raw.startswith("!") and raw[1:].strip():
            return _verbatim(raw[1:].strip(), has_image=has_image, attachments=attachments, role=role)
        if attachments:
            return _with_attachments(raw, has_image=has_image, role=role)
        intent = _plain_language(raw, has_image=has_image)
        if intent.kind == "ask" and reading is not None:
            return intent.options[READINGS.index(reading)]
        return intent
    except _Refusal as refusal:
        return Intent("help", text=str(refusal))


# ---------------------------------------------------------------- numbers and references

def _number(token: str) -> int:
    token = " ".join(token.lower().split())
    if token.isdigit():
        return int(token)
    if token in P.NUMBER_WORDS:
        return P.NUMBER_WORDS[token]
    return P.QUANTITY_WORDS[token]


def _reference(ref: str) -> dict:
    """``base`` or ``anchor`` for a node reference: "#3", "the third one", "the original"."""
    words = " ".join(ref.lower().split())
    if m := re.search(r"\d+", words):
        number = int(m.group())
        if number < 1:
            raise _Refusal(f"There is no image #{number}; images are numbered from #1.")
        return {"base": number}
    if m := re.fullmatch(rf"{P.REF_NOUN}\s+({'|'.join(P.NUMBER_WORDS)})", words):  # "image two"
        return {"base": P.NUMBER_WORDS[m.group(1)]}
    words = re.sub(r"^(?:the|my)\s+", "", words)
    for word, number in P.ORDINAL_WORDS.items():
        if words == word or words.startswith(word + " "):
            return {"base": number}
    for phrase in sorted(P.ANCHOR_WORDS, key=len, reverse=True):
        if words == phrase or words.startswith(phrase + " "):
            return {"anchor": P.ANCHOR_WORDS[phrase]}
    raise ValueError(f"not a node reference: {ref!r}")  # the patterns and tables disagree


def _reference_or_head(ref: str | None) -> dict:
    return _reference(ref) if ref else {}


def _node_number(ref: str) -> int:
    """A reference that must be a number (slash commands)."""
    found = _reference(ref)
    if "base" not in found:
        raise _Refusal("Say which image by its number, like /goto 3.")
    return found["base"]


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

_SLASH = re.compile(P.SLASH)


def _slash_command(raw: str) -> Intent:
    name, args = re.match(r"/(\S*)\s*(.*)", raw, re.S).groups()
    args = args.strip()
    command = P.SLASH_ALIASES.get(name.lower(), name.lower())
    handler = _SLASH_HANDLERS.get(command)
    if handler is None:
        raise _Refusal(f"Unknown command /{name}")
    return handler(args)


def _slash_steps(kind: str):
    def handler(args: str) -> Intent:
        if not args:
            return Intent(kind)
        if not re.fullmatch(P.NUM, args, re.I):
            raise _Refusal(f"/{kind} takes a number of steps, like /{kind} 2.")
        return Intent(kind, count=_step_count(_number(args), kind))
    return handler


def _slash_goto(args: str) -> Intent:
    if not re.fullmatch(P.REF_OR_NUMBER, args, re.I):
        raise _Refusal("Say which image: /goto 3")
    return Intent("checkout", **_reference(args))


def _slash_branch(args: str) -> Intent:
    m = re.match(rf"({P.REF}|\d+)(?=[\s,:;]|$)[\s,:;]*(.*)", args, re.I | re.S)
    if not m:
        raise _Refusal("Say which image to branch from: /branch 3 make it night")
    base = _node_number(m.group(1))
    instruction = _clean_instruction(m.group(2))
    return Intent("edit", text=instruction, base=base) if instruction else Intent("checkout", base=base)


def _slash_variations(args: str) -> Intent:
    if not args:
        return Intent("variations", count=DEFAULT_VARIATIONS, default_count=True)
    if not re.fullmatch(P.NUM, args, re.I):
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
    "sample": lambda args: Intent("sample", text=_clean_instruction(args)),
    "squash": lambda args: Intent("squash"),
    "final": lambda args: Intent("final", base=_node_number(args)) if args else Intent("final"),
}

_NOTHING_TO_MAKE = "Say what to make, like: /new a cat on a roof"


def _export_format(word: str) -> str:
    fmt = P.FORMAT_ALIASES.get(word.lower().lstrip("."))
    if fmt is None:
        raise _Refusal(f"Unknown export format {word!r}: use png, jpeg, webp or history.")
    return fmt


# ---------------------------------------------------------------- cleaning

_POLITE_PREFIX = re.compile(P.POLITE_PREFIX, re.I)
_INTERJECTION = re.compile(P.INTERJECTION, re.I)
_POLITE_SUFFIX = re.compile(P.POLITE_SUFFIX, re.I)
_LEADING_JOINER = re.compile(P.LEADING_JOINER, re.I)


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
    both = _two_requests(core)
    if both is not None:
        return both
    prompt = _generate_prompt(core)
    if prompt is not None:
        return Intent("generate", text=prompt)
    if not has_image:
        # Nothing to edit yet: the whole message describes the first picture.
        return Intent("generate", text=raw)
    op = op_words.parse(core)
    if op is not None:  # a whole-picture rotate, crop, resize, colour change: exact
        return Intent("op", text=_clean_instruction(raw) or raw, op=op)
    edit = Intent("edit", text=_clean_instruction(raw) or raw)
    if _AMBIGUOUS_MOVE.fullmatch(_for_matching(core)):
        return Intent("ask", text=raw, options=(Intent("undo"), edit))
    return edit


def _with_attachments(raw: str, *, has_image: bool, role: str | None) -> Intent:
    """The user gave images, so the words say how to use them: always an edit."""
    core = _strip_polite(raw)
    split = _split_base(core)
    if split is not None:  # an image was named: the photos are its references
        where, rest = split
        return Intent("edit", text=rest, role=role or "reference", **where)
    command = _whole_message_command(_for_matching(core))
    if command is not None and command.kind == "checkout":
        return Intent("edit", base=command.base, anchor=command.anchor, role=role or "reference")
    if role is None:
        role = "reference" if has_image and _reads_as_reference(raw) else "subject"
    return Intent("edit", text=_clean_instruction(raw) or raw, role=role)


def _verbatim(text: str, *, has_image: bool, attachments: int, role: str | None) -> Intent:
    """"!..." : an edit (or generation) whose words go to the model exactly as typed."""
    if attachments:
        intent = _with_attachments(text, has_image=has_image, role=role)
        named = intent.base is not None or intent.anchor is not None  # "from #2, ...": its words
        return replace(intent, text=intent.text if named else text, verbatim=True)
    return Intent("edit" if has_image else "generate", text=text, verbatim=True)


_REFERENCE_WORDS = re.compile(P.REFERENCE_WORDS, re.I)
_SUBJECT_WORDS = re.compile(P.SUBJECT_WORDS, re.I)


def _reads_as_reference(text: str) -> bool:
    """Do the words point at the attached photo as a source of something?"""
    text = " ".join(text.replace("’", "'").split())
    return bool(_REFERENCE_WORDS.search(text)) and not _SUBJECT_WORDS.search(text)


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
    where = _reference(m.group("ref"))
    if where.get("anchor") == "previous":
        return Intent("undo")  # "go back to the one before" is a step back
    return Intent("checkout", **where)


def _export(m: re.Match) -> Intent | None:
    fmt_word = m.group("fmt")
    where = _reference(m.group("ref")) if m.group("ref") else {}
    if fmt_word is None:
        return Intent("export", fmt=DEFAULT_EXPORT_FORMAT, **where)
    if m.group("as") is None and fmt_word.lstrip(".") not in P.FORMAT_ALIASES:
        return None  # "save cat" is not an export request
    return Intent("export", fmt=_export_format(fmt_word), **where)


def _variations(m: re.Match) -> Intent:
    groups = m.groupdict()
    quantity = groups.get("qty")
    default = False
    if quantity and quantity != "some":
        count = _number(quantity)
    elif quantity == "some" or _is_plural(groups.get("noun") or ""):
        count, default = DEFAULT_VARIATIONS, True
    else:
        count = 1
    where = _reference(groups["ref"]) if groups.get("ref") else {}
    return Intent("variations", count=_variation_count(count), default_count=default, **where)


def _is_plural(noun: str) -> bool:
    return noun.endswith("s") and noun != "goes"


def _fixed(kind: str, **fields):
    return lambda m: Intent(kind, **fields)


_BUILDERS = {
    "help": _fixed("help"),
    "history": _fixed("history"),
    "squash": _fixed("squash"),
    "final": lambda m: Intent("final", **_reference_or_head(m.group("ref") or m.group("ref2"))),
    "export_history": _fixed("export", fmt="history"),
    "export": _export,
    "undo": _steps("undo"),
    "undo_one": _fixed("undo"),
    "redo": _steps("redo"),
    "redo_one": _fixed("redo"),
    "variations": _variations,
    "checkout": _checkout,
    "original": _fixed("checkout", anchor="original"),  # "undo everything"
}
# Whole-message command phrases, tried in order against the _for_matching form.
_COMMANDS = [(re.compile(pattern, re.I), _BUILDERS[name]) for pattern, name in P.COMMANDS]

_BASE_LEAD = re.compile(P.BASE_LEAD, re.I)
_EXPLICIT_SEPARATOR = re.compile(P.EXPLICIT_SEPARATOR, re.I)
_SECOND_REQUEST = re.compile(P.SECOND_REQUEST, re.I)
_AMBIGUOUS_MOVE = re.compile(P.AMBIGUOUS_MOVE, re.I)
# References that need no separator after a "from"/"back to" lead: "from #2 add fog"
# (but "go back to the original colors" is an edit).
_EXPLICIT_REF = re.compile(P.REF, re.I)


def _split_base(core: str) -> tuple[dict, str] | None:
    """Split "<node reference><separator><instruction>"; None if the text is not that."""
    m = _BASE_LEAD.match(core)
    if not m:
        return None
    ref = m.group("ref") or m.group("hash")
    rest = core[m.end():]
    separator = _EXPLICIT_SEPARATOR.match(rest)
    # Without a comma or "and", only "from #2 ..." / "back to #2 ..." are clear enough;
    # "on 3 sides ..." or "take #2 as ..." must stay ordinary edits.
    words_only = (m.group("from") or m.group("to")) and _EXPLICIT_REF.fullmatch(ref)
    if separator is None and not (words_only and rest[:1].isspace()):
        return None
    if m.group("take") in ("use", "using", "in", "based on") and separator is None:
        return None
    instruction = _clean_instruction(rest)
    if not instruction:
        return None
    return _reference(ref), instruction


def _based_request(core: str) -> Intent | None:
    split = _split_base(core)
    if split is None:
        return None
    where, rest = split
    follow_up = _whole_message_command(_for_matching(rest))
    if follow_up is not None and follow_up.kind == "variations":
        return replace(follow_up, **{"base": None, "anchor": None, **where})
    if follow_up is not None and follow_up.kind not in ("help", "checkout"):
        # "go back to #2 and export it as jpeg": the move, then the command.
        if where.get("anchor") == "previous":
            return Intent("undo", then=follow_up)
        return Intent("checkout", **where, then=follow_up)
    if where.get("anchor") == "previous":
        return Intent("undo", then=Intent("edit", text=rest))
    return Intent("edit", text=rest, **where)


def _two_requests(core: str) -> Intent | None:
    """"undo that and make it blue instead": a whole command, then another request."""
    for sep in _SECOND_REQUEST.finditer(core):
        first = _whole_message_command(_for_matching(core[:sep.start()]))
        if first is None or first.kind in ("help", "ask"):
            continue
        rest = _clean_instruction(core[sep.end():])
        if not rest:
            return None
        second = _plain_language(rest, has_image=True)
        if second.kind in ("help", "ask") or second.then is not None:
            return None
        if first.kind == "checkout" and second.kind == "edit" and second.base is None and second.anchor is None:
            # "show me the original and add snow" is an edit of the original
            return replace(second, base=first.base, anchor=first.anchor)
        return replace(first, then=second)
    return None


_GENERATE_LEADS = [re.compile(p, re.I | re.S) for p in P.GENERATE_LEADS]


def _generate_prompt(core: str) -> str | None:
    for pattern in _GENERATE_LEADS:
        if m := pattern.fullmatch(core):
            prompt = _clean_instruction(m.group("rest"))
            if not prompt:
                raise _Refusal(_NOTHING_TO_MAKE)
            return prompt
    return None


__all__ = ["ANCHORS", "COMMANDS", "DEFAULT_EXPORT_FORMAT", "DEFAULT_VARIATIONS", "EXPORT_FORMATS", "KINDS",
           "MAX_VARIATIONS", "READINGS", "ROLES", "Intent", "route"]
