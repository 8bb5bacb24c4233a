"""Batched augmentation: free functions of (images, generator), one tensor op per batch, any device.

Random numbers are drawn on the generator's device and moved to the images' device, so a seed
gives the same augmentation on CPU and GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else "cpu"
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def random_crop(
    images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by `padding` and crop back to the input size at a random offset per image."""
    if padding == 0:
        return images
    n, c, h, w = images.shape
    span = 2 * padding + 1
    dy = (_uniform(n, generator, images.device) * span).long()
    dx = (_uniform(n, generator, images.device) * span).long()
    padded = F.pad(images, (padding,) * 4)
    ph, pw = padded.shape[2:]
    # A view holding every window of every image (no copy); one gather picks each image's window.
    windows = padded.as_strided((n, span, span, c, h, w), (c * ph * pw, pw, 1, ph * pw, pw, 1))
    return windows[torch.arange(n, device=images.device), dy, dx]


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    chosen = (_uniform(len(images), generator, images.device) < 0.5).nonzero().squeeze(1)
    flipped = images.clone()
    flipped[chosen] = images[chosen].flip(3)
    return flipped


def random_rotation(
    images: torch.Tensor, degrees: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate float images by an angle uniform in [-degrees, degrees], bilinear, zero fill."""
    if degrees == 0:
        return images
    angle = (_uniform(len(images), generator, images.device) * 2 - 1) * math.radians(degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([cos, -sin, zero, sin, cos, zero], dim=1).view(-1, 2, 3)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images as floats in [0, 1]."""
    return images.to(dtype).div_(255.0)
