"""GPU benchmark: every memory profile and speed lever of the qwen backend at 1024x1024.

Owns building the real-size Qwen-Image-Edit-2511 pipeline with random weights (from
the published configs: no download; time and memory do not depend on the weights'
values), timing each row through the backend's own code path, the compute floor, the
goal lines, and the simulated 24/48/80 GB cards. Which profile fits where is
``pipelines.profiles``' arithmetic; what a lever does is ``pipelines.levers``'; this
file only measures.

Run it:
    .venv/bin/python bench/gpu.py                  # one CUDA GPU, random weights, about 8 min
    .venv/bin/python bench/gpu.py --weights PATH   # real weights from a model folder
    .venv/bin/python bench/gpu.py --quick          # 10 steps a row, per-step time extrapolated
    .venv/bin/python bench/gpu.py --smoke          # the same code on the CPU, 2 layers, 256x256

The compute floor: one transformer pass over L tokens (output and input pictures at
(H/16)*(W/16) tokens each, plus the text) costs, per block, 24*d^2*L FLOP for the
projections and MLP of both streams (QKV, out, 4x MLP: 12*d^2 multiply-adds a token)
plus 4*L^2*d for attention (QK^T and AV). 60 blocks of d=3072 at 1024^2 with one
picture give about 1.6e14 FLOP a pass; true CFG runs two passes a step. At the
~790 TFLOP/s an H200 sustains in bf16 matmuls, 40 steps take 16.6 s: the floor.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines import EditRequest, levers, profiles  # noqa: E402
from pipelines import sizes as size_math  # noqa: E402
from pipelines.qwen import PLANNED_WORK, QwenBackend, _edit_areas  # noqa: E402

GIB = profiles.GIB
TEXT_TOKENS = 200  # the edit template, the vision tokens' markers and a short instruction
GOAL_EDIT_S = 20.8
GOAL_LIGHTNING_S = 2.1
GOAL_SPEEDUP = 1.3

# The published sizes (DESIGN.md, "Real-size numbers without weights").
TEXT_CONFIG = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                   num_key_value_heads=4, intermediate_size=18944, vocab_size=152064,
                   max_position_embeddings=128000,
                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                    "mrope_section": [16, 24, 24]})
VISION_CONFIG = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                     out_hidden_size=3584, patch_size=14, spatial_merge_size=2,
                     temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])
SMOKE_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                  intermediate_size=64, vocab_size=None, max_position_embeddings=4096,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                   "mrope_section": [2, 3, 3]})
SMOKE_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                    fullatt_block_indexes=[0])
SMOKE_TRANSFORMER = dict(num_layers=2, attention_head_dim=16, num_attention_heads=2,
                         joint_attention_dim=32, axes_dims_rope=(4, 6, 6))
SMOKE_VAE = dict(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                 temperal_downsample=[False, True, True])


@dataclass
class Row:
    name: str
    pictures: int
    steps: int
    seconds: Optional[float] = None
    per_step: Optional[float] = None
    peak_gib: Optional[float] = None
    floor_ratio: Optional[float] = None
    max_abs_diff: Optional[int] = None
    note: str = ""
    extra: dict = field(default_factory=dict)


class Bench:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.device = "cpu" if self.smoke else "cuda"
        self.dtype = torch.float32 if self.smoke else torch.bfloat16
        self.side = 256 if self.smoke else 1024
        self.steps = 2 if self.smoke else (10 if args.quick else args.steps)
        self.started = time.perf_counter()
        self.rows: list[Row] = []
        self.images: dict[str, np.ndarray] = {}
        self.shared = None  # tokenizer, processor, scheduler from the tiny model
        rng = np.random.default_rng(0)
        self.pictures = [Image.fromarray(rng.integers(0, 256, (self.side, self.side, 3), dtype=np.uint8))
                         for _ in range(2)]

    # ----- building --------------------------------------------------------------------

    def shared_parts(self):
        if self.shared is None:
            from pipelines.tiny_model import ensure_tiny_model

            tiny = QwenBackend(model=str(ensure_tiny_model()), device="cpu", profile="full",
                               t2i_model=None, attention=None, reuse_encodings=False)
            pipe = tiny._edit_pipeline()
            self.shared = (pipe.tokenizer, pipe.processor, pipe.scheduler)
        return self.shared

    def build(self, on: str):
        """The real-size pipeline with random weights (one layer in smoke mode), on ``on``."""
        from diffusers import AutoencoderKLQwenImage, QwenImageEditPlusPipeline, QwenImageTransformer2DModel
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        tokenizer, processor, scheduler = self.shared_parts()
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
               ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>",
                "<|endoftext|>", "<|im_end|>")}
        text = dict(SMOKE_TEXT if self.smoke else TEXT_CONFIG)
        text["vocab_size"] = text["vocab_size"] or len(tokenizer)
        text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                    pad_token_id=ids["<|endoftext|>"])
        config = Qwen2_5_VLConfig(
            text_config=text, vision_config=SMOKE_VISION if self.smoke else VISION_CONFIG,
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
        old_dtype = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            # Built where it will run, in its dtype: no fp32 copy of 28 B parameters.
            with torch.device("cuda" if not self.smoke else "cpu"):
                transformer = QwenImageTransformer2DModel(
                    zero_cond_t=True, **(SMOKE_TRANSFORMER if self.smoke else {})).eval()
                vae = AutoencoderKLQwenImage(**(SMOKE_VAE if self.smoke else {})).eval()
                text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
        finally:
            torch.set_default_dtype(old_dtype)
        pipe = QwenImageEditPlusPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                                         tokenizer=tokenizer, processor=processor, transformer=transformer)
        pipe.to(on)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def backend(self, pipe=None, **settings):
        """A QwenBackend running ``pipe`` (or real weights) through its own code path."""
        base = dict(device=self.device, dtype=self.dtype, t2i_model=None, steps=self.steps,
                    preview_every=10**6)
        if self.smoke:
            base.update(vae_area=self.side ** 2, output_area=self.side ** 2, max_output_area=self.side ** 2)
        base.update(settings)
        if self.args.weights:
            return QwenBackend(model=self.args.weights, **base)
        return _Prebuilt(pipe, **base)

    # ----- measuring -------------------------------------------------------------------

    def time_left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.started)

    def run(self, name: str, backend, pictures: int = 1, *, steps=None, seed=1, cfg=None,
            compare_to: Optional[str] = None, note: str = "") -> Optional[Row]:
        steps = steps or self.steps
        row = Row(name, pictures, steps, note=note)
        if self.time_left() <= 0:
            row.note = "skipped: time budget spent"
            self.rows.append(row)
            return row
        _reset_peak(self.device)
        request = EditRequest("make the background darker and add rain",
                              images=tuple(self.pictures[:pictures]), seed=seed, steps=steps,
                              true_cfg_scale=cfg)
        started = time.perf_counter()
        try:
            result = backend.edit(request)
        except Exception as exc:  # a row that cannot run here says why; the others go on
            row.note = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
            self.rows.append(row)
            levers.free_memory(self.device)
            return row
        self.record(row, time.perf_counter() - started, np.asarray(result.image), cfg, compare_to)
        return row

    def record(self, row: Row, seconds: float, image: np.ndarray, cfg, compare_to) -> None:
        row.seconds = round(seconds, 3)
        row.per_step = round(seconds / row.steps, 4)
        row.peak_gib = _peak_gib(self.device)
        passes = 1 if cfg is not None and cfg <= 1 else 2
        floor = flop_per_pass(self.transformer_config(), self.side, row.pictures) * passes * row.steps \
            / (self.args.peak_tflops * 1e12)
        row.floor_ratio = round(seconds / floor, 2)
        row.extra["floor_s"] = float(f"{floor:.4g}")
        self.images[row.name] = image
        if compare_to in self.images:
            base = self.images[compare_to].astype(np.int16)
            row.max_abs_diff = int(np.abs(image.astype(np.int16) - base).max())
        self.rows.append(row)
        print(format_row(row), flush=True)

    def transformer_config(self) -> dict:
        # QwenImageTransformer2DModel's defaults are the published model's.
        config = dict(num_layers=60, attention_head_dim=128, num_attention_heads=24)
        if self.smoke:
            config.update(SMOKE_TRANSFORMER)
        return config

    def plain_diffusers(self, pipe, name="diffusers plain") -> Row:
        """The baseline: the pipeline called directly, as diffusers' docs show it."""
        row = Row(name, 1, self.steps)
        _reset_peak(self.device)
        started = time.perf_counter()
        # The pipeline's own resize areas (1 MP; smaller in smoke mode, as the backend's).
        with _edit_areas(pipe, self.side ** 2, size_math.CONDITION_AREA):
            out = pipe(image=[self.pictures[0]], prompt="make the background darker and add rain",
                       negative_prompt=" ", true_cfg_scale=4.0, num_inference_steps=self.steps,
                       width=self.side, height=self.side,
                       generator=torch.Generator("cpu").manual_seed(1))
        image = np.asarray(out.images[0].resize((self.side, self.side), Image.LANCZOS))
        self.record(row, time.perf_counter() - started, image, None, None)
        return row


class _Prebuilt(QwenBackend):
    """QwenBackend on an already-built pipeline: the same levers and placement."""

    def __init__(self, pipe, **settings):
        self._prebuilt = pipe
        super().__init__(model="random-weights", **settings)

    def _load_edit_pipeline(self):
        self.pipeline_class = "QwenImageEditPlusPipeline"
        self._settle_profile()
        pipe = self._prebuilt
        self._prepare_transformer(pipe.transformer)
        self._place(pipe)
        return pipe

    def _model_bytes(self):
        return profiles.PUBLISHED


def flop_per_pass(config: dict, side: int, pictures: int) -> float:
    """FLOP of one transformer pass at a ``side``^2 output with ``pictures`` inputs."""
    d = config["attention_head_dim"] * config["num_attention_heads"]
    tokens = (side // 16) ** 2 * (1 + pictures) + TEXT_TOKENS
    per_block = 24 * d * d * tokens + 4 * tokens * tokens * d
    return float(config["num_layers"] * per_block)


def _reset_peak(device) -> None:
    if levers.is_cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device) -> Optional[float]:
    if not levers.is_cuda(device):
        return None
    return round(torch.cuda.max_memory_allocated() / GIB, 2)


HEADER = (f"{'row':<34} {'pics':>4} {'steps':>5} {'s/step':>8} {'total s':>8} "
          f"{'peak GiB':>8} {'x floor':>7} {'max diff':>8}  note")


def format_row(row: Row) -> str:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    return (f"{row.name:<34} {row.pictures:>4} {row.steps:>5} {fmt(row.per_step, '8.3f')} "
            f"{fmt(row.seconds, '8.2f')} {fmt(row.peak_gib, '8.2f')} {fmt(row.floor_ratio, '7.2f')} "
            f"{fmt(row.max_abs_diff, '8d')}  {row.note}")


# ----- the rows ----------------------------------------------------------------------------


def main_rows(bench: Bench) -> None:
    pipe = None if bench.args.weights else bench.build(on=bench.device)
    if pipe is not None:
        bench.plain_diffusers(pipe)
    full = bench.backend(pipe, profile="full", attention="auto")
    bench.run("full (auto attention, reuse)", full, compare_to="diffusers plain")
    bench.run("full, variation (reused encodings)", full, seed=2,
              note="prompt and picture encodings reused")
    bench.run("full, same request again", full, compare_to="full (auto attention, reuse)",
              note="must equal the first: reuse is exact")
    bench.run("full, two pictures", full, pictures=2)
    live = full._edit_pipeline().transformer
    for name in levers.available_attention(bench.device):
        if name == "native":
            continue
        levers.set_attention(live, name)
        bench.run(f"full, attention {name}", full, compare_to="diffusers plain")
    levers.set_attention(live, levers.pick_attention("auto", bench.device))
    for cache in ("first-block", "taylorseer"):
        levers.apply_step_cache(live, cache)
        bench.run(f"full, cache {cache}", full, compare_to="diffusers plain", note="approximate")
        live.disable_cache()
    bench.run("Lightning-style 8 steps, no CFG", full, steps=8, cfg=1.0,
              note="the fused LoRA adds no cost: same shapes")
    if not bench.smoke:
        bench.run("full + compile (warm-up run)", bench.backend(pipe, profile="full", compile=True),
                  note="includes compilation")
        # `full` runs the same pipeline object, whose blocks are compiled now.
        bench.run("full + compile", full, compare_to="diffusers plain")
        bench.run("best: compile, reuse, Lightning 8", full, steps=8, cfg=1.0, seed=3)
    # The offload profiles start from the model in host RAM; each leaves hooks behind,
    # so this pipeline is not used for anything else afterwards.
    cuda = levers.is_cuda(bench.device)
    if pipe is not None and cuda:
        pipe.to("cpu")
        levers.free_memory(bench.device)
    bench.run("model-offload", bench.backend(pipe, profile="model-offload") if cuda
              else _cpu_offload(bench, pipe), note="parts move to the GPU per call")
    if cuda:
        if pipe is not None:
            pipe.remove_all_hooks()
        bench.run("group-offload", bench.backend(pipe, profile="group-offload"),
                  steps=min(bench.steps, 8), note="fewer steps: several times slower")
    del pipe, full, live
    levers.free_memory(bench.device)
    fresh = None if bench.args.weights else bench.build(on=bench.device)
    bench.run("fp8", bench.backend(fresh, profile="fp8"), compare_to="diffusers plain",
              note="fp8 matmuls" if levers.fp8_matmuls_available(bench.device)
              else "fp8 storage, bf16 compute")
    del fresh
    levers.free_memory(bench.device)
    bench.rows.append(Row("nf4", 1, bench.steps, note=(
        "random weights cannot be quantized at load: run with --weights PATH")
        if not bench.args.weights else "see the simulated 24 GB card"))


def _cpu_offload(bench: Bench, pipe):
    """Model offload's real accelerate hooks also run on the CPU (smoke mode)."""
    backend = bench.backend(pipe, profile="full")
    backend.profile = "model-offload"
    return backend


def simulated_cards(bench: Bench) -> list[str]:
    """For 24, 48 and 80 GB: what ``auto`` picks, and whether that profile runs there."""
    if not levers.is_cuda(bench.device):
        return ["simulated cards: n/a (smoke, no CUDA)"]
    lines = []
    total = torch.cuda.get_device_properties(0).total_memory
    for card in (24, 48, 80):
        levers.free_memory(bench.device)
        free = card * GIB - torch.cuda.memory_reserved()
        choice = profiles.choose(free, levers.host_available(), profiles.PUBLISHED, PLANNED_WORK,
                                 allowed=levers.usable_profiles())
        est = profiles.estimate(choice.profile, profiles.PUBLISHED, PLANNED_WORK) if choice.profile else None
        verdict, measured = "not run: time budget spent", None
        if choice.profile == "nf4" and not bench.args.weights:
            verdict = "not run: nf4 quantizes at load, needs --weights"
        elif choice.profile and bench.time_left() > 60:
            # Built (on the GPU, then moved to host RAM) before the card shrinks.
            pipe = bench.build(on="cpu") if not bench.args.weights else None
            levers.free_memory(bench.device)
            torch.cuda.set_per_process_memory_fraction(min(card * GIB / total, 1.0))
            try:
                row = bench.run(f"{card} GB card: {choice.profile}",
                                bench.backend(pipe, profile=choice.profile), steps=4)
            finally:
                torch.cuda.set_per_process_memory_fraction(1.0)
            verdict = "ran" if row.seconds is not None else row.note
            measured = row.peak_gib
            del pipe
        lines.append(f"{card} GB card: auto picks {choice.profile} (estimated "
                     f"{profiles.gib(est.gpu_peak) if est else '?'}; measured peak "
                     f"{measured if measured is not None else '-'} GiB): {verdict}")
    torch.cuda.set_per_process_memory_fraction(1.0)
    return lines


def goal_lines(bench: Bench) -> list[str]:
    if bench.smoke:
        return ["goals: n/a (smoke)"]
    by = {r.name: r for r in bench.rows}
    scale = bench.args.steps / bench.steps  # --quick extrapolates to 40 steps

    def seconds(name):
        row = by.get(name)
        return None if row is None or row.seconds is None else row.seconds

    full_quality = [r for r in bench.rows if r.seconds and r.pictures == 1 and r.steps == bench.steps
                    and "approximate" not in r.note and "warm-up" not in r.name
                    and r.name != "diffusers plain"]
    best_40 = min((r.seconds * scale for r in full_quality), default=None)
    # Identical output: the exact levers only (compile and fp8 change the numerics).
    identical = min((r.seconds * scale for r in full_quality if r.max_abs_diff == 0), default=None)
    plain = seconds("diffusers plain")
    lightning = seconds("best: compile, reuse, Lightning 8") or seconds("Lightning-style 8 steps, no CFG")
    lines = []
    lines.append(_goal(f"40-step true-CFG edit <= {GOAL_EDIT_S} s", best_40, best_40 is not None
                       and best_40 <= GOAL_EDIT_S))
    lines.append(_goal(f"Lightning 8-step <= {GOAL_LIGHTNING_S} s", lightning,
                       lightning is not None and lightning <= GOAL_LIGHTNING_S))
    speedup = plain * scale / identical if plain and identical else None
    lines.append(_goal(f">= {GOAL_SPEEDUP}x the plain diffusers call, identical output",
                       speedup, speedup is not None and speedup >= GOAL_SPEEDUP, unit="x"))
    return lines


def _goal(text, value, ok, unit="s") -> str:
    shown = "-" if value is None else f"{value:.2f} {unit}"
    return f"{'PASS' if ok else 'FAIL'}: {text} (measured {shown})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, one layer, 256x256: checks the code")
    parser.add_argument("--weights", help="a real model folder instead of random weights")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="10 steps a row; 40-step goals extrapolated")
    parser.add_argument("--peak-tflops", type=float, default=790.0,
                        help="sustained bf16 matmul rate for the floor (H200: about 790)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip rows once this is spent")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: use --smoke to check the code on the CPU")
    if args.smoke:
        torch.manual_seed(0)
        # One thread for every row: the same summation order, so exact rows compare equal.
        torch.set_num_threads(1)
    bench = Bench(args)
    config = bench.transformer_config()
    print(f"device {torch.cuda.get_device_name(0) if not args.smoke else 'cpu (smoke)'}; "
          f"{bench.side}x{bench.side}; {bench.steps} steps; FLOP per pass with one picture "
          f"{flop_per_pass(config, bench.side, 1):.3g}; floor at {args.peak_tflops:g} TFLOP/s")
    print(HEADER, flush=True)
    main_rows(bench)
    for row in bench.rows:
        if row.seconds is None:
            print(format_row(row))
    extra = simulated_cards(bench) + goal_lines(bench)
    print("\n".join(extra))
    print(f"total {time.perf_counter() - bench.started:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [asdict(r) for r in bench.rows],
                                               "lines": extra}, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
