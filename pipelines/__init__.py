"""Image backends behind one narrow protocol (see ``pipelines.base``).

Owns the registry of backend names. Knows nothing of chainlit or the edit history:
backends take and return PIL images and plain dataclasses.
"""

from __future__ import annotations

import importlib

from .base import (
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


def get_backend(name: str, **settings) -> Backend:
    """Build the backend called ``name`` with its settings."""
    if name not in REGISTRY:
        raise BackendUnavailable(
            f"Unknown backend {name!r}. Known backends: {', '.join(backend_names())}."
        )
    module_name, _, class_name = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**settings)


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
]
