"""Batched augmentation: free functions of (images, generator), one tensor op per batch, any device.

Random numbers are drawn on the generator's device and moved to the images' device, so a seed
gives the same augmentation on CPU and GPU.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    gen_device = generator.device if generator is not None else "cpu"
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


@functools.lru_cache(maxsize=16)
def _row_starts(n: int, c: int, h: int, ph: int, pw: int, device: str) -> torch.Tensor:
    """Offset of row (channel, i) of image b inside a flat (n, c, ph, pw) buffer: (n, c * h)."""
    rows = torch.arange(c, device=device)[:, None] * (ph * pw) + torch.arange(h, device=device) * pw
    return rows.view(1, -1) + torch.arange(n, device=device)[:, None] * (c * ph * pw)


def random_crop_flip(
    images: torch.Tensor,
    *,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-pad by `padding`, crop back at a random offset, then mirror with probability 1/2.

    Every output row is a contiguous run of bytes of the padded batch (or, for a mirrored image,
    of the same batch reversed end to end), so the whole batch is one gather of rows.
    """
    n, c, h, w = images.shape
    span, ph, pw = 2 * padding + 1, h + 2 * padding, w + 2 * padding
    draws = _uniform((3, n), generator, images.device)
    dy, dx = (draws[:2] * span).long()
    # Buffer 0 is the zero-padded batch; buffer 1 is the same bytes in reverse order (padding is
    # symmetric, so it is the padding of the reversed batch).
    buffers = images.new_empty(2 if flip else 1, n, c, ph, pw)
    buffers[0].zero_()[:, :, padding : padding + h, padding : padding + w] = images
    starts = _row_starts(n, c, h, ph, pw, str(images.device)) + (dy * pw + dx)[:, None]
    if flip:
        buffers[1].view(-1).copy_(buffers[0].view(-1).flip(0))
        # The row starting at s, read backwards, is the forward run ending at 2*size - 1 - s.
        mirrored = 2 * buffers[0].numel() - w - starts
        starts = torch.where(draws[2, :, None] < 0.5, mirrored, starts)
    flat = buffers.view(-1)
    windows = flat.as_strided((flat.numel() - w + 1, w), (1, 1))  # every run of w bytes, no copy
    return windows.index_select(0, starts.view(-1)).view(n, c, h, w)


def random_crop(
    images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by `padding` and crop back to the input size at a random offset per image."""
    return random_crop_flip(images, padding=padding, flip=False, generator=generator)


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    return random_crop_flip(images, padding=0, flip=True, generator=generator)


def random_rotation(
    images: torch.Tensor, degrees: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate float images by an angle uniform in [-degrees, degrees], bilinear, zero fill."""
    if degrees == 0:
        return images
    angle = (_uniform((len(images),), generator, images.device) * 2 - 1) * math.radians(degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([cos, -sin, zero, sin, cos, zero], dim=1).view(-1, 2, 3)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 in [0, 1]: a widening copy, then an in-place divide.

    Same values as `images.float() / 255`; dividing uint8 by a float directly takes a slow
    casting path (several times slower on CPU).
    """
    return images.to(torch.float32).div_(255.0)
