"""Batched augmentation on any device: tensor ops over the whole batch, no per-image Python.

Random numbers are drawn on the generator's device and moved to the images' device, so a seed
gives the same augmentation on CPU and GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    gen_device = generator.device if generator is not None else "cpu"
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


class CropFlip:
    """Zero-pad by `padding`, crop back at a random offset, then mirror with probability 1/2,
    for batches of up to `shape[0]` images of shape `shape[1:]`.

    Every output row is a contiguous run of bytes of the padded batch (or, for a mirrored image,
    of the same batch reversed end to end), so a batch is one gather of rows. The padded buffer
    and the row offsets are kept between batches, and `draw` makes the random offsets of many
    batches at once, so a batch costs a handful of tensor ops (the loader's hot path).
    """

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        *,
        padding: int,
        flip: bool,
        device: torch.device | str = "cpu",
    ) -> None:
        n, c, h, w = shape
        ph, pw = h + 2 * padding, w + 2 * padding
        self.shape, self.padding, self.flip, self.padded_width = shape, padding, flip, pw
        # Buffer 0 is the zero-padded batch; buffer 1 the same bytes in reverse order (padding is
        # symmetric, so it is the padding of the reversed batch). Only the interior is rewritten.
        self.buffers = torch.zeros((1 + flip, n, c, ph, pw), dtype=torch.uint8, device=device)
        self.interior = self.buffers[0, :, :, padding : padding + h, padding : padding + w]
        self.forward, self.reversed = self.buffers[0].view(-1), self.buffers[-1].view(-1)
        flat = self.buffers.view(-1)
        self.windows = flat.as_strided((flat.numel() - w + 1, w), (1, 1))  # every run of w bytes
        channel_rows = torch.arange(c, device=device)[:, None] * (ph * pw)
        self.rows = (channel_rows + torch.arange(h, device=device) * pw).view(1, -1)
        self.image_starts = torch.arange(n, device=device) * (c * ph * pw)

    def draw(self, batches: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random offsets of `batches` batches: (batches, 2, n, 1) int64, the first row of each
        image in the buffers and +1, or -1 for a mirrored image (its rows are read backwards)."""
        n, _, _, w = self.shape
        draws = _uniform((batches, 3, n), generator, self.buffers.device)
        dy, dx = (draws[:, :2] * (2 * self.padding + 1)).long().unbind(1)
        starts = self.image_starts + dy * self.padded_width + dx
        mirrored = draws[:, 2] < 0.5 if self.flip else torch.zeros_like(starts, dtype=torch.bool)
        # The row starting at s, read backwards, is the forward run ending at 2*size - 1 - s.
        starts = torch.where(mirrored, 2 * self.forward.numel() - w - starts, starts)
        return torch.stack([starts, 1 - 2 * mirrored.long()], dim=1)[..., None]

    def __call__(self, images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Crop and flip `images` (uint8, m <= n images) as one batch of `draw`'s `offsets`."""
        m = len(images)
        self.interior[:m].copy_(images)
        if self.flip:
            self.reversed.copy_(self.forward.flip(0))
        starts = torch.addcmul(offsets[0, :m], offsets[1, :m], self.rows)
        return self.windows.index_select(0, starts.view(-1)).view(m, *self.shape[1:])


def random_crop_flip(
    images: torch.Tensor,
    *,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero-pad by `padding`, crop back at a random offset, then mirror with probability 1/2."""
    crop = CropFlip(tuple(images.shape), padding=padding, flip=flip, device=images.device)
    return crop(images, crop.draw(1, generator)[0])


def random_crop(
    images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by `padding` and crop back to the input size at a random offset per image."""
    return random_crop_flip(images, padding=padding, flip=False, generator=generator)


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    return random_crop_flip(images, padding=0, flip=True, generator=generator)


def random_rotation(
    images: torch.Tensor,
    degrees: float,
    generator: torch.Generator | None = None,
    *,
    mode: str = "nearest",
) -> torch.Tensor:
    """Rotate float images by an angle uniform in [-degrees, degrees], zero fill; `mode` nearest
    (torchvision's RandomRotation default, the authors') or bilinear."""
    if degrees == 0:
        return images
    angle = (_uniform((len(images),), generator, images.device) * 2 - 1) * math.radians(degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([cos, -sin, zero, sin, cos, zero], dim=1).view(-1, 2, 3)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 in [0, 1]: a widening copy, then an in-place divide.

    Same values as `images.float() / 255`; dividing uint8 by a float directly takes a slow
    casting path (several times slower on CPU).
    """
    return images.to(torch.float32).div_(255.0)
