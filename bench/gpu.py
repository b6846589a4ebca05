"""GPU benchmark: every memory profile and lever of the ``qwen`` backend, measured.

Owns measuring, on one CUDA card at 1024x1024 with one and two pictures: seconds per
step, seconds per edit, peak GPU memory and the ratio to the compute floor of the
plain diffusers call, of each memory profile and of each lever; whether a lever keeps
the picture identical (max abs pixel difference against a plain call with the same
seed); and whether the profile ``auto`` picks for a 24, 48 or 80 GB card runs within
that much memory. It prints a table and the goals as PASS/FAIL lines.

It decides nothing itself: the estimates and the ``auto`` choice are
``pipelines.profiles``', the levers are ``pipelines.levers``', and every edit but the
plain baseline runs through ``pipelines.qwen.QwenBackend`` (a subclass here only hands
it an already-built pipeline instead of loading one from a folder).

No download is needed: the transformer, text encoder and VAE are built from the
published Qwen-Image-Edit-2511 configs with random weights (time and memory do not
depend on the values); the tokenizer, processor and scheduler are the offline tiny
model's. So the figures are measured on random weights: the pictures are noise, the
prompts are tokenized by the tiny tokenizer (a few tokens more or less), and the
first-block cache, whose skips depend on the values, is not representative.
``--weights PATH`` loads a downloaded model folder instead.

Run, from the repository root:
  .venv/bin/python bench/gpu.py                  # one CUDA card: about 8 minutes on an H200
  .venv/bin/python bench/gpu.py --quick          # 10 steps a row, totals extrapolated to 40
  .venv/bin/python bench/gpu.py --weights PATH   # real weights from a model folder
  .venv/bin/python bench/gpu.py --smoke          # the same code on the CPU, tiny sizes, seconds
More: --steps N, --budget-s S, --peak-tflops T, --only WORD[,WORD], --json PATH. FAIL
goal lines leave the exit status 0; a row that crashes makes it 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines import levers, profiles  # noqa: E402
from pipelines.base import BackendError, Capabilities, EditRequest  # noqa: E402
from pipelines.qwen import (  # noqa: E402
    DEFAULT_MODEL, DEFAULT_NEGATIVE_PROMPT, PLANNED_WORK, TRUE_CFG_SCALE, QwenBackend,
)
from pipelines.tiny_model import SPECIAL_TOKENS, ensure_tiny_model  # noqa: E402

GIB = profiles.GIB
CARDS_GIB = (24, 48, 80)
CARD_STEPS = 2  # enough to reach the peak (the first step) and show the card runs
LIGHTNING_STEPS = 8
QUICK_STEPS = 10  # --quick, and the profile rows (their per-step time is steady)
SLOW_STEPS = 3  # group offload streams every layer every step: a few steps, extrapolated
SEED = 1234
PROMPTS = {
    1: "make the background darker and add rain",
    2: "put the hat from Picture 2 on the person in Picture 1",
    3: "put the hat from Picture 2 and the scarf from Picture 3 on the person in Picture 1",
}
# The goals (README, "GPUs"): one H200, 1024x1024, one picture.
GOAL_EDIT_S = 20.8
GOAL_LIGHTNING_S = 2.1
GOAL_SPEEDUP = 1.3
GOAL_CARD_GIB = 24
ISSUE_FLOP_PER_PASS = 1.64e14
ATTENTION_PACKAGES = {"flash": "flash_attn", "_flash_3": "flash_attn_interface", "sage": "sageattention"}
APPROXIMATE_ATTENTION = ("sage",)  # quantizes Q and K
# Profiles that build a pipeline of their own (full shares one with the lever rows).
OWN_BUILD = tuple(p for p in profiles.PROFILES if p != "full")


class Skip(Exception):
    """A row that cannot run here; the message says why."""


# ----- sizes and the compute floor --------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What to build: the real model's sizes, or the smoke test's tiny ones."""

    label: str
    transformer: dict  # QwenImageTransformer2DModel arguments
    text: dict  # Qwen2.5-VL text_config; vocab_size None: the tokenizer's size
    vision: dict  # Qwen2.5-VL vision_config
    vae: dict  # AutoencoderKLQwenImage arguments
    side: int  # pictures and output are side x side


REAL = Spec(
    label="Qwen-Image-Edit-2511 sizes",
    transformer=dict(zero_cond_t=True),  # diffusers' defaults are the real model's
    # Qwen2.5-VL-7B-Instruct (transformers' Qwen2_5_VLConfig() defaults are the 72B).
    text=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
              num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
              rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                                  "mrope_section": [16, 24, 24]}),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2),
    vae={},  # diffusers' defaults are the real model's
    side=1024,
)
SMOKE = Spec(
    label="smoke sizes",
    # Two blocks, not one: the first-block cache needs a first block and a rest.
    transformer=dict(num_layers=2, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=64,
                     axes_dims_rope=(4, 6, 6), zero_cond_t=True),
    text=dict(vocab_size=None, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]}),
    vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                fullatt_block_indexes=[1]),
    vae=dict(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
             temperal_downsample=[False, True, True]),
    side=256,
)


def flop_per_pass(config, image_tokens: float, text_tokens: float) -> float:
    """Matmul FLOPs of one transformer pass (2 FLOPs per multiply-add).

    With D = heads x head_dim, L = layers, I image tokens (the output's and every
    picture's, (H/16)*(W/16) each), T text tokens and S = I + T:

        blocks      2 L (12 D^2 S + 2 S^2 D)
        in and out  2 (C_in D I + J D T + D p^2 C_out I)

    In a block each token goes through its own stream's q, k, v and out projections
    (4 D^2) and MLP (D -> 4D -> D: 8 D^2); joint attention is Q K^T and P V over all S
    tokens (S^2 D each). img_in, txt_in and proj_out (on every image token) are the
    rest; the modulation and time embedding, once per sample, are left out. At
    1024x1024 with one 1024x1024 picture, I = 8192; with about 130 text tokens this
    is the issue's 1.64e14.
    """
    d = config.num_attention_heads * config.attention_head_dim
    s = image_tokens + text_tokens
    blocks = 2 * config.num_layers * (12 * d * d * s + 2 * s * s * d)
    patch_out = config.patch_size ** 2 * (config.out_channels or config.in_channels)
    ends = 2 * d * (config.in_channels * image_tokens + config.joint_attention_dim * text_tokens
                    + patch_out * image_tokens)
    return float(blocks + ends)


def floor_seconds(flop: float, peak_tflops: float) -> float:
    return flop / (peak_tflops * 1e12)


# ----- random weights ------------------------------------------------------------------


def _random_param(name: str, shape: tuple, dtype, device, seed: int):
    """Biases 0, norm scales 1, other weights N(0, 1/fan_in): sane activations, no NaN.

    Seeded by name, so every build has the same weights whatever its order or device.
    """
    import torch

    if name.endswith("bias"):
        return torch.zeros(shape, dtype=dtype, device=device)
    if not shape or math.prod(shape) == shape[0]:
        return torch.ones(shape, dtype=dtype, device=device)
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)
    fan_in = math.prod(shape[1:])
    return torch.empty(shape, dtype=dtype, device=device).normal_(0.0, fan_in ** -0.5, generator=generator)


def materialize(module, device: str, dtype, seed: int, rng_device: str):
    """Give the parameters still on the meta device random values on ``device``.

    Drawn on ``rng_device`` (the GPU when there is one: 20 B numbers take minutes on
    a CPU) one parameter at a time, so a part meant for host RAM needs little GPU memory.
    """
    import torch

    made: dict = {}
    for prefix, sub in module.named_modules():
        for name, param in list(sub._parameters.items()):
            if param is None or not param.is_meta:
                continue
            if id(param) not in made:  # tied weights stay tied
                value = _random_param(f"{prefix}.{name}".lstrip("."), tuple(param.shape), dtype,
                                      rng_device, seed)
                made[id(param)] = torch.nn.Parameter(value.to(device), requires_grad=False)
            sub._parameters[name] = made[id(param)]
    if device != "cpu":
        module.to(device)  # buffers (the rotary tables) are made on the CPU
    return module.eval()


def swap_in_nf4(module, device: str, dtype, seed: int, keep=()) -> None:
    """Replace the meta ``nn.Linear`` layers by bitsandbytes NF4 layers with random
    weights, quantized on the GPU one at a time, as loading with a 4-bit config does.
    Layers named in ``keep`` stay for ``materialize``."""
    import bitsandbytes as bnb
    import torch

    for prefix, parent in list(module.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or name in keep:
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, child.bias is not None, dtype,
                                      compress_statistics=False, quant_type="nf4", device="meta")
            weight = _random_param(f"{prefix}.{name}.weight".lstrip("."), tuple(child.weight.shape),
                                   dtype, device, seed)
            # As diffusers' bitsandbytes quantizer does: the layer's own Params4bit
            # settings; moving it to the GPU quantizes it.
            layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, **layer.weight.__dict__).to(device)
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(torch.zeros(child.out_features, dtype=dtype, device=device),
                                                requires_grad=False)
            setattr(parent, name, layer)


# Where from_pretrained plus the profile would have each part before ``_place`` runs:
# fp8 moves the transformer to the GPU alone first, the offload profiles start in host
# RAM. Building a part where it will be anyway saves copying tens of GB twice.
_BUILT_ON_DEVICE = {"full": ("transformer", "text_encoder", "vae"), "fp8": ("transformer",)}


class RandomModel:
    """The pipeline's parts built from ``spec`` with random weights; the tokenizer,
    processor and scheduler of the offline tiny model (its token ids fit any vocab)."""

    def __init__(self, spec: Spec, device: str, dtype, seed: int = 0):
        self.spec, self.device, self.dtype, self.seed = spec, device, dtype, seed
        self.model = DEFAULT_MODEL  # what rows report; the backend's advice uses its sizes
        self.model_bytes = profiles.PUBLISHED
        # Loaded the way users load a model: QwenBackend, the image-only processor.
        tiny = QwenBackend(model=str(ensure_tiny_model()), device="cpu", dtype="float32",
                           profile="full", t2i_model=None)._edit_pipeline()
        self.tokenizer, self.processor = tiny.tokenizer, tiny.processor
        self.scheduler_config = dict(tiny.scheduler.config)

    def backend(self, settings: dict) -> QwenBackend:
        return PrebuiltBackend(lambda: self.pipeline(settings["profile"]), **settings)

    def pipeline(self, profile: str):
        from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageEditPlusPipeline

        parts = {}
        for part, build in (("transformer", self._transformer), ("text_encoder", self._text_encoder),
                            ("vae", self._vae)):
            module = build()
            if profile == "nf4" and part != "vae":
                swap_in_nf4(module, self.device, self.dtype, self.seed, keep=("lm_head",))
            where = self.device if part in _BUILT_ON_DEVICE.get(profile, ()) else "cpu"
            parts[part] = materialize(module, where, self.dtype, self.seed, self.device)
        return QwenImageEditPlusPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config),
            tokenizer=self.tokenizer, processor=self.processor, **parts)

    def _transformer(self):
        from diffusers import QwenImageTransformer2DModel

        return _on_meta(lambda: QwenImageTransformer2DModel(**self.spec.transformer))

    def _vae(self):
        from diffusers import AutoencoderKLQwenImage

        return _on_meta(lambda: AutoencoderKLQwenImage(**self.spec.vae))

    def _text_encoder(self):
        """As ``pipelines.tiny_model._build_text_encoder`` does, at ``spec``'s sizes."""
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        ids = {t: self.tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        text = dict(self.spec.text, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                    pad_token_id=ids["<|endoftext|>"])
        text["vocab_size"] = text["vocab_size"] or len(self.tokenizer)
        config = Qwen2_5_VLConfig(
            text_config=text,
            vision_config=dict(self.spec.vision),
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )
        return _on_meta(lambda: Qwen2_5_VLForConditionalGeneration(config))


def _on_meta(build):
    """Parameters on the meta device (no memory, no init); buffers made for real."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return build()


class WeightsModel:
    """A downloaded model folder, loaded by ``QwenBackend`` itself."""

    def __init__(self, path: str):
        self.model = str(Path(path).expanduser())
        self.model_bytes = profiles.model_bytes(Path(self.model))

    def backend(self, settings: dict) -> QwenBackend:
        return QwenBackend(**settings)


class PrebuiltBackend(QwenBackend):
    """``QwenBackend`` on a pipeline handed in instead of loaded from a folder.

    All after ``from_pretrained`` is the real backend's code: the levers on the
    transformer and placing by memory profile (``_make_ready``), previews, the reuse
    caches, sizes, true CFG with the " " negative prompt, the call.
    """

    def __init__(self, build: Callable[[], Any], **settings):
        self._build = build
        super().__init__(**settings)

    def _load_edit_pipeline(self):
        self.pipeline_class = "QwenImageEditPlusPipeline"
        self.capabilities = Capabilities()  # Edit Plus: up to three pictures
        return self._make_ready(self._build())


def drop_reuse(pipe) -> None:
    for name in ("encode_prompt", "_encode_vae_image"):  # pipelines.reuse wraps these on the instance
        pipe.__dict__.pop(name, None)


def reset_pipe(pipe) -> None:
    """Undo what a backend did to a shared pipeline, so the next row starts plain."""
    drop_reuse(pipe)
    if pipe.transformer.is_cache_enabled:
        pipe.transformer.disable_cache()
    # "native" by name: diffusers also keeps a process-wide active backend.
    pipe.transformer.set_attention_backend("native")


def uncompile(module) -> None:
    for sub in module.modules():  # where nn.Module.compile keeps the compiled call
        if getattr(sub, "_compiled_call_impl", None) is not None:
            sub._compiled_call_impl = None


# ----- measuring -----------------------------------------------------------------------


class Clock:
    """Wall time of a call and of each denoising step (the GPU drained at each mark)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.marks: list = []
        self.started = self.stopped = 0.0

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def progress(self, step, total, preview) -> None:  # QwenBackend's progress callback
        self.marks.append(self.now())

    def callback(self, pipe, i, t, kwargs):  # diffusers' callback_on_step_end
        self.marks.append(self.now())
        return kwargs

    def per_step(self) -> float:
        """From the first step's end to the last's: no encoding, decoding or warm-up."""
        if len(self.marks) >= 2:
            return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)
        return (self.stopped - self.started) / max(1, len(self.marks))


@contextmanager
def counting_passes(transformer):
    """Record (image tokens, text tokens) of every transformer pass."""
    passes: list = []

    def hook(module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        text = kwargs.get("encoder_hidden_states")
        passes.append((hidden.shape[1], text.shape[1] if text is not None else 0))

    handle = transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield passes
    finally:
        handle.remove()


@contextmanager
def vae_area(pipe, area: int):
    """The edit pipeline's VAE resize area (a module constant) for the plain call."""
    module = sys.modules[type(pipe).__module__]
    old, module.VAE_IMAGE_SIZE = module.VAE_IMAGE_SIZE, area
    try:
        yield
    finally:
        module.VAE_IMAGE_SIZE = old


@contextmanager
def memory_cap(limit: int):
    """Let this process allocate at most ``limit`` bytes of GPU memory: a smaller card."""
    import torch

    levers.free_memory("cuda")
    total = torch.cuda.mem_get_info()[1]
    torch.cuda.set_per_process_memory_fraction(max(0.0, min(1.0, limit / total)))
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


@dataclass
class Row:
    name: str
    pictures: int
    steps: int  # steps run
    target_steps: int  # steps the total is for (extrapolated when more than were run)
    cfg: bool
    seed: int
    seconds: float  # measured, the whole call
    per_step: float
    total: float  # at target_steps
    peak_gib: Optional[float]
    passes_per_step: float
    image_tokens: float
    text_tokens: float
    flop_per_pass: float
    floor_s: float
    floor_ratio: float
    attention: str
    approx: bool  # changes the picture by design: fp8, nf4, step caches, sage, Lightning
    exact: bool  # the plain call's arithmetic (with its attention): not approx, not compiled
    pixel_std: float  # a blank or NaN picture would make every difference 0
    note: str = ""
    plain: bool = False  # a plain diffusers call: the reference for rows with its settings
    max_diff: Optional[int] = None
    ref: Optional[str] = None
    expect_identical: bool = False

    @property
    def key(self) -> tuple:
        return (self.pictures, self.seed, self.steps, self.cfg)


@dataclass
class Card:
    gib: int
    free_gib: float
    profile: Optional[str]
    reason: str
    estimate_gib: Optional[float]
    peak_gib: Optional[float] = None
    result: str = "not run"
    seconds: Optional[float] = None


@dataclass(frozen=True)
class Case:
    prompt: str
    images: tuple


def noise_picture(side: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


def short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(*parts) -> str:
    return "; ".join(p for p in parts if p)


# ----- the benchmark -------------------------------------------------------------------


class Bench:
    """The rows, the cards and the goals of one run; see ``run`` for the order."""

    def __init__(self, args):
        import torch

        self.args = args
        self.smoke = args.smoke
        self.cuda = not self.smoke
        self.device = "cuda" if self.cuda else "cpu"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.spec = REAL if self.cuda else SMOKE
        self.steps = 2 if self.smoke else (min(args.steps, QUICK_STEPS) if args.quick else args.steps)
        self.target = self.steps if self.smoke else args.steps
        self.lightning_steps = self.steps if self.smoke else LIGHTNING_STEPS
        self.deadline = time.perf_counter() + args.budget_s
        self.in_use = 0
        if self.cuda:
            free, total = torch.cuda.mem_get_info()
            self.in_use = total - free  # the CUDA context and other processes
        else:
            # Deterministic, and several times faster on a small busy CPU, where OpenMP
            # workers spin against each other (the tiny backend does the same).
            torch.set_num_threads(1)
        self.source = WeightsModel(args.weights) if args.weights else \
            RandomModel(self.spec, self.device, self.dtype, seed=args.seed)
        pictures = [noise_picture(self.spec.side, n) for n in (1, 2, 3)]
        self.cases = {n: Case(PROMPTS[n], tuple(pictures[:n])) for n in (1, 2, 3)}
        self.rows: list[Row] = []
        self.skipped: list[tuple] = []
        self.cards: list[Card] = []
        self.errors: list[str] = []
        self.images: dict = {}
        self.tried: set = set()  # profiles already built and timed
        self._shared = None
        self._shared_failed = False

    # ----- running rows ----------------------------------------------------------------

    def wanted(self, name: str) -> bool:
        words = [w for w in (self.args.only or "").split(",") if w]
        return not words or any(w in name for w in words)

    def attempt(self, name: str, run: Callable[[], Any]) -> Any:
        """Run one row unless it is unwanted or the time is up; record a crash, go on."""
        if not self.wanted(name):
            return None
        if time.perf_counter() > self.deadline:
            return self.skip(name, f"the time budget ({self.args.budget_s:.0f} s) is spent")
        try:
            return run()
        except Skip as exc:
            self.skip(name, str(exc))
        except Exception as exc:  # one broken row must not lose the others' figures
            traceback.print_exc()
            self.errors.append(name)
            self.skip(name, f"ERROR {type(exc).__name__}: {short(exc)}")
        finally:
            levers.free_memory(self.device)
        return None

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append((name, reason))
        print(f"  {name}: skipped: {reason}", flush=True)

    def settings(self, profile: str, **lever_settings) -> dict:
        return dict(model=self.source.model, device=self.device, dtype=self.dtype, profile=profile,
                    t2i_model=None, vae_area=self.spec.side ** 2, **lever_settings)

    def measure(self, name, transformer, call, *, case, seed, steps, target, cfg, attention,
                approx=False, exact=True, note="", plain=False) -> Row:
        import torch

        levers.free_memory(self.device)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        clock = Clock(self.cuda)
        with counting_passes(transformer) as passes:
            clock.started = clock.now()
            image = call(clock)
            clock.stopped = clock.now()
        seconds, per_step = clock.stopped - clock.started, clock.per_step()
        total = seconds + (target - steps) * per_step
        flop = float(np.mean([flop_per_pass(transformer.config, i, t) for i, t in passes]))
        floor_s = floor_seconds(flop * len(passes) / steps * target, self.args.peak_tflops)
        row = Row(
            name=name, pictures=len(case.images), steps=steps, target_steps=target, cfg=cfg, seed=seed,
            seconds=seconds, per_step=per_step, total=total,
            peak_gib=torch.cuda.max_memory_allocated() / GIB if self.cuda else None,
            passes_per_step=len(passes) / steps, image_tokens=float(np.mean([p[0] for p in passes])),
            text_tokens=float(np.mean([p[1] for p in passes])), flop_per_pass=flop, floor_s=floor_s,
            floor_ratio=total / floor_s, attention=attention or "native", approx=approx,
            exact=exact and not approx, pixel_std=float(np.asarray(image, dtype=np.float32).std()),
            note=_join(note, f"extrapolated from {steps} steps" if target != steps else ""), plain=plain,
        )
        self.rows.append(row)
        self.images[name] = image
        print(f"  {name}: {row.total:.2f} s, {row.per_step:.3f} s/step", flush=True)
        return row

    def plain_row(self, name, case, *, seed, attention="native", note="") -> Row:
        """The diffusers call as its docs show it, with the settings the backend uses."""
        import torch

        pipe = self.shared_pipe()

        def call(clock):
            with vae_area(pipe, self.spec.side ** 2):
                return pipe(image=list(case.images), prompt=case.prompt,
                            negative_prompt=DEFAULT_NEGATIVE_PROMPT, true_cfg_scale=TRUE_CFG_SCALE,
                            num_inference_steps=self.steps, width=self.spec.side, height=self.spec.side,
                            generator=torch.Generator(device="cpu").manual_seed(seed),
                            callback_on_step_end=clock.callback).images[0]

        return self.measure(name, pipe.transformer, call, case=case, seed=seed, steps=self.steps,
                            target=self.target, cfg=True, attention=attention, note=note, plain=True)

    def backend_row(self, name, backend, case, *, seed=SEED, steps=None, target=None, cfg=True,
                    approx=False, exact=True, note="") -> Row:
        steps = steps or self.steps
        started = time.perf_counter()
        backend.load()
        loaded = time.perf_counter() - started
        request = EditRequest(case.prompt, images=case.images, seed=seed, steps=steps,
                              true_cfg_scale=None if cfg else 1.0)
        return self.measure(
            name, backend._edit_pipe.transformer,
            lambda clock: backend.edit(request, progress=clock.progress).image,
            case=case, seed=seed, steps=steps, target=target or self.target, cfg=cfg,
            attention=backend.attention, approx=approx, exact=exact,
            note=_join(note, f"load {loaded:.0f} s" if loaded > 1 else ""))

    # ----- the shared full pipeline ------------------------------------------------------

    def shared_pipe(self):
        """The profile-``full`` pipeline, built once and reused by the lever rows."""
        if self._shared is None:
            if self._shared_failed:
                raise Skip("the full pipeline did not build (see above)")
            self._shared_failed = True  # until it has built
            if self.cuda:
                need = profiles.estimate("full", self.source.model_bytes, profiles.Workload(1.0, 2.0))
                free = levers.gpu_memory(self.device)[0]
                if need.gpu_peak > free:
                    raise Skip(f"profile full needs about {profiles.gib(need.gpu_peak)}; "
                               f"{profiles.gib(free)} free")
            started = time.perf_counter()
            backend = self.source.backend(self.settings("full", attention=None, reuse_encodings=False))
            backend.load()
            self.adopt(backend)
            print(f"  full pipeline built and warmed up in {time.perf_counter() - started:.1f} s",
                  flush=True)
        return self._shared

    def adopt(self, backend) -> None:
        """Keep a loaded full-profile backend's pipeline as the shared one, warmed up:
        first-call allocations and kernel choices are not the steady state."""
        self._shared, self._shared_failed = backend._edit_pipe, False
        backend.close()
        reset_pipe(self._shared)
        case = self.cases[1]
        with vae_area(self._shared, self.spec.side ** 2):
            self._shared(image=list(case.images), prompt=case.prompt, negative_prompt=DEFAULT_NEGATIVE_PROMPT,
                         true_cfg_scale=TRUE_CFG_SCALE, num_inference_steps=2, width=self.spec.side,
                         height=self.spec.side)

    def drop_shared(self) -> None:
        if self._shared is not None and self.cuda:
            import torch

            torch._dynamo.reset()  # compiled code holds on to the modules it ran
        self._shared = None
        levers.free_memory(self.device)

    @contextmanager
    def lever(self, **lever_settings):
        """A backend on the shared pipeline; the pipeline is plain again afterwards."""
        pipe = self.shared_pipe()
        backend = PrebuiltBackend(lambda: pipe, **self.settings("full", **lever_settings))
        try:
            yield backend
        finally:
            backend.close()
            reset_pipe(pipe)

    def lever_row(self, name, case, *, approx=False, exact=True, note="", **lever_settings) -> Row:
        with self.lever(**lever_settings) as backend:
            return self.backend_row(name, backend, case, approx=approx, exact=exact, note=note)

    # ----- phases ------------------------------------------------------------------------

    def run(self) -> None:
        if self.cuda:
            self.cards_phase()
        self.shared_phase()
        self.drop_shared()
        for profile in OWN_BUILD:
            if profile not in self.tried:
                self.attempt(profile, lambda p=profile: self.profile_row(p, self.new_backend(p)))

    def shared_phase(self) -> None:
        one, two = self.cases[1], self.cases[2]
        self.attempt("diffusers plain", lambda: self.plain_row("diffusers plain", one, seed=SEED))
        self.attempt("full", self.full_and_variation)
        self.attempt("lightning 8 steps", lambda: self.lightning_row("lightning 8 steps"))
        self.compile_rows()
        self.attempt("diffusers plain x2", lambda: self.plain_row("diffusers plain x2", two, seed=SEED))
        self.attempt("full x2", lambda: self.lever_row("full x2", two))
        for kind in levers.CACHE_SETTINGS:
            note = "its skips depend on the weights: random ones say little" \
                if kind == "first-block" and not self.args.weights else ""
            self.attempt(f"cache {kind}", lambda k=kind, n=note: self.lever_row(
                f"cache {k}", one, cache=k, approx=True, note=n))
        self.attention_rows(one)

    def full_and_variation(self) -> None:
        """``full`` as ``auto`` sets it up, then a variation of the same request on the
        same backend (new seed: the prompt and Picture 1 encodings are reused), then
        the plain call with that seed and attention, for the variation to match."""
        one = self.cases[1]
        with self.lever() as backend:
            self.backend_row("full", backend, one, note="as auto sets it up")
            self.attempt("variation", lambda: self.backend_row(
                "variation", backend, one, seed=SEED + 1, note="new seed, encodings reused"))
            drop_reuse(self._shared)
            self.attempt("variation ref (plain)", lambda: self.plain_row(
                "variation ref (plain)", one, seed=SEED + 1, attention=backend.attention))

    def lightning_row(self, name, **lever_settings) -> Row:
        """Lightning's cost: 8 steps without true CFG. Its LoRA is fused into the
        weights, so it costs nothing per step: random weights stand in for it."""
        with self.lever(**lever_settings) as backend:
            if lever_settings.get("compile"):
                self.warm(backend, self.cases[1], cfg=False)
            return self.backend_row(name, backend, self.cases[1], steps=self.lightning_steps,
                                    target=self.lightning_steps, cfg=False, approx=True,
                                    note="no true CFG; the fused LoRA costs nothing a step")

    def compile_rows(self) -> None:
        names = ("best: compile, attention auto", "best lightning 8 steps", "best x2")
        if not self.cuda:
            for name in filter(self.wanted, names):
                self.skip(name, "compile is measured on the GPU only")
            return
        self.attempt(names[0], lambda: self.compiled_row(names[0], self.cases[1]))
        self.attempt(names[1], lambda: self.lightning_row(names[1], compile=True))
        self.attempt(names[2], lambda: self.compiled_row(names[2], self.cases[2]))
        if self._shared is not None:
            uncompile(self._shared.transformer)

    def compiled_row(self, name, case) -> Row:
        """Regional compile on top of full (attention auto, reuse on): warmed, then timed."""
        with self.lever(compile=True) as backend:
            warm_s = self.warm(backend, case, cfg=True)
            return self.backend_row(name, backend, case, exact=False,
                                    note=f"compile warm-up {warm_s:.0f} s")

    def warm(self, backend, case, *, cfg: bool) -> float:
        started = time.perf_counter()
        backend.edit(EditRequest(case.prompt, images=case.images, seed=SEED, steps=2,
                                 true_cfg_scale=None if cfg else 1.0))
        return time.perf_counter() - started

    def attention_rows(self, case) -> None:
        available = levers.available_attention(self.device)
        auto = levers.pick_attention("auto", self.device) or "native"
        for name in ("native", "flash", "_flash_3", "sage"):
            row = f"attention {name}"
            if name == auto or not self.wanted(row):
                continue  # auto's pick is the full row
            if name not in available:
                self.skip(row, f"needs {ATTENTION_PACKAGES[name]} and a recent enough GPU"
                          if self.cuda else "needs a CUDA GPU")
                continue
            self.attempt(row, lambda r=row, n=name: self.lever_row(
                r, case, attention=n, approx=n in APPROXIMATE_ATTENTION))

    # ----- memory profiles and simulated cards ---------------------------------------------

    def new_backend(self, profile: str) -> QwenBackend:
        """A backend building (or loading) its own pipeline for ``profile``."""
        if not self.cuda:
            raise Skip("needs a CUDA GPU")
        missing = levers.missing_packages(profile)
        if missing:
            raise Skip(f"needs {', '.join(missing)}")
        host = levers.host_available()
        need = profiles.estimate(profile, self.source.model_bytes, PLANNED_WORK).host_ram
        if host is not None and need > host:
            raise Skip(f"needs about {profiles.gib(need)} of host RAM; {profiles.gib(host)} available")
        return self.source.backend(self.settings(profile))

    def profile_row(self, profile: str, backend) -> Row:
        self.tried.add(profile)
        steps = min(self.steps, SLOW_STEPS if profile == "group-offload" else QUICK_STEPS)
        fp8_storage = profile == "fp8" and not levers.fp8_matmuls_available(self.device)
        try:
            return self.backend_row(profile, backend, self.cases[1], steps=steps,
                                    approx=profile in ("fp8", "nf4"),
                                    note="fp8 storage, bf16 compute (no torchao)" if fp8_storage else "")
        finally:
            backend.close()

    def plan_cards(self) -> list:
        """What ``auto`` picks on each card: free memory is the card less what is in use."""
        host, cards = levers.host_available(), []
        for size in CARDS_GIB:
            free = size * GIB - self.in_use
            choice = profiles.choose(free, host, self.source.model_bytes, PLANNED_WORK,
                                     allowed=levers.usable_profiles())
            estimate = profiles.estimate(choice.profile, self.source.model_bytes, PLANNED_WORK) \
                if choice.profile else None
            cards.append(Card(size, free / GIB, choice.profile, choice.reason,
                              estimate.gpu_peak / GIB if estimate else None,
                              result="not run" if choice.profile else "no profile fits"))
        return cards

    def cards_phase(self) -> None:
        """Each card's pick is built under that card's memory cap and runs a short
        three-picture edit (what ``auto`` plans for); then the cap goes and the same
        build is timed as its profile's row (full's becomes the shared pipeline)."""
        self.cards = self.plan_cards()
        picks = dict.fromkeys(c.profile for c in self.cards if c.profile)  # smallest card first
        for profile in picks:
            cards = [c for c in self.cards if c.profile == profile]
            self.attempt(f"card {profile}", lambda p=profile, cs=cards: self.card_session(p, cs))

    def card_session(self, profile: str, cards: list) -> None:
        try:
            backend = self.new_backend(profile)
        except Skip as exc:
            for card in cards:
                card.result = f"not run: {exc}"
            raise
        if self.wanted("card"):
            for card in cards:
                self.card_check(card, backend)
        if profile == "full":
            if backend._edit_pipe is not None:  # else shared_pipe() builds it uncapped
                self.adopt(backend)
        else:
            self.attempt(profile, lambda: self.profile_row(profile, backend))
        backend.close()

    def card_check(self, card: Card, backend) -> None:
        import torch

        case = self.cases[3]
        with memory_cap(card.gib * GIB - self.in_use):
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            try:
                backend.load()
                backend.edit(EditRequest(case.prompt, images=case.images, seed=SEED, steps=CARD_STEPS))
                card.result = "ran"
            except (BackendError, torch.OutOfMemoryError) as exc:
                card.result = "OOM" if "out of" in str(exc).lower() else f"failed: {short(exc, 100)}"
            card.seconds = time.perf_counter() - started
            card.peak_gib = torch.cuda.max_memory_allocated() / GIB
        print(f"  card {card.gib} GB, {card.profile}: {card.result}", flush=True)

    # ----- results -------------------------------------------------------------------------

    def compare(self) -> None:
        """Max abs pixel difference of each row against the plain call with its settings."""
        plain = {r.key: r for r in self.rows if r.plain}
        for row in self.rows:
            ref = plain.get(row.key)
            if ref is None or ref is row:
                continue
            row.ref = ref.name
            if min(row.pixel_std, ref.pixel_std) < 1:  # blank (or NaN) pictures would all match
                row.note = _join(row.note, "blank picture: not compared")
                continue
            a = np.asarray(self.images[row.name], dtype=np.int16)
            b = np.asarray(self.images[ref.name], dtype=np.int16)
            row.max_diff = int(np.abs(a - b).max())
            row.expect_identical = row.exact and row.attention == ref.attention

    def goals(self) -> list:
        texts = (f"40-step true-CFG edit <= {GOAL_EDIT_S} s",
                 f"Lightning 8-step edit <= {GOAL_LIGHTNING_S} s",
                 f"at least {GOAL_SPEEDUP}x faster than diffusers plain, identical output",
                 f"a {GOAL_CARD_GIB} GB card runs the edit")
        if self.smoke:
            return [dict(goal=t, result="n/a (smoke)", detail="") for t in texts]
        checks = (self._goal_edit(), self._goal_lightning(), self._goal_speedup(), self._goal_card())
        return [dict(goal=t, **check) for t, check in zip(texts, checks)]

    def _goal_edit(self) -> dict:
        # A fresh edit: the variation rows skip the encoders, the approximate levers change the picture.
        rows = [r for r in self.rows if r.pictures == 1 and r.cfg and not r.approx
                and not r.name.startswith("variation")]
        if not rows:
            return dict(result="n/a", detail="no 40-step true-CFG row ran")
        best = min(rows, key=lambda r: r.total)
        return dict(result="PASS" if best.total <= GOAL_EDIT_S else "FAIL",
                    detail=f"{best.name}: {best.total:.1f} s, {best.floor_ratio:.2f}x the floor")

    def _goal_lightning(self) -> dict:
        rows = [r for r in self.rows if "lightning" in r.name]
        if not rows:
            return dict(result="n/a", detail="no Lightning row ran")
        best = min(rows, key=lambda r: r.total)
        return dict(result="PASS" if best.total <= GOAL_LIGHTNING_S else "FAIL",
                    detail=f"{best.name}: {best.total:.2f} s")

    def _goal_speedup(self) -> dict:
        base = next((r for r in self.rows if r.name == "diffusers plain"), None)
        if base is None:
            return dict(result="n/a", detail="the diffusers plain row did not run")
        same = [r for r in self.rows if r.ref == base.name and not r.approx]
        identical = [r for r in same if r.max_diff == 0]
        fastest = min(same, key=lambda r: r.total, default=None)
        if fastest is None:
            return dict(result="n/a", detail="no row to compare with diffusers plain")
        overall = f"fastest: {fastest.name}, {base.total / fastest.total:.2f}x, max|diff| {fastest.max_diff}"
        if not identical:
            return dict(result="FAIL", detail=f"no row has the plain call's exact pixels; {overall}")
        best = min(identical, key=lambda r: r.total)
        speedup = base.total / best.total
        detail = f"{best.name}: {speedup:.2f}x, max|diff| 0" + ("" if best is fastest else f"; {overall}")
        return dict(result="PASS" if speedup >= GOAL_SPEEDUP else "FAIL", detail=detail)

    def _goal_card(self) -> dict:
        card = next((c for c in self.cards if c.gib == GOAL_CARD_GIB), None)
        if card is None or card.result == "not run":
            return dict(result="n/a", detail="the card check did not run")
        return dict(result="PASS" if card.result == "ran" else "FAIL",
                    detail=f"{card.profile}: {card.result}, peak {_num(card.peak_gib, 1)} GiB")


# ----- report --------------------------------------------------------------------------


def _num(value, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 10_000 else f"{value:.2e}"  # smoke: a CPU vs 790 TFLOP/s


def print_report(bench: Bench, goals: list, out=sys.stdout) -> None:
    lightning = "" if bench.smoke else f" ({LIGHTNING_STEPS} for Lightning)"
    print(f"\nrows: totals for {bench.target} steps{lightning}; x floor = total / compute floor "
          f"at {bench.args.peak_tflops:g} TFLOP/s; max|diff| against the plain call with the same "
          f"settings ('=' identical as it should be, '!' not)", file=out)
    print(f"{'row':<30} {'pics':>4} {'steps':>5} {'s/step':>8} {'total s':>8} {'peak GiB':>8} "
          f"{'x floor':>8} {'max|diff|':>9}  note", file=out)
    order = {id(r): i for i, r in enumerate(bench.rows)}
    # One picture before two; the memory profiles (built first, with the cards) last.
    for row in sorted(bench.rows, key=lambda r: (r.pictures, r.name in OWN_BUILD, order[id(r)])):
        diff = "-" if row.max_diff is None else str(row.max_diff)
        if row.expect_identical:
            diff += "=" if row.max_diff == 0 else "!"
        note = _join(f"attention {row.attention}", row.note, f"vs {row.ref}" if row.ref else "")
        print(f"{row.name:<30} {row.pictures:>4} {row.steps:>5} {_num(row.per_step, 3):>8} "
              f"{_num(row.total, 2):>8} {_num(row.peak_gib, 1):>8} {_num(row.floor_ratio, 2):>8} "
              f"{diff:>9}  {note}", file=out)
    for name, reason in bench.skipped:
        print(f"{name:<30} skipped: {reason}", file=out)
    _print_floor(bench, out)
    if bench.cards:
        print(f"\nsimulated cards: auto's pick for {PLANNED_WORK.output_mp:g} MP out of "
              f"{PLANNED_WORK.input_mp:g} MP in, built under the card's memory cap, "
              f"a {CARD_STEPS}-step three-picture edit", file=out)
        print(f"{'card':<7} {'free GiB':>8}  {'auto picks':<14} {'est. GiB':>8} {'peak GiB':>8} "
              f"{'seconds':>8}  result", file=out)
        for c in bench.cards:
            print(f"{c.gib:>2} GB   {c.free_gib:>8.1f}  {c.profile or '-':<14} {_num(c.estimate_gib, 1):>8} "
                  f"{_num(c.peak_gib, 1):>8} {_num(c.seconds, 1):>8}  {c.result}", file=out)
    print("\ngoals", file=out)
    for goal in goals:
        print(f"{goal['goal']:<66} {goal['result']:<12} {goal['detail']}", file=out)


def _print_floor(bench: Bench, out) -> None:
    row = next((r for r in bench.rows if r.name == "diffusers plain"), None)
    if row is None:
        return
    floor = floor_seconds(row.flop_per_pass * 2 * bench.target, bench.args.peak_tflops)
    print(f"\nFLOP per transformer pass, {bench.spec.side}x{bench.spec.side} and one picture "
          f"({row.image_tokens:.0f} image + {row.text_tokens:.0f} text tokens on average): "
          f"{row.flop_per_pass:.3g} (the issue: {ISSUE_FLOP_PER_PASS:.3g} at 1024x1024); compute floor "
          f"of {bench.target} steps x 2 passes: {floor:.3g} s", file=out)


def write_json(path: str, bench: Bench, goals: list) -> None:
    data = {
        "smoke": bench.smoke, "weights": bench.args.weights or "random", "spec": bench.spec.label,
        "device": bench.device, "peak_tflops": bench.args.peak_tflops, "target_steps": bench.target,
        "rows": [asdict(r) for r in bench.rows],
        "skipped": [{"name": n, "reason": r} for n, r in bench.skipped],
        "cards": [asdict(c) for c in bench.cards], "goals": goals, "errors": bench.errors,
    }
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def describe(bench: Bench) -> str:
    import diffusers
    import torch
    import transformers

    where = torch.cuda.get_device_name() if bench.cuda else "the CPU (smoke)"
    weights = bench.args.weights or f"random weights, {bench.spec.label}"
    extrapolated = f", totals extrapolated to {bench.target}" if bench.target != bench.steps else ""
    return (f"bench/gpu.py on {where}; {weights}; torch {torch.__version__}, diffusers "
            f"{diffusers.__version__}, transformers {transformers.__version__}; "
            f"{bench.spec.side}x{bench.spec.side}, {bench.steps} steps{extrapolated}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the code")
    parser.add_argument("--weights", metavar="PATH",
                        help="a downloaded model folder instead of random weights")
    parser.add_argument("--steps", type=int, default=40, help="steps of the main rows (default 40)")
    parser.add_argument("--quick", action="store_true",
                        help=f"run {QUICK_STEPS} steps a row and extrapolate the totals to --steps")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="skip the rows left after this many seconds (default 450)")
    parser.add_argument("--peak-tflops", type=float, default=790.0,
                        help="sustained bf16 TFLOP/s the compute floor assumes (default 790, an H200)")
    parser.add_argument("--only", metavar="WORDS",
                        help="only rows whose names hold one of these comma-separated words "
                             "('card': the card checks)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import diffusers.utils.logging
    import torch
    import transformers.utils.logging

    diffusers.utils.logging.set_verbosity_error()  # it warns on every attention switch
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if not args.smoke and not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU; --smoke runs the same code on the CPU.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    bench = Bench(args)
    print(describe(bench), flush=True)
    bench.run()
    bench.compare()
    goals = bench.goals()
    print_report(bench, goals)
    crashed = f"; rows that crashed: {', '.join(bench.errors)}" if bench.errors else ""
    print(f"\nfinished in {time.perf_counter() - started:.0f} s{crashed}")
    if args.json:
        write_json(args.json, bench, goals)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
