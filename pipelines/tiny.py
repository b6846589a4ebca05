"""The ``tiny`` backend: the ``qwen`` code path on a tiny random model, on the CPU.

Owns the tiny backend's defaults (float32 on the CPU, few steps, small working
sizes) and building the model folder on first use. Everything else (loading through
``from_pretrained``, sizes, previews, cancel, seeds) is ``QwenBackend``'s, so tests
and GPU-less machines exercise the real code. Knows nothing of the UI.

Two tiny models: Edit Plus (the default: ``get_backend("tiny")``) and Qwen-Image-2.1
(``get_backend("tiny", model="tiny-2.1")``, ``--backend tiny --model tiny-2.1``;
``TINY21`` names it), each built into its own cache folder. A tiny model folder can
also be given as ``model``.

Its pictures are noise from an untrained model; ``Result.info["note"]`` says so.
Results still come back at the sizes the real model would return.
"""

from __future__ import annotations

import time

from pathlib import Path
from typing import Optional

from .base import Capabilities
from .loading import EDIT_PIPELINES, QWEN21, pipeline_class
from .qwen import QwenBackend
from .tiny_model import default_tiny_model_dir, ensure_tiny_model
from .tiny_model21 import TINY21, default_tiny21_model_dir, ensure_tiny21_model

TINY_STEPS = 4
# The tiny VAE still costs seconds per megapixel on a CPU, so the tiny backend works
# at about 256x256 and resizes the result to the size the real model would return.
TINY_AREA = 256 * 256
TINY_NOTE = "Test backend: random noise from an untrained tiny model, not a real edit."


class TinyBackend(QwenBackend):
    name = "tiny"
    note = TINY_NOTE

    def __init__(self, model_dir: Optional[str] = None, **settings):
        # Seconds to wait at each step (QEC_TINY_STEP_DELAY_S): the tiny model is so fast
        # that progress and Stop cannot be watched otherwise.
        self.step_delay_s = float(settings.pop("step_delay_s", 0.0) or 0.0)
        model = settings.pop("model", None)
        if not model_dir and model not in (None, "", "tiny", TINY21):
            model_dir = model  # a tiny model folder given as the generic `model` setting
        # Which recipe: by name, or by what a given folder already holds.
        self.tiny21 = model == TINY21 or bool(model_dir and pipeline_class(str(model_dir)) == QWEN21)
        default_dir = default_tiny21_model_dir() if self.tiny21 else default_tiny_model_dir()
        self.model_dir = Path(model_dir).expanduser() if model_dir else default_dir
        defaults = dict(
            dtype="float32",
            device="cpu",
            profile="full",
            t2i_model=None,  # text-to-image shares the tiny edit transformer
            steps=TINY_STEPS,
            t2i_steps=TINY_STEPS,
            vae_area=TINY_AREA,
            output_area=TINY_AREA,
            max_output_area=TINY_AREA,
            # The tiny model's ops are too small to gain from more threads, and
            # spinning OpenMP workers make it several times slower on a busy CPU.
            cpu_threads=1,
        )
        defaults.update(settings)
        super().__init__(model=str(self.model_dir), **defaults)
        if self.tiny21:  # known before the folder is built
            self.capabilities = Capabilities(max_input_images=EDIT_PIPELINES[QWEN21])

    def edit(self, request, *, progress=None, cancel=None):
        return super().edit(request, progress=self._paced(progress), cancel=cancel)

    def generate(self, request, *, progress=None, cancel=None):
        return super().generate(request, progress=self._paced(progress), cancel=cancel)

    def _paced(self, progress):
        if not self.step_delay_s:
            return progress

        def paced(step, total, preview):
            time.sleep(self.step_delay_s)
            if progress is not None:
                progress(step, total, preview)

        return paced

    def _load_edit_pipeline(self):
        (ensure_tiny21_model if self.tiny21 else ensure_tiny_model)(self.model_dir)
        return super()._load_edit_pipeline()
