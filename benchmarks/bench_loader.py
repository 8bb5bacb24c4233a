"""Loader speed: DeviceLoader against DataLoader over per-sample tensor transforms (issue 3).

CIFAR-shaped random uint8 data (50,000 x 3x32x32), batch 128, random crop (4-pixel zero padding)
+ horizontal flip + float conversion. Methods run in interleaved rounds; medians are reported.

    PYTHONPATH=src python benchmarks/bench_loader.py --rounds 5 --write
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _machine import allocator, describe
from _results import add_write_flag, command_line, record, run_heading
from torch.utils.data import DataLoader, Dataset

from robustresnet.data import DeviceLoader

SECTION = "## Loader speed (issue 3)"


class PerSampleCrop(Dataset):
    """The reference style: torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip +
    ToTensor, written in torch and applied to one image at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.pad(self.images[index], (4, 4, 4, 4))
        top = torch.randint(0, 9, size=(1,)).item()  # as RandomCrop.get_params draws them
        left = torch.randint(0, 9, size=(1,)).item()
        image = image[:, top : top + 32, left : left + 32]
        if torch.rand(1).item() < 0.5:
            image = image.flip(-1)
        return image.float().div(255.0), self.labels[index]


def time_batches(batches, count: int) -> float:
    """Images per second over `count` batches, after one warm-up batch (worker start-up)."""
    iterator = iter(batches)
    next(iterator)
    images, start = 0, time.perf_counter()
    for _ in range(count):
        x, _ = next(iterator)
        images += len(x)
    return images / (time.perf_counter() - start)


def with_threads(threads: int, make):
    """`make` whose iteration runs with `threads` torch threads in this process."""

    def run():
        torch.set_num_threads(threads)
        return make()

    return run


def methods(images: torch.Tensor, labels: torch.Tensor, workers: list[int]) -> dict:
    """name -> (function making a fresh iterable of batches, CPU workers it uses).

    DeviceLoader's workers are torch threads in this process; DataLoader's are processes (its
    main process then only collates, with one thread).
    """
    table = {}
    for w in workers:
        threads = max(w, 1)
        table[f"DeviceLoader, {threads} thread{'s' * (threads > 1)}"] = (
            with_threads(
                threads,
                lambda: DeviceLoader(images, labels, batch_size=128, train=True, seed=0),
            ),
            w,
        )
        table[f"DataLoader, {w} workers"] = (
            with_threads(
                1,
                lambda w=w: DataLoader(
                    PerSampleCrop(images, labels),
                    batch_size=128,
                    shuffle=True,
                    drop_last=True,
                    num_workers=w,
                    persistent_workers=False,
                ),
            ),
            w,
        )
    return table


def report(medians: dict[str, float], runs: dict[str, list[float]], table: dict, args) -> str:
    lines = [
        run_heading(),
        "",
        f"Machine: {describe(max(args.workers + [1]))} (other work on the cores makes absolute "
        "figures noisy); ratios come from the same interleaved run.",
        f"Setting: 50,000 x 3x32x32 random uint8 images, batch 128, crop (pad 4) + flip + float; "
        f"{args.batches} batches per measurement after one warm-up batch; {args.rounds} "
        "interleaved rounds, median. Same number of CPU workers on both sides: DeviceLoader runs "
        "in the main process with that many torch threads (at least one), DataLoader with that "
        "many worker processes (one thread each).",
        "",
        "| loader | CPU workers | images/s (median) | runs | DeviceLoader speed-up |",
        "|---|---:|---:|---|---:|",
    ]
    # DeviceLoader runs with max(w, 1) threads, so 0 and 1 DataLoader workers share one row of ours
    ours = {
        max(w, 1): medians[name]
        for name, (_, w) in table.items()
        if name.startswith("DeviceLoader")
    }
    ratios = []
    for name, (_, w) in table.items():
        each = ", ".join(f"{r / 1000:.0f}k" for r in runs[name])
        ratio = ours[max(w, 1)] / medians[name]
        if not name.startswith("DeviceLoader"):
            ratios.append(ratio)
        lines.append(f"| {name} | {max(w, 1)} | {medians[name]:,.0f} | {each} | {ratio:.1f}x |")
    worst = min(ratios)
    verdict = "met" if worst >= 10 else "not met on this machine"
    lines += [
        "",
        f"Target (at least 10x over DataLoader with the same number of workers): {verdict}; the "
        f"smallest speed-up here is {worst:.1f}x.",
        "",
        f"Command: `{command_line()}`",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    add_write_flag(parser)
    args = parser.parse_args()
    allocator()  # rrn's malloc setting, before anything is timed
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (50_000,), generator=generator)
    table = methods(images, labels, args.workers)
    runs: dict[str, list[float]] = {name: [] for name in table}
    for round_ in range(args.rounds):
        for name, (make, _) in table.items():
            runs[name].append(time_batches(make(), args.batches))
            print(f"round {round_ + 1}: {name}: {runs[name][-1]:,.0f} images/s", flush=True)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    text = report(medians, runs, table, args)
    print(text)
    if args.write:
        record(SECTION, text)


if __name__ == "__main__":
    main()
