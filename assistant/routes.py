"""HTTP routes the browser needs beside the chat: node images, owner-checked.

Owns the URL of every image the chat shows, so resumed threads and custom elements
fetch pictures from the blob store rather than Chainlit's temporary upload folder.
Someone else's conversation gets the same 404 as one that does not exist.
"""

from __future__ import annotations

import io

from chainlit.auth import get_current_user
from fastapi import APIRouter, Depends, HTTPException, Response
from PIL import Image

from sessions import HistoryError

from .runtime import get_runtime

router = APIRouter(prefix="/qec")
THUMB_SIZES = (128, 256, 512)


def image_url(conversation_id: str, number: int, thumb: int | None = None) -> str:
    url = f"/qec/images/{conversation_id}/{number}.png"
    return f"{url}?thumb={thumb}" if thumb else url


@router.get("/images/{conversation_id}/{number}.png")
async def node_image(conversation_id: str, number: int, thumb: int | None = None, user=Depends(get_current_user)):
    rt = get_runtime()
    owner = user.identifier if user is not None else rt.settings.local_user
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
    before = list(app.router.routes)
    app.include_router(router)
    added = [r for r in app.router.routes if r not in before]
    app.router.routes[:] = added + before
