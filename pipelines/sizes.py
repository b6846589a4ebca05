"""Pure size arithmetic for the Qwen image pipelines: what goes in, what comes out.

Owns the numbers: the VAE and vision-encoder sizes the edit pipeline will resize each
input to, the size the model generates at, and the size handed back to the user.
Knows nothing about torch, diffusers objects or requests; plain ints and tuples only.

Why it matters: the edit model sees Picture 1 at its VAE size and paints the output
on a latent grid of the size we ask for. If the two grids differ in shape, the
picture shifts and zooms a little on every turn. So the output is generated on
exactly Picture 1's VAE grid, then resized back to Picture 1's own size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

Size = Tuple[int, int]  # (width, height)

VAE_AREA = 1024 * 1024  # the edit-plus pipeline's VAE_IMAGE_SIZE
CONDITION_AREA = 384 * 384  # its CONDITION_IMAGE_SIZE (vision encoder input)
OUTPUT_MULTIPLE = 16  # VAE 8x times the transformer's 2x2 patches
VAE_MULTIPLE = 32
MAX_ASPECT = 100  # the vision encoder fails past 1:200; keep well inside it

# Past about 2 MP Qwen-Image's pictures get worse and memory climbs steeply: larger
# requests are generated at this area and resized to the size asked for.
MAX_OUTPUT_AREA = 2048 * 1024

# Qwen-Image's recommended text-to-image size (its model card's 1:1 entry).
T2I_DEFAULT_SIZE: Size = (1328, 1328)


@dataclass(frozen=True)
class EditSizes:
    inputs: Tuple[Size, ...]  # as given
    vae: Tuple[Size, ...]  # what the pipeline resizes each input to for the VAE
    condition: Tuple[Size, ...]  # ... and for the vision encoder
    generate: Size  # width/height passed to the pipeline
    output: Size  # size of the returned image


@dataclass(frozen=True)
class GenerateSizes:
    generate: Size
    output: Size


def pipeline_size(width: int, height: int, area: int) -> Size:
    """The size the edit-plus pipeline resizes a ``width`` x ``height`` input to.

    Mirrors diffusers' ``calculate_dimensions``: the input's aspect ratio at about
    ``area`` pixels, each side rounded to a multiple of 32.
    """
    ratio = width / height
    w = math.sqrt(area * ratio)
    h = w / ratio
    return round(w / VAE_MULTIPLE) * VAE_MULTIPLE, round(h / VAE_MULTIPLE) * VAE_MULTIPLE


def fit_area(width: int, height: int, area: int, multiple: int = OUTPUT_MULTIPLE) -> Size:
    """``width`` x ``height``'s aspect at about ``area`` pixels, sides multiples of ``multiple``."""
    ratio = width / height
    w = math.sqrt(area * ratio)
    h = w / ratio
    return _snap(w, multiple), _snap(h, multiple)


def snap(width: int, height: int, multiple: int = OUTPUT_MULTIPLE) -> Size:
    """Nearest multiples of ``multiple`` (never below one ``multiple``)."""
    return _snap(width, multiple), _snap(height, multiple)


def cap_area(width: int, height: int, max_area: Optional[int]) -> Size:
    """Shrink to at most ``max_area`` pixels keeping the aspect (no-op when it fits)."""
    if max_area is None or width * height <= max_area:
        return snap(width, height)
    return fit_area(width, height, max_area)


def check_aspect(width: int, height: int) -> None:
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ValueError(
            f"The image is {width}x{height}: too long and thin for the model "
            f"(at most 1:{MAX_ASPECT}). Crop it and try again."
        )


def plan_edit(
    inputs: Sequence[Size],
    width: Optional[int] = None,
    height: Optional[int] = None,
    *,
    vae_area: int = VAE_AREA,
    condition_area: int = CONDITION_AREA,
    output_area: Optional[int] = None,
    max_output_area: Optional[int] = None,
) -> EditSizes:
    """Sizes for an edit of ``inputs`` (Picture 1 first).

    Without ``width``/``height`` the result has Picture 1's size and is generated on
    Picture 1's VAE grid (or at ``output_area`` pixels of its aspect, if given). With
    one of them, the other follows Picture 1's aspect; with both, the result has
    exactly that size.
    """
    if not inputs:
        raise ValueError("An edit needs at least one image.")
    for w, h in inputs:
        check_aspect(w, h)
    vae = tuple(pipeline_size(w, h, vae_area) for w, h in inputs)
    condition = tuple(pipeline_size(w, h, condition_area) for w, h in inputs)
    first_w, first_h = inputs[0]
    if width is None and height is None:
        output = (first_w, first_h)
        if output_area is None or output_area == vae_area:
            generate = vae[0]  # already bounded by vae_area; capping would break the grid match
        else:
            generate = cap_area(*fit_area(first_w, first_h, output_area), max_output_area)
    else:
        output = _complete(width, height, first_w / first_h)
        generate = cap_area(*output, max_output_area)
    return EditSizes(tuple(inputs), vae, condition, generate, output)


def plan_generate(
    width: Optional[int] = None,
    height: Optional[int] = None,
    *,
    default: Size = T2I_DEFAULT_SIZE,
    max_output_area: Optional[int] = None,
) -> GenerateSizes:
    """Sizes for text-to-image: ``default`` unless asked; one side keeps its aspect."""
    if width is None and height is None:
        output = default
    else:
        output = _complete(width, height, default[0] / default[1])
    check_aspect(*output)
    return GenerateSizes(cap_area(*output, max_output_area), output)


def _complete(width: Optional[int], height: Optional[int], ratio: float) -> Size:
    if width is None:
        width = max(1, round(height * ratio))
    if height is None:
        height = max(1, round(width / ratio))
    return int(width), int(height)


def _snap(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)
