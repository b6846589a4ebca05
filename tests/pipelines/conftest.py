"""Fixtures for the pipelines tests: one tiny model, built once per session."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A freshly built tiny model; ``QEC_TINY_MODEL_DIR`` points at it for the session."""
    from pipelines.tiny_model import ensure_tiny_model

    path = tmp_path_factory.mktemp("tiny-cache") / "tiny-model"
    old = os.environ.get("QEC_TINY_MODEL_DIR")
    os.environ["QEC_TINY_MODEL_DIR"] = str(path)
    ensure_tiny_model(path)
    yield path
    if old is None:
        os.environ.pop("QEC_TINY_MODEL_DIR", None)
    else:
        os.environ["QEC_TINY_MODEL_DIR"] = old


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """One loaded tiny backend shared by tests that only call it."""
    from pipelines import get_backend

    backend = get_backend("tiny")
    backend.load()
    return backend


def _picture(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


@pytest.fixture(scope="session")
def make_picture():
    """``make_picture(width, height, seed=0, mode="RGB")``: random pixels, reproducible."""
    return _picture


@pytest.fixture(scope="session")
def photo():
    """A 1024x768 upload, the size the performance target names."""
    return _picture(1024, 768, seed=1)
