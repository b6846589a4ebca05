"""Image bytes in and out of the store: safe decoding, metadata stripping, PNG encoding.

Owns what "the pixels alone" means: orientation applied, EXIF/GPS/text dropped,
colour modes PNG can hold. Knows nothing of nodes or blobs.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadImage

# Decoding limit for bytes handed to the store (a pixel bomb is refused, not decoded).
MAX_PIXELS = 64_000_000
_PNG_MODES = {"RGB", "RGBA", "L", "LA", "1", "I;16"}


def decode(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(bytes(data))) as probe:
            if probe.width * probe.height > MAX_PIXELS:
                raise BadImage(f"The image is too large ({probe.width}x{probe.height} pixels).")
            probe.load()
            return probe.copy()
    except BadImage:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadImage(f"That file could not be read as an image ({e}).") from None


def pixels_only(img: Image.Image) -> Image.Image:
    """The pixels as displayed: orientation applied, EXIF/GPS/text metadata dropped."""
    img = ImageOps.exif_transpose(img)
    if img.mode not in _PNG_MODES:
        img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
    clean = img.copy()
    clean.info = {}
    return clean


# zlib level 1: a 1 MP photo encodes in about 80 ms instead of 385 ms at level 6 (the
# default), for files about 15% larger. Every turn stores one, so this is the turn's
# largest cost outside the model (bench/turns.py).
PNG_COMPRESS_LEVEL = 1


def encode_png(img: Image.Image) -> bytes:
    """Deterministic PNG bytes: the same pixels always give the same blob."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def flatten(img: Image.Image) -> Image.Image:
    """RGB, with transparent areas on white."""
    if img.mode == "RGB":
        return img
    if "A" in img.getbands():
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, "white")
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")
