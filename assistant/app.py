"""The Chainlit handlers, thin: keep uploads, route, call the service, render.

Owns the wiring to Chainlit only: sign-in for the local mode, one conversation per
chat thread, the settings panel, starters and command bar, and the buttons, which
build the same ``Intent`` a typed command would. Everything else lives in the
service (what to do) and render (how it looks).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from pathlib import Path
from typing import Optional

import chainlit as cl
from chainlit.input_widget import MultiSelect, Select, Slider, Switch, TextInput
from chainlit.server import app as chainlit_app
from starlette.middleware.trustedhost import TrustedHostMiddleware

import pipelines
from pipelines import backend_names, polish

from assistant import api, guard, render, routes, users
from assistant.datalayer import HistoryDataLayer
from assistant.router import COMMANDS, DEFAULT_VARIATIONS, EXPORT_FORMATS, READINGS, Intent
from assistant.runtime import get_runtime
from assistant.service import SIZE_CHOICES, USER_ERRORS, ChatSettings, settings_from_panel

routes.install(chainlit_app)
guard.install(chainlit_app)  # Chainlit's own routes: ended sign-ins, "not found" alike
if get_runtime().settings.mode == "local":
    chainlit_app.add_middleware(TrustedHostMiddleware, allowed_hosts=get_runtime().settings.local_hosts())
api.install(chainlit_app)  # the HTTP API at /api/v1

CONV = "conversation_id"
OPENED = "opened"  # an asyncio.Event, set once start/resume has run
OPEN_WAIT_S = 60.0


# ---- identity and start ---------------------------------------------------------------


@cl.data_layer
def data_layer() -> HistoryDataLayer:
    rt = get_runtime()
    return HistoryDataLayer(rt.store, delete_conversation=rt.service.delete_conversation)


if get_runtime().settings.mode == "local":

    @cl.header_auth_callback
    async def local_user(headers) -> Optional[cl.User]:
        """Local mode: one person, signed in without a form."""
        return cl.User(identifier=get_runtime().settings.local_user, metadata={"provider": "local"})

else:

    @cl.password_auth_callback
    async def password_user(username: str, password: str) -> Optional[cl.User]:
        """Multi-user mode: users added with `qwen-edit-chat users add NAME`."""
        ok = await cl.make_async(users.verify)(get_runtime().store.engine, username, password)
        return cl.User(identifier=username, metadata={"provider": "password"}) if ok else None


@cl.set_starters
async def starters(user=None, language=None):
    return [
        cl.Starter(label="Edit a sample photo", message="/sample give the cat a small red wizard hat",
                   icon="/public/starters/edit.svg"),
        cl.Starter(label="Generate a picture", message="a red fox sitting in fresh snow, morning light",
                   icon="/public/starters/generate.svg"),
        cl.Starter(label="What can I say?", message="/help", icon="/public/starters/help.svg"),
    ]


@cl.on_chat_start
async def start() -> None:
    # Nothing is sent here: a message at start would replace the welcome screen (and
    # its starters) and clear whatever the user had begun to type. The tiny-model
    # notice comes with the first result instead.
    async with _opening():
        rt = get_runtime()
        if not await _account_ok():
            return
        # The conversation shares the thread's id, so the sidebar and resume find it.
        conv = await cl.make_async(rt.store.ensure_conversation)(cl.context.session.thread_id, owner=_owner())
        await _open(conv.id, ChatSettings())


@cl.on_chat_resume
async def resume(thread: dict) -> None:
    async with _opening():
        await _resume(thread)


async def _resume(thread: dict) -> None:
    rt = get_runtime()
    if not await _account_ok():
        return
    conv = await cl.make_async(rt.store.conversation)(thread["id"], owner=_owner())
    await _open(conv.id, ChatSettings.from_dict(conv.settings))
    for job in await cl.make_async(rt.service.interrupted_jobs)(conv.id):
        await render.send_interrupted(job)
    runs = rt.service.active_runs(conv.id)
    if runs:  # still working on something asked before the tab closed: show it here too
        sink, events = _listener()
        for run in runs:
            run.listen(sink)
        await render.follow_runs(conv.id, runs, events)


@contextlib.asynccontextmanager
async def _opening():
    """Marks the chat as opening until start/resume is done.

    Chainlit runs on_chat_start as a task, and a message typed at once runs in a task
    of its own, maybe before the conversation is set: on_message waits for this.
    """
    opened = asyncio.Event()
    cl.user_session.set(OPENED, opened)
    try:
        yield
    finally:
        opened.set()


async def _opened_conv() -> Optional[str]:
    """The conversation, once start/resume has set it (None: the chat never opened)."""
    opened = cl.user_session.get(OPENED)
    if opened is not None:
        try:
            await asyncio.wait_for(opened.wait(), OPEN_WAIT_S)
        except asyncio.TimeoutError:
            pass
    return _conv()


async def _open(conv_id: str, settings: ChatSettings) -> None:
    cl.user_session.set(CONV, conv_id)
    cl.user_session.set("settings", settings)
    await _settings_panel(settings)
    await cl.context.emitter.set_commands([
        {"id": name, "description": usage.split(" - ", 1)[1], "icon": "terminal", "button": False}
        for name, usage in COMMANDS.items()])


async def _account_ok() -> bool:
    """Multi-user mode: an account removed since sign-in gets nothing more."""
    if await cl.make_async(get_runtime().user_is_active)(_owner()):
        return True
    await render.send_text("This account no longer exists. Sign out, or ask for a new account.",
                           error=True)
    return False


def _owner() -> str:
    user = cl.user_session.get("user")
    return user.identifier if user else get_runtime().settings.local_user


async def _settings_panel(s: ChatSettings) -> None:
    rt = get_runtime()
    await cl.ChatSettings([
        Select(id="backend", label="Backend", values=backend_names(),
               initial_value=s.backend or rt.backend_name),
        _model_widget(s, rt.settings.allowed_models()),
        Slider(id="steps", label="Steps (0 = the model's default)", min=0, max=60, step=1,
               initial=s.steps or 0),
        Slider(id="guidance", label="Guidance, true CFG (0 = default 4.0)", min=0, max=10, step=0.5,
               initial=s.guidance or 0),
        TextInput(id="seed", label="Seed (empty = random every time)",
                  initial="" if s.seed is None else str(s.seed)),
        Select(id="size", label="Output size", values=list(SIZE_CHOICES), initial_value=s.size,
               description="keep = the input's size; 1mp = about 1 megapixel; or an aspect ratio"),
        Slider(id="variations", label="Variations per request", min=1, max=8, step=1,
               initial=s.variations or DEFAULT_VARIATIONS),
        Select(id="polish", label="Prompt polish", values=list(polish.ENGINES),
               initial_value=s.polish or rt.service.polish_settings["engine"],
               description="Rewrite each instruction into a self-contained prompt before the model sees "
                           "it: off, local (the model's own text encoder), remote (an OpenAI-compatible "
                           "chat server). Start a message with ! to send it word for word."),
        *_lora_widget(s, rt.settings.offered_loras()),
        Switch(id="draft", label="Draft mode (fast takes; /final renders one in full quality)",
               initial=s.draft),
        Switch(id="guard", label="Keep untouched parts exact (drift guard)", initial=s.guard,
               description="After each edit, pixels the edit did not change come from its input, "
                           "exactly; shifts and zooms the model made are corrected."),
    ]).send()


def _lora_widget(s: ChatSettings, offered: list) -> list:
    """The LoRAs the server offers (QEC_LORAS), if any; each at its configured scale."""
    if not offered:
        return []
    return [MultiSelect(id="loras", label="LoRA adapters", values=offered,
                        initial=[n for n in s.loras if n in offered],
                        description="Community adapters the server loaded; each at its configured scale.")]


def _model_widget(s: ChatSettings, allowed: Optional[list]):
    if allowed is None:  # local mode: any model id or folder
        return TextInput(id="model", label="Model (empty = the configured one)", initial=s.model or "",
                         placeholder=get_runtime().settings.model or "Qwen/Qwen-Image-Edit-2511")
    return Select(id="model", label="Model", values=[""] + allowed, initial_value=s.model or "",
                  description="empty = the server's configured model")


@cl.on_settings_update
async def settings_changed(values: dict) -> None:
    rt = get_runtime()
    try:
        s = settings_from_panel(values, allowed_models=rt.settings.allowed_models(),
                                offered_loras=rt.settings.offered_loras())
    except USER_ERRORS as e:
        await render.send_text(f"{e} The settings were not changed.", error=True)
        await _settings_panel(_settings())
        return
    before = _settings()
    cl.user_session.set("settings", s)
    await cl.make_async(rt.store.update_settings)(_conv(), s.to_dict())
    if (s.backend, s.model) != (before.backend, before.model):
        try:
            licence = pipelines.licence(s.backend or rt.backend_name, s.model)
        except Exception:  # an unavailable backend says so when it is used
            licence = None
        if licence:  # shown when the model is chosen
            await render.send_text(f"**Licence.** {licence}")


# ---- messages and buttons ---------------------------------------------------------------


@cl.on_message
async def on_message(message: cl.Message) -> None:
    rt = get_runtime()
    conv = await _opened_conv()
    if conv is None:  # the chat never opened (e.g. a removed account)
        return
    sent = [el for el in message.elements or [] if getattr(el, "path", None)]
    files = [(el.name or "image", Path(el.path).read_bytes()) for el in sent]
    # Read once: Chainlit's copies (world-readable, kept until the session ends) go now,
    # whether the files are kept in the blob store below or refused.
    for el in sent:
        Path(el.path).unlink(missing_ok=True)
    uploads = []
    if files:
        try:
            rt.service.check_picture_count(_settings(), len(files))
            # Copied into the blob store now: Chainlit deletes its upload folder later.
            uploads = await cl.make_async(rt.service.add_uploads)(conv, files)
        except USER_ERRORS as e:
            await render.send_text(f"{e} Nothing from this message was kept; the conversation goes on.",
                                   error=True)
            return
        await render.repoint_uploads(conv, message, uploads)
    text = message.content or ""
    if message.command:
        text = f"/{message.command} {text}"
    intent = await cl.make_async(rt.service.intent_for)(conv, text, attachments=len(uploads))
    await handle(intent, uploads)


# Buttons: each builds the Intent the typed command would, from the image it sits
# under. The payload comes back from the browser, so its number is checked first.
BUTTONS = {
    "undo": lambda n, p: Intent("undo", base=n),
    # "variations" as typed: the conversation's own number of variations.
    "variations": lambda n, p: Intent("variations", base=n, default_count=True),
    "branch": lambda n, p: Intent("checkout", base=n),
    "checkout": lambda n, p: Intent("checkout", base=n),
    "export": lambda n, p: Intent("export", base=n, fmt=p.get("fmt") if p.get("fmt") in EXPORT_FORMATS else "png"),
    "final": lambda n, p: Intent("final", base=n),
}


def _button(build):
    async def on_click(action: cl.Action) -> None:
        number = _number(action)
        if number is not None:
            await handle(build(number, action.payload or {}))

    return on_click


for _name, _build in BUTTONS.items():
    cl.action_callback(_name)(_button(_build))


@cl.action_callback("paint")
async def paint_button(action: cl.Action) -> None:
    """Show the brush over the image the button sits under."""
    number = _number(action)
    if number is None:
        return
    rt = get_runtime()
    try:
        node = await cl.make_async(rt.store.node)(_conv(), number)
    except USER_ERRORS as e:
        await render.send_text(str(e), error=True)
        return
    await render.send_brush(_conv(), node)


@cl.action_callback("use_region")
async def use_region(action: cl.Action) -> None:
    """The brush's "Use this region": keep the mask; with words, run the edit now."""
    rt = get_runtime()
    payload = action.payload or {}
    number, text = _number(action), payload.get("text") or ""
    data = mask_bytes(payload.get("mask"))
    if number is None or data is None or not isinstance(text, str):
        await render.send_text("That region could not be read; paint it again.", error=True)
        return
    try:
        await cl.make_async(rt.service.set_region)(_conv(), data, base=number)
    except USER_ERRORS as e:
        await render.send_text(f"{e} Paint the region again.", error=True)
        return
    if not text.strip():
        await render.send_text(f"Region kept on #{number}: your next instruction changes only the "
                               f"painted area, and everything outside it stays exactly as it is.")
        return
    await handle(Intent("edit", text=text.strip(), base=number))


@cl.action_callback("use_my_words")
async def use_my_words_button(action: cl.Action) -> None:
    """Re-run a polished result with the user's own words."""
    number = _number(action)
    if number is None:
        return
    rt = get_runtime()
    on_event, events = _listener()
    outcome = await cl.make_async(rt.service.use_my_words)(_conv(), number, settings=_settings(),
                                                         on_event=on_event)
    await render.show(_conv(), outcome, rt.store, events)


@cl.action_callback("reading")
async def reading_button(action: cl.Action) -> None:
    """An ask's answer: the same words again, read as the move or as the edit."""
    payload = action.payload or {}
    text, reading = payload.get("text"), payload.get("reading")
    if not isinstance(text, str) or reading not in READINGS:
        return
    intent = await cl.make_async(get_runtime().service.intent_for)(_conv(), text, reading=reading)
    await handle(intent)


@cl.action_callback("switch_reading")
async def switch_reading_button(action: cl.Action) -> None:
    """Re-run an edit with its attached photos read the other way."""
    rt = get_runtime()
    on_event, events = _listener()
    outcome = await cl.make_async(rt.service.switch_reading)(
        _conv(), dict(action.payload or {}), settings=_settings(), on_event=on_event)
    await _with_notice(outcome)
    await render.show(_conv(), outcome, rt.store, events)


@cl.action_callback("retry")
async def retry_button(action: cl.Action) -> None:
    job_id = (action.payload or {}).get("job")
    if not isinstance(job_id, str):
        return
    rt = get_runtime()
    on_event, events = _listener()
    outcome = await cl.make_async(rt.service.retry)(_conv(), job_id, on_event=on_event)
    await render.show(_conv(), outcome, rt.store, events)


@cl.on_stop
async def stop() -> None:
    get_runtime().service.cancel(_conv())


async def handle(intent: Intent, uploads=()) -> None:
    """The one path for typed commands and buttons: apply, then render."""
    rt = get_runtime()
    conv = _conv()
    if conv is None:  # the chat never opened (e.g. a removed account)
        return
    on_event, events = _listener()
    applying = asyncio.ensure_future(cl.make_async(rt.service.apply)(
        conv, intent, uploads=list(uploads), settings=_settings(), on_event=on_event))
    try:
        outcome = await asyncio.shield(applying)
    except asyncio.CancelledError:
        # Stop pressed while the jobs were being queued: let that finish, then stop them.
        await applying
        rt.service.cancel(conv)
        raise
    await _with_notice(outcome)
    await render.show(conv, outcome, rt.store, events)


async def _with_notice(outcome) -> None:
    """The start-up notice (the tiny model) goes with a conversation's first results."""
    rt = get_runtime()
    runs = [run for part in outcome.chain() for run in part.runs]
    notice = rt.notice
    if not notice or not runs:
        return
    conv = await cl.make_async(rt.store.conversation)(_conv())
    if conv.meta.get("notice_shown"):  # said once per conversation
        return
    await cl.make_async(rt.store.update_meta)(conv.id, {"notice_shown": True})
    run = runs[0]
    run.note = f"{run.note}\n\n{notice}" if run.note else notice


def _listener():
    """A progress sink for worker threads and the queue this handler reads it from."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def on_event(run, event) -> None:  # called on a worker thread
        loop.call_soon_threadsafe(events.put_nowait, (run, event))

    return on_event, events


def _conv() -> str:
    return cl.user_session.get(CONV)


def _settings() -> ChatSettings:
    return cl.user_session.get("settings") or ChatSettings()


MAX_MASK_BYTES = 4 * 1024 * 1024


def mask_bytes(value) -> Optional[bytes]:
    """The PNG bytes of the brush's data URL (untrusted: checked, size-bounded)."""
    prefix = "data:image/png;base64,"
    if not isinstance(value, str) or not value.startswith(prefix) or len(value) > MAX_MASK_BYTES * 4 // 3 + 64:
        return None
    try:
        return base64.b64decode(value[len(prefix):], validate=True)
    except (ValueError, binascii.Error):
        return None


def _number(action: cl.Action) -> Optional[int]:
    """A node number from a button payload: untrusted, so checked to be a plain int."""
    value = (action.payload or {}).get("number")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value
