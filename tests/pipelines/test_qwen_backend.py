"""QwenBackend's loading and settings, run on the tiny model folder (no weights needed).

Profiles that need CUDA are marked ``cuda`` and skipped without a GPU.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading

import numpy as np
import pytest
import torch

from pipelines import BackendUnavailable, EditRequest, GenerateRequest
from pipelines.lightning import LIGHTNING_SCHEDULER_CONFIG
from pipelines.lightning import lightning_lora as _lightning_lora
from pipelines.lightning import split_lora as _split_lora
from pipelines.qwen import DEFAULT_MODEL, QwenBackend

has_cuda = torch.cuda.is_available()
cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not has_cuda, reason="needs an NVIDIA GPU")

# Small working sizes keep every run here well under a second.
FAST = dict(vae_area=128 * 128, output_area=128 * 128, max_output_area=128 * 128, steps=2,
            t2i_steps=2, cpu_threads=1)


def qwen(model, **settings):
    return QwenBackend(model=str(model), **{"device": "cpu", **FAST, **settings})


def test_defaults_follow_the_model_cards(monkeypatch):
    monkeypatch.delenv("QEC_MODEL", raising=False)
    backend = QwenBackend(device="cpu")
    assert backend.model == DEFAULT_MODEL == "Qwen/Qwen-Image-Edit-2511"
    assert backend.t2i_model == "Qwen/Qwen-Image"
    assert (backend.edit_steps, backend.t2i_steps, backend.true_cfg_scale) == (40, 50, 4.0)
    assert backend.torch_dtype == torch.float32  # on the CPU; bfloat16 on CUDA
    assert backend.t2i_size == (1328, 1328)
    assert backend.max_output_area == 2048 * 1024  # bigger requests are generated at ~2 MP
    monkeypatch.setenv("QEC_MODEL", "/models/edit-2509")
    assert QwenBackend(device="cpu").model == "/models/edit-2509"


@needs_cuda
@cuda
def test_cuda_defaults_to_bfloat16():
    assert QwenBackend().torch_dtype == torch.bfloat16


def test_a_local_folder_loads_through_from_pretrained(tiny_model_dir, photo):
    backend = qwen(tiny_model_dir)
    result = backend.edit(EditRequest("make it night", images=(photo,), seed=3))
    assert result.image.size == photo.size
    info = result.info
    assert info["backend"] == "qwen" and "note" not in info
    assert info["model"] == str(tiny_model_dir) and info["revision"] is None
    assert info["profile"] == "full" and info["steps"] == 2
    assert backend._edit_pipe.transformer.dtype == torch.float32


def test_loading_happens_once_even_when_threads_race(tiny_model_dir, monkeypatch):
    from diffusers import QwenImageEditPlusPipeline

    calls = []
    real = QwenImageEditPlusPipeline.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(QwenImageEditPlusPipeline, "from_pretrained", classmethod(counting))
    backend = qwen(tiny_model_dir)
    threads = [threading.Thread(target=backend.load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert backend._edit_pipe is not None


def test_text_to_image_loads_only_the_transformer_of_another_model(tiny_model_dir, tmp_path):
    other = tmp_path / "t2i-model"
    shutil.copytree(tiny_model_dir, other)
    backend = qwen(tiny_model_dir, t2i_model=str(other))
    result = backend.generate(GenerateRequest("a lighthouse at dusk", seed=1))
    edit, t2i = backend._edit_pipe, backend._t2i_pipe
    assert t2i.transformer is not edit.transformer
    assert t2i.text_encoder is edit.text_encoder and t2i.vae is edit.vae
    assert t2i.tokenizer is edit.tokenizer
    assert result.image.size == (1328, 1328)
    assert result.info["t2i_model"] == str(other)
    assert result.info["pipeline"] == "QwenImagePipeline"


def test_canvas_mode_generates_with_the_edit_model(tiny_model_dir):
    backend = qwen(tiny_model_dir, t2i_mode="canvas")
    result = backend.generate(GenerateRequest("a lighthouse", seed=1, width=300, height=200))
    assert backend._t2i_pipe is None
    assert result.info["mode"] == "canvas"
    assert result.info["pipeline"] == "QwenImageEditPlusPipeline"
    assert result.image.size == (300, 200)
    square = backend.generate(GenerateRequest("a lighthouse", seed=1))
    assert square.image.size == (128, 128)  # output_area's square


def test_generation_is_reproducible_across_backends(tiny_model_dir, photo):
    a = qwen(tiny_model_dir).edit(EditRequest("x", images=(photo,), seed=9))
    b = qwen(tiny_model_dir).edit(EditRequest("x", images=(photo,), seed=9))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_a_missing_model_says_how_to_get_it(monkeypatch, photo):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    backend = QwenBackend(model="Qwen/Qwen-Image-Edit-2511", device="cpu")
    with pytest.raises(BackendUnavailable) as err:
        backend.edit(EditRequest("x", images=(photo,)))
    message = str(err.value)
    assert "Qwen/Qwen-Image-Edit-2511" in message
    assert "huggingface-cli download Qwen/Qwen-Image-Edit-2511" in message
    assert "QEC_MODEL" in message


def test_a_missing_text_to_image_model_suggests_canvas_mode(monkeypatch, tiny_model_dir):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    backend = qwen(tiny_model_dir, t2i_model="Qwen/Qwen-Image")
    with pytest.raises(BackendUnavailable) as err:
        backend.generate(GenerateRequest("a fox"))
    message = str(err.value)
    assert "huggingface-cli download Qwen/Qwen-Image`" in message
    assert "t2i_mode 'canvas'" in message
    # The edit model was fine and stays usable; canvas mode needs nothing more.
    canvas = qwen(tiny_model_dir, t2i_model="Qwen/Qwen-Image", t2i_mode="canvas")
    assert canvas.generate(GenerateRequest("a fox", seed=1)).info["mode"] == "canvas"


def test_a_broken_local_folder_is_named(tmp_path, photo):
    (tmp_path / "model_index.json").write_text("{not json")
    backend = QwenBackend(model=str(tmp_path), device="cpu")
    with pytest.raises(BackendUnavailable, match=str(tmp_path)):
        backend.edit(EditRequest("x", images=(photo,)))


@pytest.mark.parametrize("settings, words", [
    ({"profile": "turbo"}, "Unknown memory profile 'turbo'. Choose one of: auto, full, fp8, model-offload"),
    ({"dtype": "int8"}, "Unknown dtype"),
    ({"t2i_mode": "magic"}, "Unknown text-to-image mode"),
    ({"lightning": 6}, "4 or 8"),
    ({"steps": 1}, "at least 2"),
    ({"attention": "warp-drive"}, "Attention backend 'warp-drive'"),
])
def test_bad_settings_are_refused_with_a_reason(settings, words):
    with pytest.raises(BackendUnavailable, match=words):
        QwenBackend(device="cpu", **settings)


@pytest.mark.parametrize("profile", ["model-offload", "group-offload", "nf4"])
def test_gpu_only_profiles_say_so_on_the_cpu(profile):
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        QwenBackend(device="cpu", profile=profile)


def test_fp8_profile_stores_transformer_weights_in_fp8(tiny_model_dir, photo):
    backend = qwen(tiny_model_dir, profile="fp8")
    result = backend.edit(EditRequest("x", images=(photo,), seed=1))
    block = backend._edit_pipe.transformer.transformer_blocks[0]
    assert block.attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert result.info["profile"] == "fp8"
    assert np.asarray(result.image).std() > 0


def test_attention_backend_is_applied(tiny_model_dir, photo):
    backend = qwen(tiny_model_dir, attention="native")
    result = backend.edit(EditRequest("x", images=(photo,), seed=1))
    processor = backend._edit_pipe.transformer.transformer_blocks[0].attn.processor
    assert getattr(processor, "_attention_backend", None) is not None
    assert getattr(processor._attention_backend, "value", None) == "native"
    assert result.info["attention"] == "native"


def test_lightning_lora_names_follow_the_model():
    assert _lightning_lora("Qwen/Qwen-Image-Edit-2511", 4, None) == (
        "lightx2v/Qwen-Image-Edit-2511-Lightning/"
        "Qwen-Image-Edit-2511-Lightning-4steps-V1.0-bf16.safetensors")
    assert _lightning_lora("Qwen/Qwen-Image-Edit-2509", 8, None) == (
        "lightx2v/Qwen-Image-Lightning/Qwen-Image-Edit-2509/"
        "Qwen-Image-Edit-2509-Lightning-8steps-V1.0-bf16.safetensors")
    assert _lightning_lora("Qwen/Qwen-Image", 8, None).endswith("Qwen-Image-Lightning-8steps-V2.0-bf16.safetensors")
    assert _split_lora("lightx2v/Qwen-Image-Lightning/Qwen-Image-Edit-2509/w.safetensors") == (
        "lightx2v/Qwen-Image-Lightning", "w.safetensors", "Qwen-Image-Edit-2509")
    assert _split_lora("owner/repo/w.safetensors") == ("owner/repo", "w.safetensors", None)
    assert LIGHTNING_SCHEDULER_CONFIG["shift_terminal"] is None
    assert LIGHTNING_SCHEDULER_CONFIG["base_shift"] == pytest.approx(np.log(3))


def test_lightning_sets_its_steps_and_turns_cfg_off(monkeypatch):
    monkeypatch.delenv("QEC_MODEL", raising=False)
    backend = QwenBackend(device="cpu", lightning=8)
    assert (backend.edit_steps, backend.t2i_steps, backend.true_cfg_scale) == (8, 8, 1.0)
    assert "2511-Lightning-8steps" in backend.lightning_lora
    assert "Qwen-Image-Lightning-8steps" in backend.t2i_lightning_lora


def test_lightning_on_an_unknown_model_asks_for_the_lora(tiny_model_dir):
    with pytest.raises(BackendUnavailable, match="lightning_lora"):
        qwen(tiny_model_dir, lightning=4)


def test_lightning_without_peft_says_what_to_install(tiny_model_dir, tmp_path, photo, monkeypatch):
    from pipelines import levers

    real = levers.installed
    monkeypatch.setattr(levers, "installed", lambda module: module != "peft" and real(module))
    lora = tmp_path / "lightning.safetensors"
    lora.write_bytes(b"")
    backend = qwen(tiny_model_dir, lightning=4, lightning_lora=str(lora))
    with pytest.raises(BackendUnavailable, match="pip install peft"):
        backend.edit(EditRequest("x", images=(photo,)))


def test_lightning_lookup_knows_exact_names_and_cache_snapshots():
    snapshot = ("/root/.cache/huggingface/hub/models--Qwen--Qwen-Image-Edit-2509/snapshots/"
                "0123456789abcdef0123456789abcdef01234567")
    assert _lightning_lora(snapshot, 8, None) == _lightning_lora("Qwen/Qwen-Image-Edit-2509", 8, None)
    assert _lightning_lora("/models/Qwen-Image-Edit-2511/", 4, None).endswith(
        "Qwen-Image-Edit-2511-Lightning-4steps-V1.0-bf16.safetensors")
    # Qwen-Image-2512 is not Qwen-Image: no LoRA of another model is handed to it.
    with pytest.raises(BackendUnavailable, match="No known Lightning LoRA.*Qwen-Image-2512"):
        _lightning_lora("Qwen/Qwen-Image-2512", 4, None)
    with pytest.raises(BackendUnavailable, match="No known Lightning LoRA"):
        _lightning_lora("Qwen/Qwen-Image-Edit-2511-Turbo", 4, None)


# ----- CUDA-only profiles, on the tiny model -----------------------------------------


@needs_cuda
@cuda
@pytest.mark.parametrize("profile", ["full", "model-offload", "group-offload", "fp8"])
def test_cuda_profiles_edit_and_generate(tiny_model_dir, photo, profile):
    backend = QwenBackend(model=str(tiny_model_dir), device="cuda", profile=profile,
                          **{k: v for k, v in FAST.items() if k != "cpu_threads"})
    edited = backend.edit(EditRequest("x", images=(photo,), seed=1))
    made = backend.generate(GenerateRequest("a fox", seed=1))
    again = backend.edit(EditRequest("x", images=(photo,), seed=1))
    assert edited.image.size == photo.size and made.image.size == (1328, 1328)
    assert np.array_equal(np.asarray(edited.image), np.asarray(again.image))
    assert edited.info["dtype"] == "bfloat16"


@needs_cuda
@cuda
def test_cuda_model_offload_switches_between_two_transformers(tiny_model_dir, tmp_path, photo):
    other = tmp_path / "t2i"
    shutil.copytree(tiny_model_dir, other)
    backend = QwenBackend(model=str(tiny_model_dir), t2i_model=str(other), device="cuda",
                          profile="model-offload",
                          **{k: v for k, v in FAST.items() if k != "cpu_threads"})
    for _ in range(2):
        assert backend.edit(EditRequest("x", images=(photo,), seed=1)).image.size == photo.size
        assert backend.generate(GenerateRequest("a fox", seed=1)).image.size == (1328, 1328)


@needs_cuda
@cuda
def test_cuda_nf4_needs_bitsandbytes(tiny_model_dir, photo):
    backend = QwenBackend(model=str(tiny_model_dir), device="cuda", profile="nf4",
                          **{k: v for k, v in FAST.items() if k != "cpu_threads"})
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(BackendUnavailable, match="pip install bitsandbytes"):
            backend.edit(EditRequest("x", images=(photo,), seed=1))
    else:
        assert backend.edit(EditRequest("x", images=(photo,), seed=1)).image.size == photo.size
