"""The speed and memory levers applied to a loaded pipeline, and memory housekeeping.

Owns what is done to torch modules after loading: the attention backend (picked by
hardware when asked for ``auto``), fp8 (real fp8 matmuls through torchao on Ada and
Hopper cards, else fp8 storage with bf16 compute), step caching from diffusers'
hooks, regional compilation of the repeated transformer blocks, and measuring and
freeing GPU memory. Which profile to use is ``pipelines.profiles``' business; loading
and running are ``pipelines.qwen``'s. Knows nothing of requests or the chat.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
from typing import Optional

from .base import BackendUnavailable

log = logging.getLogger(__name__)

# Attention backends ``auto`` may pick, best first, with the package each needs and
# the lowest compute capability it runs on. All are exact (no quantized attention):
# sage is faster still but quantizes Q and K, so it is only used when asked for.
_AUTO_ATTENTION = (
    ("_flash_3", "flash_attn_interface", (9, 0)),  # FlashAttention 3, Hopper
    ("flash", "flash_attn", (8, 0)),  # FlashAttention 2, Ampere and later
)
_APPROXIMATE = ("sage",)
FP8_MATMUL_CAPABILITY = (8, 9)  # Ada and Hopper have fp8 tensor cores
CACHE_SETTINGS = {
    # Skips the remaining blocks when the first block's output barely changed.
    "first-block": ("FirstBlockCacheConfig", {"threshold": 0.05}),
    # Predicts block outputs from earlier steps for a few steps at a time.
    "taylorseer": ("TaylorSeerCacheConfig", {"cache_interval": 5, "disable_cache_before_step": 10}),
}


def is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def capability(device) -> Optional[tuple]:
    if not is_cuda(device):
        return None
    import torch

    return tuple(torch.cuda.get_device_capability(torch.device(device)))


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# Packages a profile cannot run without (fp8 falls back to fp8 storage without torchao).
PROFILE_PACKAGES = {"nf4": ("bitsandbytes",)}


def missing_packages(profile: str) -> list[str]:
    return [p for p in PROFILE_PACKAGES.get(profile, ()) if not installed(p)]


def usable_profiles() -> list[str]:
    """The memory profiles whose packages are installed here."""
    from .profiles import PROFILES

    return [p for p in PROFILES if not missing_packages(p)]


def available_attention(device) -> list[str]:
    """Attention backends this machine can run, best first (``native`` always)."""
    cap = capability(device)
    found = []
    if cap is not None:
        found = [name for name, module, need in _AUTO_ATTENTION if installed(module) and cap >= need]
        if installed("sageattention"):
            found.append("sage")
    return found + ["native"]


def pick_attention(setting: Optional[str], device) -> Optional[str]:
    """``auto`` -> the best exact backend installed here; None keeps diffusers' default."""
    if setting != "auto":
        return setting
    best = next(name for name in available_attention(device) if name not in _APPROXIMATE)
    return None if best == "native" else best


def set_attention(transformer, name: Optional[str]) -> None:
    if not name:
        return
    try:
        transformer.set_attention_backend(name)
    except (ValueError, ImportError, RuntimeError) as exc:
        raise BackendUnavailable(f"Attention backend {name!r} cannot be used here: {exc}") from None


def fp8_matmuls_available(device) -> bool:
    cap = capability(device)
    return cap is not None and cap >= FP8_MATMUL_CAPABILITY and installed("torchao")


def quantize_fp8(transformer) -> None:
    """Real fp8 matmuls: fp8 weights and per-row dynamically scaled fp8 activations."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))


def fp8_storage(transformer, compute_dtype) -> None:
    """Weights stored in fp8 and upcast layer by layer: half the memory, bf16 compute."""
    import torch

    transformer.enable_layerwise_casting(
        storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype
    )


def apply_step_cache(transformer, kind: Optional[str]) -> None:
    if not kind or kind == "off":
        return
    import diffusers

    name, options = CACHE_SETTINGS[kind]
    transformer.enable_cache(getattr(diffusers, name)(**options))


def compile_blocks(transformer) -> None:
    """Compile the one repeated transformer block, not the whole model: a minute of
    warm-up instead of ten, and the same speed. ``dynamic`` avoids a recompile for
    every new picture size."""
    transformer.compile_repeated_blocks(fullgraph=True, dynamic=True)


def free_memory(device) -> None:
    """Give back what dropped objects held: Python garbage, then the CUDA cache."""
    gc.collect()
    if is_cuda(device):
        import torch

        torch.cuda.empty_cache()


def gpu_memory(device) -> Optional[tuple]:
    """(free, total) bytes on ``device``, or None off CUDA."""
    if not is_cuda(device):
        return None
    import torch

    free, total = torch.cuda.mem_get_info(torch.device(device))
    return int(free), int(total)


def host_available() -> Optional[int]:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with accelerate
        return None
    return int(psutil.virtual_memory().available)
