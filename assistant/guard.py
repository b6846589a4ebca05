"""Chainlit's own routes, held to the rules of ours.

Owns four changes to the Chainlit app, made once at import by ``install``:
- **Sign-in that can end.** Every Chainlit route and the websocket connect go through
  ``checked_user``: the account must still exist (multi-user mode) and the token must
  be issued after its password was last set. Chainlit alone would re-create a removed
  account on its next request.
- **"Not found" alike.** Another user's thread answers exactly like a missing one (404),
  on every thread route, and feedback can be written or deleted only on one's own
  messages.
- **Empty uploads refused** with a message, before Chainlit's upload route (a 500 there).
- **Sharing off means off.** While ``allow_thread_sharing`` is false, sharing and
  reading shared threads answer 404.

Knows nothing of images or jobs; the ownership facts come from the data layer.
"""

from __future__ import annotations

from typing import Optional

import jwt as pyjwt
from chainlit import auth as chainlit_auth
from chainlit.auth import reuseable_oauth
from chainlit.config import config as chainlit_config
from chainlit.types import DeleteFeedbackRequest, ShareThreadRequest, UpdateFeedbackRequest
from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .runtime import get_runtime
from .uploads import ACCEPTED_TEXT

router = APIRouter()
THREAD_NOT_FOUND = "Thread not found"
ENDED = "This sign-in has ended (the account was removed or its password changed). Sign in again."
_original_get_current_user = chainlit_auth.get_current_user


def issued_at(token: Optional[str]) -> Optional[float]:
    """The token's ``iat`` (seconds), read without checking: Chainlit has checked it."""
    if not token:
        return None
    try:
        claims = pyjwt.decode(token, options={"verify_signature": False})
    except pyjwt.PyJWTError:
        return None
    iat = claims.get("iat")
    return float(iat) if isinstance(iat, (int, float)) else None


async def checked_user(token: str = Depends(reuseable_oauth)):
    """Chainlit's ``get_current_user``, refusing ended accounts and outdated tokens."""
    user = await _original_get_current_user(token=token)
    if user is None:
        return None
    current = await run_in_threadpool(get_runtime().token_is_current, user.identifier, issued_at(token))
    if not current:
        raise HTTPException(401, ENDED, headers={"WWW-Authenticate": "Bearer"})
    return user


async def thread_owner_only(username: str, thread_id: str) -> bool:
    """Replaces Chainlit's ``is_thread_author``: not yours answers like not there."""
    owner = await run_in_threadpool(get_runtime().thread_owner, thread_id)
    if owner is None or owner != username:
        raise HTTPException(404, THREAD_NOT_FOUND)
    return True


def _sharing_on() -> bool:
    return bool(getattr(chainlit_config.features, "allow_thread_sharing", False))


# ---- routes that go ahead of Chainlit's ------------------------------------------------


@router.put("/feedback")
async def update_feedback(update: UpdateFeedbackRequest, user=Depends(checked_user)):
    _signed_in(user)
    feedback_id = await run_in_threadpool(get_runtime().save_feedback, user.identifier, update.feedback)
    if feedback_id is None:
        raise HTTPException(404, "Message not found")
    return JSONResponse({"success": True, "feedbackId": feedback_id})


@router.delete("/feedback")
async def delete_feedback(payload: DeleteFeedbackRequest, user=Depends(checked_user)):
    _signed_in(user)
    if not await run_in_threadpool(get_runtime().delete_feedback, user.identifier, payload.feedbackId):
        raise HTTPException(404, "Feedback not found")
    return JSONResponse({"success": True})


@router.put("/project/thread/share")
async def share_thread(request: Request, payload: ShareThreadRequest, user=Depends(checked_user)):
    if not _sharing_on():
        raise HTTPException(404, "Thread sharing is off on this server.")
    import chainlit.server as chainlit_server

    return await chainlit_server.share_thread(request, payload, user)


@router.get("/project/share/{thread_id}")
async def get_shared_thread(request: Request, thread_id: str, user=Depends(checked_user)):
    if not _sharing_on():
        raise HTTPException(404, THREAD_NOT_FOUND)
    import chainlit.server as chainlit_server

    return await chainlit_server.get_shared_thread(request, thread_id, user)


@router.post("/project/file")
async def upload_file(session_id: str, file: UploadFile, ask_parent_id: Optional[str] = None,
                      user=Depends(checked_user)):
    """Chainlit's upload, refusing an empty file with a message (Chainlit answered 500)."""
    if not await file.read(1):
        await file.close()
        raise HTTPException(400, f"{file.filename or 'The file'} is empty. Send {ACCEPTED_TEXT}.")
    await file.seek(0)
    import chainlit.server as chainlit_server

    return await chainlit_server.upload_file(user, session_id, file, ask_parent_id)


def _signed_in(user) -> None:
    if user is None:
        raise HTTPException(401, "Sign in first.", headers={"WWW-Authenticate": "Bearer"})


def install(app) -> None:
    """Put the checks in place on the Chainlit app (routes, dependencies, socket)."""
    import chainlit.data.acl as acl
    import chainlit.server as chainlit_server
    import chainlit.socket as chainlit_socket

    from . import routes

    app.dependency_overrides[_original_get_current_user] = checked_user
    chainlit_socket.get_current_user = checked_user
    chainlit_server.is_thread_author = acl.is_thread_author = thread_owner_only
    routes.ahead_of_the_rest(app, lambda: app.include_router(router))
