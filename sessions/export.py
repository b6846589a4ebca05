"""Exports: one image (PNG/JPEG/WebP) and the whole history as a zip.

Owns the export formats: the PNG recipe text chunk, the history zip layout
(``recipe.json``, ``images/NNNN-kind.png``, ``masks/<sha256>.png`` for painted
regions, ``contact-sheet.png``) that
``qwen-edit-chat replay`` reads back, and the contact sheet. Exported files carry no
EXIF or GPS data from uploads: images are re-encoded from pixels. Knows nothing of
how images were made or shown.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import TYPE_CHECKING, Optional

from PIL import Image, ImageDraw, PngImagePlugin

from .errors import HistoryError
from .images import flatten, pixels_only

if TYPE_CHECKING:  # pragma: no cover
    from .models import Node
    from .store import Store

RECIPE_KEY = "qwen-edit-chat:recipe"
HISTORY_FORMAT = "qwen-edit-chat/history"
FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
THUMB = 256


def node_file_name(node: "Node") -> str:
    return f"images/{node.number:04d}-{node.kind}.png"


def region_of(node: "Node") -> Optional[str]:
    """The sha256 of the painted region an edit was limited to, if any."""
    sha = ((node.params or {}).get("request") or {}).get("region")
    return sha if isinstance(sha, str) else None


def node_record(node: "Node") -> dict:
    """Everything needed to re-run one node."""
    return {
        "number": node.number,
        "parent": node.parent_number,
        "kind": node.kind,
        "inputs": list(node.input_numbers),
        "instruction": node.instruction,
        "prompt": node.prompt,
        "params": node.params,
        "sha256": node.sha256,
        "width": node.width,
        "height": node.height,
        "file": node_file_name(node),
        "created_at": node.created_at.isoformat(),
    }


def lineage_recipe(lineage: list["Node"]) -> dict:
    """The short recipe a single exported PNG carries: its chain from the root."""
    steps = []
    for n in lineage:
        p = n.params or {}
        steps.append({
            "number": n.number, "kind": n.kind, "parent": n.parent_number,
            "inputs": list(n.input_numbers), "instruction": n.instruction,
            "prompt": n.prompt, "seed": p.get("seed"), "steps": p.get("steps"),
            "true_cfg_scale": p.get("true_cfg_scale"), "model": p.get("model"),
            "backend": p.get("backend"),
        })
    return {"format": "qwen-edit-chat/recipe", "version": 1, "steps": steps}


def export_image(store: "Store", conversation_id: str, number: Optional[int] = None,
                 fmt: str = "png", embed_recipe: bool = True) -> bytes:
    fmt = (fmt or "png").lower()
    if fmt not in FORMATS:
        raise HistoryError(f"Cannot export as {fmt!r}; choose png, jpeg or webp.")
    node = store.head(conversation_id) if number is None else store.node(conversation_id, number)
    if node is None:
        raise HistoryError("There is no image to export yet.")
    img = store.image(node)
    buf = io.BytesIO()
    if FORMATS[fmt] == "PNG":
        info = PngImagePlugin.PngInfo()
        if embed_recipe:
            recipe = lineage_recipe(store.lineage(conversation_id, node.number))
            info.add_itxt(RECIPE_KEY, json.dumps(recipe, sort_keys=True))
        info.add_text("Software", "qwen-edit-chat")
        pixels_only(img).save(buf, format="PNG", pnginfo=info)
    elif FORMATS[fmt] == "JPEG":
        pixels_only(flatten(img)).save(buf, format="JPEG", quality=95)
    else:
        pixels_only(img).save(buf, format="WEBP", quality=95)
    return buf.getvalue()


def read_recipe(png_bytes: bytes) -> Optional[dict]:
    """The recipe embedded by ``export_image``, or None."""
    with Image.open(io.BytesIO(png_bytes)) as img:
        img.load()
        text = getattr(img, "text", {}).get(RECIPE_KEY)
    return json.loads(text) if text else None


def export_history(store: "Store", conversation_id: str) -> bytes:
    conv = store.conversation(conversation_id)
    nodes = store.nodes(conversation_id)
    recipe = {
        "format": HISTORY_FORMAT,
        "version": 1,
        "conversation": {"id": conv.id, "title": conv.title, "owner": conv.owner, "head": conv.head},
        "nodes": [node_record(n) for n in nodes],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("recipe.json", json.dumps(recipe, indent=2, sort_keys=True))
        for n in nodes:
            # PNG bytes are stored verbatim so each file's sha256 matches the recipe.
            zf.writestr(node_file_name(n), store.image_bytes(n), compress_type=zipfile.ZIP_STORED)
        for sha in sorted({m for n in nodes if (m := region_of(n))}):
            # Painted regions, named by the nodes' params.request.region: replay needs them.
            zf.writestr(f"masks/{sha}.png", store.blobs.get(sha), compress_type=zipfile.ZIP_STORED)
        if nodes:
            sheet = contact_sheet(store, store.lineage(conversation_id))
            out = io.BytesIO()
            sheet.save(out, format="PNG")
            zf.writestr("contact-sheet.png", out.getvalue(), compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def contact_sheet(store: "Store", lineage: list["Node"], thumb: int = THUMB) -> Image.Image:
    """The lineage root to head, left to right, each labelled with its number and kind."""
    label_h, pad = 22, 8
    cols = min(len(lineage), 6) or 1
    rows = (len(lineage) + cols - 1) // cols or 1
    sheet = Image.new("RGB", (pad + cols * (thumb + pad), pad + rows * (thumb + label_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, node in enumerate(lineage):
        img = flatten(store.image(node))
        img.thumbnail((thumb, thumb))
        x = pad + (i % cols) * (thumb + pad)
        y = pad + (i // cols) * (thumb + label_h + pad)
        sheet.paste(img, (x + (thumb - img.width) // 2, y + (thumb - img.height) // 2))
        draw.text((x, y + thumb + 4), f"#{node.number} {node.kind}", fill="black")
    return sheet

