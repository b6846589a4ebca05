"""The ``qwen`` backend: Qwen Image Edit on diffusers, plus text-to-image.

Owns loading (model id or local folder, revision, dtype, device, memory profile,
Lightning LoRA, attention backend and the other levers), placing the model on the
device, the call into the diffusers pipelines, size planning (via
``pipelines.sizes``), previews, cancellation, seeds, and turning out-of-memory into
advice. Knows nothing of chainlit, the edit history or how results are stored: PIL
images and the plain dataclasses of ``pipelines.base`` go in and out. How much memory
a profile needs, and which one ``auto`` picks, is ``pipelines.profiles``' arithmetic;
what each lever does to the modules is ``pipelines.levers``'.

The pipeline class comes from the model's ``model_index.json``: Edit Plus
(2509, 2511: up to three pictures), the original Qwen-Image-Edit (one picture), or
Qwen-Image-2.1 (``QwenImage21Pipeline``: up to ten pictures; called without pictures
it generates, so it needs no second pipeline). For the others, text-to-image uses
``QwenImagePipeline`` built on the same text encoder, tokenizer and VAE, with only
the transformer loaded from ``t2i_model`` (or, in canvas mode, the edit model paints
on a blank canvas, which needs no second transformer).

``polisher()`` lends the loaded edit pipeline's text encoder (Qwen2.5-VL with its
language-model head) to ``pipelines.polish`` to rewrite a turn's words before the
edit, so polishing loads no second model.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Any, Optional, Sequence

from PIL import Image

from . import levers, loading, profiles, reuse
from . import loras as lora_tools
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
    to_rgb,
)
from . import lightning as lightning_table
from .lightning import LIGHTNING_SCHEDULER_CONFIG, LIGHTNING_STEPS, model_name, split_lora
from .loading import EDIT_PIPELINES

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen-Image-Edit-2511"
DEFAULT_T2I_MODEL = "Qwen/Qwen-Image"
PROFILES = (profiles.AUTO, *profiles.PROFILES)
CUDA_ONLY_PROFILES = profiles.CUDA_ONLY
T2I_MODES = ("auto", "pipeline", "canvas")
CACHES = ("off", *levers.CACHE_SETTINGS)

# Model-card defaults (Qwen-Image-Edit-2511 and Qwen-Image).
EDIT_STEPS = 40
T2I_STEPS = 50
TRUE_CFG_SCALE = 4.0
# True CFG runs only when a negative prompt is given: " " keeps it on.
DEFAULT_NEGATIVE_PROMPT = " "
CANVAS_COLOR = (255, 255, 255)

# Processors that would pull in a video processor (so torchvision) if loaded as named.
_VL_PROCESSORS = ("Qwen2VLProcessor", "Qwen2_5_VLProcessor", "ImageOnlyQwen2VLProcessor",
                  "Qwen3VLProcessor")
# Qwen-Image-2.1: diffusers' default output_resolution (1024) squared for text-to-image,
# its native 2K as the largest picture generated before resizing, and sizes in 32s.
QWEN21_T2I_SIZE = (1024, 1024)
QWEN21_MAX_OUTPUT_AREA = 2048 * 2048
_QWEN21_MULTIPLE = 32
# The original Qwen-Image-Edit sizes every input to about 1 MP, for the VAE and the
# vision encoder alike (fixed in its code, not module constants).
_ORIGINAL_EDIT_AREA = 1024 * 1024
# What ``auto`` plans for: a 1 MP result from three 1 MP pictures.
PLANNED_WORK = profiles.Workload(output_mp=1.0, input_mp=3.0)

# One pipeline call at a time per process: the GPU is shared anyway, and the edit
# pipeline reads its resize areas from module constants that we set per call.
_CALL_LOCK = threading.Lock()


class QwenBackend:
    """Qwen Image Edit through diffusers. Loads lazily on the first call."""

    name = "qwen"
    note: Optional[str] = None

    def __init__(
        self,
        model: Optional[str] = None,
        revision: Optional[str] = None,
        dtype: Any = None,
        device: Optional[str] = None,
        profile: str = profiles.AUTO,
        lightning: Optional[int] = None,
        lightning_lora: Optional[str] = None,
        attention: Optional[str] = "auto",
        compile: bool = False,
        cache: Optional[str] = "off",
        reuse_encodings: bool = True,
        t2i_model: Optional[str] = DEFAULT_T2I_MODEL,
        t2i_revision: Optional[str] = None,
        t2i_mode: str = "auto",
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
        loras: Optional[Sequence] = None,
    ):
        import torch

        self.model = str(model or os.environ.get("QEC_MODEL") or DEFAULT_MODEL)
        self.revision = revision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.torch_dtype = loading.parse_dtype(dtype, self.device)
        profile = profile or profiles.AUTO
        if profile not in PROFILES:
            raise BackendUnavailable(
                f"Unknown memory profile {profile!r}. Choose one of: {', '.join(PROFILES)}."
            )
        if profile in CUDA_ONLY_PROFILES and not levers.is_cuda(self.device):
            raise BackendUnavailable(
                f"The {profile!r} memory profile needs a CUDA GPU, but the device is "
                f"{self.device!r}. Use profile 'auto' or 'full' here."
            )
        self.requested_profile = profile
        # ``auto`` becomes a real profile when the model loads (it measures free memory).
        self.profile = profile if profile != profiles.AUTO else None
        self.profile_reason: Optional[str] = None
        if t2i_mode not in T2I_MODES:
            raise BackendUnavailable(
                f"Unknown text-to-image mode {t2i_mode!r}. Choose one of: {', '.join(T2I_MODES)}."
            )
        self.t2i_mode = t2i_mode
        self.t2i_model = str(t2i_model) if t2i_model else None
        self.t2i_revision = t2i_revision
        if t2i_mode == "auto" and self._t2i_shares_edit_model:
            self.t2i_mode = "pipeline"  # no second transformer: nothing to weigh
        if lightning is not None and int(lightning) not in LIGHTNING_STEPS:
            raise BackendUnavailable("Lightning comes in 4 or 8 steps; set lightning to 4 or 8.")
        self.lightning = int(lightning) if lightning is not None else None
        self.lightning_lora = lightning_table.lightning_lora(self.model, self.lightning, lightning_lora)
        self.t2i_lightning_lora = None
        if self.lightning and self.t2i_mode != "canvas" and not self._t2i_shares_edit_model:
            self.t2i_lightning_lora = lightning_table.lightning_lora(
                self.t2i_model, self.lightning, t2i_lightning_lora)
        self.attention = loading.check_attention(attention)
        if cache not in (None, *CACHES):
            raise BackendUnavailable(f"Unknown step cache {cache!r}. Choose one of: {', '.join(CACHES)}.")
        self.cache = None if cache in (None, "off") else cache
        self.compile = bool(compile)
        self.reuse_encodings = bool(reuse_encodings)
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
        self.pipeline_class: Optional[str] = None
        self.capabilities = Capabilities(max_input_images=loading.pictures_per_edit(self.model))

        self._lock = threading.RLock()
        self._edit_pipe = None
        self._t2i_pipe = None
        self._previewer = None
        self._offload_owner = None
        self._caches: dict = {}
        try:
            self.lora_specs = lora_tools.parse_loras(loras)
        except ValueError as exc:
            raise BackendUnavailable(f"Bad loras setting: {exc}") from exc
        # name -> why it was refused when the model loaded (the model loads without it).
        self.lora_problems: dict = {}

    # ----- public API -------------------------------------------------------------

    def load(self) -> None:
        """Load the edit pipeline now rather than on the first call."""
        self._edit_pipeline()

    def close(self) -> None:
        """Drop the loaded pipelines and give their memory back (GPU included)."""
        with self._lock, _CALL_LOCK:
            self._edit_pipe = self._t2i_pipe = self._previewer = self._offload_owner = None
            self._caches = {}
        levers.free_memory(self.device)

    def polisher(self, **options):
        """A ``pipelines.polish.LocalPolisher`` over the edit pipeline's own text encoder
        and processor, loading the pipeline first if needed (as an edit does). It runs
        on this backend's device, one call at a time with the pipelines, and holds the
        text encoder: build one per job rather than keeping it past ``close()``.
        ``options`` go to ``LocalPolisher`` (``max_new_tokens``...)."""
        from .polish import LocalPolisher

        pipe = self._edit_pipeline()
        folder = loading.local_folder(self.model, self.revision)
        return LocalPolisher(pipe.text_encoder, pipe.processor, device=self.device,
                             checkpoint=folder / "text_encoder" if folder else None,
                             lock=_CALL_LOCK, threads=self.cpu_threads, **options)

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
        self._edit_pipeline()  # settles ``auto``: canvas or a text-to-image pipeline
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
        pipe = self._edit_pipeline()
        limit = self.capabilities.max_input_images
        if len(images) > limit:
            raise BadRequest(
                f"{model_name(self.model)} edits one picture at a time with no references "
                f"(this edit had {len(images)}). Use Qwen-Image-Edit-2511 or 2509 for references."
                if limit == 1 else
                f"This model takes at most {limit} pictures per edit; this one had {len(images)}."
            )
        plus = self.pipeline_class != "QwenImageEditPipeline"
        unified = self.pipeline_class in loading.UNIFIED_PIPELINES
        vae_area = self.vae_area if plus else _ORIGINAL_EDIT_AREA
        condition_area = self.condition_area if plus else _ORIGINAL_EDIT_AREA
        output_area = self.output_area
        if unified:  # 2.1 resizes each picture once, for the VAE and the encoder alike
            resolution = _output_resolution(pipe, [img.size for img in images], self.vae_area)
            vae_area = condition_area = resolution * resolution
            if output_area == self.vae_area:
                output_area = None  # still on Picture 1's grid, if the resolution rose
        planned = _plan(
            size_math.plan_edit,
            [img.size for img in images],
            request.width if mode == "edit" else None,
            request.height if mode == "edit" else None,
            vae_area=vae_area,
            condition_area=condition_area,
            output_area=output_area,
            max_output_area=self.max_output_area,
        )
        generate = size_math.snap(*planned.generate, _QWEN21_MULTIPLE) if unified else planned.generate
        steps = request.steps or self.edit_steps
        params = self._call_params(request, steps, generate)
        info = self._info(mode, pipe, params, planned.output, prompt)
        info.update(
            input_sizes=[list(s) for s in planned.inputs],
            vae_sizes=[list(s) for s in planned.vae],
            condition_sizes=[list(s) for s in planned.condition],
        )
        call = dict(params, image=images if plus else images[0], prompt=prompt)
        if unified:
            call["output_resolution"] = resolution
        with _CALL_LOCK, _edit_areas(pipe, self.vae_area, self.condition_area):
            info.update(self._use_loras(pipe, request))
            return self._run(pipe, call, planned.output, info, progress, cancel)

    def _generate(self, request, progress, cancel) -> Result:
        _raise_if_cancelled(cancel)
        unified = self.pipeline_class in loading.UNIFIED_PIPELINES
        planned = _plan(size_math.plan_generate, request.width, request.height,
                        default=QWEN21_T2I_SIZE if unified else self.t2i_size,
                        max_output_area=self.max_output_area)
        pipe = self._t2i_pipeline()
        steps = request.steps or self.t2i_steps
        generate = size_math.snap(*planned.generate, _QWEN21_MULTIPLE) if unified else planned.generate
        params = self._call_params(request, steps, generate)
        info = self._info("generate", pipe, params, planned.output, request.prompt)
        info["t2i_model"] = self.t2i_model or self.model
        info["t2i_revision"] = self.t2i_revision if self.t2i_model else self.revision
        with _CALL_LOCK:
            info.update(self._use_loras(pipe, request))
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
        if getattr(pipe.transformer.config, "guidance_embeds", False):
            params["guidance_scale"] = 1.0
        self._claim_offload(pipe)
        out_of_memory = False
        started = time.perf_counter()
        try:
            with _torch_threads(self.cpu_threads):
                out = pipe(
                    **params,
                    generator=generator,
                    callback_on_step_end=tracker,
                    callback_on_step_end_tensor_inputs=["latents"],
                )
        except torch.OutOfMemoryError:
            log.warning("out of GPU memory during a %dx%d run:\n%s", width, height,
                        traceback.format_exc())
            out_of_memory = True
        except BaseException:
            # A stop or an error skips the pipeline's own clean-up: without this, model
            # offload leaves the transformer on the GPU and step caches keep old state.
            _free_model_hooks(pipe)
            raise
        if out_of_memory:
            # Outside the except block, so the failed call's tensors are already dropped.
            _free_model_hooks(pipe)
            levers.free_memory(self.device)
            raise BackendError(
                f"Out of GPU memory for a {width}x{height} picture with profile "
                f"'{self.profile}'. {self._advice()} Nothing was saved; the next job "
                "runs normally."
            )
        elapsed = time.perf_counter() - started
        if tracker.cancelled:
            raise Cancelled()
        image = to_rgb(out.images[0])  # Qwen-Image-2.1 paints RGBA: flattened on white
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
            "versions": loading.versions(),
        }
        if self.lightning:
            info["lightning_lora"] = self.lightning_lora
        if self.cache:
            info["cache"] = self.cache  # approximate: it changes the picture a little
        if self.note:
            info["note"] = self.note
        return info

    def _advice(self) -> str:
        memory = levers.gpu_memory(self.device)
        return profiles.suggest(self.profile or "full", memory[0] if memory else None,
                                levers.host_available(), self._model_bytes(), PLANNED_WORK)

    # ----- loading ----------------------------------------------------------------

    def _edit_pipeline(self):
        with self._lock:
            if self._edit_pipe is None:
                pipe = self._released_on_failure(self._load_edit_pipeline, "the edit model")
                if self.reuse_encodings:
                    self._caches = reuse.install(pipe)
                self._previewer = _make_previewer(pipe.vae)
                self._edit_pipe = pipe
            return self._edit_pipe

    def _t2i_pipeline(self):
        with self._lock:
            if self._t2i_pipe is None:
                edit = self._edit_pipeline()
                self._t2i_pipe = self._released_on_failure(
                    lambda: self._load_t2i_pipeline(edit), "the text-to-image model")
            return self._t2i_pipe

    def _released_on_failure(self, build, what: str):
        """Run ``build``; if it fails, free all it made before raising.

        The half-built pipeline lives only in the failed call's frames, which the
        exception's traceback keeps alive: the error is re-raised without them, and
        the memory is given back, so a retry starts from a clean GPU.
        """
        import torch

        try:
            return build()
        # Tracebacks are logged as text: a logged exception object would keep the
        # failed build's frames (and the model in them) alive in any handler that keeps it.
        except torch.OutOfMemoryError:
            log.warning("out of GPU memory while loading %s:\n%s", what, traceback.format_exc())
            failure = BackendUnavailable(
                f"Out of GPU memory while loading {what} with profile '{self.profile}'. "
                f"{self._advice()}")
        except BackendError as exc:
            failure = type(exc)(str(exc))
        except Exception as exc:
            log.error("loading %s failed:\n%s", what, traceback.format_exc())
            failure = BackendUnavailable(f"Could not load {what} ({self.model}): {loading.short(exc)}")
        levers.free_memory(self.device)
        raise failure

    def _load_edit_pipeline(self):
        import diffusers

        index = self._model_index()
        class_name = index.get("_class_name")
        if class_name not in EDIT_PIPELINES:
            raise BackendUnavailable(
                f"{self.model} is a {class_name or 'model with no pipeline class'}, not an "
                "image edit model. Use Qwen/Qwen-Image-Edit-2511, Qwen/Qwen-Image-Edit-2509 "
                "or Qwen/Qwen-Image-Edit (QEC_MODEL)."
            )
        self.pipeline_class = class_name
        self.capabilities = Capabilities(max_input_images=EDIT_PIPELINES[class_name])
        if class_name in loading.UNIFIED_PIPELINES:
            # It generates from words itself, and is sampled without guidance by default.
            self.t2i_model, self.t2i_mode = None, "pipeline"
            self.true_cfg_scale = 1.0
            if self.max_output_area == size_math.MAX_OUTPUT_AREA:  # the default: allow its 2K
                self.max_output_area = QWEN21_MAX_OUTPUT_AREA
        self._settle_profile()
        kwargs = {"revision": self.revision, **loading.dtype_kwargs(self.torch_dtype)}
        if self.profile == "nf4":
            kwargs["quantization_config"] = self._nf4_pipeline_config()
        if loading.component_class(index, "processor") in _VL_PROCESSORS:
            kwargs["processor"] = self._load_processor(loading.component_class(index, "processor"))
        cls = getattr(diffusers, class_name)
        pipe = loading.load_or_explain(self.model, lambda: cls.from_pretrained(self.model, **kwargs), self.revision)
        if self.lightning:
            self._add_lightning(pipe, self.lightning_lora)
        return self._make_ready(pipe)

    def _make_ready(self, pipe):
        """What every loaded edit pipeline goes through: the levers, then placing it.
        (``bench/gpu.py`` hands in pipelines built from configs and calls this too.)"""
        self._add_loras(pipe, ("edit", "t2i") if self._t2i_on_edit_transformer else ("edit",))
        self._prepare_transformer(pipe.transformer)
        self._place(pipe)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _model_index(self) -> dict:
        from diffusers import DiffusionPipeline

        return loading.load_or_explain(self.model, lambda: DiffusionPipeline.load_config(
            self.model, revision=self.revision), self.revision)

    def _load_processor(self, published: Optional[str] = None):
        """The published repos name ``Qwen2VLProcessor`` (Qwen3VLProcessor for 2.1),
        which under transformers 5 insists on a video processor (torchvision). The
        pipelines never pass videos, so the same files load as our image-only subclass."""
        from .processor import ImageOnlyQwen2VLProcessor, ImageOnlyQwen3VLProcessor

        cls = ImageOnlyQwen3VLProcessor if published == "Qwen3VLProcessor" else ImageOnlyQwen2VLProcessor
        return loading.load_or_explain(self.model, lambda: cls.from_pretrained(
            self.model, subfolder="processor", revision=self.revision), self.revision)

    def _settle_profile(self) -> None:
        """Turn ``auto`` into the fastest profile that fits this GPU's free memory."""
        memory = levers.gpu_memory(self.device)
        needs_t2i = self.t2i_mode == "auto"
        if self.requested_profile != profiles.AUTO and not needs_t2i:
            return
        model = self._model_bytes()
        t2i_bytes = profiles.model_bytes(loading.local_folder(self.t2i_model)).transformer if needs_t2i else 0
        work = profiles.Workload(PLANNED_WORK.output_mp, PLANNED_WORK.input_mp, t2i_bytes)
        allowed = [self.requested_profile] if self.requested_profile != profiles.AUTO \
            else levers.usable_profiles()
        choice = profiles.choose(memory[0] if memory else None, levers.host_available(),
                                 model, work, cuda=memory is not None, allowed=allowed)
        if self.requested_profile == profiles.AUTO:
            if choice.profile is None:
                raise BackendUnavailable(
                    f"The model does not fit this GPU: {choice.reason}. Free the GPU, or "
                    "use the remote backend."
                )
            self.profile, self.profile_reason = choice.profile, choice.reason
            log.info("memory profile %s", choice.reason)
        if needs_t2i:
            self.t2i_mode = choice.t2i_mode if memory is not None else "pipeline"
            log.info("text-to-image mode %s", self.t2i_mode)

    def _model_bytes(self) -> profiles.ModelBytes:
        return profiles.model_bytes(loading.local_folder(self.model, self.revision))

    def _load_t2i_pipeline(self, edit):
        from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

        if self.pipeline_class in loading.UNIFIED_PIPELINES:
            return edit  # called without pictures, it generates
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
            self._add_loras(pipe, ("t2i",))
            self._prepare_transformer(transformer)
            self._place_transformer(transformer)
        if self.reuse_encodings:
            reuse.install(pipe)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _load_t2i_transformer(self):
        from diffusers import QwenImageTransformer2DModel

        kwargs = {"subfolder": "transformer", "revision": self.t2i_revision,
                  **loading.dtype_kwargs(self.torch_dtype)}
        if self.profile == "nf4":
            kwargs["quantization_config"] = self._nf4_model_config()
        return loading.load_or_explain(
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
        return same_revision and loading.same_model(self.t2i_model, self.model)

    def _prepare_transformer(self, transformer) -> None:
        """The levers that change the transformer itself, before it is placed."""
        self.attention = levers.pick_attention(self.attention, self.device)
        levers.set_attention(transformer, self.attention)
        levers.apply_step_cache(transformer, self.cache)
        if self.compile:
            levers.compile_blocks(transformer)

    def _place(self, pipe) -> None:
        """Put the pipeline on its device the way the memory profile says."""
        if self.profile == "model-offload":
            self._claim_offload(pipe)
        elif self.profile == "group-offload":
            _group_offload(pipe, self.device)
        else:
            if self.profile == "fp8":
                self._fp8(pipe.transformer)
            pipe.to(self.device)

    def _place_transformer(self, transformer) -> None:
        """Like ``_place`` for a t2i transformer joining already-placed parts."""
        if self.profile == "model-offload":
            return  # `_claim_offload` hooks it up before its first call
        if self.profile == "group-offload":
            _group_offload(transformer, self.device)
            return
        if self.profile == "fp8":
            self._fp8(transformer)
        transformer.to(self.device)

    def _fp8(self, transformer) -> None:
        if levers.fp8_matmuls_available(self.device):
            # torchao quantizes weights where they are: move first (38 GiB, alone on the
            # card at this point), quantize to half that, then the rest joins.
            transformer.to(self.device)
            levers.quantize_fp8(transformer)
            levers.free_memory(self.device)
        else:
            levers.fp8_storage(transformer, self.torch_dtype)

    def _claim_offload(self, pipe) -> None:
        """Model offload hooks chain one pipeline's modules; re-chain on switching.

        After every call diffusers leaves all offloaded modules on the CPU, so
        re-hooking the shared text encoder and VAE for the other pipeline is cheap.
        """
        if self.profile == "model-offload" and self._offload_owner is not pipe:
            pipe.enable_model_cpu_offload(device=self.device)
            self._offload_owner = pipe

    def _add_lightning(self, pipe, lora: str) -> None:
        """Load the Lightning LoRA and fuse it into the weights (no per-step LoRA cost).

        Under nf4 it stays a separate adapter: fusing into 4-bit weights loses detail.
        """
        from diffusers import FlowMatchEulerDiscreteScheduler

        if not levers.installed("peft"):
            raise BackendUnavailable("Lightning LoRAs need the peft package: pip install peft")
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(LIGHTNING_SCHEDULER_CONFIG)
        source, weight_name, subfolder = split_lora(lora)
        kwargs = {"adapter_name": "lightning"}
        if weight_name:
            kwargs["weight_name"] = weight_name
        if subfolder:
            kwargs["subfolder"] = subfolder
        loading.load_or_explain(lora, lambda: pipe.load_lora_weights(source, **kwargs),
                 hint="set lightning_lora to a local .safetensors file")
        if self.profile != "nf4":
            pipe.fuse_lora(components=["transformer"], lora_scale=1.0, adapter_names=["lightning"])
            pipe.unload_lora_weights()

    def _add_loras(self, pipe, targets) -> None:
        """Load the configured community LoRAs made for ``targets`` into ``pipe``'s
        transformer, each once, all off until a job names them. One that cannot be
        found or does not fit is refused (kept in ``lora_problems``, named in the log)
        and the model loads without it. Runs after Lightning is fused into the weights."""
        adapters = lora_tools.Adapters(pipe)
        lora_tools.attach(pipe.transformer, adapters)
        for spec in self.lora_specs:
            if spec.target not in targets:
                continue
            try:
                adapters.load(spec)
                self.lora_problems.pop(spec.name, None)
            except lora_tools.LoraError as exc:
                log.warning("%s", exc)
                self.lora_problems[spec.name] = str(exc)
        if self.compile and adapters.loaded:
            log.warning("compiled blocks with LoRAs: each new choice of adapters or scales "
                        "recompiles the block once (torch's recompile limit applies)")

    def _use_loras(self, pipe, request) -> dict:
        """Switch ``pipe``'s transformer to the request's LoRAs (none named: all off)
        and say what to record. Called under the call lock, just before the run."""
        wanted = getattr(request, "loras", ())
        adapters = lora_tools.adapters_of(pipe.transformer)
        selection, skipped = {}, []
        for name, scale in wanted:
            if adapters is not None and name in adapters.loaded:
                selection[name] = adapters.loaded[name].spec.scale if scale is None else scale
            elif name in self.lora_problems:
                raise BadRequest(self.lora_problems[name])
            elif name in {spec.name for spec in self.lora_specs}:
                skipped.append(name)  # made for the other transformer (edit / text-to-image)
            else:
                offered = ", ".join(spec.name for spec in self.lora_specs) or "none"
                raise BadRequest(f"There is no LoRA called {name!r} here (offered: {offered}).")
        if adapters is not None:
            adapters.activate(selection)
        out: dict = {}
        if selection:
            out["loras"] = adapters.records(selection)
        if skipped:
            out["loras_skipped"] = skipped
        return out

    def lora_status(self) -> list:
        """The configured LoRAs: name, target, default scale, and the refusal, if any,
        from loading them (None before the model loads and for those that loaded)."""
        return [{"name": spec.name, "target": spec.target, "scale": spec.scale,
                 "problem": self.lora_problems.get(spec.name)} for spec in self.lora_specs]

    @property
    def _t2i_on_edit_transformer(self) -> bool:
        """Text-to-image runs on the edit transformer (one model, or canvas mode)."""
        return self._t2i_shares_edit_model or self.t2i_mode == "canvas"

    def _nf4_kwargs(self) -> dict:
        if not levers.installed("bitsandbytes"):
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


def _output_resolution(pipe, sizes, area: int) -> int:
    """Qwen-Image-2.1's ``output_resolution`` for ``area``: each picture is resized to
    about its square, in 32s. Raised until every picture stays at or above its vision
    processor's smallest size, which would otherwise resize it again and part its
    vision tokens from its latent grid (a shape error; only below about 300x300)."""
    side = max(_QWEN21_MULTIPLE, round(math.sqrt(area) / _QWEN21_MULTIPLE) * _QWEN21_MULTIPLE)
    limits = getattr(getattr(pipe.processor, "image_processor", None), "size", None) or {}
    smallest = limits.get("shortest_edge") or 0  # a pixel count for the Qwen-VL processors
    while any(w * h < smallest for w, h in (size_math.pipeline_size(*s, side * side) for s in sizes)):
        side += _QWEN21_MULTIPLE
    return side


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


def _free_model_hooks(pipe) -> None:
    try:
        pipe.maybe_free_model_hooks()
    except Exception:  # clean-up must never hide the run's own outcome
        log.exception("freeing the model hooks failed")


def _group_offload(target, device) -> None:
    """Leaf-level group offload with streams. ``low_cpu_mem_usage`` pins each group
    when it moves instead of pinning a second copy of the whole model up front, which
    needed about twice the model's size in host RAM while setting up."""
    import torch

    target.enable_group_offload(
        onload_device=torch.device(device),
        offload_device=torch.device("cpu"),
        offload_type="leaf_level",
        use_stream=True,
        low_cpu_mem_usage=True,
    )
