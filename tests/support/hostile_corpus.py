"""A corpus of hostile and odd uploads, made on the fly (no files kept): at least 200.

Each item is ``(name, bytes, expect)`` where ``expect`` is "accept" (a picture that must
be kept, upright, as RGB), "refuse" (must be refused with a message) or "either" (a
damaged file some decoders can read: refusing or accepting are both fine, crashing is
not). Used by tests/assistant/test_hostile_uploads.py, which prints the counts.
"""

from __future__ import annotations

import io
import random
import zlib
from typing import Iterator

from PIL import Image

Item = tuple[str, bytes, str]


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _picture(mode: str, size=(40, 30)) -> Image.Image:
    rng = random.Random(hash((mode, size)) & 0xFFFF)
    rgb = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "I;16":
        return rgb.convert("I").point(lambda v: v * 200).convert("I;16")
    return rgb.convert(mode)


def valid() -> Iterator[Item]:
    for mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16"):
        yield f"{mode}.png", _save(_picture(mode), "PNG"), "accept"
    yield "interlaced.png", _save(_picture("RGB"), "PNG", interlace=1), "accept"
    yield "transparent-p.png", _save(_picture("P"), "PNG", transparency=0), "accept"
    for mode in ("RGB", "L", "CMYK"):
        yield f"{mode}.jpg", _save(_picture(mode), "JPEG"), "accept"
    yield "progressive.jpg", _save(_picture("RGB"), "JPEG", progressive=True), "accept"
    yield "444.jpg", _save(_picture("RGB"), "JPEG", subsampling=0), "accept"
    for mode in ("RGB", "RGBA"):
        yield f"{mode}.webp", _save(_picture(mode), "WEBP"), "accept"
        yield f"{mode}-lossless.webp", _save(_picture(mode), "WEBP", lossless=True), "accept"
    for size in ((1, 1), (1, 4000), (4000, 1), (6000, 6000)):
        yield f"{size[0]}x{size[1]}.png", _save(Image.new("RGB", size), "PNG", optimize=True), "accept"
    for n in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = n
        yield f"orientation-{n}.jpg", _save(_picture("RGB", (40, 30)), "JPEG", exif=exif.tobytes()), "accept"
    frames = [_picture("RGB"), _picture("L").convert("RGB")]
    yield "animated.png", _save(frames[0], "PNG", save_all=True, append_images=frames[1:]), "accept"
    yield "animated.webp", _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]), "accept"
    yield "big-profile.png", _save(_picture("RGB"), "PNG", icc_profile=bytes(range(256)) * 32768), "accept"
    yield "text-chunks.png", _save(_picture("RGB"), "PNG", pnginfo=_text_info()), "accept"


def _text_info():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * 100_000)
    info.add_text("GPS", "51.5, -0.1", zip=True)
    return info


def refused() -> Iterator[Item]:
    yield "empty.png", b"", "refuse"
    yield "report.png", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "refuse"
    yield "page.png", b"<!doctype html><script>alert(1)</script>", "refuse"
    yield "drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "refuse"
    yield "text.jpg", b"just some words", "refuse"
    yield "zip.png", b"PK\x03\x04" + b"\0" * 100, "refuse"
    for fmt in ("GIF", "BMP", "TIFF", "ICO", "PPM"):
        yield f"disguised-{fmt.lower()}.png", _save(_picture("RGB"), fmt), "refuse"
    for size in ((8000, 8000), (40001, 1001), (1, 50_000_000)):
        yield f"bomb-{size[0]}x{size[1]}.png", _png_header_only(*size), "refuse"
    yield "bomb-8000.png", _save(Image.new("1", (8000, 8000)), "PNG", optimize=True), "refuse"
    big = _save(Image.new("RGB", (6000, 6000), (120, 130, 140)), "JPEG", quality=90)
    yield "damaged-scan.jpg", big[:3000] + b"\xff\xd9", "refuse"
    yield "damaged-half.jpg", big[: len(big) // 2] + b"\xff\xd9", "refuse"
    rng = random.Random(7)
    for i in range(20):
        yield f"noise-{i}.png", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000))), "refuse"
    yield "png-magic-only.png", b"\x89PNG\r\n\x1a\n", "refuse"
    yield "jpeg-magic-only.jpg", b"\xff\xd8\xff", "refuse"
    yield "webp-magic-only.webp", b"RIFF\0\0\0\0WEBPVP8 ", "refuse"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` and holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def damaged() -> Iterator[Item]:
    """Every valid file cut short at several points, and with bytes overwritten."""
    rng = random.Random(11)
    for name, data, _ in list(valid()):
        if len(data) > 2_000_000:
            continue
        # Cut into the pixel data: refused. Cut in the last tenth, where some files have
        # only their end chunk or a second frame: either answer is fine.
        for fraction, expect in ((0.1, "refuse"), (0.5, "refuse"), (0.9, "either")):
            yield f"cut-{int(fraction * 100)}-{name}", data[: max(1, int(len(data) * fraction))], expect
        flipped = bytearray(data)
        for _ in range(8):
            pos = rng.randrange(min(len(flipped), 64), len(flipped)) if len(flipped) > 64 else 0
            flipped[pos] ^= 0xFF
        yield f"flipped-{name}", bytes(flipped), "either"


def corpus() -> list[Item]:
    return [*valid(), *refused(), *damaged()]
