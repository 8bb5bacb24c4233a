"""`python -m benchmarks.scaleout`: images/s of a PGD-20 evaluation with 1 and with N torchrun
ranks (one thread each on the CPU, one GPU each on CUDA), and the scaling efficiency.

Each launch evaluates the same images with `robustresnet.evaluate` (sharded over the ranks, the
merged report on rank 0), after an untimed warm-up evaluation of a few images; the time is the
slowest rank's wall time of the timed evaluation. The flags of every launch must be equal: the
check that the split changes nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import machine, results

HEADING = "## Evaluation scale-out (PGD-20, torchrun ranks)"
WORKER = """
import json, os, sys, time
import torch, torch.distributed as dist
sys.path.insert(0, {root!r})
from benchmarks.models import build, random_batch
from robustresnet.evaluate import evaluate

distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
device = torch.device({device!r})
if device.type == "cuda":
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
if distributed:
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
torch.set_num_threads(1)
torch.manual_seed(0)
model = build({size!r}, device).eval()
x, y = random_batch({images}, device, seed=1)
options = dict(attacks=("clean", "pgd20"), batch_size={batch}, sanity_checks=False)
evaluate(model, x[:{batch}], y[:{batch}], **options)  # warm-up
if distributed:
    dist.barrier()
start = time.perf_counter()
report = evaluate(model, x, y, **options)
seconds = time.perf_counter() - start
times = [None] * dist.get_world_size() if distributed else [seconds]
if distributed:
    dist.all_gather_object(times, seconds)
if not distributed or dist.get_rank() == 0:
    print(json.dumps({{"seconds": max(times), "flags": report["flags"]}}))
if distributed:
    dist.destroy_process_group()
"""


def launch(ranks: int, size: str, images: int, batch: int, device: str) -> dict[str, Any]:
    """Run the worker on `ranks` processes; its JSON line (seconds, flags)."""
    root = str(Path(__file__).resolve().parents[1])
    code = WORKER.format(root=root, device=device, size=size, images=images, batch=batch)
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "worker.py"
        script.write_text(code)
        prefix = [sys.executable]
        if ranks > 1:
            prefix += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        done = subprocess.run([*prefix, str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{ranks} rank(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(size: str, images: int, batch: int, ranks: int, device: str) -> dict[str, Any]:
    """Images/s with 1 and with `ranks` ranks, the speed-up and efficiency; flags compared."""
    one = launch(1, size, images, batch, device)
    many = launch(ranks, size, images, batch, device)
    if one["flags"] != many["flags"]:
        raise RuntimeError("the sharded evaluation's flags differ from one process's")
    speedup = one["seconds"] / many["seconds"]
    return {
        "size": size,
        "images": images,
        "batch": batch,
        "ranks": ranks,
        "images_per_s_1": images / one["seconds"],
        f"images_per_s_{ranks}": images / many["seconds"],
        "speedup": speedup,
        "efficiency": speedup / ranks,
    }


def section(result: dict[str, Any], info: dict[str, Any], argv: Sequence[str]) -> str:
    """The RESULTS.md section of one measurement."""
    n = result["ranks"]
    command = "python -m benchmarks.scaleout " + " ".join(argv)
    return (
        f"{HEADING}\n\n{machine.summary(info)}. Command: `{command}`. "
        f"{result['images']} images of the {result['size']} network, batch {result['batch']}, "
        "one thread (CPU) or one GPU per rank; flags of both launches equal.\n\n"
        f"| ranks | images/s | speed-up | efficiency |\n|---|---|---|---|\n"
        f"| 1 | {result['images_per_s_1']:.1f} | 1.00x | 100% |\n"
        f"| {n} | {result[f'images_per_s_{n}']:.1f} | {result['speedup']:.2f}x | "
        f"{100 * result['efficiency']:.0f}% |\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the section, and with --write put it in RESULTS.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", default="tiny", help="a benchmarks network size (tiny)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="record it in RESULTS.md")
    args = parser.parse_args(argv)
    info = {**machine.describe(torch.device(args.device)), "threads": 1}  # load before the run
    result = measure(args.size, args.images, args.batch, args.ranks, args.device)
    text = section(result, info, sys.argv[1:] if argv is None else list(argv))
    print(text)
    if args.write:
        results.record(HEADING, text)


if __name__ == "__main__":
    main()
