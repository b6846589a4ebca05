"""The HTTP API at /api/v1: conversations, node images, exports, messages and jobs.

Owns the programmatic door into the chat: its JSON shapes, status codes and limits,
and its own OpenAPI document (/api/v1/openapi.json, docs at /api/v1/docs). It signs
people in exactly as the chat does (Chainlit's cookie or ``Authorization: Bearer``),
and a message goes through the same router and service as one typed in the chat.
Someone else's conversation, image or job gets the same 404 as one that does not
exist. No route takes a file path or a URL to fetch: images come in the request
body only, and are checked by the upload checker before anything keeps them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Annotated, Literal, Optional

from chainlit.auth import create_jwt
from chainlit.config import config as chainlit_config
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines import BackendError
from pipelines.base import MAX_INPUT_IMAGES, MOST_INPUT_IMAGES
from sessions import BlobCorrupted, HistoryError, NotFound
from sessions.models import Conversation, Job, Node
from sessions.store import MAX_NUMBER

from . import routes
from .routes import current_owner
from .router import READINGS, ROLES, Intent
from .runtime import get_runtime
from .service import ChatSettings, Outcome, load_mask
from .uploads import ACCEPTED, ACCEPTED_TEXT, MAX_BYTES, UploadError, load_upload, sniff

PREFIX = "/api/v1"
# Files per message: the most any model takes (Qwen-Image-2.1: the image and nine
# references); the conversation's model may take fewer (Edit Plus: 3), which the chat's
# own rule then refuses with a message.
MAX_IMAGES = MOST_INPUT_IMAGES
# The body stays bounded by three full-size images and the form around them (91 MB),
# whatever the count: ten pictures of a few MB each fit.
MAX_MESSAGE_BODY = MAX_INPUT_IMAGES * MAX_BYTES + 2**20
MAX_OTHER_BODY = 64 * 1024  # titles and {"text": ...}: nothing else needs more
MAX_TEXT = 10_000
MAX_TITLE = 500  # the column's length
ExportFormat = Literal["png", "jpeg", "jpg", "webp", "history"]

api = FastAPI(
    title="Qwen Edit Chat API",
    version="1",
    summary="Edit images by talking to Qwen Image Edit Plus, with every image kept in a tree.",
    description=(
        "Sign in as the chat does: `POST /login` (multi-user mode, form fields username and "
        "password) or `POST /auth/header` (local mode) returns `{\"access_token\": ...}`; send "
        "it as `Authorization: Bearer <token>`, or use the chat's cookie. Someone else's "
        "conversation, image or job answers 404, like one that does not exist."),
    docs_url="/docs",
    redoc_url=None,
    openapi_url="/openapi.json",
)


# ---- sign-in and errors -------------------------------------------------------------------


Owner = Annotated[str, Depends(current_owner)]


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"


@api.post("/token", response_model=TokenOut, responses={401: {"description": "Wrong user name or password."}},
          summary="A sign-in token for 'Authorization: Bearer', checked as the chat's sign-in is")
async def token(request: Request,
                username: Annotated[Optional[str], Form(max_length=255)] = None,
                password: Annotated[Optional[str], Form(max_length=1024)] = None):
    """Multi-user mode: form fields username and password. Local mode: no fields."""
    code = chainlit_config.code
    if code.password_auth_callback is not None:
        if not username or password is None:
            raise HTTPException(422, "Send the form fields username and password.")
        user = await code.password_auth_callback(username, password)
    elif code.header_auth_callback is not None:
        user = await code.header_auth_callback(request.headers)
    else:
        raise HTTPException(404, "This server has no sign-in.")
    if not user:
        raise HTTPException(401, "Wrong user name or password.", headers={"WWW-Authenticate": "Bearer"})
    return TokenOut(access_token=create_jwt(user))


@api.exception_handler(NotFound)
async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


@api.exception_handler(BlobCorrupted)
async def _corrupted(request: Request, exc: BlobCorrupted) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=500)


@api.exception_handler(HistoryError)
async def _history_error(request: Request, exc: HistoryError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


@api.exception_handler(UploadError)
async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


@api.exception_handler(BackendError)
async def _backend_error(request: Request, exc: BackendError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


class _AsciiJSON(JSONResponse):
    """JSON with non-ASCII escaped, so even a lone surrogate echoed back renders."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = jsonable_encoder(exc.errors())
    if _has_surrogate(errors):
        return _AsciiJSON({"detail": "The request holds half of a UTF-16 pair (a lone surrogate), "
                                     "which is not text; send valid Unicode."}, status_code=422)
    return _AsciiJSON({"detail": errors}, status_code=422)


def _has_surrogate(value) -> bool:
    # Python's json keeps "\ud800" as a lone surrogate; pydantic's parser refuses it
    # earlier, as an "unexpected end of hex escape".
    if isinstance(value, str):
        return any(0xD800 <= ord(ch) <= 0xDFFF for ch in value) or "hex escape" in value
    if isinstance(value, dict):
        return any(_has_surrogate(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_surrogate(v) for v in value)
    return False


def _node_number(text: str) -> int:
    """A node number from the URL: anything that cannot name a node is simply not there."""
    if not re.fullmatch(r"[0-9]{1,10}", text) or not 1 <= int(text) <= MAX_NUMBER:
        raise HTTPException(404, f"There is no image #{text[:20]} in this conversation.")
    return int(text)


# ---- request body limits ------------------------------------------------------------------


class _TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_text(limit), headers={"Connection": "close"})


def _too_large_text(limit: int) -> str:
    if limit >= MAX_MESSAGE_BODY:
        return (f"The request is larger than {limit / 2**20:.0f} MB, the limit for one message "
                f"(images of up to 30 MB each, {MAX_MESSAGE_BODY / 2**20:.0f} MB in all). Send smaller or "
                f"fewer images.")
    return f"The request is larger than {limit // 1024} KB, the limit for this route."


def _body_limit(scope) -> int:
    if scope.get("method") == "POST" and scope.get("path", "").rstrip("/").endswith("/messages"):
        return MAX_MESSAGE_BODY
    return MAX_OTHER_BODY


class BodyLimitMiddleware:
    """413 for a body over the route's limit: by Content-Length up front, else while it streams."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = _body_limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0 or size > limit:
                detail = _too_large_text(limit) if size > limit else "The Content-Length header is not a number."
                response = JSONResponse({"detail": detail}, status_code=413 if size > limit else 400,
                                        headers={"Connection": "close"})
                return await response(scope, receive, send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)  # an HTTPException: FastAPI answers it as JSON
            return message

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge as exc:  # a backstop, should any layer let it through
            if started:
                raise
            response = JSONResponse({"detail": exc.detail}, status_code=413, headers=exc.headers)
            await response(scope, receive, send)


api.add_middleware(BodyLimitMiddleware)


# ---- shapes -------------------------------------------------------------------------------


class ConversationOut(BaseModel):
    id: str
    title: Optional[str]
    head: Optional[int] = Field(description="The node the next edit starts from; null until the first image.")
    created_at: datetime
    updated_at: datetime
    url: str


class NodeOut(BaseModel):
    number: int
    parent: Optional[int] = Field(description="The image this one was made from; null for uploads and generations.")
    children: list[int] = Field(description="Images made from this one (filled in the tree view).")
    kind: str
    inputs: list[int] = Field(description="Input images in order: Picture 1, Picture 2, ...")
    instruction: str
    prompt: str
    params: dict
    width: int
    height: int
    sha256: str
    created_at: datetime
    image_url: str


class TreeOut(ConversationOut):
    roots: list[int] = Field(description="Nodes without a parent, where each line of images starts.")
    nodes: list[NodeOut] = Field(description="Every image, by number; parent and children make the tree.")


class CreateConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Optional[Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TITLE)]] = None


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE)]


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT)]
    reading: Optional[Literal["move", "edit"]] = Field(
        None, description="For a message that could be a move or an edit (the reply asks): pick one.")


@dataclass
class _Message:
    """A message as the route read it: words, files, and what the client stated outright."""

    text: str
    files: list
    role: Optional[str] = None
    reading: Optional[str] = None
    mask: Optional[bytes] = None  # a painted region: white = may change


class MessageOut(BaseModel):
    message: str = Field(description="What happened, in the chat's words.")
    jobs: list[str] = Field(description="Ids of the image jobs queued (answer 202); poll /jobs/{id}.")
    job_urls: list[str]
    uploads: list[int] = Field(description="Numbers given to the images this message brought.")
    node: Optional[NodeOut] = Field(None, description="The image the head moved to, if it moved.")
    head: Optional[int]
    export: Optional[str] = Field(None, description="URL of the download that was asked for.")
    notes: list[str] = Field(default_factory=list, description=(
        "How attached images were read, per job: \"Edited your new photo (#2).\" or \"Edited #1 "
        "using your photo #2 as a reference.\" Send role=subject|reference to state it outright."))
    choices: list[str] = Field(default_factory=list, description=(
        "When the message could be a move or an edit, the readings to choose from ('move', "
        "'edit'): send the same text again with reading=..."))
    tree: Optional[str] = Field(None, description="URL of the conversation's tree, when the history was asked for.")


class JobOut(BaseModel):
    id: str
    conversation_id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    error: Optional[str]
    node: Optional[int] = Field(description="The image made, once succeeded.")
    image_url: Optional[str]
    created_at: datetime
    started_at: Optional[datetime]
    finished_at: Optional[datetime]


def _utc(dt: Optional[datetime]) -> Optional[datetime]:
    # SQLite hands datetimes back without their zone; they were written in UTC.
    return dt.replace(tzinfo=timezone.utc) if dt is not None and dt.tzinfo is None else dt


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/") or PREFIX


def _conv_out(root: str, c: Conversation) -> ConversationOut:
    return ConversationOut(id=c.id, title=c.title, head=c.head, created_at=_utc(c.created_at),
                           updated_at=_utc(c.updated_at), url=f"{root}/conversations/{c.id}")


def _image_url(root: str, conversation_id: str, number: int) -> str:
    return f"{root}/conversations/{conversation_id}/nodes/{number}/image"


def _node_out(root: str, n: Node, children: list[int] = ()) -> NodeOut:
    return NodeOut(number=n.number, parent=n.parent_number, children=list(children), kind=n.kind,
                   inputs=list(n.input_numbers), instruction=n.instruction, prompt=n.prompt,
                   params=n.params, width=n.width, height=n.height, sha256=n.sha256,
                   created_at=_utc(n.created_at), image_url=_image_url(root, n.conversation_id, n.number))


def _job_out(root: str, j: Job) -> JobOut:
    done = j.status == "succeeded" and j.node_number is not None
    return JobOut(id=j.id, conversation_id=j.conversation_id, kind=j.kind, status=j.status,
                  error=j.error, node=j.node_number if done else None,
                  image_url=_image_url(root, j.conversation_id, j.node_number) if done else None,
                  created_at=_utc(j.created_at), started_at=_utc(j.started_at),
                  finished_at=_utc(j.finished_at))


def _own(conversation_id: str, owner: str) -> Conversation:
    return get_runtime().store.conversation(conversation_id, owner=owner)


# ---- conversations ------------------------------------------------------------------------

NOT_FOUND = {404: {"description": "No such conversation (or not yours)."}}


@api.get("/conversations", response_model=list[ConversationOut], summary="Your conversations, newest first")
def list_conversations(request: Request, owner: Owner):
    root = _root(request)
    return [_conv_out(root, c) for c in get_runtime().store.conversations(owner=owner)]


@api.post("/conversations", response_model=ConversationOut, status_code=201, summary="Start a conversation")
def create_conversation(request: Request, response: Response, owner: Owner,
                        body: Optional[CreateConversationIn] = None):
    title = " ".join(body.title.split()) if body and body.title else None
    _check_text(title or "", "title")
    conv = get_runtime().store.create_conversation(owner=owner, title=title or None)
    out = _conv_out(_root(request), conv)
    response.headers["Location"] = out.url
    return out


@api.get("/conversations/{conversation_id}", response_model=TreeOut, responses=NOT_FOUND,
         summary="A conversation, its head and its images as a tree")
def get_conversation(conversation_id: str, request: Request, owner: Owner):
    store = get_runtime().store
    conv = _own(conversation_id, owner)
    nodes = store.nodes(conversation_id)
    children: dict[int, list[int]] = {}
    for n in nodes:
        if n.parent_number is not None:
            children.setdefault(n.parent_number, []).append(n.number)
    root = _root(request)
    return TreeOut(**_conv_out(root, conv).model_dump(),
                   roots=[n.number for n in nodes if n.parent_number is None],
                   nodes=[_node_out(root, n, children.get(n.number, [])) for n in nodes])


@api.patch("/conversations/{conversation_id}", response_model=ConversationOut, responses=NOT_FOUND,
           summary="Rename a conversation")
def rename_conversation(conversation_id: str, body: RenameIn, request: Request, owner: Owner):
    _own(conversation_id, owner)
    title = " ".join(body.title.split())
    _check_text(title, "title")
    conv = get_runtime().store.rename_conversation(conversation_id, title)
    return _conv_out(_root(request), conv)


@api.delete("/conversations/{conversation_id}", status_code=204, responses=NOT_FOUND,
            summary="Delete a conversation, its images and its jobs")
def delete_conversation(conversation_id: str, owner: Owner):
    rt = get_runtime()
    _own(conversation_id, owner)
    rt.service.delete_conversation(conversation_id)  # its jobs stop first
    return Response(status_code=204)


# ---- images and downloads -----------------------------------------------------------------


@api.get("/conversations/{conversation_id}/nodes/{number}/image", response_class=Response,
         responses={200: {"content": {m: {} for m in sorted(set(ACCEPTED.values()))},
                          "description": "The stored image."}, **NOT_FOUND},
         summary="The stored image of node #number")
def node_image(conversation_id: str, number: str, owner: Owner):
    n = _node_number(number)
    store = get_runtime().store
    _own(conversation_id, owner)
    node = store.node(conversation_id, n)
    data = store.image_bytes(node)
    mime = ACCEPTED.get(sniff(data) or "", "application/octet-stream")
    # Node images never change: the URL names immutable content.
    return Response(data, media_type=mime, headers={
        "Cache-Control": "private, max-age=31536000, immutable",
        "ETag": f'"{node.sha256}"',
        "X-Content-Type-Options": "nosniff"})


@api.get("/conversations/{conversation_id}/export", response_class=Response,
         responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {},
                                      "application/zip": {}},
                          "description": "A download (Content-Disposition names the file)."},
                    **NOT_FOUND},
         summary="Download an image (png, jpeg, webp) or the whole history (a zip)")
def export(conversation_id: str, owner: Owner,
           fmt: Annotated[ExportFormat, Query(alias="format")] = "png",
           node: Annotated[Optional[int], Query(ge=1, le=MAX_NUMBER,
                                                description="Node number; default the head.")] = None):
    rt = get_runtime()
    conv = _own(conversation_id, owner)
    if fmt != "history" and node is None and conv.head is None:
        raise HTTPException(404, "There is no image to export yet.")
    ex = rt.service.export(conversation_id, fmt, node)
    return Response(ex.data, media_type=ex.mime, headers={
        "Content-Disposition": f'attachment; filename="{ex.filename}"',
        "X-Content-Type-Options": "nosniff"})


# ---- messages -----------------------------------------------------------------------------

_MESSAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "maxLength": MAX_TEXT,
                         "description": "What to do, as in the chat; empty with images = upload them."},
                "images": {"type": "array", "maxItems": MAX_IMAGES,
                           "items": {"type": "string", "format": "binary"},
                           "description": f"0-{MAX_IMAGES} images: {ACCEPTED_TEXT}."},
                "role": {"type": "string", "enum": list(ROLES),
                         "description": "What the images are when there is a current image: 'subject' "
                                        "(the first is the picture to edit) or 'reference' (sources for "
                                        "the current image). Without it, the words decide."},
                "reading": {"type": "string", "enum": list(READINGS),
                            "description": "For a message that could be a move or an edit: pick one."},
                "mask": {"type": "string", "format": "binary",
                         "description": "A painted region for the edit: an image of any size (PNG), white "
                                        "(or painted alpha) = may change. It is scaled to the picture; "
                                        "outside it the input is kept exactly."},
            }}},
        "application/json": {"schema": MessageIn.model_json_schema()},
    },
}


@api.post("/conversations/{conversation_id}/messages", response_model=MessageOut,
          openapi_extra={"requestBody": _MESSAGE_BODY},
          responses={202: {"model": MessageOut, "description": "Image work queued: poll the jobs."},
                     **NOT_FOUND,
                     413: {"description": "The body or an image is too large."},
                     415: {"description": "Not multipart/form-data or JSON, or a file is not an image."},
                     422: {"description": "The message or an image could not be used; detail says why."}},
          summary="Send a message, as in the chat: text and up to three images")
async def post_message(conversation_id: str, request: Request, owner: Owner):
    # The conversation first: nobody uploads 90 MB to learn that it does not exist.
    conv = await run_in_threadpool(_own, conversation_id, owner)
    msg = await _read_message(request)
    for name, data in msg.files:
        # Cheap refusals first, with the upload checker's own words.
        if len(data) > MAX_BYTES or not data or sniff(data) is None:
            status = 413 if len(data) > MAX_BYTES else 422 if not data else 415
            try:
                load_upload(data, name)
            except UploadError as e:
                raise HTTPException(status, str(e)) from None
    outcome, uploads, head, export_query = await run_in_threadpool(_apply, conv, msg)
    if outcome.is_error:
        raise HTTPException(422, outcome.message)
    out = _message_out(_root(request), conv.id, outcome, uploads, head, export_query)
    status = 202 if out.jobs else 200
    headers = {"Location": out.job_urls[0]} if len(out.job_urls) == 1 else {}
    return JSONResponse(out.model_dump(mode="json"), status_code=status, headers=headers)


async def _read_message(request: Request) -> _Message:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        body = await request.body()
        try:
            parsed = MessageIn.model_validate_json(body)
        except ValidationError as e:
            errors = json.loads(e.json(include_url=False, include_input=False))
            raise RequestValidationError([{**err, "loc": ["body", *err["loc"]]} for err in errors]) from None
        _check_text(parsed.text, "text")
        return _Message(parsed.text, [], reading=parsed.reading)
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise HTTPException(415, "Send multipart/form-data (a field 'text' and up to "
                                 f"{MAX_IMAGES} files 'images') or application/json "
                                 '({"text": "..."}).')
    try:
        form = await request.form(max_files=16, max_fields=16, max_part_size=64 * 1024)
    except StarletteHTTPException as e:  # Starlette's own, for a form it cannot parse
        if e.status_code != 400:
            raise
        raise HTTPException(422, f"The form could not be read: {e.detail}") from None
    except Exception as e:  # a malformed body the parser chokes on
        raise HTTPException(422, f"The form could not be read ({type(e).__name__}).") from None
    try:
        text, images, stated, mask = "", [], {}, None
        for key, value in form.multi_items():
            if key == "text" and isinstance(value, str):
                text = value
            elif key == "images" and isinstance(value, UploadFile):
                images.append(value)
            elif key == "mask" and isinstance(value, UploadFile) and mask is None:
                mask = value
            elif key in _CHOICES and isinstance(value, str):
                if value not in _CHOICES[key]:
                    raise HTTPException(422, f"The field {key!r} is {value[:40]!r}; use "
                                             f"{' or '.join(_CHOICES[key])}, or leave it out.")
                stated[key] = value
            else:
                raise HTTPException(422, f"Unexpected form field {key[:40]!r}: send a field 'text', "
                                         f"up to {MAX_IMAGES} files named 'images', and optionally "
                                         f"'role' (subject|reference), 'reading' (move|edit) and "
                                         f"one file 'mask' (white = may change).")
        if len(images) > MAX_IMAGES:
            raise HTTPException(422, f"This message brought {len(images)} images; send at most "
                                     f"{MAX_IMAGES} (the image to edit and its references; the model "
                                     f"may take fewer).")
        if len(text) > MAX_TEXT:
            raise HTTPException(422, f"The text is {len(text)} characters; the limit is {MAX_TEXT}.")
        _check_text(text, "text")
        files = [(_label(f.filename), await f.read()) for f in images]
        if mask is not None:
            stated["mask"] = await mask.read()
    finally:
        await form.close()
    if stated.get("role") and not files:
        raise HTTPException(422, "The field 'role' says what the attached images are; attach at least one.")
    return _Message(text, files, **stated)


_CHOICES = {"role": ROLES, "reading": READINGS}


def _check_text(text: str, what: str) -> None:
    # Control characters mean nothing in a prompt or title, and PostgreSQL refuses NUL.
    bad = next((ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"), None)
    if bad is not None:
        raise HTTPException(422, f"The {what} contains a control character ({bad!r}); send plain text.")
    # JSON may carry a lone UTF-16 surrogate ("\ud800"), which no database can store.
    half = next((ch for ch in text if unicodedata.category(ch) == "Cs"), None)
    if half is not None:
        raise HTTPException(422, f"The {what} contains half of a UTF-16 pair ({half!r}), "
                                 "which is not text; send valid Unicode.")


def _label(filename: Optional[str]) -> str:
    """A display name for an upload: only the last part of whatever the client called it."""
    name = re.split(r"[\\/]", filename or "")[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or "image"


def _apply(conv: Conversation, msg: _Message):
    """What the chat's on_message does, minus Chainlit: keep uploads, route, apply."""
    rt = get_runtime()
    try:
        rt.service.check_picture_count(ChatSettings.from_dict(conv.settings), len(msg.files))
    except HistoryError as e:
        raise HTTPException(422, str(e)) from None
    uploads = rt.service.add_uploads(conv.id, msg.files) if msg.files else []
    intent = rt.service.intent_for(conv.id, msg.text, attachments=len(uploads), role=msg.role,
                                   reading=msg.reading)
    if msg.mask is not None:
        if intent.kind == "op":  # "make it brighter" over a painted region: local, so the model
            intent = Intent("edit", text=intent.text)
        if intent.kind != "edit" or not intent.text:
            raise HTTPException(422, "A mask says where an edit may change things: send it with an "
                                     "edit instruction, like text='make it red'.")
        try:
            region = rt.store.put_mask(load_mask(msg.mask))
        except UploadError as e:
            raise HTTPException(422, f"The mask: {e}") from None
        intent = replace(intent, region=region)
    outcome = rt.service.apply(conv.id, intent, uploads=uploads,
                               settings=ChatSettings.from_dict(conv.settings))
    export_query = None
    exported = next((o.export for o in outcome.chain() if o.export is not None), None)
    if exported is not None:  # the download is offered by URL, made again when fetched
        export_query = f"format={exported.fmt}"
        if exported.fmt != "history" and exported.number:
            export_query += f"&node={exported.number}"
    return outcome, uploads, rt.store.conversation(conv.id).head, export_query


def _message_out(root: str, conv_id: str, outcome: Outcome, uploads: list[Node],
                 head: Optional[int], export_query: Optional[str]) -> MessageOut:
    parts = outcome.chain()  # one per request in the message, in order
    runs = [run for part in parts for run in part.runs]
    jobs = [run.job.id for run in runs]
    export_url = f"{root}/conversations/{conv_id}/export?{export_query}" if export_query else None
    node = next((p.node for p in reversed(parts) if p.node is not None), None)
    return MessageOut(
        message=" ".join(_part_message(p) for p in parts if _part_message(p)), jobs=jobs,
        job_urls=[f"{root}/jobs/{j}" for j in jobs],
        uploads=[n.number for n in uploads],
        node=_node_out(root, node) if node is not None else None, head=head,
        export=export_url,
        tree=f"{root}/conversations/{conv_id}" if any(p.show_history for p in parts) else None,
        notes=[run.note for run in runs if run.note],
        choices=[payload["reading"] for part in parts for _, payload in part.choices])


def _part_message(outcome: Outcome) -> str:
    message = outcome.message
    if outcome.runs:
        queued = "; ".join(f"{run.description}" for run in outcome.runs) + " (queued)."
        message = f"{message} {queued}" if message else queued
    elif outcome.export is not None:
        message = f"{message} Ready to download: {outcome.export.filename}." if message \
            else f"Ready to download: {outcome.export.filename}."
    elif not message and outcome.show_history:
        message = "The tree of images is at the 'tree' URL."
    return message


# ---- jobs ---------------------------------------------------------------------------------


@api.get("/jobs/{job_id}", response_model=JobOut,
         responses={404: {"description": "No such job (or not yours)."}}, summary="An image job's status")
def get_job(job_id: str, request: Request, owner: Owner):
    return _job_out(_root(request), get_runtime().store.job(job_id, owner=owner))


# ---- mounting -----------------------------------------------------------------------------


def install(app) -> None:
    """Mount the API at /api/v1, ahead of Chainlit's catch-all page route."""
    routes.ahead_of_the_rest(app, lambda: app.mount(PREFIX, api))
