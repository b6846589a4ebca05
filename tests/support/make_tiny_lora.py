"""Tiny LoRA files for the tiny Qwen-Image transformer, made offline.

Random low-rank weights under the key names community Qwen-Image LoRAs are published
with, in the four spellings diffusers 0.42 reads for ``QwenImageLoraLoaderMixin``:

- ``diffusers``: ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight`` / ``lora_B``
  (diffusers' and peft's training scripts, ai-toolkit): loaded as is;
- ``comfy``: ``diffusion_model.transformer_blocks.0.attn.to_q.lora_A.weight`` with an
  optional ``.alpha`` per layer (musubi-tuner, ComfyUI): the prefix is stripped, alpha
  folded into the weights;
- ``kohya``: ``lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight`` /
  ``lora_up`` / ``alpha``: underscores turned back into module paths;
- ``bare``: ``transformer_blocks.0.attn.to_q.lora_A.weight``, the transformer's own
  peft state dict; diffusers skips it (no ``transformer.`` prefix), ``pipelines.loras``
  adds the prefix.

Every style writes the same effective update, so the same ``seed`` gives the same
picture whatever the spelling. ``misfit`` makes files that must be refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import torch
from safetensors.torch import save_file

STYLES = ("diffusers", "comfy", "kohya", "bare")

# The linear layers community Qwen-Image LoRAs train, per transformer block.
LAYERS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2",
    "img_mod.1", "txt_mod.1",
)


def lora_weights(transformer, *, rank: int = 2, seed: int = 0, strength: float = 0.5,
                 layers: Iterable[str] = LAYERS, blocks: Optional[Iterable[int]] = None) -> dict:
    """{"transformer_blocks.<i>.<layer>": (A, B)}: random, shaped for ``transformer``."""
    gen = torch.Generator().manual_seed(seed)
    blocks = range(len(transformer.transformer_blocks)) if blocks is None else blocks
    out = {}
    for i in blocks:
        for layer in layers:
            path = f"transformer_blocks.{i}.{layer}"
            module = transformer.get_submodule(path)
            a = torch.randn(rank, module.in_features, generator=gen) * strength
            b = torch.randn(module.out_features, rank, generator=gen) * strength
            out[path] = (a, b)
    return out


def keyed(weights: dict, style: str = "diffusers", alpha: Optional[float] = None) -> dict:
    """``weights`` under ``style``'s key names. With ``alpha`` (comfy, kohya) the file
    stores A / (alpha / rank), so the update after diffusers folds alpha back is the same."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    tensors = {}
    for path, (a, b) in weights.items():
        rank = a.shape[0]
        stored_a = a / (alpha / rank) if alpha is not None else a
        if style == "kohya":
            stem = "lora_unet_" + path.replace(".", "_")
            tensors[f"{stem}.lora_down.weight"] = stored_a.contiguous()
            tensors[f"{stem}.lora_up.weight"] = b.contiguous()
            if alpha is not None:
                tensors[f"{stem}.alpha"] = torch.tensor(float(alpha))
            continue
        prefix = {"diffusers": "transformer.", "comfy": "diffusion_model.", "bare": ""}[style]
        tensors[f"{prefix}{path}.lora_A.weight"] = stored_a.contiguous()
        tensors[f"{prefix}{path}.lora_B.weight"] = b.contiguous()
        if alpha is not None:
            if style == "diffusers":
                raise ValueError("diffusers-style files keep alpha in metadata, not as a key")
            tensors[f"{prefix}{path}.alpha"] = torch.tensor(float(alpha))
    return tensors


def make_tiny_lora(path, transformer, *, style: str = "diffusers", rank: int = 2, seed: int = 0,
                   strength: float = 0.5, alpha: Optional[float] = None,
                   layers: Iterable[str] = LAYERS, blocks: Optional[Iterable[int]] = None) -> Path:
    """Write a tiny LoRA for ``transformer`` to ``path`` (a .safetensors file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = lora_weights(transformer, rank=rank, seed=seed, strength=strength,
                           layers=layers, blocks=blocks)
    save_file(keyed(weights, style, alpha), str(path))
    return path


def misfit(path, transformer, kind: str, *, rank: int = 2, seed: int = 0) -> Path:
    """A LoRA that must be refused: ``shapes`` (real key names, made for a model 16
    wider) or ``keys`` (another architecture's layer names, Flux's single blocks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    if kind == "shapes":
        for path_in_model, (a, b) in lora_weights(transformer, rank=rank, seed=seed).items():
            tensors[f"transformer.{path_in_model}.lora_A.weight"] = torch.randn(rank, a.shape[1] + 16, generator=gen)
            tensors[f"transformer.{path_in_model}.lora_B.weight"] = torch.randn(b.shape[0] + 16, rank, generator=gen)
    elif kind == "keys":
        for i in range(2):
            for layer in ("attn.to_q", "attn.to_k", "proj_mlp"):
                stem = f"transformer.single_transformer_blocks.{i}.{layer}"
                tensors[f"{stem}.lora_A.weight"] = torch.randn(rank, 32, generator=gen)
                tensors[f"{stem}.lora_B.weight"] = torch.randn(32, rank, generator=gen)
    else:
        raise ValueError("kind is 'shapes' or 'keys'")
    save_file(tensors, str(path))
    return path
