"""The order in which a rank reads a streamed extra set: shuffled windows, read in blocks.

A random order over a memory map would read one image (3 KB) per seek, and a plain sequential
read would give batches of one class (generated files are often sorted by class). Between the
two: the set is cut into windows of `window` consecutive images; each pass shuffles the order of
the windows (seeded by (seed, pass); ranks take disjoint slices of it); a rank reads its windows
in blocks of `block_windows`, each window one contiguous read, in file order within the block,
and permutes the block's images (seeded by (seed, pass, rank, block)); batches are consecutive
slices of the permuted block. A batch so mixes up to `block_windows` stretches of the file.

Why windows of 32 and blocks of 512 (benchmarks/extra_stream.py, a 200K-image .npz with its
pages evicted, on a 2-core VM): random windows of 32 CIFAR images (96 KB) read 59K images/s,
single images 32K/s, windows of 1024 199K/s, sequential 310K/s; a GPU training step takes a few
thousand extra images per second, so the window needs only to keep reads well ahead. Mixing
decides the rest: with class-sorted labels a class's share of a batch of 716 spreads by 0.017
(std) for 512 windows of 32, against 0.011 for an independent draw, 0.033 for 64 windows of 256
and 0.075 for 16 of 1024: the spread follows the number of windows in a block, memory the block
size. Memory: one block (16,384 images, 48 MB for CIFAR) and its permutation, and a window order
of N / 32 int64 per pass (5 MB for 20M images) rather than an N-long permutation (160 MB).

Each pass uses `share * window` images per rank: `windows // world_size` windows each, the
set's last partial window and the `windows % world_size` windows left over unused, together
fewer than `world_size * window` images. The stream is a function of the position alone, so a
loader resumes mid-epoch, and across passes, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .._seeds import seeded
from ..errors import ConfigError
from .stream import StreamedExtra

WINDOW = 32  # images per contiguous read
BLOCK_WINDOWS = 512  # windows read, then permuted, together


class WindowOrder:
    """Batches of one rank's share of a StreamedExtra, from any stream position on."""

    def __init__(
        self,
        source: StreamedExtra,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        window: int = WINDOW,
        block_windows: int = BLOCK_WINDOWS,
    ) -> None:
        if len(source) < world_size:
            raise ConfigError("extra", f"{len(source)} images", f">= 1 per rank ({world_size})")
        self.source, self.seed, self.rank, self.world_size = source, seed, rank, world_size
        # A small set gets smaller windows, so that each rank still has a block's worth to mix.
        self.window = max(1, min(window, len(source) // (world_size * block_windows)))
        self.block_windows = block_windows
        self.windows = len(source) // self.window
        self.share = self.windows // world_size  # windows of each rank per pass
        self.pass_images = self.share * self.window
        self.block_images = self.block_windows * self.window
        self._order: tuple[int, torch.Tensor] | None = None  # (pass, this rank's windows)

    def identity(self) -> dict[str, int]:
        """What fixes the stream besides seed and rank: a state of another set is refused."""
        return {"extra_size": len(self.source), "extra_window": self.window,
                "extra_block_windows": self.block_windows}  # fmt: skip

    def batches(
        self, start: int, size: int, count: int, *, pin_memory: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`count` batches of `size` images (N,H,W,C uint8, CPU; pinned on request) and int64
        labels, the first at stream position `start` (images of this rank's stream so far)."""
        channels, height, width = self.source.image_shape
        block_key, block = None, None
        position = start
        for _ in range(count):
            images = torch.empty((size, height, width, channels), dtype=torch.uint8,
                                 pin_memory=pin_memory)  # fmt: skip
            labels = torch.empty(size, dtype=torch.int64, pin_memory=pin_memory)
            filled = 0
            while filled < size:
                pass_number, offset = divmod(position, self.pass_images)
                index, within = divmod(offset, self.block_images)
                if block_key != (pass_number, index):
                    block_key, block = (pass_number, index), self._block(pass_number, index)
                block_images, block_labels, order = block
                take = min(size - filled, len(order) - within)
                chosen = order[within : within + take]
                torch.index_select(block_images, 0, chosen, out=images[filled : filled + take])
                torch.index_select(block_labels, 0, chosen, out=labels[filled : filled + take])
                filled, position = filled + take, position + take
            yield images, labels

    def windows_of(self, pass_number: int) -> torch.Tensor:
        """This rank's windows in pass `pass_number`, in reading order (before blocking)."""
        cached = self._order  # one read: another iterator's thread may replace it meanwhile
        if cached is not None and cached[0] == pass_number:
            return cached[1]
        generator = seeded(self.seed, "extra windows", pass_number)
        order = torch.randperm(self.windows, generator=generator)
        mine = order[self.rank * self.share : (self.rank + 1) * self.share]
        self._order = pass_number, mine
        return mine

    def _block(
        self, pass_number: int, index: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block `index` of a pass: its windows read in file order, and a permutation of them."""
        mine = self.windows_of(pass_number)
        chosen = mine[index * self.block_windows : (index + 1) * self.block_windows]
        starts = (chosen.sort().values * self.window).tolist()
        n = len(starts) * self.window
        channels, height, width = self.source.image_shape
        images = np.empty((n, height, width, channels), dtype=np.uint8)
        labels = np.empty(n, dtype=np.int64)
        for i, first in enumerate(starts):
            part = slice(i * self.window, (i + 1) * self.window)
            self.source.read(first, first + self.window, images[part], labels[part])
        generator = seeded(self.seed, "extra block", pass_number, self.rank, index)
        order = torch.randperm(n, generator=generator)
        return torch.from_numpy(images), torch.from_numpy(labels), order
