"""Content-addressed blob store on a local folder.

Owns the bytes of every image: the key is the sha256 of the stored bytes, files are
sharded by the first two hex digits, writes are temp file + fsync + ``os.replace`` +
directory fsync, and every read is verified against its key. Knows nothing of
conversations or databases: a blob is written before any row names it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from .errors import BlobCorrupted, NotFound

_KEY = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise NotFound(f"There is no stored file {key!r}.")
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its key; storing the same bytes again is a no-op."""
        key = hashlib.sha256(data).hexdigest()
        final = self.path(key)
        if final.exists() and self._matches(final, key):
            return key
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(final.parent)
        return key

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``, verified; a damaged file raises BlobCorrupted."""
        p = self.path(key)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise BlobCorrupted(
                f"The image file {key[:12]}... is missing from the blob folder {self.root}."
            ) from None
        if hashlib.sha256(data).hexdigest() != key:
            raise BlobCorrupted(
                f"The image file {key[:12]}... was changed or damaged on disk "
                f"({p}); it will not be used. Restore it from a backup."
            )
        return data

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self.path(key).unlink()

    def keys(self) -> set[str]:
        return {p.name for p in self.root.glob("??/*") if _KEY.match(p.name)}

    @staticmethod
    def _matches(path: Path, key: str) -> bool:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest() == key


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

