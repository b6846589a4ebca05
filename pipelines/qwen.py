"""The ``qwen`` backend: Qwen Image Edit Plus on diffusers, plus text-to-image.

Owns loading (model id or local folder, revision, dtype, device, memory profile,
Lightning LoRA, attention backend), the call into the diffusers pipelines, size
planning (via ``pipelines.sizes``), previews, cancellation and seeds. Knows nothing
of chainlit, the edit history or how results are stored: PIL images and the plain
dataclasses of ``pipelines.base`` go in and out.

Edits use ``QwenImageEditPlusPipeline``. Text-to-image uses ``QwenImagePipeline``
built on the same text encoder, tokenizer and VAE, with only the transformer
loaded from ``t2i_model`` (or, with ``t2i_mode="canvas"``, the edit model paints on
a blank canvas, which needs no second transformer in memory).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import sys
import threading
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence

from PIL import Image

from . import sizes as size_math
from .base import (
    BackendError,
    BackendUnavailable,
    BadRequest,
    Cancelled,
    Capabilities,
    EditRequest,
    GenerateRequest,
    ProgressFn,
    Result,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen-Image-Edit-2511"
DEFAULT_T2I_MODEL = "Qwen/Qwen-Image"
PROFILES = ("full", "model-offload", "group-offload", "fp8", "nf4")
CUDA_ONLY_PROFILES = ("model-offload", "group-offload", "nf4")
T2I_MODES = ("pipeline", "canvas")

# Model-card defaults (Qwen-Image-Edit-2511 and Qwen-Image).
EDIT_STEPS = 40
T2I_STEPS = 50
TRUE_CFG_SCALE = 4.0
# True CFG runs only when a negative prompt is given: " " keeps it on.
DEFAULT_NEGATIVE_PROMPT = " "
CANVAS_COLOR = (255, 255, 255)

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
LIGHTNING_STEPS = (4, 8)
# (model id substring, repo, weight file, subfolder) for the published LoRAs.
_LIGHTNING_LORAS = (
    ("Qwen-Image-Edit-2511", "lightx2v/Qwen-Image-Edit-2511-Lightning",
     "Qwen-Image-Edit-2511-Lightning-{n}steps-V1.0-bf16.safetensors", None),
    ("Qwen-Image-Edit-2509", "lightx2v/Qwen-Image-Lightning",
     "Qwen-Image-Edit-2509-Lightning-{n}steps-V1.0-bf16.safetensors", "Qwen-Image-Edit-2509"),
    ("Qwen-Image-Edit", "lightx2v/Qwen-Image-Lightning",
     "Qwen-Image-Edit-Lightning-{n}steps-V1.0-bf16.safetensors", None),
    ("Qwen-Image", "lightx2v/Qwen-Image-Lightning",
     "Qwen-Image-Lightning-{n}steps-V2.0-bf16.safetensors", None),
)

_DTYPE_NAMES = {
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16", "half": "float16",
    "fp32": "float32", "float32": "float32", "float": "float32",
}

# One pipeline call at a time per process: the GPU is shared anyway, and the edit
# pipeline reads its resize areas from module constants that we set per call.
_CALL_LOCK = threading.Lock()


class QwenBackend:
    """Qwen Image Edit Plus through diffusers. Loads lazily on the first call."""

    name = "qwen"
    note: Optional[str] = None

    def __init__(
        self,
        model: Optional[str] = None,
        revision: Optional[str] = None,
        dtype: Any = None,
        device: Optional[str] = None,
        profile: str = "full",
        lightning: Optional[int] = None,
        lightning_lora: Optional[str] = None,
        attention: Optional[str] = None,
        t2i_model: Optional[str] = DEFAULT_T2I_MODEL,
        t2i_revision: Optional[str] = None,
        t2i_mode: str = "pipeline",
        t2i_lightning_lora: Optional[str] = None,
        steps: Optional[int] = None,
        t2i_steps: Optional[int] = None,
        vae_area: int = size_math.VAE_AREA,
        condition_area: int = size_math.CONDITION_AREA,
        output_area: Optional[int] = None,
        max_output_area: Optional[int] = size_math.MAX_OUTPUT_AREA,
        t2i_size: Sequence[int] = size_math.T2I_DEFAULT_SIZE,
        preview_every: Optional[int] = None,
        cpu_threads: Optional[int] = None,
    ):
        import torch

        self.model = str(model or os.environ.get("QEC_MODEL") or DEFAULT_MODEL)
        self.revision = revision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.torch_dtype = _parse_dtype(dtype, self.device)
        if profile not in PROFILES:
            raise BackendUnavailable(
                f"Unknown memory profile {profile!r}. Choose one of: {', '.join(PROFILES)}."
            )
        if profile in CUDA_ONLY_PROFILES and not str(self.device).startswith("cuda"):
            raise BackendUnavailable(
                f"The {profile!r} memory profile needs a CUDA GPU, but the device is "
                f"{self.device!r}. Use profile 'full' here."
            )
        self.profile = profile
        if t2i_mode not in T2I_MODES:
            raise BackendUnavailable(
                f"Unknown text-to-image mode {t2i_mode!r}. Choose one of: {', '.join(T2I_MODES)}."
            )
        self.t2i_mode = t2i_mode
        self.t2i_model = str(t2i_model) if t2i_model else None
        self.t2i_revision = t2i_revision
        if lightning is not None and int(lightning) not in LIGHTNING_STEPS:
            raise BackendUnavailable("Lightning comes in 4 or 8 steps; set lightning to 4 or 8.")
        self.lightning = int(lightning) if lightning is not None else None
        self.lightning_lora = _lightning_lora(self.model, self.lightning, lightning_lora)
        self.t2i_lightning_lora = None
        if self.lightning and self.t2i_mode == "pipeline" and not self._t2i_shares_edit_model:
            self.t2i_lightning_lora = _lightning_lora(
                self.t2i_model, self.lightning, t2i_lightning_lora
            )
        self.attention = _check_attention(attention)
        for label, value in (("steps", steps), ("t2i_steps", t2i_steps)):
            if value is not None and int(value) < 2:
                raise BackendUnavailable(f"{label} must be at least 2.")
        self.edit_steps = int(steps or self.lightning or EDIT_STEPS)
        self.t2i_steps = int(t2i_steps or self.lightning or T2I_STEPS)
        self.true_cfg_scale = 1.0 if self.lightning else TRUE_CFG_SCALE
        self.vae_area = int(vae_area)
        self.condition_area = int(condition_area)
        self.output_area = output_area
        self.max_output_area = max_output_area
        self.t2i_size = (int(t2i_size[0]), int(t2i_size[1]))
        self.preview_every = preview_every
        self.cpu_threads = int(cpu_threads) if cpu_threads else None
        self.capabilities = Capabilities()

        self._lock = threading.RLock()
        self._edit_pipe = None
        self._t2i_pipe = None
        self._previewer = None
        self._offload_owner = None

    # ----- public API -------------------------------------------------------------

    def load(self) -> None:
        """Load the edit pipeline now rather than on the first call."""
        self._edit_pipeline()

    def edit(
        self,
        request: EditRequest,
        *,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        if not isinstance(request, EditRequest):
            raise BadRequest("edit() takes an EditRequest.")
        return self._edit(request.prompt, list(request.images), request, progress, cancel,
                          mode="edit")

    def generate(
        self,
        request: GenerateRequest,
        *,
        progress: Optional[ProgressFn] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        if not isinstance(request, GenerateRequest):
            raise BadRequest("generate() takes a GenerateRequest.")
        if self.t2i_mode == "canvas":
            square = size_math.fit_area(1, 1, self.output_area or self.vae_area)
            planned = _plan(size_math.plan_generate, request.width, request.height,
                            default=square, max_output_area=self.max_output_area)
            canvas = Image.new("RGB", planned.output, CANVAS_COLOR)
            return self._edit(request.prompt, [canvas], request, progress, cancel, mode="canvas")
        return self._generate(request, progress, cancel)

    # ----- the two kinds of run ---------------------------------------------------

    def _edit(self, prompt, images, request, progress, cancel, *, mode: str) -> Result:
        _raise_if_cancelled(cancel)
        planned = _plan(
            size_math.plan_edit,
            [img.size for img in images],
            request.width if mode == "edit" else None,
            request.height if mode == "edit" else None,
            vae_area=self.vae_area,
            condition_area=self.condition_area,
            output_area=self.output_area,
            max_output_area=self.max_output_area,
        )
        pipe = self._edit_pipeline()
        steps = request.steps or self.edit_steps
        params = self._call_params(request, steps, planned.generate)
        info = self._info(mode, pipe, params, planned.output, prompt)
        info.update(
            input_sizes=[list(s) for s in planned.inputs],
            vae_sizes=[list(s) for s in planned.vae],
            condition_sizes=[list(s) for s in planned.condition],
        )
        with _CALL_LOCK, _edit_areas(pipe, self.vae_area, self.condition_area):
            return self._run(pipe, dict(params, image=images, prompt=prompt), planned.output,
                             info, progress, cancel)

    def _generate(self, request, progress, cancel) -> Result:
        _raise_if_cancelled(cancel)
        planned = _plan(size_math.plan_generate, request.width, request.height,
                        default=self.t2i_size, max_output_area=self.max_output_area)
        pipe = self._t2i_pipeline()
        steps = request.steps or self.t2i_steps
        params = self._call_params(request, steps, planned.generate)
        info = self._info("generate", pipe, params, planned.output, request.prompt)
        info["t2i_model"] = self.t2i_model or self.model
        info["t2i_revision"] = self.t2i_revision if self.t2i_model else self.revision
        with _CALL_LOCK:
            return self._run(pipe, dict(params, prompt=request.prompt), planned.output,
                             info, progress, cancel)

    def _call_params(self, request, steps: int, generate_size) -> dict:
        cfg = self.true_cfg_scale if request.true_cfg_scale is None else float(request.true_cfg_scale)
        negative = request.negative_prompt
        if not negative:
            negative = DEFAULT_NEGATIVE_PROMPT
        seed = int(request.seed) if request.seed is not None else secrets.randbelow(2**32)
        return {
            "num_inference_steps": int(steps),
            "true_cfg_scale": cfg,
            # Passing a negative prompt with guidance off only earns a warning.
            "negative_prompt": negative if cfg > 1 else None,
            "width": generate_size[0],
            "height": generate_size[1],
            "seed": seed,
        }

    def _run(self, pipe, params: dict, output_size, info: dict, progress, cancel) -> Result:
        import torch

        params = dict(params)
        seed = params.pop("seed")
        steps = params["num_inference_steps"]
        width, height = params["width"], params["height"]
        # A CPU generator gives the same noise on every device.
        generator = torch.Generator(device="cpu").manual_seed(seed)
        tracker = _StepTracker(steps, width, height, progress, cancel, self._previewer,
                               self.preview_every)
        if pipe.transformer.config.guidance_embeds:
            params["guidance_scale"] = 1.0
        self._claim_offload(pipe)
        started = time.perf_counter()
        try:
            with _torch_threads(self.cpu_threads):
                out = pipe(
                    **params,
                    generator=generator,
                    callback_on_step_end=tracker,
                    callback_on_step_end_tensor_inputs=["latents"],
                )
        except torch.OutOfMemoryError as exc:
            raise BackendError(
                "Out of GPU memory. Try a smaller image, profile 'model-offload' or "
                "'group-offload', or t2i_mode 'canvas'."
            ) from exc
        elapsed = time.perf_counter() - started
        if tracker.cancelled:
            raise Cancelled()
        image = out.images[0]
        if image.size != tuple(output_size):
            image = image.resize(tuple(output_size), Image.LANCZOS)
        info.update(seed=seed, elapsed_s=round(elapsed, 3), steps_run=tracker.steps_done)
        return Result(image=image, seed=seed, steps=steps, elapsed_s=elapsed, info=info)

    def _info(self, mode, pipe, params, output_size, prompt) -> dict:
        info = {
            "backend": self.name,
            "mode": mode,
            "pipeline": type(pipe).__name__,
            "model": self.model,
            "revision": self.revision,
            "dtype": str(self.torch_dtype).replace("torch.", ""),
            "device": str(self.device),
            "profile": self.profile,
            "attention": self.attention,
            "lightning": self.lightning,
            "prompt": prompt,
            "steps": params["num_inference_steps"],
            "true_cfg_scale": params["true_cfg_scale"],
            "negative_prompt": params["negative_prompt"],
            "width": output_size[0],
            "height": output_size[1],
            "generate_width": params["width"],
            "generate_height": params["height"],
            "seed": params["seed"],
            "versions": _versions(),
        }
        if self.lightning:
            info["lightning_lora"] = self.lightning_lora
        if self.note:
            info["note"] = self.note
        return info

    # ----- loading ----------------------------------------------------------------

    def _edit_pipeline(self):
        with self._lock:
            if self._edit_pipe is None:
                self._edit_pipe = self._load_edit_pipeline()
                self._previewer = _make_previewer(self._edit_pipe.vae)
            return self._edit_pipe

    def _t2i_pipeline(self):
        with self._lock:
            if self._t2i_pipe is None:
                edit = self._edit_pipeline()
                self._t2i_pipe = self._load_t2i_pipeline(edit)
            return self._t2i_pipe

    def _load_edit_pipeline(self):
        from diffusers import QwenImageEditPlusPipeline

        # model_index.json of the tiny model names this module; diffusers only
        # loads components from modules that are already imported.
        from . import processor  # noqa: F401

        kwargs = {"revision": self.revision, **_dtype_kwargs(self.torch_dtype)}
        if self.profile == "nf4":
            kwargs["quantization_config"] = self._nf4_pipeline_config()
        pipe = _loading(self.model, lambda: QwenImageEditPlusPipeline.from_pretrained(
            self.model, **kwargs), self.revision)
        if self.lightning:
            self._add_lightning(pipe, self.lightning_lora)
        self._set_attention(pipe.transformer)
        self._place(pipe)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _load_t2i_pipeline(self, edit):
        from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

        # Built by hand rather than with `from_pipe`, which casts the shared modules
        # with `.to(dtype)` (undoing fp8 storage, failing on 4-bit weights).
        if self._t2i_shares_edit_model:
            transformer, scheduler = edit.transformer, edit.scheduler
        else:
            transformer = self._load_t2i_transformer()
            scheduler = FlowMatchEulerDiscreteScheduler.from_config(
                LIGHTNING_SCHEDULER_CONFIG if self.lightning else edit.scheduler.config
            )
        pipe = QwenImagePipeline(
            scheduler=scheduler,
            vae=edit.vae,
            text_encoder=edit.text_encoder,
            tokenizer=edit.tokenizer,
            transformer=transformer,
        )
        if transformer is not edit.transformer:
            if self.lightning:
                self._add_lightning(pipe, self.t2i_lightning_lora)
            self._set_attention(transformer)
            self._place_transformer(transformer)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _load_t2i_transformer(self):
        from diffusers import QwenImageTransformer2DModel

        kwargs = {"subfolder": "transformer", "revision": self.t2i_revision,
                  **_dtype_kwargs(self.torch_dtype)}
        if self.profile == "nf4":
            kwargs["quantization_config"] = self._nf4_model_config()
        return _loading(
            self.t2i_model,
            lambda: QwenImageTransformer2DModel.from_pretrained(self.t2i_model, **kwargs),
            self.t2i_revision,
            hint="point t2i_model at a local folder, or use t2i_mode 'canvas', which "
                 "generates with the edit model alone",
        )

    @property
    def _t2i_shares_edit_model(self) -> bool:
        if self.t2i_model is None:
            return True
        same_revision = (self.t2i_revision or None) == (self.revision or None)
        return same_revision and _same_model(self.t2i_model, self.model)

    def _place(self, pipe) -> None:
        """Put the pipeline on its device the way the memory profile says."""
        import torch

        if self.profile == "model-offload":
            self._claim_offload(pipe)
        elif self.profile == "group-offload":
            pipe.enable_group_offload(
                onload_device=torch.device(self.device),
                offload_device=torch.device("cpu"),
                offload_type="leaf_level",
                use_stream=True,
            )
        else:
            if self.profile == "fp8":
                _fp8_storage(pipe.transformer, self.torch_dtype)
            pipe.to(self.device)

    def _place_transformer(self, transformer) -> None:
        """Like ``_place`` for a t2i transformer joining already-placed parts."""
        import torch

        if self.profile == "model-offload":
            return  # `_claim_offload` hooks it up before its first call
        if self.profile == "group-offload":
            transformer.enable_group_offload(
                onload_device=torch.device(self.device),
                offload_device=torch.device("cpu"),
                offload_type="leaf_level",
                use_stream=True,
            )
            return
        if self.profile == "fp8":
            _fp8_storage(transformer, self.torch_dtype)
        transformer.to(self.device)

    def _claim_offload(self, pipe) -> None:
        """Model offload hooks chain one pipeline's modules; re-chain on switching.

        After every call diffusers leaves all offloaded modules on the CPU, so
        re-hooking the shared text encoder and VAE for the other pipeline is cheap.
        """
        if self.profile == "model-offload" and self._offload_owner is not pipe:
            pipe.enable_model_cpu_offload(device=self.device)
            self._offload_owner = pipe

    def _set_attention(self, transformer) -> None:
        if not self.attention:
            return
        try:
            transformer.set_attention_backend(self.attention)
        except (ValueError, ImportError, RuntimeError) as exc:
            raise BackendUnavailable(
                f"Attention backend {self.attention!r} cannot be used here: {_short(exc)}"
            ) from exc

    def _add_lightning(self, pipe, lora: str) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        if importlib.util.find_spec("peft") is None:
            raise BackendUnavailable("Lightning LoRAs need the peft package: pip install peft")
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(LIGHTNING_SCHEDULER_CONFIG)
        source, weight_name, subfolder = _split_lora(lora)
        kwargs = {"adapter_name": "lightning"}
        if weight_name:
            kwargs["weight_name"] = weight_name
        if subfolder:
            kwargs["subfolder"] = subfolder
        _loading(lora, lambda: pipe.load_lora_weights(source, **kwargs),
                 hint="set lightning_lora to a local .safetensors file")

    def _nf4_kwargs(self) -> dict:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise BackendUnavailable(
                "The 'nf4' memory profile needs bitsandbytes (CUDA only): pip install bitsandbytes"
            )
        return {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": self.torch_dtype,
        }

    def _nf4_pipeline_config(self):
        from diffusers.quantizers import PipelineQuantizationConfig

        return PipelineQuantizationConfig(
            quant_backend="bitsandbytes_4bit",
            quant_kwargs=self._nf4_kwargs(),
            components_to_quantize=["transformer", "text_encoder"],
        )

    def _nf4_model_config(self):
        from diffusers import BitsAndBytesConfig

        return BitsAndBytesConfig(**self._nf4_kwargs())


# ----- per-run helpers ---------------------------------------------------------------


class _StepTracker:
    """``callback_on_step_end``: progress, previews and the cancel flag, every step."""

    def __init__(self, total, width, height, progress, cancel, previewer, every=None):
        self.total = total
        self.width = width
        self.height = height
        self.progress = progress
        self.cancel = cancel
        self.previewer = previewer
        # About eight previews a run: frequent enough to watch, rare enough to be free.
        self.every = max(1, int(every) if every else round(total / 8))
        self.steps_done = 0
        self.cancelled = False

    def __call__(self, pipe, i, t, kwargs):
        self.steps_done = step = i + 1
        if self.progress is not None:
            preview = None
            if self.previewer is not None and step < self.total and step % self.every == 0:
                preview = self._preview(kwargs.get("latents"))
            try:
                self.progress(step, self.total, preview)
            except Cancelled:
                self.cancelled = True
            except Exception:  # a broken progress display must not lose the image
                log.exception("progress callback failed at step %d", step)
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        if self.cancelled:
            # Raised out of the pipeline call: the remaining steps and the VAE decode of
            # an image nobody will keep are skipped (``_interrupt`` would still decode).
            raise Cancelled()
        return kwargs

    def _preview(self, latents):
        if latents is None:
            return None
        try:
            return self.previewer(latents, self.width, self.height)
        except Exception:
            log.exception("preview failed")
            return None


@contextmanager
def _edit_areas(pipe, vae_area: int, condition_area: int):
    """Set the edit pipeline's resize areas (module constants read at call time)."""
    module = sys.modules.get(type(pipe).__module__)
    names = ("VAE_IMAGE_SIZE", "CONDITION_IMAGE_SIZE")
    if module is None or not all(hasattr(module, n) for n in names):
        yield
        return
    old = tuple(getattr(module, n) for n in names)
    module.VAE_IMAGE_SIZE, module.CONDITION_IMAGE_SIZE = vae_area, condition_area
    try:
        yield
    finally:
        module.VAE_IMAGE_SIZE, module.CONDITION_IMAGE_SIZE = old


@contextmanager
def _torch_threads(count: Optional[int]):
    """Run with ``count`` intra-op CPU threads (process-wide, so only under _CALL_LOCK)."""
    import torch

    if not count or count == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _raise_if_cancelled(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def _plan(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def _make_previewer(vae):
    from .previews import LatentPreviewer

    try:
        return LatentPreviewer.for_vae(vae)
    except (ValueError, AttributeError):
        log.info("no previews: VAE latents are not the 16-channel Qwen-Image kind")
        return None


def _fp8_storage(transformer, compute_dtype) -> None:
    import torch

    # Weights stored in fp8 and upcast layer by layer: about half the memory of bf16.
    transformer.enable_layerwise_casting(
        storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype
    )


# ----- settings and loading helpers ----------------------------------------------------


def _parse_dtype(dtype, device):
    import torch

    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPE_NAMES.get(str(dtype).lower().replace("torch.", ""))
    if name is None:
        raise BackendUnavailable(
            f"Unknown dtype {dtype!r}. Use bfloat16, float16 or float32."
        )
    return getattr(torch, name)


def _check_attention(name: Optional[str]) -> Optional[str]:
    if not name:
        return None
    from diffusers.models.attention_dispatch import AttentionBackendName

    known = sorted(b.value for b in AttentionBackendName)
    if name.lower() not in known:
        raise BackendUnavailable(
            f"Attention backend {name!r} is unknown. Known: {', '.join(known)}."
        )
    return name.lower()


def _dtype_kwargs(dtype) -> dict:
    # diffusers renamed `torch_dtype` to `dtype` (0.37); use whichever it knows.
    try:
        from diffusers.utils import deprecation_utils

        if hasattr(deprecation_utils, "_resolve_dtype"):
            return {"dtype": dtype}
    except ImportError:
        pass
    return {"torch_dtype": dtype}


def _lightning_lora(model: Optional[str], lightning: Optional[int], override: Optional[str]):
    if not lightning:
        return None
    if override:
        return override
    name = Path(str(model)).name if model else ""
    for key, repo, weight, subfolder in _LIGHTNING_LORAS:
        if name.startswith(key):
            path = f"{subfolder}/{weight}" if subfolder else weight
            return f"{repo}/{path.format(n=lightning)}"
    raise BackendUnavailable(
        f"No known Lightning LoRA for model {model!r}. Set lightning_lora to a "
        ".safetensors file or 'owner/repo/file.safetensors'."
    )


def _split_lora(lora: str):
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


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def _loading(name: str, load, revision: Optional[str] = None,
             hint: str = "set QEC_MODEL to a local folder that holds it"):
    """Run ``load``; turn 'weights not here' into one message a user can act on."""
    try:
        return load()
    except BackendError:
        raise
    except (OSError, ValueError) as exc:
        if Path(str(name)).expanduser().exists():
            raise BackendUnavailable(
                f"Could not load the model from {name}: {_short(exc)}"
            ) from exc
        command = f"huggingface-cli download {name}"
        if revision:
            command += f" --revision {revision}"
        raise BackendUnavailable(
            f"Model {name} is not on this machine and could not be downloaded. "
            f"Download it with `{command}`, or {hint}. Details: {_short(exc)}"
        ) from exc
    except ImportError as exc:
        raise BackendUnavailable(f"Loading {name} needs a missing package: {_short(exc)}") from exc


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_VERSIONS: Optional[dict] = None


def _versions() -> dict:
    global _VERSIONS
    if _VERSIONS is None:
        found = {}
        for dist in ("diffusers", "transformers", "torch"):
            try:
                found[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                found[dist] = None
        _VERSIONS = found
    return dict(_VERSIONS)
