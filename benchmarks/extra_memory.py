"""`python -m benchmarks.extra_memory`: peak resident memory of a training process, and the
loader's images/s, with a generated extra set streamed from disk (`open_extra`) against the
same file read fully into memory (`load_extra`), for sets of 200K and 2M CIFAR-sized images.

Each size's file is written here in chunks (an uncompressed .npz of random images, as
`np.savez` lays it out; 2M images are 6 GB on disk, never in memory) and deleted afterwards
unless --keep. Each (size, way) runs in its own process, so its peak resident memory
(ru_maxrss) is its own: CIFAR-10's 50,000 training images as the base set, a DeviceLoader
mixing 70% extra images into batches of 512 (the advanced recipe's share), first --batches
batches through the loader alone (timed), then --train-batches SGD steps of a small RobustResNet.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib import format as npy_format

from robustresnet import build_model
from robustresnet.arch import ArchSpec, StageSpec

from . import machine, results
from .loader import DATASET, random_dataset
from .models import IMAGE

HEADING = "## Generated extra data: streamed against in memory (cpu)"
BATCH, FRACTION = 512, 0.7
CHUNK = 65_536  # images written at a time
# A small RobustResNet (16-16-32 channels, 10.7M MACs): its training steps are part of the process
# without their activations drowning what the loader holds.
SMALL = ArchSpec(
    stages=tuple(
        StageSpec(depth=1, channels=c, stride=s, block="robust_res_block")
        for c, s in ((16, 1), (16, 2), (32, 2))
    )
)


def write_npz(path: Path, count: int, *, seed: int = 0, classes: int = 10) -> Path:
    """An uncompressed .npz of `count` random 32x32x3 uint8 images (`image`) and int64 labels
    (`label`), written chunk by chunk so that no more than CHUNK images are in memory."""
    height, width = IMAGE[1:]
    rng = np.random.default_rng(seed)
    members = (
        (
            "image",
            (count, height, width, 3),
            np.uint8,
            lambda n: rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8),
        ),
        ("label", (count,), np.int64, lambda n: rng.integers(0, classes, n, dtype=np.int64)),
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, shape, dtype, draw in members:
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                descr = npy_format.dtype_to_descr(np.dtype(dtype))
                header = {"descr": descr, "fortran_order": False, "shape": shape}
                npy_format.write_array_header_1_0(member, header)
                for start in range(0, count, CHUNK):
                    member.write(draw(min(CHUNK, count - start)).tobytes())
    return path


def child(path: Path, way: str, batches: int, train_batches: int) -> dict[str, Any]:
    """One process's measurement: open the set `way` (stream or memory), time the loader,
    train, and report the peak resident memory."""
    from robustresnet.data import DeviceLoader, load_extra, open_extra

    torch.set_num_threads(2)
    images, labels = random_dataset()
    started = time.perf_counter()
    if way == "stream":
        extra = open_extra(path, num_classes=10, image_shape=IMAGE)
    else:
        extra = load_extra(path)
    opened = time.perf_counter() - started
    total = BATCH * (batches + train_batches)
    loader = DeviceLoader(
        images,
        labels,
        batch_size=BATCH,
        train=True,
        extra=extra,
        extra_fraction=FRACTION,
        epoch_images=total,
    )
    batches_seen = iter(loader)
    started = time.perf_counter()
    for _ in range(batches):
        next(batches_seen)
    rate = batches * BATCH / (time.perf_counter() - started)
    model = build_model(SMALL).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(train_batches):
        x, y = next(batches_seen)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return {
        "way": way,
        "images": len(extra.labels) if way == "memory" else len(extra),
        "open_s": opened,
        "images_per_s": rate,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(sizes: Sequence[int], folder: Path, args: argparse.Namespace) -> list[dict]:
    """Every (size, way) in its own process, each size's file written first."""
    rows = []
    for size in sizes:
        path = folder / f"extra-{size}.npz"
        started = time.perf_counter()
        write_npz(path, size)
        took = time.perf_counter() - started
        print(f"{path}: {path.stat().st_size / 2**30:.2f} GiB in {took:.0f} s", file=sys.stderr)
        for way in args.ways:
            command = [sys.executable, "-m", "benchmarks.extra_memory", "--child", str(path), way]
            command += ["--batches", str(args.batches), "--train-batches", str(args.train_batches)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            gib = path.stat().st_size / 2**30
            rows.append({"size": size, "file_gib": gib, **json.loads(done.stdout)})
            print(json.dumps(rows[-1]), file=sys.stderr)
        if not args.keep:
            path.unlink()
    return rows


def section(rows: list[dict], info: dict[str, Any], argv: Sequence[str]) -> str:
    """The RESULTS.md section of one measurement."""
    lines = [
        "| extra images | file GiB | way | open s | loader images/s | peak RSS MiB |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['file_gib']:.2f} | {r['way']} | {r['open_s']:.1f} | "
            f"{r['images_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} |"
        )
    command = "python -m benchmarks.extra_memory " + " ".join(argv)
    return (
        f"{HEADING}\n\n{machine.summary(info)}. Command: `{command}`. Base set: {DATASET:,} random "
        f"CIFAR-sized images in memory; batches of {BATCH}, {FRACTION:.0%} from the extra set; "
        "stream: `open_extra` (read in shuffled windows by a background thread), memory: "
        "`load_extra` (the whole file read first). Loader images/s: the loader alone; peak RSS: "
        "the whole process (ru_maxrss), the loader and a small RobustResNet's training steps.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the section, and with --write put it in RESULTS.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.extra_memory", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 2_000_000])
    ways = ("stream", "memory")
    parser.add_argument("--ways", nargs="+", choices=ways, default=list(ways))
    parser.add_argument("--batches", type=int, default=200, help="timed loader batches")
    parser.add_argument("--train-batches", type=int, default=10)
    parser.add_argument(
        "--dir", type=Path, help="where the files go (default: a new temporary one)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the files (deleted by default)")
    parser.add_argument("--write", action="store_true", help="record it in RESULTS.md")
    parser.add_argument("--child", nargs=2, metavar=("FILE", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        path, way = Path(args.child[0]), args.child[1]
        print(json.dumps(child(path, way, args.batches, args.train_batches)))
        return
    info = {**machine.describe(torch.device("cpu")), "threads": 2}
    folder = args.dir or Path(tempfile.mkdtemp(prefix="extra-memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = measure(args.sizes, folder, args)
    text = section(rows, info, sys.argv[1:] if argv is None else list(argv))
    print(text)
    if args.write:
        results.record(HEADING, text)


if __name__ == "__main__":
    main()
