"""The fast path's levers on the tiny model: reused encodings, the fused Lightning LoRA,
step caches, attention picked by hardware. Each is checked for what it saves and for
what it must not change."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipelines import EditRequest, GenerateRequest, levers
from pipelines.qwen import QwenBackend

FAST = dict(vae_area=128 * 128, output_area=128 * 128, max_output_area=128 * 128, steps=2,
            t2i_steps=2, cpu_threads=1, device="cpu", t2i_model=None)


def qwen(model, **settings):
    return QwenBackend(model=str(model), **{**FAST, **settings})


def counted(monkeypatch, obj, name):
    calls = []
    real = getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def pixels(result):
    return np.asarray(result.image)


# ----- reused encodings ---------------------------------------------------------------


def test_variations_encode_the_prompt_and_the_picture_once(tiny_model_dir, photo, monkeypatch):
    backend = qwen(tiny_model_dir)
    backend.load()
    pipe = backend._edit_pipe
    text = counted(monkeypatch, pipe.text_encoder, "forward")
    vae = counted(monkeypatch, pipe.vae, "encode")
    first = backend.edit(EditRequest("make it night", images=(photo,), seed=1))
    assert (len(text), len(vae)) == (2, 1)  # the prompt and the " " negative; Picture 1
    second = backend.edit(EditRequest("make it night", images=(photo,), seed=2))
    assert (len(text), len(vae)) == (2, 1)  # a variation: nothing encoded again
    assert not np.array_equal(pixels(first), pixels(second))  # the seed still matters
    backend.edit(EditRequest("add rain", images=(photo,), seed=1))
    assert (len(text), len(vae)) == (3, 1)  # a new instruction; same picture, same negative
    other = photo.transpose(0)  # a different picture of the same size
    backend.edit(EditRequest("add rain", images=(other,), seed=1))
    assert (len(text), len(vae)) == (5, 2)


def test_reuse_gives_the_very_same_picture(tiny_model_dir, photo, make_picture):
    ref = make_picture(64, 48, seed=5)
    plain = qwen(tiny_model_dir, reuse_encodings=False)
    reusing = qwen(tiny_model_dir)
    request = EditRequest("put the hat on him", images=(photo, ref), seed=7)
    expected = pixels(plain.edit(request))
    reusing.edit(EditRequest("put the hat on him", images=(photo, ref), seed=3))  # fills the caches
    again = reusing.edit(request)
    assert reusing._caches["prompt"].hits >= 2 and reusing._caches["latents"].hits >= 2
    assert np.array_equal(pixels(again), expected)


def test_text_to_image_variations_reuse_the_prompt(tiny_model_dir, monkeypatch):
    backend = qwen(tiny_model_dir)
    backend.load()
    text = counted(monkeypatch, backend._edit_pipe.text_encoder, "forward")
    a = backend.generate(GenerateRequest("a lighthouse", seed=1, width=64, height=64))
    b = backend.generate(GenerateRequest("a lighthouse", seed=2, width=64, height=64))
    assert len(text) == 2 and not np.array_equal(pixels(a), pixels(b))


# ----- the Lightning LoRA, fused ----------------------------------------------------------


def tiny_lora(transformer, path, rank=2, seed=0):
    """A LoRA for the tiny transformer with the real key names (diffusers/peft format)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for i, _ in enumerate(transformer.transformer_blocks):
        for proj in ("to_q", "to_k", "to_v"):
            layer = getattr(transformer.transformer_blocks[i].attn, proj)
            prefix = f"transformer.transformer_blocks.{i}.attn.{proj}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=gen) * 0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=gen) * 0.5
    save_file(tensors, str(path))
    return tensors


def test_lightning_is_fused_into_the_weights(tiny_model_dir, photo, tmp_path):
    plain = qwen(tiny_model_dir)
    plain.load()
    base = plain._edit_pipe.transformer.transformer_blocks[0].attn.to_q.weight.detach().clone()
    lora = tmp_path / "lightning.safetensors"
    tensors = tiny_lora(plain._edit_pipe.transformer, lora)
    backend = qwen(tiny_model_dir, lightning=4, lightning_lora=str(lora), steps=None)
    result = backend.edit(EditRequest("make it night", images=(photo,), seed=1))
    transformer = backend._edit_pipe.transformer
    # Fused: the weights carry B @ A, and no LoRA layer is left to run every step.
    delta = tensors["transformer.transformer_blocks.0.attn.to_q.lora_B.weight"] @ \
        tensors["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"]
    fused = transformer.transformer_blocks[0].attn.to_q.weight.detach()
    assert torch.allclose(fused, base + delta, atol=1e-5)
    assert not any("lora" in name for name, _ in transformer.named_modules())
    assert (result.steps, result.info["true_cfg_scale"], result.info["lightning"]) == (4, 1.0, 4)
    assert backend._edit_pipe.scheduler.config.shift_terminal is None  # the distilled schedule


# ----- step caches and attention ------------------------------------------------------------


@pytest.mark.parametrize("cache", ["first-block", "taylorseer"])
def test_step_caches_run_and_are_recorded(tiny_model_dir, photo, cache):
    backend = qwen(tiny_model_dir, cache=cache, steps=12)
    first = backend.edit(EditRequest("make it night", images=(photo,), seed=1))
    again = backend.edit(EditRequest("make it night", images=(photo,), seed=1))
    assert first.info["cache"] == cache
    assert backend._edit_pipe.transformer.is_cache_enabled
    # The cache's state is reset between runs: the same request gives the same picture.
    assert np.array_equal(pixels(first), pixels(again))


def test_an_unknown_step_cache_is_refused():
    from pipelines import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="Unknown step cache 'magic'"):
        QwenBackend(model="unused", device="cpu", cache="magic")


def test_auto_attention_picks_by_hardware(monkeypatch):
    assert levers.pick_attention("auto", "cpu") is None  # diffusers' default (native SDPA)
    assert levers.pick_attention("sage", "cpu") == "sage"  # asked for: kept
    monkeypatch.setattr(levers, "capability", lambda device: (9, 0))
    monkeypatch.setattr(levers, "installed", lambda module: module in ("flash_attn_interface", "flash_attn"))
    assert levers.pick_attention("auto", "cuda") == "_flash_3"
    monkeypatch.setattr(levers, "capability", lambda device: (8, 6))
    assert levers.pick_attention("auto", "cuda") == "flash"
    monkeypatch.setattr(levers, "installed", lambda module: module == "sageattention")
    assert levers.pick_attention("auto", "cuda") is None  # sage quantizes: only when asked
    assert levers.available_attention("cuda") == ["sage", "native"]


def test_fp8_uses_real_matmuls_only_where_the_card_has_them(monkeypatch):
    monkeypatch.setattr(levers, "installed", lambda module: module == "torchao")
    monkeypatch.setattr(levers, "capability", lambda device: (9, 0))
    assert levers.fp8_matmuls_available("cuda")
    monkeypatch.setattr(levers, "capability", lambda device: (8, 0))  # A100: storage only
    assert not levers.fp8_matmuls_available("cuda")
    assert not levers.fp8_matmuls_available("cpu")
