"""Image backends behind one narrow protocol (see ``pipelines.base``).

Owns the registry of backend names, and what a backend and model allow before
anything loads (``max_pictures``, ``licence``). Knows nothing of chainlit or the edit
history: backends take and return PIL images and plain dataclasses.
"""

from __future__ import annotations

import importlib
import os
from typing import Optional

from .base import (
    MAX_INPUT_IMAGES,
    Backend,
    BackendError,
    BackendUnavailable,
    BadRequest,
    Cancelled,
    Capabilities,
    EditRequest,
    GenerateRequest,
    Result,
)

# name -> "module:Class"; imported on first use so `tiny` never loads `openai`, etc.
REGISTRY = {
    "tiny": "pipelines.tiny:TinyBackend",
    "qwen": "pipelines.qwen:QwenBackend",
    "remote": "pipelines.remote:RemoteBackend",
}


def backend_names() -> list[str]:
    return sorted(REGISTRY)


def _check_name(name: str) -> None:
    if name not in REGISTRY:
        raise BackendUnavailable(
            f"Unknown backend {name!r}. Known backends: {', '.join(backend_names())}."
        )


def get_backend(name: str, **settings) -> Backend:
    """Build the backend called ``name`` with its settings."""
    _check_name(name)
    module_name, _, class_name = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**settings)


def _model_of(backend_name: str, model: Optional[str]) -> Optional[str]:
    """The model a backend built with this ``model`` setting runs (None: unknown)."""
    _check_name(backend_name)
    if backend_name == "remote":
        return None  # the server's; not known here
    if backend_name == "tiny":
        return None if model in (None, "", "tiny") else model  # None: tiny Edit Plus
    from .qwen import DEFAULT_MODEL

    return model or os.environ.get("QEC_MODEL") or DEFAULT_MODEL


def max_pictures(backend_name: str, model: Optional[str] = None) -> int:
    """How many pictures one edit takes (the image and its references) on
    ``backend_name`` with its ``model`` setting (None: the backend's default), without
    loading anything: 3 for Qwen-Image-Edit-2509/2511, 1 for the original
    Qwen-Image-Edit, 10 for Qwen-Image-2.1 (``Qwen/Qwen-Image-2.1``, ``tiny-2.1``).
    A model known neither by its files nor its name, and a remote server, get 3.
    The loaded backend's ``capabilities.max_input_images`` is the same number."""
    from .loading import pictures_per_edit

    found = _model_of(backend_name, model)
    return pictures_per_edit(found) if found else MAX_INPUT_IMAGES


def licence(backend_name: str, model: Optional[str] = None) -> Optional[str]:
    """The licence notice to show when this backend and model are chosen, or None
    when the weights are Apache-2.0 (``pipelines.loading.licence``). Loads nothing."""
    from .loading import licence as model_licence

    found = _model_of(backend_name, model)
    return model_licence(found) if found else None


def default_backend_name() -> str:
    """`qwen` when a CUDA GPU is present, else the offline `tiny` model."""
    try:
        import torch

        return "qwen" if torch.cuda.is_available() else "tiny"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "tiny"


__all__ = [
    "Backend", "BackendError", "BackendUnavailable", "BadRequest", "Cancelled",
    "Capabilities", "EditRequest", "GenerateRequest", "Result",
    "REGISTRY", "backend_names", "get_backend", "default_backend_name",
    "max_pictures", "licence",
]
