"""Lightning LoRAs: which published LoRA fits which model, and how to name its file.

Owns the lookup table (model name -> lightx2v repo and weight file), recognising a
model's name from a hub id, a local folder or a Hugging Face cache snapshot path, and
the scheduler config the LoRAs were distilled with. Plain strings and dicts: knows
nothing of torch, diffusers objects or the chat.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from .base import BackendUnavailable

LIGHTNING_STEPS = (4, 8)

# The scheduler the Lightning LoRAs were distilled with (lightx2v model card):
# shift 3 everywhere and no terminal stretch.
LIGHTNING_SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 1.0986122886681098,  # math.log(3)
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": 1.0986122886681098,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": None,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}

# Exact model name (case-insensitive) -> (repo, weight file, subfolder). Exact, not a
# prefix: Qwen-Image-2512 is not Qwen-Image, and a LoRA made for one model quietly
# spoils the other's pictures.
LIGHTNING_LORAS = {
    "qwen-image-edit-2511": ("lightx2v/Qwen-Image-Edit-2511-Lightning",
                             "Qwen-Image-Edit-2511-Lightning-{n}steps-V1.0-bf16.safetensors", None),
    "qwen-image-edit-2509": ("lightx2v/Qwen-Image-Lightning",
                             "Qwen-Image-Edit-2509-Lightning-{n}steps-V1.0-bf16.safetensors",
                             "Qwen-Image-Edit-2509"),
    "qwen-image-edit": ("lightx2v/Qwen-Image-Lightning",
                        "Qwen-Image-Edit-Lightning-{n}steps-V1.0-bf16.safetensors", None),
    "qwen-image": ("lightx2v/Qwen-Image-Lightning",
                   "Qwen-Image-Lightning-{n}steps-V2.0-bf16.safetensors", None),
}

_CACHE_DIR = re.compile(r"^models--(?P<owner>[^/]+?)--(?P<name>.+)$")


def model_name(model: Optional[str]) -> str:
    """The bare model name of a hub id, a local folder or a cache snapshot path.

    ``Qwen/Qwen-Image-Edit-2511`` and
    ``~/.cache/huggingface/hub/models--Qwen--Qwen-Image-Edit-2511/snapshots/<sha>``
    both give ``Qwen-Image-Edit-2511``.
    """
    if not model:
        return ""
    parts = Path(str(model)).parts
    for i, part in enumerate(parts):
        match = _CACHE_DIR.match(part)
        if match and i + 1 < len(parts) and parts[i + 1] in ("snapshots", "blobs", "refs"):
            return match.group("name")
    return Path(str(model).rstrip("/")).name


def lightning_lora(model: Optional[str], steps: Optional[int], override: Optional[str]) -> Optional[str]:
    """The LoRA to load for ``steps``-step Lightning on ``model`` (None when off)."""
    if not steps:
        return None
    if override:
        return override
    entry = LIGHTNING_LORAS.get(model_name(model).lower())
    if entry is None:
        raise BackendUnavailable(
            f"No known Lightning LoRA for model {model!r} (known: Qwen-Image-Edit-2511, "
            "Qwen-Image-Edit-2509, Qwen-Image-Edit, Qwen-Image). Set lightning_lora to a "
            ".safetensors file or 'owner/repo/file.safetensors'."
        )
    repo, weight, subfolder = entry
    path = f"{subfolder}/{weight}" if subfolder else weight
    return f"{repo}/{path.format(n=steps)}"


def split_lora(lora: str):
    """'owner/repo[/sub]/file.safetensors' or a local path -> (source, weight, subfolder)."""
    path = Path(lora).expanduser()
    if path.is_file():
        return str(path.parent), path.name, None
    if path.is_dir():
        return str(path), None, None
    parts = lora.split("/")
    if len(parts) >= 3 and parts[-1].endswith(".safetensors"):
        subfolder = "/".join(parts[2:-1]) or None
        return "/".join(parts[:2]), parts[-1], subfolder
    return lora, None, None
