"""The backend protocol: requests, results, errors and the progress/cancel contract.

Owns the plain-data boundary between the chat and any image backend. Knows nothing
about torch, diffusers, HTTP or chainlit; backends import this, never the reverse.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, runtime_checkable

from PIL import Image

# Pictures per edit are a per-model capability (``Capabilities.max_input_images``,
# ``pipelines.max_pictures``): 3 is Edit Plus's and the default where the model is
# unknown; a request itself may carry up to the most any model takes (Qwen-Image-2.1).
MAX_INPUT_IMAGES = 3
MOST_INPUT_IMAGES = 10

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
    # Community LoRAs for this job: ((name, scale or None for its default), ...).
    loras: tuple = ()

    def __post_init__(self) -> None:
        _check_prompt(self.prompt)
        _check_options(self)
        object.__setattr__(self, "loras", _lora_selection(self.loras))


@dataclass(frozen=True)
class EditRequest:
    """Instruction edit of ``images[0]`` (Picture 1); the rest are references.

    How many pictures one edit takes is the backend's ``capabilities.max_input_images``
    (3 for Edit Plus, 10 for Qwen-Image-2.1), which it checks; the request only refuses
    more than any model takes.
    """

    prompt: str
    images: tuple = ()
    seed: Optional[int] = None
    steps: Optional[int] = None
    true_cfg_scale: Optional[float] = None
    negative_prompt: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    # Community LoRAs for this job: ((name, scale or None for its default), ...).
    loras: tuple = ()

    def __post_init__(self) -> None:
        _check_prompt(self.prompt)
        images = tuple(self.images or ())
        if not images:
            raise BadRequest("An edit needs an image: upload a photo or generate one first.")
        if len(images) > MOST_INPUT_IMAGES:
            raise BadRequest(
                f"An edit takes at most {MOST_INPUT_IMAGES} images (the image and "
                f"{MOST_INPUT_IMAGES - 1} references); this one had {len(images)}. "
                "Remove some and try again."
            )
        for img in images:
            if not isinstance(img, Image.Image):
                raise BadRequest("Edit images must be pictures (PIL images).")
        # Other colour modes are converted, never rejected: the model wants RGB.
        object.__setattr__(self, "images", tuple(to_rgb(img) for img in images))
        _check_options(self)
        object.__setattr__(self, "loras", _lora_selection(self.loras))


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


def _lora_selection(value: Any) -> tuple:
    """A job's LoRAs as ((name, scale or None), ...): from names, (name, scale) pairs
    or a {name: scale} dict. None as the scale means the adapter's configured one."""
    if not value:
        return ()
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str):
        items = [value]
    elif isinstance(value, (tuple, list)):
        items = list(value)
    else:
        raise BadRequest(f"Choose LoRAs as a list of names or (name, scale) pairs, not {value!r}.")
    out = []
    for item in items:
        name, scale = None, None
        if isinstance(item, str):
            name = item
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            name, scale = item
        if not isinstance(name, str) or not name:
            raise BadRequest(f"A LoRA is chosen by name, or as (name, scale); not {item!r}.")
        if scale is not None:
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale != scale \
                    or abs(scale) == float("inf"):
                raise BadRequest(f"The LoRA {name!r} needs a finite number as its scale, not {scale!r}.")
            scale = float(scale)
        if name in (n for n, _ in out):
            raise BadRequest(f"The LoRA {name!r} is chosen twice.")
        out.append((name, scale))
    return tuple(out)
