"""HTTP routes the browser needs beside the chat: node images, owner-checked.

Owns the URL of every image the chat shows, so resumed threads and custom elements
fetch pictures from the blob store rather than Chainlit's temporary upload folder.
Someone else's conversation gets the same 404 as one that does not exist.
"""

from __future__ import annotations

import io

from fastapi import APIRouter, Depends, HTTPException, Response
from PIL import Image

from sessions import HistoryError

from . import guard
from .runtime import get_runtime

router = APIRouter(prefix="/qec")
THUMB_SIZES = (128, 256, 512)


def image_url(conversation_id: str, number: int, thumb: int | None = None) -> str:
    url = f"/qec/images/{conversation_id}/{number}.png"
    return f"{url}?thumb={thumb}" if thumb else url


async def current_owner(user=Depends(guard.checked_user)) -> str:
    """The signed-in user's identifier, for every route that takes an id.

    Without a token: 401. In multi-user mode an account removed, or re-made, since
    its token was issued is refused too (``guard.checked_user``).
    """
    if user is None:
        raise HTTPException(401, "Sign in first.", headers={"WWW-Authenticate": "Bearer"})
    return user.identifier


# A plain def: FastAPI runs it on a worker thread, so reading, verifying and shrinking
# pictures never blocks the event loop that carries every user's progress.
@router.get("/images/{conversation_id}/{number}.png")
def node_image(conversation_id: str, number: int, thumb: int | None = None,
               owner: str = Depends(current_owner)):
    rt = get_runtime()
    try:
        rt.store.conversation(conversation_id, owner=owner)
        node = rt.store.node(conversation_id, number)
        data = rt.store.image_bytes(node)
    except HistoryError:
        raise HTTPException(status_code=404, detail="No such image.") from None
    if thumb:
        if thumb not in THUMB_SIZES:
            raise HTTPException(status_code=400, detail=f"thumb must be one of {THUMB_SIZES}.")
        img = Image.open(io.BytesIO(data))
        img.thumbnail((thumb, thumb))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
    # Node images never change: the URL names immutable content.
    return Response(data, media_type="image/png", headers={
        "Cache-Control": "private, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff"})


def install(app) -> None:
    """Put our routes ahead of Chainlit's catch-all page route."""
    ahead_of_the_rest(app, lambda: app.include_router(router))


def ahead_of_the_rest(app, attach) -> None:
    """Run ``attach`` (which adds routes or mounts to ``app``) and move what it added first.

    Chainlit ends its app with a catch-all route for its page, so anything added
    after it would never be reached.
    """
    before = list(app.router.routes)
    attach()
    added = [r for r in app.router.routes if r not in before]
    app.router.routes[:] = added + before
