"""Cheap preview pictures from the latents of a running Qwen image pipeline.

Owns one fixed linear map from the 16 latent channels of the Qwen-Image VAE (the
Wan 2.1 VAE) to RGB, and the unpacking of the pipeline's packed latents. Knows
nothing about backends, requests or progress callbacks: latents in, small PIL out.

A real VAE decode at 1 MP takes seconds; this costs about a millisecond and shows
the composition and colours well enough to tell the run is going somewhere.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

# latent channel -> (R, G, B) for the Wan 2.1 VAE that Qwen-Image uses: ComfyUI's
# Wan21 preview factors, which apply to the normalised latents a sampler works in.
_WAN21_RGB = np.array(
    [
        [-0.1299, -0.1692, 0.2932],
        [0.0671, 0.0406, 0.0442],
        [0.3568, 0.2548, 0.1747],
        [0.0372, 0.2344, 0.1420],
        [0.0313, 0.0189, -0.0328],
        [0.0296, -0.0956, -0.0665],
        [-0.3477, -0.4059, -0.2925],
        [0.0166, 0.1902, 0.1975],
        [-0.0412, 0.0267, -0.1364],
        [-0.1293, 0.0740, 0.1636],
        [0.0680, 0.3019, 0.1128],
        [0.0032, 0.0581, 0.0639],
        [-0.1251, 0.0927, 0.1699],
        [0.0060, -0.0633, 0.0005],
        [0.3477, 0.2275, 0.2950],
        [0.1984, 0.0913, 0.1861],
    ],
    dtype=np.float32,
)
_WAN21_BIAS = np.array([-0.1835, -0.0868, -0.3360], dtype=np.float32)


class LatentPreviewer:
    """Packed pipeline latents -> small RGB picture, for one VAE configuration.

    The map is stated on the de-normalised latents (what the VAE decoder reads):
    the VAE's per-channel mean and std are folded into the fixed matrix once, so a
    preview is a single small matrix product.
    """

    def __init__(self, latents_mean: Sequence[float], latents_std: Sequence[float],
                 vae_scale_factor: int = 8):
        mean = np.asarray(latents_mean, dtype=np.float32)
        std = np.asarray(latents_std, dtype=np.float32)
        if mean.shape != (_WAN21_RGB.shape[0],) or std.shape != mean.shape:
            raise ValueError(
                f"Previews need a {_WAN21_RGB.shape[0]}-channel latent mean and std."
            )
        # rgb = W.T @ ((z - mean) / std) + b  ==  (W / std).T @ z + (b - W.T @ (mean / std))
        self.matrix = _WAN21_RGB / std[:, None]
        self.bias = _WAN21_BIAS - (mean / std) @ _WAN21_RGB
        self.mean = mean
        self.std = std
        self.vae_scale_factor = vae_scale_factor
        self._tensors = {}  # device -> (matrix, bias, mean, std) as torch tensors

    @classmethod
    def for_vae(cls, vae) -> "LatentPreviewer":
        scale = 2 ** len(getattr(vae, "temperal_downsample", [0, 0, 0]))
        return cls(vae.config.latents_mean, vae.config.latents_std, scale)

    def __call__(self, packed, width: int, height: int) -> Image.Image:
        """``packed``: ``(1, (H/16)*(W/16), C*4)`` normalised latents for a W x H image."""
        import torch

        h, w = _latent_size(width, height, self.vae_scale_factor)
        with torch.no_grad():
            x = packed.detach()[0].float()
            channels = x.shape[-1] // 4
            x = x.view(-1, channels, 4)  # per 2x2 patch: (patch, channel, sub-pixel)
            matrix, bias, mean, std = self._on(x.device)
            real = x * std[None, :, None] + mean[None, :, None]
            # Mixing 16 channels down to 3 before unpacking keeps the copies small,
            # and only h x w x 3 bytes leave the GPU.
            rgb = torch.einsum("nck,cr->nkr", real, matrix) + bias
            rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        pixels = rgb.reshape(h // 2, w // 2, 2, 2, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, 3)
        return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


    def _on(self, device):
        import torch

        if device not in self._tensors:
            self._tensors[device] = tuple(
                torch.from_numpy(a).to(device) for a in (self.matrix, self.bias, self.mean, self.std)
            )
        return self._tensors[device]


def unpack(packed, width: int, height: int, vae_scale_factor: int = 8):
    """Undo the pipeline's 2x2 packing: ``(1, N, C*4)`` -> ``(C, H/8, W/8)`` float32 tensor."""
    h, w = _latent_size(width, height, vae_scale_factor)
    array = packed.detach()[0].float()
    channels = array.shape[-1] // 4
    # packed index order is (h/2, w/2, C, 2, 2), as in QwenImagePipeline._pack_latents
    grid = array.reshape(h // 2, w // 2, channels, 2, 2)
    return grid.permute(2, 0, 3, 1, 4).reshape(channels, h, w)


def _latent_size(width: int, height: int, vae_scale_factor: int):
    return (2 * (int(height) // (vae_scale_factor * 2)),
            2 * (int(width) // (vae_scale_factor * 2)))
