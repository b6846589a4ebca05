"""Turns service outcomes into Chainlit messages, elements and buttons.

Owns how things look: the result line ("#4 - edit of #3 - seed 1234 - 11.2 s"), the
live progress line and preview, the buttons under a result, the before/after and
history-tree custom elements, and export downloads. Image elements point at our own
owner-checked route, never at bytes held by the session. Knows nothing of routing.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Optional

import chainlit as cl

from pipelines import Cancelled, exact
from sessions import Node, Store

from .routes import image_url
from .service import USER_ERRORS, Outcome, Run, RunEvent, RunResult

PREVIEW_EVERY_S = 0.4  # at most this often, so a fast model does not flood the socket
STOP_GRACE_S = 5.0
log = logging.getLogger(__name__)


async def show(conv: str, outcome: Outcome, store: Store, events: "asyncio.Queue") -> None:
    """Render whatever the service did, then follow any image jobs it started.

    A message that asked for two things has two outcomes, shown in order.
    """
    for part in outcome.chain():
        await _show_one(conv, part, store, events)


async def _show_one(conv: str, outcome: Outcome, store: Store, events: "asyncio.Queue") -> None:
    if outcome.is_error:
        await send_text(outcome.message, error=True)
    elif outcome.choices:
        await send_choices(outcome)
    elif outcome.export:
        await send_export(outcome)
    elif outcome.show_history:
        await send_history(conv, store, outcome.message)
    elif outcome.node is not None:
        await send_node(conv, outcome.node, store, outcome.message)
    elif outcome.message:
        await send_text(outcome.message)
    if outcome.runs:
        await follow_runs(conv, outcome.runs, events)


async def send_choices(outcome: Outcome) -> None:
    """An ask: the question, with one button per reading."""
    actions = [cl.Action(name="reading", payload=payload, label=label,
                         icon="undo-2" if payload.get("reading") == "move" else "wand-sparkles")
               for label, payload in outcome.choices]
    await cl.Message(content=outcome.message, actions=actions).send()


def describe(node: Node) -> str:
    """"#4 - edit of #3 - seed 1234 - 11.2 s" for a node."""
    parts = [f"**#{node.number}**"]
    if node.kind == "upload":
        parts.append("upload")
    elif node.kind == "generate":
        parts.append("generated")
    elif node.kind == "op":
        return " · ".join(parts + [f"{exact.describe(node.params.get('op') or {})} of #{node.parent_number}",
                                   "exact"])
    elif node.parent_number is not None:
        what = "variation" if node.kind == "variation" else "edit"
        parts.append(f"{what} of #{node.parent_number}")
    refs = node.input_numbers[1:]
    if refs:
        parts.append("with " + ", ".join(f"#{n}" for n in refs))
    for lora in node.params.get("loras") or []:
        parts.append(f"LoRA {lora.get('name')} ×{lora.get('scale')}")
    if node.params.get("draft"):
        parts.append("draft")
    if node.params.get("final_of"):
        parts.append(f"final of #{node.params['final_of']}")
    parts += guard_words(node.params)
    if "seed" in node.params:
        parts.append(f"seed {node.params['seed']}")
    if "elapsed_s" in node.params:
        parts.append(f"{node.params['elapsed_s']:.1f} s")
    return " · ".join(parts)


def guard_words(params: dict) -> list[str]:
    """What the drift guard (or a painted region) did: "changed 14%", "rest kept exact", ..."""
    g = params.get("guard")
    if not g:
        return []
    words = []
    if (params.get("request") or {}).get("region"):
        words.append("painted region only")
    if g.get("global"):
        words.append("whole picture changed")
    else:
        words += [f"changed {_percent(g.get('changed', 0))}", "rest kept exact"]
    if g.get("shift_px", 0) >= 0.3:
        words.append(f"shift {g['shift_px']:.1f} px corrected")
    if abs(g.get("scale", 1.0) - 1.0) >= 0.002:
        words.append(f"zoom {abs(g['scale'] - 1) * 100:.1f}% corrected")
    return words


def _percent(fraction: float) -> str:
    pct = fraction * 100
    return f"{pct:.0f}%" if pct >= 1 or pct == 0 else "<1%"


def node_actions(node: Node) -> list[cl.Action]:
    p = {"number": node.number}
    actions = [
        cl.Action(name="undo", payload=p, label="Undo", icon="undo-2", tooltip="Back to the image before"),
        cl.Action(name="variations", payload=p, label="Variations", icon="shuffle",
                  tooltip="New takes on this with other seeds"),
        cl.Action(name="branch", payload=p, label="Branch from here", icon="git-branch",
                  tooltip="Make this the current image; the next edit starts a new branch"),
        cl.Action(name="export", payload=p, label="Export", icon="download", tooltip="Download as PNG"),
        cl.Action(name="paint", payload=p, label="Paint a region", icon="brush",
                  tooltip="Paint where the next edit may change things; the rest stays exact"),
    ]
    if node.parent_number is None:
        actions = [a for a in actions if a.name != "undo"]
    if node.kind in ("upload", "op"):
        actions = [a for a in actions if a.name != "variations"]
    if node.params.get("draft"):
        actions.append(cl.Action(name="final", payload=p, label="Render in full quality", icon="sparkles",
                                 tooltip="The same words, inputs and seed at full steps with true CFG"))
    return actions


PROMPT_SENT = "prompt sent"  # the folded element's name: the message links to it


def polish_lines(node: Node) -> str:
    """What prompt polish did, under the caption: the link to the prompt, or why not."""
    p = node.params.get("polish")
    if not p:
        return ""
    if p.get("polished"):
        return (f"Your words, “{_clip(node.instruction, 120)}”, went to the model polished "
                f"({p.get('engine')}): see the {PROMPT_SENT}.")
    return f"Sent your own words: prompt polish ({p.get('engine')}) fell back, because {p.get('reason') or 'it failed'}."


def prompt_elements(node: Node) -> list:
    """The polished prompt, folded: a side panel the message's link opens."""
    if not (node.params.get("polish") or {}).get("polished"):
        return []
    return [cl.Text(name=PROMPT_SENT, content=f"Your words: {node.instruction}\n\nSent to the model: {node.prompt}",
                    display="side")]


def words_actions(node: Node) -> list[cl.Action]:
    """"Use my words": the same request again without polish."""
    if not (node.params.get("polish") or {}).get("polished"):
        return []
    return [cl.Action(name="use_my_words", payload={"number": node.number}, label="Use my words",
                      icon="message-square-quote", tooltip="Run this again with your own words, as typed")]


def _clip(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def switch_actions(run: Run) -> list[cl.Action]:
    """The button that re-runs an edit with its attached photos read the other way."""
    if not run.switch:
        return []
    payload = {k: v for k, v in run.switch.items() if k != "label"}
    return [cl.Action(name="switch_reading", payload=payload, label=run.switch["label"],
                      icon="arrow-left-right", tooltip="Run this message again, reading the photo the other way")]


def node_elements(conv: str, node: Node, source: Optional[Node]) -> list:
    elements: list = [cl.Image(name=f"#{node.number}", url=image_url(conv, node.number),
                               display="inline", size="large", mime="image/png")]
    if source is not None:
        elements.append(cl.CustomElement(name="BeforeAfter", display="inline", props={
            "before": image_url(conv, source.number), "after": image_url(conv, node.number),
            "beforeLabel": f"#{source.number}", "afterLabel": f"#{node.number}",
        }))
    return elements


async def send_node(conv: str, node: Node, store: Store, text: str = "") -> cl.Message:
    source = store.node(conv, node.parent_number) if node.parent_number else None
    content = f"{text}\n\n{describe(node)}" if text else describe(node)
    msg = cl.Message(content=content, elements=node_elements(conv, node, source),
                     actions=node_actions(node))
    await msg.send()
    return msg


async def repoint_uploads(conv: str, message: cl.Message, uploads: list[Node]) -> None:
    """Show the user's own message with the kept copies of what they sent.

    Chainlit's copies live in a per-session folder it deletes later, so a reopened
    conversation would show an empty bubble; ours are served from the blob store.
    """
    for el in list(message.elements or []):
        await el.remove()
    for node in uploads:
        await cl.Image(name=f"#{node.number}", url=image_url(conv, node.number), display="inline",
                       size="small", mime="image/png").send(for_id=message.id)


async def send_brush(conv: str, node: Node) -> None:
    """The brush over image #N: paint a region, then "Use this region"."""
    props = {"src": image_url(conv, node.number), "number": node.number,
             "width": node.width, "height": node.height}
    await cl.Message(content=f"Paint over **#{node.number}** where the edit may change things, then "
                             f"**Use this region** (with an instruction there, or type it next).",
                     elements=[cl.CustomElement(name="RegionBrush", props=props, display="inline")]).send()


async def send_text(text: str, *, error: bool = False) -> None:
    await cl.Message(content=("⚠️ " + text) if error else text).send()


async def send_interrupted(job) -> None:
    what = job.request.get("prompt") or job.kind
    await cl.Message(
        content=f"⚠️ The server stopped while working on “{what}”, so no image was made.",
        actions=[cl.Action(name="retry", payload={"job": job.id}, label="Try again", icon="rotate-ccw")],
    ).send()


async def send_export(outcome: Outcome) -> None:
    ex = outcome.export
    lead = f"{outcome.message} " if outcome.message else ""
    await cl.Message(content=f"{lead}Here is **{ex.filename}**.", elements=[
        cl.File(name=ex.filename, content=ex.data, mime=ex.mime, display="inline")]).send()


async def send_history(conv: str, store: Store, lead: str = "") -> None:
    nodes = store.nodes(conv)
    head = store.conversation(conv).head
    props = {"head": head, "nodes": [
        {"number": n.number, "parent": n.parent_number, "kind": n.kind,
         "label": (n.instruction or n.kind)[:60], "thumb": image_url(conv, n.number, 128),
         "draft": bool(n.params.get("draft")), "finalOf": n.params.get("final_of")}
        for n in nodes]}
    lead = f"{lead} " if lead else ""
    await cl.Message(content=f"{lead}The history: {len(nodes)} images, current **#{head}**. "
                             f"Click one to continue from it.",
                     elements=[cl.CustomElement(name="HistoryTree", props=props, display="inline")]).send()


class RunView:
    """One job's message: a progress line and a preview updated in place."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.msg = cl.Message(content=self._waiting())
        self.preview: Optional[cl.Image] = None
        self._last_preview = 0.0

    def _waiting(self) -> str:
        if self.run.ahead:
            jobs = "job" if self.run.ahead == 1 else "jobs"
            return f"{self.run.description}: queued behind {self.run.ahead} {jobs}…"
        return f"{self.run.description}: starting…"

    async def start(self) -> None:
        await self.msg.send()

    async def on_event(self, event: RunEvent) -> None:
        if event.kind == "started":
            self.msg.content = f"{self.run.description}: loading…"
            await self.msg.update()
            return
        if event.kind == "polishing":
            self.msg.content = f"{self.run.description}: polishing the prompt…"
            await self.msg.update()
            return
        eta = f" · about {event.eta_s:.0f} s left" if event.eta_s is not None else ""
        self.msg.content = f"{self.run.description}: step {event.step}/{event.total}{eta}"
        await self.msg.update()
        now = time.monotonic()
        if event.preview is not None and now - self._last_preview >= PREVIEW_EVERY_S:
            self._last_preview = now
            try:
                await self._show_preview(event.preview)
            except Exception:  # a preview is a nicety: never let it stop the progress line
                log.warning("preview could not be shown", exc_info=True)

    async def _show_preview(self, image) -> None:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        if self.preview is None:
            self.preview = cl.Image(name="preview", content=buf.getvalue(), display="inline",
                                    size="medium", mime="image/png")
            self.preview.updatable = True
        else:
            self.preview.content = buf.getvalue()
        await self.preview.send(for_id=self.msg.id, persist=False)

    async def finish(self, conv: str, result: RunResult) -> None:
        if self.preview is not None:
            await self.preview.remove()
        lines = [describe(result.node)]
        lines += [self.run.note] if self.run.note else []
        polished = polish_lines(result.node)
        lines += [polished] if polished else []
        self.msg.content = "\n\n".join(lines)
        self.msg.elements = node_elements(conv, result.node, result.source) + prompt_elements(result.node)
        self.msg.actions = node_actions(result.node) + switch_actions(self.run) + words_actions(result.node)
        await self.msg.update()

    async def fail(self, text: str) -> None:
        if self.preview is not None:
            await self.preview.remove()
        self.msg.content = f"{self.run.description}: {text}"
        await self.msg.update()


async def follow_runs(conv: str, runs: list[Run], events: "asyncio.Queue") -> None:
    """Show every run's progress until all are done; failures become messages."""
    views = {id(r): RunView(r) for r in runs}
    for v in views.values():
        await v.start()
    pending = {asyncio.wrap_future(r.future): r for r in runs}
    getter = asyncio.ensure_future(events.get())
    try:
        while pending:
            done, _ = await asyncio.wait(set(pending) | {getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                run, event = getter.result()
                if run in pending.values():  # a late event must not undo a settled message
                    await views[id(run)].on_event(event)
                getter = asyncio.ensure_future(events.get())
            for fut in done - {getter}:
                if fut not in pending:
                    continue
                run = pending.pop(fut)
                await _settle(conv, views[id(run)], fut)
    except asyncio.CancelledError:
        # The Stop button cancels this handler; the jobs stop at their next step. Wait
        # briefly so each message says how its job really ended, then let the cancel go on.
        if pending:
            await asyncio.wait(set(pending), timeout=STOP_GRACE_S)
        for fut, run in pending.items():
            if fut.done():
                await _settle(conv, views[id(run)], fut)
            else:
                await views[id(run)].fail("stopping. Nothing will be saved.")
        raise
    finally:
        getter.cancel()


async def _settle(conv: str, view: RunView, fut: asyncio.Future) -> None:
    try:
        result = fut.result()
    except (asyncio.CancelledError, Cancelled):
        await view.fail("stopped. Nothing was saved.")
    except USER_ERRORS as e:
        await view.fail(f"⚠️ {e}")
    except Exception as e:  # not the user's doing; still say so rather than freeze
        log.exception("image job failed")
        await view.fail(f"⚠️ Something went wrong ({type(e).__name__}). The current image is unchanged.")
    else:
        await view.finish(conv, result)
