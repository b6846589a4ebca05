"""Our instructions to the prompt rewriter, in one place.

Owns the words the rewriter reads: the system prompt for an edit and for a
generation, and the user turn built from this turn's words and the earlier
instructions of the branch. Written for this project (not copied from Qwen's demo):
what the chat needs is references to earlier turns resolved, nothing invented,
everything unmentioned kept, quoted text kept exactly, the user's language kept.
The answer is a JSON object ``{"prompt": "..."}``, read by ``pipelines.polish``.
Knows nothing of models, HTTP or images; the pictures go in beside this text.
"""

from __future__ import annotations

from typing import Sequence

# The last few instructions of the branch are enough to resolve "it", "again",
# "undo the hat"; older ones cost tokens and invite the rewriter to redo them.
MAX_HISTORY = 6
MAX_HISTORY_CHARS = 300

_ANSWER = (
    'Answer with one JSON object and nothing else, no explanation and no code fence:\n'
    '{"prompt": "<the instruction>"}'
)

SYSTEM_EDIT = f"""\
You prepare instructions for an image-editing model. A person edits a picture by \
chatting; each message changes the picture a little more. The editing model sees only \
your instruction and the pictures, never the chat, so you rewrite the newest message \
into one instruction that stands on its own.

You get: Picture 1, the picture as it is now (every earlier instruction is already \
carried out in it); sometimes Picture 2 and Picture 3, references the person gave; \
the earlier instructions, oldest first; and the new message.

Rules:
1. Ask for exactly the change the new message asks for. Never add objects, styles, \
colours, moods or "improvements" nobody asked for. Do not repeat earlier changes as \
new work: they are already in Picture 1.
2. Resolve what the message points back to. "it", "them", "bigger", "again", "same \
but at night", "undo the hat but keep the rain" refer to earlier instructions or to \
things in Picture 1: name the thing plainly ("make the red hat larger", "remove the \
hat, keep the rain").
3. Everything the message does not mention stays as it is in Picture 1: people, \
faces, pose, framing, colours, light, background, writing. Say so briefly when the \
change could spill over ("keep the person's face unchanged"). When the message keeps \
an earlier change, say that it stays.
4. When references are involved, call the pictures "Picture 1", "Picture 2", \
"Picture 3".
5. Text inside quotation marks is exact: copy it character for character with its \
quotation marks (same case, spelling, punctuation). Never translate or correct it.
6. Write in the language of the new message.
7. Be concrete and short: one to three sentences about what should be seen.
8. If the new message already stands on its own, return it unchanged or nearly so.

{_ANSWER}"""

SYSTEM_GENERATE = f"""\
You prepare prompts for a text-to-image model. A person asks for a new picture in a \
chat; the image model sees only your prompt, never the chat.

Rules:
1. Keep every detail the person gave (subject, number, colours, style, medium, \
format, any writing) and never contradict or drop one.
2. Fill in only what a good picture needs and the person left open, in plain words: \
how the subject looks, the surroundings, the light and time of day, the camera \
(framing, angle, lens) or the medium. Keep these choices neutral and in the spirit of \
the message. Do not add new main subjects, a story, or writing.
3. Resolve what the message points back to using the earlier instructions (oldest \
first): "same but at night" means the same subject as before, at night.
4. Text inside quotation marks is exact: keep it character for character with its \
quotation marks and say where it appears in the picture.
5. Write in the language of the message.
6. One paragraph of at most about 120 words.

{_ANSWER.replace("instruction", "prompt")}"""


def system_prompt(op: str) -> str:
    """The system prompt for ``op``: ``"edit"`` or ``"generate"``."""
    return SYSTEM_GENERATE if op == "generate" else SYSTEM_EDIT


def user_text(instruction: str, history: Sequence[str] = (), *, op: str = "edit") -> str:
    """The user turn's text: the earlier instructions, then the new message. (The
    pictures go before it, each under its name: ``pipelines.polish.messages``.)

    ``history`` is the branch's earlier instructions, oldest first; only the last
    ``MAX_HISTORY`` are sent, each cut to ``MAX_HISTORY_CHARS``. The new message is
    set off in tags so the rewriter reads it as material, not as orders to itself.
    """
    recent = [" ".join(str(h).split()) for h in history if str(h).strip()][-MAX_HISTORY:]
    lines = []
    if recent:
        lines.append("Earlier instructions in this conversation, oldest first"
                     + (" (already carried out in Picture 1):" if op != "generate" else ":"))
        for number, text in enumerate(recent, 1):
            if len(text) > MAX_HISTORY_CHARS:
                text = text[: MAX_HISTORY_CHARS - 1] + "…"
            lines.append(f"{number}. {text}")
    else:
        lines.append("Earlier instructions in this conversation: none.")
    kind = "instruction" if op != "generate" else "prompt"
    lines.append(f"New message (rewrite it into one {kind}):")
    lines.append(f"<message>{instruction.strip()}</message>")
    return "\n".join(lines)


__all__ = ["MAX_HISTORY", "SYSTEM_EDIT", "SYSTEM_GENERATE", "system_prompt", "user_text"]
