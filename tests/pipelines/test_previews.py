"""Latent previews: the unpacking matches diffusers, the colours follow the latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.previews import LatentPreviewer, unpack


def packed_latents(width, height, seed=0):
    from diffusers import QwenImageEditPlusPipeline

    torch.manual_seed(seed)
    latents = torch.randn(1, 16, height // 8, width // 8)
    packed = QwenImageEditPlusPipeline._pack_latents(latents, 1, 16, height // 8, width // 8)
    return latents, packed


def test_unpack_undoes_the_pipeline_packing():
    from diffusers import QwenImageEditPlusPipeline

    latents, packed = packed_latents(96, 64)
    ours = unpack(packed, 96, 64)
    theirs = QwenImageEditPlusPipeline._unpack_latents(packed, 64, 96, 8)[:, :, 0]
    assert torch.equal(ours, theirs[0])
    assert torch.equal(ours, latents[0])


def test_preview_is_a_small_rgb_picture_at_latent_resolution():
    previewer = LatentPreviewer([0.0] * 16, [1.0] * 16)
    _, packed = packed_latents(256, 128)
    image = previewer(packed, 256, 128)
    assert image.mode == "RGB" and image.size == (32, 16)
    assert np.asarray(image).std() > 0


def test_the_map_is_stated_on_de_normalised_latents():
    mean, std = np.linspace(-1, 1, 16), np.linspace(0.5, 3, 16)
    previewer = LatentPreviewer(mean, std)
    plain = LatentPreviewer([0.0] * 16, [1.0] * 16)
    _, packed = packed_latents(64, 64, seed=3)
    # Normalised latents must give the same picture whatever the VAE statistics are.
    a = np.asarray(previewer(packed, 64, 64)).astype(int)
    b = np.asarray(plain(packed, 64, 64)).astype(int)
    assert np.abs(a - b).max() <= 1  # float rounding only
    # A known colour: the mean latent (zeros once normalised) shows the bias colour.
    zeros = torch.zeros(1, 16, 4, 4)
    packed_zeros = unpack_to_packed(zeros)
    colour = np.asarray(previewer(packed_zeros, 32, 32))[0, 0]
    assert tuple(colour) == tuple(np.clip((np.array([-0.1835, -0.0868, -0.3360]) + 1) * 127.5,
                                          0, 255).astype(np.uint8))


def test_previews_need_sixteen_channel_statistics():
    with pytest.raises(ValueError, match="16-channel"):
        LatentPreviewer([0.0] * 4, [1.0] * 4)


def unpack_to_packed(latents):
    from diffusers import QwenImageEditPlusPipeline

    _, c, h, w = latents.shape
    return QwenImageEditPlusPipeline._pack_latents(latents, 1, c, h, w)


def test_preview_equals_the_map_applied_pixel_by_pixel():
    mean, std = np.linspace(-1, 1, 16), np.linspace(0.5, 3, 16)
    previewer = LatentPreviewer(mean, std)
    _, packed = packed_latents(160, 96, seed=7)
    normalised = unpack(packed, 160, 96).numpy()  # (C, h, w)
    real = normalised * std[:, None, None] + mean[:, None, None]
    rgb = np.tensordot(real, previewer.matrix, axes=([0], [0])) + previewer.bias
    expected = np.clip((rgb + 1) * 127.5, 0, 255).astype(np.uint8)
    got = np.asarray(previewer(packed, 160, 96))
    assert got.shape == (12, 20, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
