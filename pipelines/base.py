"""The backend protocol: requests, results, errors and the progress/cancel contract.

Owns the plain-data boundary between the chat and any image backend. Knows nothing
about torch, diffusers, HTTP or chainlit; backends import this, never the reverse.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, runtime_checkable

from PIL import Image

MAX_INPUT_IMAGES = 3

# progress(step, total, preview): preview is a small PIL image or None.
ProgressFn = Callable[[int, int, Optional[Image.Image]], None]


class BackendError(Exception):
    """A failure whose message can be shown to a user as is."""


class BadRequest(BackendError):
    """The request itself is wrong (no image, too many images, empty prompt...)."""


class Cancelled(BackendError):
    """The run was cancelled; the half-finished image was thrown away."""

    def __init__(self, message: str = "Stopped. Nothing was saved for this run."):
        super().__init__(message)


class BackendUnavailable(BackendError):
    """The backend cannot run: missing weights, unreachable server, bad settings."""


@dataclass(frozen=True)
class GenerateRequest:
    """Text to image. ``None`` means the model's recommended default."""

    prompt: str
    seed: Optional[int] = None
    steps: Optional[int] = None
    true_cfg_scale: Optional[float] = None
    negative_prompt: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None

    def __post_init__(self) -> None:
        _check_prompt(self.prompt)
        _check_options(self)


@dataclass(frozen=True)
class EditRequest:
    """Instruction edit of ``images[0]`` (Picture 1) with up to two references."""

    prompt: str
    images: tuple = ()
    seed: Optional[int] = None
    steps: Optional[int] = None
    true_cfg_scale: Optional[float] = None
    negative_prompt: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None

    def __post_init__(self) -> None:
        _check_prompt(self.prompt)
        images = tuple(self.images or ())
        if not images:
            raise BadRequest("An edit needs an image: upload a photo or generate one first.")
        if len(images) > MAX_INPUT_IMAGES:
            raise BadRequest(
                f"An edit takes at most {MAX_INPUT_IMAGES} images (the image and two "
                f"references); this one had {len(images)}. Remove some and try again."
            )
        for img in images:
            if not isinstance(img, Image.Image):
                raise BadRequest("Edit images must be pictures (PIL images).")
        # Other colour modes are converted, never rejected: the model wants RGB.
        object.__setattr__(self, "images", tuple(to_rgb(img) for img in images))
        _check_options(self)


@dataclass(frozen=True)
class Capabilities:
    max_input_images: int = MAX_INPUT_IMAGES
    text_to_image: bool = True


@dataclass(frozen=True)
class Result:
    """One produced image and everything needed to reproduce it."""

    image: Image.Image
    seed: int
    steps: int
    elapsed_s: float
    info: dict = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def generate(
        self,
        request: GenerateRequest,
        *,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Result: ...

    def edit(
        self,
        request: EditRequest,
        *,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Result: ...


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of ``img``; transparent areas become white, not black."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _check_prompt(prompt: Any) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("The prompt is empty: say what to make or change.")


def _check_options(req: Any) -> None:
    if req.steps is not None and req.steps < 2:
        raise BadRequest("Use at least 2 steps (1 step gives a broken image with this model).")
    if req.steps is not None and req.steps > 200:
        raise BadRequest("Use at most 200 steps.")
    if req.seed is not None and not (0 <= int(req.seed) < 2**63):
        raise BadRequest("The seed must be a whole number from 0 to 2^63-1.")
    for side in (req.width, req.height):
        if side is not None and not (16 <= side <= 4096):
            raise BadRequest("Width and height must be between 16 and 4096 pixels.")
    if req.true_cfg_scale is not None and req.true_cfg_scale < 0:
        raise BadRequest("Guidance (true_cfg_scale) cannot be negative.")
