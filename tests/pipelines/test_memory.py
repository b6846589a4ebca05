"""GPU memory on the failure paths, on the tiny model with fakes where CUDA would be needed.

A simulated ``torch.cuda.OutOfMemoryError`` (while running and while loading) must
give a message naming a profile that fits, free what it can, and leave the backend
able to run the next job. A stop under model offload must free the offload hooks. A
failed text-to-image load must not leave a transformer behind. A model switch must
free the old model.
"""

from __future__ import annotations

import gc
import shutil
import weakref

import pytest
import torch

from pipelines import BackendError, BackendUnavailable, Cancelled, EditRequest, GenerateRequest
from pipelines import levers, profiles
from pipelines.qwen import QwenBackend

FAST = dict(vae_area=128 * 128, output_area=128 * 128, max_output_area=128 * 128, steps=2,
            t2i_steps=2, cpu_threads=1, device="cpu")
GIB = profiles.GIB


def qwen(model, **settings):
    return QwenBackend(model=str(model), **{"t2i_model": None, **FAST, **settings})


@pytest.fixture
def fake_gpu(monkeypatch):
    """``fake_gpu()``: a 32 GiB card with 30 GiB free, seen through a fake
    ``torch.cuda.mem_get_info``. Call it once the model is loaded on the CPU: from
    then on the backend believes it runs on CUDA, and ``empty_cache`` calls are counted.
    """
    calls = {"empty_cache": 0, "mem_get_info": 0}
    return lambda: _fake_gpu(monkeypatch, calls)


def _fake_gpu(monkeypatch, calls):
    def mem_get_info(device=None):
        calls["mem_get_info"] += 1
        return 30 * GIB, 32 * GIB

    def empty_cache():
        calls["empty_cache"] += 1

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    monkeypatch.setattr(levers, "is_cuda", lambda device: True)
    monkeypatch.setattr(levers, "host_available", lambda: 64 * GIB)
    return calls


def publish_sized(backend, monkeypatch):
    # The tiny model's files weigh a megabyte; advice is about the real model's sizes.
    monkeypatch.setattr(backend, "_model_bytes", lambda: profiles.PUBLISHED)


def test_out_of_memory_while_running_names_a_profile_frees_and_the_next_job_runs(
        tiny_model_dir, photo, fake_gpu, monkeypatch):
    backend = qwen(tiny_model_dir)
    backend.load()
    publish_sized(backend, monkeypatch)
    fake_gpu = fake_gpu()
    transformer = backend._edit_pipe.transformer
    real_forward = transformer.forward
    state = {"fail": True}

    def forward(*args, **kwargs):
        if state["fail"]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward", forward)
    with pytest.raises(BackendError) as err:
        backend.edit(EditRequest("make it night", images=(photo,), seed=1))
    message = str(err.value)
    assert "Out of GPU memory" in message and "profile 'full'" in message
    # 30 GiB free: full (57), fp8 (39) and model-offload (41) do not fit; nf4 (21) does.
    assert "Profile 'nf4' would fit" in message and "QEC_PROFILE=nf4" in message
    assert "CUDA out of memory" not in message  # no raw torch error
    assert fake_gpu["empty_cache"] >= 1
    state["fail"] = False
    result = backend.edit(EditRequest("make it night", images=(photo,), seed=1))
    assert result.image.size == photo.size


def test_out_of_memory_while_loading_frees_the_half_loaded_model(tiny_model_dir, photo,
                                                                 fake_gpu, monkeypatch):
    backend = qwen(tiny_model_dir, profile="full", attention=None)
    publish_sized(backend, monkeypatch)
    fake_gpu = fake_gpu()
    made = []
    real_place = QwenBackend._place

    def place(self, pipe):
        made.append(weakref.ref(pipe.transformer))
        if len(made) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_place(self, pipe)

    monkeypatch.setattr(QwenBackend, "_place", place)
    with pytest.raises(BackendUnavailable) as err:
        backend.edit(EditRequest("x", images=(photo,), seed=1))
    assert "Out of GPU memory while loading the edit model with profile 'full'" in str(err.value)
    assert "Profile 'nf4' would fit" in str(err.value)
    del err
    gc.collect()
    assert made[0]() is None, "the half-loaded transformer is still alive"
    assert backend._edit_pipe is None and fake_gpu["empty_cache"] >= 1
    assert backend.edit(EditRequest("x", images=(photo,), seed=1)).image.size == photo.size


def _live_transformers() -> int:
    from diffusers import QwenImageTransformer2DModel

    # type(), not isinstance(): lazy proxies elsewhere in the process raise on __class__.
    return sum(type(o) is QwenImageTransformer2DModel for o in gc.get_objects())


def test_a_failed_text_to_image_load_leaves_nothing_behind(tiny_model_dir, tmp_path, monkeypatch):
    other = tmp_path / "t2i-model"
    shutil.copytree(tiny_model_dir, other)
    backend = qwen(tiny_model_dir, t2i_model=str(other), t2i_mode="pipeline")
    backend.load()
    gc.collect()
    before = _live_transformers()
    made = []
    real = QwenBackend._place_transformer

    def place_transformer(self, transformer):
        made.append(weakref.ref(transformer))
        raise RuntimeError("device lost while placing")

    monkeypatch.setattr(QwenBackend, "_place_transformer", place_transformer)
    for _ in range(3):  # every retry reloads; none may leak
        with pytest.raises(BackendUnavailable, match="Could not load the text-to-image model"):
            backend.generate(GenerateRequest("a fox", seed=1))
        assert backend._t2i_pipe is None
    gc.collect()
    assert all(ref() is None for ref in made)
    assert _live_transformers() == before
    monkeypatch.setattr(QwenBackend, "_place_transformer", real)
    assert backend.generate(GenerateRequest("a fox", seed=1)).info["pipeline"] == "QwenImagePipeline"


def test_a_stop_under_model_offload_frees_the_hooks(tiny_model_dir, photo, monkeypatch):
    backend = qwen(tiny_model_dir)
    backend.load()
    # Model offload hooks work on the CPU too: the real accelerate hooks, on a CPU "GPU".
    backend.profile = "model-offload"
    pipe = backend._edit_pipe
    freed = []
    real_free = pipe.maybe_free_model_hooks

    def spy():
        freed.append(True)
        return real_free()

    monkeypatch.setattr(pipe, "maybe_free_model_hooks", spy)

    def stop_at_first_step(step, total, preview):
        raise Cancelled()

    with pytest.raises(Cancelled):
        backend.edit(EditRequest("x", images=(photo,), seed=1), progress=stop_at_first_step)
    assert freed == [True]
    assert len(pipe._all_hooks) == 3  # offload still set up for the next call
    result = backend.edit(EditRequest("x", images=(photo,), seed=1))
    assert result.image.size == photo.size
    assert len(freed) == 2  # a finished run frees them once, in the pipeline itself


def test_an_error_mid_run_also_frees_the_hooks(tiny_model_dir, photo, monkeypatch):
    backend = qwen(tiny_model_dir)
    backend.load()
    freed = []
    monkeypatch.setattr(backend._edit_pipe, "maybe_free_model_hooks", lambda: freed.append(True))
    monkeypatch.setattr(backend._edit_pipe.vae, "decode",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("decoder broke")))
    with pytest.raises(RuntimeError, match="decoder broke"):
        backend.edit(EditRequest("x", images=(photo,), seed=1))
    assert freed == [True]


def test_close_frees_the_model(tiny_model_dir, photo, monkeypatch):
    calls = []
    monkeypatch.setattr(levers, "free_memory", lambda device: calls.append(device))
    backend = qwen(tiny_model_dir)
    backend.edit(EditRequest("x", images=(photo,), seed=1))
    ref = weakref.ref(backend._edit_pipe.transformer)
    backend.close()
    gc.collect()
    assert ref() is None and backend._edit_pipe is None and calls == ["cpu"]
    assert backend.edit(EditRequest("x", images=(photo,), seed=1)).image.size == photo.size


def test_free_memory_empties_the_cuda_cache(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(True))
    levers.free_memory("cpu")
    assert calls == []
    levers.free_memory("cuda:0")
    assert calls == [True]


def test_group_offload_pins_on_the_fly(monkeypatch):
    """Pre-pinning copied the whole model once more in host RAM while setting up."""
    seen = {}

    class FakePipe:
        def enable_group_offload(self, **kwargs):
            seen.update(kwargs)

    backend = QwenBackend(model="unused", device="cuda", profile="group-offload", t2i_model=None)
    backend._place(FakePipe())
    assert seen["low_cpu_mem_usage"] is True and seen["offload_type"] == "leaf_level"
    assert str(seen["onload_device"]) == "cuda"


def test_float16_is_refused_on_cuda_with_a_reason():
    with pytest.raises(BackendUnavailable, match="float16 gives NaN latents and black pictures"):
        QwenBackend(model="unused", device="cuda", dtype="float16")
    with pytest.raises(BackendUnavailable, match="bfloat16"):
        QwenBackend(model="unused", device="cuda:1", dtype=torch.float16)
    assert QwenBackend(model="unused", device="cpu", dtype="float16").torch_dtype == torch.float16
