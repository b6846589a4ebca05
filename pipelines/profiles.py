"""Memory profiles: what each one costs in GPU and host memory, and the ``auto`` choice.

Owns plain arithmetic and tables only: the size of the model's parts (from weight
files when they are on disk, else the published sizes), the estimated peak of each
profile, the speed order, and the choice ``auto`` makes for a given amount of free
memory. ``pipelines.qwen`` (the backend), ``pipelines.doctor`` and ``bench/gpu.py``
all ask this module, so "why did it pick nf4 on my card" has one answer, here.

Knows nothing of torch or diffusers objects: sizes are bytes, memory is bytes, and
the caller measures free memory (``torch.cuda.mem_get_info``, ``psutil``).

The estimates are calibrated on the published Qwen-Image-Edit-2511 at 1024x1024
with one reference (``full`` peaks at about 57 GiB) and checked by ``bench/gpu.py``;
they are estimates, with a safety margin, not measurements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

GIB = 1024**3
PROFILES = ("full", "fp8", "model-offload", "nf4", "group-offload")
# Fastest first: ``auto`` takes the first that fits. fp8 runs real fp8 matmuls on
# Ada/Hopper (torchao) and otherwise stores weights in fp8 and computes in bf16;
# model-offload moves each part to the GPU once per call (about 53 GiB over PCIe);
# nf4 dequantizes every matmul; group-offload streams every layer every step.
SPEED_ORDER = PROFILES
CUDA_ONLY = ("model-offload", "group-offload", "nf4")
AUTO = "auto"

# Published parameter counts (bf16 on disk, 2 bytes each).
PUBLISHED_BYTES = {
    "transformer": 20_430_000_000 * 2,  # QwenImageTransformer2DModel, 60 layers
    "text_encoder": 8_290_000_000 * 2,  # Qwen2.5-VL-7B-Instruct with its vision tower
    "vae": 127_000_000 * 2,  # AutoencoderKLQwenImage
}
# Qwen2.5-VL-7B keeps its token embedding and lm_head (152064 x 3584 each) in bf16
# under nf4: bitsandbytes quantizes Linear layers only (lm_head is skipped).
_TEXT_UNQUANTIZED_BYTES = 2 * 152064 * 3584 * 2
NF4_RATIO = 0.28  # 4 bits plus absmax scales per 64 weights, against 16 bits
FP8_RATIO = 0.52  # 8 bits plus the norms, biases and embeddings kept in bf16

# What is in use besides the weights, calibrated on the published model: the CUDA
# context and workspaces, the transformer's activations, and the VAE decode, which
# grows with the output.
BASE_OVERHEAD = 1.0 * GIB
PER_OUTPUT_MP = 2.0 * GIB
PER_INPUT_MP = 0.3 * GIB
# Group offload keeps about two leaf groups on the GPU (one running, one arriving).
GROUP_OFFLOAD_RESIDENT = 1.0 * GIB
# Memory the caller should keep free beyond the estimate (fragmentation, other
# processes' growth, the display).
HEADROOM = 0.75 * GIB

COSTS = {
    "full": "everything on the GPU in bf16: fastest, exact",
    "fp8": "transformer in fp8: real fp8 matmuls on Ada/Hopper (torchao), else fp8 "
           "storage with bf16 compute; about half the transformer's memory, a slight "
           "loss of fine detail",
    "model-offload": "each part moves to the GPU when used: exact, but a few seconds "
                     "per call for the transfers, and the whole model in host RAM",
    "nf4": "transformer and text encoder in 4-bit (bitsandbytes): fits 24 GB cards; "
           "slower matmuls and a visible loss of detail",
    "group-offload": "layers stream from host RAM every step: runs on almost any card, "
                     "several times slower",
}


@dataclass(frozen=True)
class ModelBytes:
    """Size in bytes of each part at bf16, and where the figures came from."""

    transformer: int
    text_encoder: int
    vae: int
    source: str = "published sizes"

    @property
    def total(self) -> int:
        return self.transformer + self.text_encoder + self.vae


PUBLISHED = ModelBytes(**PUBLISHED_BYTES)


@dataclass(frozen=True)
class Workload:
    """What one call asks for: output megapixels and all inputs' megapixels."""

    output_mp: float = 1.0
    input_mp: float = 1.0
    # A second transformer for text-to-image (Qwen-Image) held beside the edit one.
    t2i_transformer: int = 0


@dataclass(frozen=True)
class Estimate:
    profile: str
    gpu_peak: int
    host_ram: int
    cost: str

    def fits(self, free_gpu: int, free_host: Optional[int] = None) -> bool:
        if self.gpu_peak + HEADROOM > free_gpu:
            return False
        return free_host is None or self.host_ram <= free_host


@dataclass(frozen=True)
class Choice:
    profile: Optional[str]
    reason: str
    estimates: tuple = field(default_factory=tuple)
    t2i_mode: str = "canvas"


def activations(work: Workload) -> int:
    return int(BASE_OVERHEAD + PER_OUTPUT_MP * work.output_mp + PER_INPUT_MP * work.input_mp)


def estimate(profile: str, model: ModelBytes = PUBLISHED, work: Workload = Workload()) -> Estimate:
    """Estimated GPU peak and host RAM of ``profile`` for one call of ``work``."""
    t, te, vae = model.transformer, model.text_encoder, model.vae
    extra_t = work.t2i_transformer
    act = activations(work)
    if profile == "full":
        gpu = t + extra_t + te + vae + act
        host = 0
    elif profile == "fp8":
        gpu = int((t + extra_t) * FP8_RATIO) + te + vae + act
        host = 0
    elif profile == "nf4":
        te_q = int(max(te - _TEXT_UNQUANTIZED_BYTES, 0) * NF4_RATIO) + min(te, _TEXT_UNQUANTIZED_BYTES)
        gpu = int((t + extra_t) * NF4_RATIO) + te_q + vae + act
        host = 0
    elif profile == "model-offload":
        # One part on the GPU at a time; everything waits in host RAM.
        gpu = max(t, te, vae) + act
        host = t + extra_t + te + vae
    elif profile == "group-offload":
        gpu = int(GROUP_OFFLOAD_RESIDENT) + act
        # Pinned on the fly (low_cpu_mem_usage): one copy, not two.
        host = t + extra_t + te + vae
    else:
        raise ValueError(f"Unknown memory profile {profile!r}. Choose one of: {', '.join(PROFILES)}.")
    return Estimate(profile, int(gpu), int(host), COSTS[profile])


def estimates(model: ModelBytes = PUBLISHED, work: Workload = Workload()) -> tuple:
    return tuple(estimate(p, model, work) for p in SPEED_ORDER)


def choose(
    free_gpu: Optional[int],
    free_host: Optional[int] = None,
    model: ModelBytes = PUBLISHED,
    work: Workload = Workload(),
    *,
    cuda: bool = True,
    allowed: Iterable[str] = PROFILES,
) -> Choice:
    """The fastest allowed profile whose estimated peak fits, and why.

    ``free_gpu`` is None (or ``cuda`` False) without a GPU: then only ``full`` runs, on
    the CPU. With ``work.t2i_transformer`` set, the text-to-image transformer joins
    the picture if it fits too (``t2i_mode`` "pipeline"), else text-to-image uses
    the edit model on a blank canvas.
    """
    allowed = [p for p in SPEED_ORDER if p in set(allowed)]
    if not cuda or free_gpu is None:
        return Choice("full", "no CUDA GPU: the model runs on the CPU in one piece", ())
    base = Workload(work.output_mp, work.input_mp, 0)
    table = tuple(estimate(p, model, base) for p in allowed)
    for est in table:
        if est.fits(free_gpu, free_host):
            t2i_mode = "canvas"
            if work.t2i_transformer and estimate(est.profile, model, work).fits(free_gpu, free_host):
                t2i_mode = "pipeline"
            return Choice(est.profile, _reason(est, table, free_gpu, free_host), table, t2i_mode)
    smallest = min(table, key=lambda e: e.gpu_peak) if table else None
    need = f"; the smallest, {smallest.profile}, needs about {gib(smallest.gpu_peak)}" if smallest else ""
    return Choice(None, f"no profile fits {gib(free_gpu)} of free GPU memory{need}", table)


def suggest(profile: str, free_gpu: Optional[int], free_host: Optional[int] = None,
            model: ModelBytes = PUBLISHED, work: Workload = Workload()) -> str:
    """One sentence for an out-of-memory message: which profile would fit instead."""
    later = [p for p in SPEED_ORDER if SPEED_ORDER.index(p) > SPEED_ORDER.index(profile)] \
        if profile in SPEED_ORDER else list(SPEED_ORDER)
    if free_gpu is None:
        return "Try a smaller image, or profile 'group-offload'."
    pick = choose(free_gpu, free_host, model, work, allowed=later)
    if pick.profile:
        est = estimate(pick.profile, model, work)
        return (f"Profile '{pick.profile}' would fit (about {gib(est.gpu_peak)} of the "
                f"{gib(free_gpu)} free): set QEC_PROFILE={pick.profile}, or QEC_PROFILE=auto.")
    return f"No profile fits {gib(free_gpu)} free; try a smaller image or free the GPU."


def _reason(pick: Estimate, table: tuple, free_gpu: int, free_host: Optional[int]) -> str:
    faster = [e for e in table if SPEED_ORDER.index(e.profile) < SPEED_ORDER.index(pick.profile)]
    why_not = []
    for e in faster:
        if e.gpu_peak + HEADROOM > free_gpu:
            why_not.append(f"{e.profile} needs about {gib(e.gpu_peak)}")
        else:
            why_not.append(f"{e.profile} needs {gib(e.host_ram)} of host RAM")
    text = f"{pick.profile}: about {gib(pick.gpu_peak)} of the {gib(free_gpu)} free"
    if why_not:
        text += " (" + "; ".join(why_not) + ")"
    return text


def gib(n: Optional[float]) -> str:
    return "?" if n is None else f"{n / GIB:.1f} GiB"


# ----- sizes of a model on disk ----------------------------------------------------------


def model_bytes(folder: Optional[Path]) -> ModelBytes:
    """Sizes from a model folder's weight files (or index files); published sizes else.

    Works on a local folder and on a Hugging Face cache snapshot folder. Parts that
    are missing fall back to the published size.
    """
    if folder is None or not Path(folder).is_dir():
        return PUBLISHED
    found = {part: _part_bytes(Path(folder) / part) for part in PUBLISHED_BYTES}
    if not any(found.values()):
        return PUBLISHED
    sizes = {part: found[part] or PUBLISHED_BYTES[part] for part in PUBLISHED_BYTES}
    return ModelBytes(**sizes, source=f"weight files in {folder}")


def _part_bytes(part: Path) -> int:
    if not part.is_dir():
        return 0
    for index in sorted(part.glob("*.safetensors.index.json")):
        try:
            total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
        except (OSError, ValueError):
            continue
        if total:
            return int(total)
    return sum(f.stat().st_size for f in part.glob("*.safetensors") if f.exists())
