"""Work a pipeline need not repeat: prompt embeddings and VAE latents of inputs.

Owns two small caches wrapped around a loaded diffusers Qwen edit pipeline:
- ``encode_prompt``: the text encoder's output for (prompt, condition images). The
  variations of one request, and the " " negative prompt of every edit of one
  picture, are encoded once.
- ``_encode_vae_image``: Picture 1's latents when the same picture is edited again
  (the chat edits its head over and over). The encode is deterministic
  (``sample_mode="argmax"``), so reuse gives the very same output.

Keys are content hashes of what goes in (text, pixels, sizes, dtype, device), never
object identities, so a stale entry cannot be served. Knows nothing of requests,
profiles or the chat.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable

PROMPT_ENTRIES = 8
LATENT_ENTRIES = 8


class LRU:
    """A tiny thread-safe least-recently-used map with hit and miss counts."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key, make: Callable[[], Any]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        value = make()
        with self._lock:
            self.misses += 1
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def install(pipe) -> dict:
    """Wrap ``pipe``'s prompt and VAE encoders with caches; returns them by name."""
    caches = {"prompt": LRU(PROMPT_ENTRIES), "latents": LRU(LATENT_ENTRIES)}
    _wrap_encode_prompt(pipe, caches["prompt"])
    _wrap_encode_vae(pipe, caches["latents"])
    return caches


def _wrap_encode_prompt(pipe, cache: LRU) -> None:
    original = pipe.encode_prompt

    # The pipelines call it with keywords only; anything else passes straight through.
    def encode_prompt(*args, **kwargs):
        if args or kwargs.get("prompt") is None or kwargs.get("prompt_embeds") is not None:
            return original(*args, **kwargs)
        key = tuple(sorted((name, _key(value)) for name, value in kwargs.items()))
        return cache.get_or_make(key, lambda: original(**kwargs))

    pipe.encode_prompt = encode_prompt


def _wrap_encode_vae(pipe, cache: LRU) -> None:
    if not hasattr(pipe, "_encode_vae_image"):
        return
    original = pipe._encode_vae_image

    def _encode_vae_image(image, generator):
        if isinstance(generator, list):  # per-sample generators: not worth a key
            return original(image=image, generator=generator)
        key = ("latents", tuple(image.shape), str(image.dtype), str(image.device), _tensor_key(image))
        return cache.get_or_make(key, lambda: original(image=image, generator=generator))

    pipe._encode_vae_image = _encode_vae_image


def _key(value):
    """A hashable stand-in for an argument: text as is, pictures by their pixels."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if hasattr(value, "tobytes") and hasattr(value, "mode"):  # a PIL image
        return ("image", value.mode, value.size, hashlib.sha256(value.tobytes()).hexdigest())
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a tensor
        return ("tensor", tuple(value.shape), str(value.dtype), str(value.device), _tensor_key(value))
    return str(value)  # devices and dtypes


def _tensor_key(tensor) -> str:
    # Raw bytes of any dtype (bf16 and fp8 have no numpy twin).
    data = tensor.detach().contiguous().reshape(-1).cpu()
    return hashlib.sha256(data.view(_uint8()).numpy().tobytes()).hexdigest()


def _uint8():
    import torch

    return torch.uint8
