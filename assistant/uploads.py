"""Checking uploaded files before anything keeps them.

Owns what the chat accepts: PNG, JPEG and WebP, recognised by their bytes (never by
the file name), decodable to the end, at most ``MAX_PIXELS`` pixels, EXIF
orientation applied and any colour mode turned into RGB. Everything else gets an
``UploadError`` whose message says what was wrong and what is accepted. Also owns
the process-wide budget of memory for decoded pixels in flight (``decoding``), so a
few small files that decode to huge pictures cannot exhaust the server.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
import warnings
from contextlib import contextmanager

import simplejpeg
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from pipelines.base import to_rgb

ACCEPTED = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
ACCEPTED_MIME = sorted(set(ACCEPTED.values()))
MAX_BYTES = 30 * 1024 * 1024  # matches .chainlit/config.toml [features.spontaneous_file_upload]
MAX_PIXELS = 40_000_000  # ~ 6300x6300: larger gets refused before it is decoded
ACCEPTED_TEXT = "PNG, JPEG or WebP images up to 30 MB and 40 megapixels"
# Colour profiles and text chunks are dropped anyway, but a PNG must still decode with
# them: cameras and editors embed profiles of several MB, past Pillow's 1 MB default.
# Still bounded (decompressed chunks are bombs too), and set once for the process.
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, MAX_BYTES)
# What libjpeg says of scan data that stops early; it only warns and paints the rest grey.
_JPEG_DAMAGE = ("corrupt", "premature", "invalid", "bogus")

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)


# Memory for decoded pictures in flight across the whole process. A 140 KB PNG can
# decode to 36 MP (108 MB of RGB, and about three times that while it is converted and
# re-encoded): without a bound, six at once took the server 3 GB up. One picture over
# the budget still runs, alone.
DECODE_BUDGET_BYTES = 600 * 1024 * 1024
BYTES_PER_PIXEL_IN_FLIGHT = 9  # RGB, plus a copy in conversion and the PNG encoder's rows


class _Budget:
    """A counting budget of bytes: wait until the cost fits, or run alone."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, cost: int):
        cost = max(0, int(cost))
        with self._cond:
            self._cond.wait_for(lambda: self.used == 0 or self.used + cost <= self.total)
            self.used += cost
        try:
            yield
        finally:
            with self._cond:
                self.used -= cost
                self._cond.notify_all()


DECODE_BUDGET = _Budget(DECODE_BUDGET_BYTES)


class UploadError(Exception):
    """An upload that cannot be used; the message says why and what is accepted."""


def sniff(data: bytes) -> str | None:
    """The format named by the file's first bytes, or None."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def load_upload(data: bytes, name: str = "the file", *, as_mask: bool = False) -> Image.Image:
    """A checked RGB image from uploaded bytes, or ``UploadError``.

    ``as_mask``: a painted region instead, mode L (white = may change). A picture with
    transparency is paint on a clear canvas, so its alpha is the region.
    """
    if not data:
        raise UploadError(f"{name} is empty. Send {ACCEPTED_TEXT}.")
    if len(data) > MAX_BYTES:
        raise UploadError(f"{name} is {len(data) / 2**20:.0f} MB; the limit is 30 MB. "
                          f"Send {ACCEPTED_TEXT}.")
    fmt = sniff(data)
    if fmt is None:
        raise UploadError(f"{name} is not a PNG, JPEG or WebP image (whatever its name says). "
                          f"Send {ACCEPTED_TEXT}.")
    if fmt == "JPEG":
        _check_jpeg_scan(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise UploadError(
                        f"{name} is {img.width}x{img.height} pixels, too large to edit. "
                        f"Send {ACCEPTED_TEXT}.")
                img.load()
                img = ImageOps.exif_transpose(img)
                if as_mask:
                    alpha = "A" in img.getbands() or "transparency" in img.info
                    out = img.convert("RGBA").getchannel("A") if alpha else img.convert("L")
                else:
                    out = to_rgb(img)
                out.info = {}
                return out
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"{name} is too large to edit. Send {ACCEPTED_TEXT}.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _damaged(name, fmt, e) from None


def _damaged(name: str, fmt: str, reason) -> UploadError:
    return UploadError(f"{name} looks like a {fmt} image but could not be read to the end "
                       f"(it may be truncated or damaged: {reason}). Send {ACCEPTED_TEXT}.")


def _check_jpeg_scan(data: bytes, name: str) -> None:
    """Refuse a JPEG whose scan data is cut short or corrupt.

    libjpeg only warns about it and Pillow paints the missing part grey, so a 3 KB file
    whose header claims 6000x6000 would become a grey 36 MP picture. libjpeg-turbo's
    strict mode (simplejpeg) turns those warnings into errors; decoding at 1/8 scale
    still reads every byte of the scan, in a few milliseconds and a few MB.
    """
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_width=1, min_height=1, strict=True)
    except (ValueError, RuntimeError) as e:
        if any(word in str(e).lower() for word in _JPEG_DAMAGE):
            raise _damaged(name, "JPEG", e) from None
        # Anything else (a colour space simplejpeg lacks, say) is Pillow's to judge.


def picture_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header alone (0, 0 when unreadable: the decode says why)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return 0, 0


@contextmanager
def decoding(data: bytes):
    """Hold the process-wide decode budget for this file's pixels while working on them.

    On the way out the memory the decode used goes back to the system (glibc keeps
    freed large blocks in its arenas otherwise).
    """
    width, height = picture_size(data)
    try:
        with DECODE_BUDGET.hold(width * height * BYTES_PER_PIXEL_IN_FLIGHT):
            yield
    finally:
        give_back_memory()


_LIBC = None


def give_back_memory() -> None:
    """Ask glibc to return freed heap memory to the system (no-op elsewhere)."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    trim = getattr(_LIBC, "malloc_trim", None) if _LIBC else None
    if trim is not None:
        trim(0)
