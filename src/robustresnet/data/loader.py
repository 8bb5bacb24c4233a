"""DeviceLoader: the whole dataset as one uint8 tensor on the device, batches made there.

Training epochs follow a permutation seeded by (seed, epoch); every rank takes a disjoint slice of
it. With extra data, a fixed share of each batch (rounded down, as Carmon et al.'s sampler)
comes from the extra set under its own permutation. An epoch is one pass over the (sharded) base
dataset, or `epoch_images` images (the semi-supervised lineage's 50,000 per CIFAR-10 epoch):
ceil(epoch_images / global batch) batches, the base set cycled under fresh permutations when it
runs out. The state is (epoch, position): enough to resume mid-epoch and get exactly the batches
an uninterrupted run would have got.

A streamed extra set (`StreamedExtra`, from `open_extra`) stays on disk: a background thread reads
its batches in the order of `WindowOrder` a few steps ahead and moves them to the device. Its
stream runs on across epochs (epoch e's extra images follow epoch e-1's, passes follow passes), so
its position is (epoch * batches per epoch + position) * extra share: the same state resumes it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from .._seeds import seeded
from ..errors import ConfigError
from ._dataset import ImageDataset
from .augment import CropFlip, random_rotation, to_float
from .extra_order import WindowOrder
from .prefetch import Prefetcher
from .stream import StreamedExtra

Batch = tuple[torch.Tensor, torch.Tensor]
_BASE, _EXTRA, _CROP_FLIP, _ROTATE = 0, 1, 2, 3  # independent random streams of one epoch


class DeviceLoader:
    """Batches `(x float in [0,1] NCHW, y int64)` made on `device` from uint8 `images`."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        train: bool,
        seed: int = 0,
        device: torch.device | str = "cpu",
        crop_padding: int = 4,
        flip: bool = True,
        rotation: float = 0.0,
        rotation_mode: str = "nearest",
        epoch_images: int | None = None,
        extra: StreamedExtra | ImageDataset | tuple[torch.Tensor, torch.Tensor] | None = None,
        extra_fraction: float = 0.0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool | None = None,
    ) -> None:
        _check_options(batch_size, extra, extra_fraction, rank, world_size, train, images, labels)
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.extra, self.extra_stream = None, None
        if isinstance(extra, StreamedExtra) and extra_fraction > 0:
            if extra.image_shape != tuple(images.shape[1:]):
                expected = f"images of {tuple(images.shape[1:])}, as the base dataset's"
                raise ConfigError("extra", f"{extra.source}: {extra.image_shape}", expected)
            self.extra_stream = WindowOrder(extra, seed=seed, rank=rank, world_size=world_size)
        elif extra is not None and extra_fraction > 0:
            extra_images, extra_labels = _pair(extra)
            if len(extra_labels) < world_size or extra_images.dtype != torch.uint8:
                raise ConfigError("extra", tuple(extra_images.shape), "uint8 images, >= 1 per rank")
            self.extra = (extra_images.to(self.device), extra_labels.to(self.device))
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.rotation, self.rotation_mode = rotation, rotation_mode
        self.epoch_images = epoch_images
        self.rank, self.world_size = rank, world_size
        self.drop_last = train if drop_last is None else drop_last
        mixing = self.extra is not None or self.extra_stream is not None
        self.extra_count = int(batch_size * extra_fraction) if mixing else 0
        self.base_count = batch_size - self.extra_count
        self.epoch, self.position = 0, 0
        shape = (batch_size, *self.images.shape[1:])
        augments = train and (crop_padding > 0 or flip)
        self.crop_flip = (
            CropFlip(shape, padding=crop_padding, flip=flip, device=self.device)
            if augments
            else None
        )

    def __len__(self) -> int:
        if self.train and self.epoch_images is not None:
            return math.ceil(self.epoch_images / (self.batch_size * self.world_size))
        n = len(self.labels) // self.world_size if self.train else self._eval_range()[1]
        full, rest = divmod(n, self.base_count)
        return full + (rest > 0 and not self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its first batch."""
        self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: the next batch is batch `position` of epoch `epoch` (and,
        streaming, image `extra_position` of this rank's extra stream)."""
        state = {"epoch": self.epoch, "position": self.position, **self._identity()}
        if self.extra_stream is not None:
            state["extra_position"] = self._extra_position()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`; the settings that fix the batches must be unchanged."""
        required = self.extra_stream.identity() if self.extra_stream is not None else {}
        for key, value in self._identity().items():
            got = state.get(key, None if key in required else value)
            if got != value:
                raise ConfigError(f"loader state {key}", got, f"{value} (this loader)")
        epoch, position = int(state["epoch"]), int(state["position"])
        if self.extra_stream is not None:
            expected = (epoch * len(self) + position) * self.extra_count
            if state.get("extra_position") != expected:
                got = state.get("extra_position")
                raise ConfigError("loader state extra_position", got, f"{expected} (this loader)")
        self.epoch, self.position = epoch, position

    def __iter__(self) -> Iterator[Batch]:
        if not self.train:
            yield from self._eval_batches()
            return
        one_pass = self.epoch_images is None  # the share itself, even with a short last batch
        needed = len(self.labels) // self.world_size if one_pass else len(self) * self.base_count
        base = self._indices(len(self.labels), needed, _BASE)
        extra = self._extra_batches()
        offsets = self._crop_flip_offsets(self.epoch)
        try:
            for step in range(self.position, len(self)):
                chosen = base[step * self.base_count : (step + 1) * self.base_count]
                x, y = self.images.index_select(0, chosen), self.labels.index_select(0, chosen)
                if extra is not None:
                    extra_x, extra_y = next(extra)
                    x, y = torch.cat([x, extra_x]), torch.cat([y, extra_y])
                batch = self._augment(x, offsets, step), y
                self.position = step + 1
                yield batch
        finally:  # also when the consumer stops early: the prefetch thread ends with it
            if extra is not None:
                extra.close()
        self.epoch, self.position = self.epoch + 1, 0

    def _extra_batches(self) -> Iterator[Batch] | None:
        """The extra share of each remaining batch of the epoch (uint8 N,C,H,W, labels)."""
        if self.extra_stream is not None:
            return self._streamed_batches()
        if self.extra is None:
            return None
        images, labels = self.extra
        extra = self._indices(len(labels), len(self) * self.extra_count, _EXTRA)
        count = self.extra_count
        slices = (extra[s * count : (s + 1) * count] for s in range(self.position, len(self)))
        return ((images.index_select(0, p), labels.index_select(0, p)) for p in slices)

    def _streamed_batches(self) -> Iterator[Batch]:
        """The streamed share, read and moved to the device by a thread a few batches ahead."""
        remaining = len(self) - self.position
        reads = self.extra_stream.batches(
            self._extra_position(), self.extra_count, remaining,
            pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        prefetch = Prefetcher(reads, self.device)
        try:
            for images, labels in prefetch:
                yield images.permute(0, 3, 1, 2), labels
        finally:
            prefetch.close()

    def _extra_position(self) -> int:
        """This rank's position in the extra stream at the next batch."""
        return (self.epoch * len(self) + self.position) * self.extra_count

    def _augment(self, x: torch.Tensor, offsets: torch.Tensor | None, step: int) -> torch.Tensor:
        """Crop and flip on uint8, then floats, then rotation; seeded per epoch and batch."""
        if offsets is not None:
            x = self.crop_flip(x, offsets[step])
        x = to_float(x)
        if self.rotation:
            generator = seeded(self.seed, self.epoch, _ROTATE, self.rank, step)
            x = random_rotation(x, self.rotation, generator, mode=self.rotation_mode)
        return x

    def _crop_flip_offsets(self, epoch: int) -> torch.Tensor | None:
        """The epoch's crop and flip draws, all batches at once (a batch then indexes them)."""
        if self.crop_flip is None:
            return None
        generator = seeded(self.seed, epoch, _CROP_FLIP, self.rank)
        return self.crop_flip.draw(len(self), generator)

    def _indices(self, total: int, needed: int, stream: int) -> torch.Tensor:
        """`needed` indices for this epoch: this rank's slices of fresh permutations of `total`
        items (a set smaller than the epoch is cycled, reshuffled; a rank's remainder dropped)."""
        share = total // self.world_size
        pieces, count = [], 0
        while count < needed:
            rounds = (len(pieces),) if pieces else ()  # later rounds get their own seeds
            generator = seeded(self.seed, self.epoch, stream, *rounds)
            order = torch.randperm(total, generator=generator)
            pieces.append(order[self.rank * share : (self.rank + 1) * share])
            count += share
        empty = torch.empty(0, dtype=torch.long)
        return torch.cat([empty, *pieces])[:needed].to(self.device)

    def _eval_range(self) -> tuple[int, int]:
        """(start, count) of this rank's contiguous share of the data, in order, nothing dropped."""
        n = len(self.labels)
        share, rest = divmod(n, self.world_size)
        start = self.rank * share + min(self.rank, rest)
        return start, share + (self.rank < rest)

    def _eval_batches(self) -> Iterator[Batch]:
        start, count = self._eval_range()
        for step in range(len(self)):
            lo = start + step * self.batch_size
            hi = min(lo + self.batch_size, start + count)
            yield to_float(self.images[lo:hi]), self.labels[lo:hi]

    def _identity(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "extra_count": self.extra_count,
            "epoch_images": self.epoch_images,
            "rank": self.rank,
            "world_size": self.world_size,
            "size": len(self.labels),
            **(self.extra_stream.identity() if self.extra_stream is not None else {}),
        }


def _pair(
    data: ImageDataset | tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    return (data.images, data.labels) if isinstance(data, ImageDataset) else tuple(data)


def _check_options(batch_size, extra, fraction, rank, world_size, train, images, labels) -> None:
    """ConfigError for settings that cannot make batches."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size", batch_size, "a positive int")
    if not 0 <= fraction < 1:
        raise ConfigError("extra_fraction", fraction, "a number in [0, 1)")
    if fraction > 0 and (extra is None or not train):
        given = None if extra is None else type(extra).__name__
        raise ConfigError("extra", given, "an extra dataset (training loaders only) when mixing")
    if int(batch_size * fraction) >= batch_size:
        raise ConfigError(
            "extra_fraction", fraction, f"a share leaving base images in {batch_size}"
        )
    if not (isinstance(world_size, int) and world_size >= 1 and 0 <= rank < world_size):
        raise ConfigError("rank", rank, f"0 <= rank < world_size ({world_size})")
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
        raise ConfigError("images", tuple(images.shape), "uint8 N,C,H,W with one label each")
