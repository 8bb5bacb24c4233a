"""How large the streamed extra set's windows and blocks should be (data/extra_order.py).

Two measurements: the read speed of random windows of W images from a cold memory-mapped .npz
(its pages evicted with posix_fadvise before each size), and how evenly batches of class-sorted
labels mix classes for windows W and blocks of K windows (the spread of a class's share per batch,
against an independent draw's). With --device, also the loader's speed: batches of 1024 (716
extra) with the extra set streamed from the file against the same set held on the device.
Run: python -m benchmarks.extra_stream [--images N] [--dir D] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robustresnet.data import DeviceLoader
from robustresnet.data.extra_order import WindowOrder
from robustresnet.data.stream import Shard, StreamedExtra, open_extra

BATCH = 716  # the advanced recipe's extra share of 1024
CLASSES = 10


def read_speed(path: Path, window: int, images: int, seed: int = 0) -> float:
    """Images per second reading `images` images as random windows of `window`, cold."""
    extra = open_extra(path, num_classes=CLASSES)
    with open(path, "rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    starts = np.random.default_rng(seed).integers(0, len(extra) // window, images // window)
    out = np.empty((window, 32, 32, 3), np.uint8)
    labels = np.empty(window, np.int64)
    begin = time.perf_counter()
    for start in starts * window:
        extra.read(int(start), int(start) + window, out, labels)
    return len(starts) * window / (time.perf_counter() - begin)


def class_spread(n: int, window: int, block_windows: int, batches: int = 200) -> float:
    """Standard deviation of a class's share of a batch, labels sorted by class."""
    labels = np.repeat(np.arange(CLASSES), n // CLASSES)
    shard = Shard(Path("sorted"), np.zeros((len(labels), 1, 1, 1), np.uint8), labels)
    order = WindowOrder(StreamedExtra([shard], num_classes=CLASSES, source="sorted"), seed=0,
                        window=window, block_windows=block_windows)  # fmt: skip
    shares = [np.bincount(y.numpy(), minlength=CLASSES) / BATCH
              for _, y in order.batches(0, BATCH, batches)]  # fmt: skip
    return float(np.std(shares))


def loader_speed(path: Path, device: str, batches: int = 200) -> dict[str, float]:
    """Batches per second of a CIFAR-sized loader, extra data streamed or on the device."""
    base = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (50_000,))
    streamed = open_extra(path, num_classes=CLASSES, image_shape=(3, 32, 32))
    with np.load(path) as data:
        held = (
            torch.from_numpy(data["image"]).permute(0, 3, 1, 2),
            torch.from_numpy(data["label"]),
        )
    speeds = {}
    for name, extra in (("streamed", streamed), ("in memory", held)):
        epoch = 1024 * (batches + 10)
        loader = DeviceLoader(base, labels, batch_size=1024, train=True, device=device,
                              extra=extra, extra_fraction=0.7, epoch_images=epoch)  # fmt: skip
        batch_iter = iter(loader)
        for _ in range(10):  # warm-up: the first block read, allocations
            next(batch_iter)
        _sync(device)
        begin = time.perf_counter()
        for _ in range(batches):
            x, _ = next(batch_iter)
        _sync(device)
        speeds[name] = batches / (time.perf_counter() - begin)
        batch_iter.close()
    return speeds


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200_000, help="images in the test file")
    parser.add_argument("--dir", default=None, help="folder for the test file (default: temp)")
    parser.add_argument("--device", default=None, help="also time the loader on this device")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "extra.npz"
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
        np.savez(path, image=image, label=rng.integers(0, CLASSES, args.images))
        del image
        print("window  images/s (cold, random windows)")
        for window in (1, 8, 16, 32, 64, 256, 1024, 8192):
            speed = read_speed(path, window, min(args.images // 2, 32_768))
            print(f"{window:>6}  {speed:,.0f}")
        if args.device:
            for name, speed in loader_speed(path, args.device).items():
                print(f"loader on {args.device}, extra {name}: {speed:,.1f} batches/s of 1024")
    iid = np.sqrt(0.1 * 0.9 / BATCH)
    print(f"\nclass share spread per batch of {BATCH} (independent draw: {iid:.4f})")
    print("window  block_windows  spread")
    for window, block in ((1024, 16), (256, 64), (64, 256), (32, 512), (16, 1024)):
        print(f"{window:>6}  {block:>13}  {class_spread(2_000_000, window, block):.4f}")


if __name__ == "__main__":
    main()
