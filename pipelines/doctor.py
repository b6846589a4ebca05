"""`qwen-edit-chat doctor`: what this machine can run, and why ``auto`` picks what it picks.

Owns gathering the facts (the GPU and its free memory, host RAM, library versions,
attention backends, whether the weights are in the cache, the weights' licence where
it is not Apache-2.0) and printing them next to ``pipelines.profiles``' estimate of
every memory profile. ``--gpu-memory N`` asks the same question for a card of N GiB,
so anyone can see what a 24 GB card would get. Knows nothing of the chat; it loads
no model.
"""

from __future__ import annotations

import argparse
import os
from importlib import metadata
from typing import Optional

from . import levers, profiles
from .lightning import model_name

# What a CUDA context, the display and the driver keep of a card's memory.
CONTEXT_RESERVE = 0.5 * profiles.GIB
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "peft", "bitsandbytes", "torchao")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "doctor", help="say which memory profile this machine can run, and why",
        description="Show the GPU, its free memory, library versions, attention backends, "
                    "each memory profile's estimated peak and the one 'auto' picks.")
    p.add_argument("--gpu-memory", type=float, metavar="GB",
                   help="pretend the GPU has this many GiB (e.g. 24, 48, 80, 141)")
    p.add_argument("--model", help="model id or folder (default QEC_MODEL or Qwen/Qwen-Image-Edit-2511)")


def run(args: argparse.Namespace) -> int:
    print("\n".join(report(gpu_memory_gib=args.gpu_memory, model=args.model)))
    return 0


def report(gpu_memory_gib: Optional[float] = None, model: Optional[str] = None) -> list[str]:
    from .loading import licence, local_folder
    from .qwen import DEFAULT_MODEL, DEFAULT_T2I_MODEL, PLANNED_WORK

    model = model or os.environ.get("QEC_MODEL") or DEFAULT_MODEL
    lines = []
    free_gpu, gpu_line = _gpu(gpu_memory_gib)
    host = levers.host_available()
    lines.append(gpu_line)
    lines.append(f"Host RAM: {profiles.gib(host)} available")
    lines.append("Versions: " + ", ".join(f"{p} {_version(p) or '(not installed)'}" for p in PACKAGES))
    device = "cuda" if free_gpu is not None and gpu_memory_gib is None else "cpu"
    attention = levers.available_attention(device)
    hint = " (install flash-attn for FlashAttention)" if attention == ["native"] and free_gpu else ""
    lines.append("Attention backends: " + ", ".join(attention) + hint)

    folder = local_folder(model)
    sizes = profiles.model_bytes(folder)
    lines.append(f"Model: {model}: " + (f"weights at {folder}" if folder else
                 f"not on this machine (huggingface-cli download {model})"))
    notice = licence(model)
    if notice:
        lines.append(f"Licence: {notice}")
    lines.append(f"Sizes ({sizes.source}): transformer {profiles.gib(sizes.transformer)}, "
                 f"text encoder {profiles.gib(sizes.text_encoder)}, VAE {profiles.gib(sizes.vae)}")
    t2i = profiles.model_bytes(local_folder(DEFAULT_T2I_MODEL)).transformer
    work = profiles.Workload(PLANNED_WORK.output_mp, PLANNED_WORK.input_mp, t2i)

    lines.append("")
    lines.append(f"Estimated peak for a {PLANNED_WORK.output_mp:g} MP edit of "
                 f"{PLANNED_WORK.input_mp:g} pictures (estimates, not measurements):")
    lines.append(f"  {'profile':<14} {'GPU peak':>9} {'host RAM':>9}  fits  cost")
    for est in profiles.estimates(sizes, profiles.Workload(work.output_mp, work.input_mp)):
        fits = "-" if free_gpu is None else ("yes" if est.fits(free_gpu, host) else "no")
        lines.append(f"  {est.profile:<14} {profiles.gib(est.gpu_peak):>9} "
                     f"{profiles.gib(est.host_ram):>9}  {fits:<4}  {est.cost}")
    lines.append("")
    simulated = gpu_memory_gib is not None
    allowed = profiles.PROFILES if simulated else levers.usable_profiles()
    choice = profiles.choose(free_gpu, host, sizes, work, cuda=free_gpu is not None, allowed=allowed)
    if choice.profile is None:
        lines.append(f"auto picks: nothing fits. {choice.reason}.")
        return lines
    lines.append(f"auto picks: {choice.profile}. Why: {choice.reason}.")
    missing = levers.missing_packages(choice.profile)
    if missing:
        lines.append(f"  {choice.profile} needs {', '.join(missing)}: pip install {' '.join(missing)}")
    if free_gpu is not None:
        lines.append(
            f"Text-to-image: {choice.t2i_mode}"
            + (f" ({model_name(DEFAULT_T2I_MODEL)} fits beside the edit model)"
               if choice.t2i_mode == "pipeline" else
               " (a second 20B transformer does not fit: the edit model paints on a blank canvas)"))
    return lines


def _gpu(gpu_memory_gib: Optional[float]):
    if gpu_memory_gib is not None:
        total = int(gpu_memory_gib * profiles.GIB)
        free = max(total - int(CONTEXT_RESERVE), 0)
        return free, (f"GPU: simulated {gpu_memory_gib:g} GiB card (--gpu-memory), "
                      f"{profiles.gib(free)} free after the CUDA context")
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None, "GPU: torch is not installed"
    if not torch.cuda.is_available():
        return None, ("GPU: none (torch.cuda.is_available() is False): the app runs the tiny "
                      "model on the CPU; try --gpu-memory 24 to see what a card would run")
    free, total = levers.gpu_memory("cuda")
    name = torch.cuda.get_device_name(0)
    cap = ".".join(map(str, levers.capability("cuda")))
    return free, (f"GPU: {name} (compute {cap}), {profiles.gib(total)} in all, "
                  f"{profiles.gib(free)} free")


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
