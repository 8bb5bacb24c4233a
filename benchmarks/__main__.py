"""`python -m benchmarks`: the library's speed against the straightforward baseline, both timed in
the same run, per network size and pass, on the CPU or a CUDA GPU."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from robustresnet import profile
from robustresnet._io import write_json, write_text
from robustresnet.reproduce.throughput import THROUGHPUT_TABLE, record_throughput

from . import machine, results
from .kernels import PROFILED_PASSES, append_profile, kernel_report
from .loader import DATASET, EXTRA_FRACTION, loader, streamed
from .models import SIZES, build, pass_flops, random_batch, spec_of
from .passes import PASSES, PGD20, REFERENCE_IMAGES, TRADES, Case, Comparison
from .settings import AA_SAMPLES, AA_TARGETS, BATCH, DTYPES, LOADER_BATCH, Settings
from .timing import Progress, interleaved

ALL_PASSES = (*PASSES, "loader", "stream")
EXAMPLES = """examples:
  .venv/bin/python -m benchmarks --sizes tiny --passes forward attack --repeats 3
  .venv/bin/python -m benchmarks --sizes tiny A1 --threads 2 --repeats 5 --write
  PYTHONPATH=src python3 -m benchmarks --device cuda --dtype bf16 --json run.json --write
  .venv/bin/python -m benchmarks --sizes tiny A1 --passes trades --threads 2 --throughput
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, its device-dependent dtype default filled in; checked."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cuda = torch.cuda.is_available()
    add = parser.add_argument
    add(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if cuda else "cpu",
        help="default: cuda if available",
    )
    add("--dtype", choices=DTYPES, help="our autocast dtype (default: bf16 on cuda, else fp32)")
    add("--compile", action="store_true", help="torch.compile our model (never fused then)")
    add("--fuse", action=argparse.BooleanOptionalAction, default=True, help="attack fused copies")
    add("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    add(
        "--sizes",
        nargs="+",
        choices=SIZES,
        default=["tiny", "A1"],
        metavar="SIZE",
        help=f"of {list(SIZES)} (default: tiny A1)",
    )
    add(
        "--passes",
        nargs="+",
        choices=ALL_PASSES,
        default=list(ALL_PASSES),
        metavar="PASS",
        help=f"of {list(ALL_PASSES)} (default: all)",
    )
    add("--batch", type=int, metavar="N", help=f"images per call (default: {_per_size(BATCH)})")
    add("--repeats", type=int, default=3, metavar="N", help="interleaved rounds (default: 3)")
    add(
        "--min-time",
        type=float,
        default=0.5,
        metavar="S",
        help="a timing repeats a call for at least S seconds (default: 0.5)",
    )
    add("--threads", type=int, metavar="N", help="torch threads (default: torch's)")
    add(
        "--aa-samples",
        type=int,
        metavar="N",
        help=f"AutoAttack images (default: {_per_size(AA_SAMPLES)}; 0: skip)",
    )
    add(
        "--aa-targets",
        type=int,
        default=AA_TARGETS,
        metavar="N",
        help=f"APGD-T target classes, 3 to 9 (default: {AA_TARGETS})",
    )
    add(
        "--loader-batches",
        type=int,
        default=100,
        metavar="N",
        help="batches per loader call (default: 100)",
    )
    add(
        "--loader-workers",
        type=int,
        metavar="N",
        help="DataLoader workers (default: torch threads, at most 8; 1 thread: 0)",
    )
    add("--json", type=Path, metavar="PATH", help="write the results as JSON")
    add(
        "--write",
        nargs="?",
        type=Path,
        const=results.RESULTS,
        metavar="PATH",
        help="replace this setting's section of PATH (default: benchmarks/RESULTS.md)",
    )
    add(
        "--throughput",
        nargs="?",
        type=Path,
        const=THROUGHPUT_TABLE,
        metavar="PATH",
        help="put the trades rows into PATH, the TRADES speed `rrn reproduce` costs runs with "
        "(default: the package's src/robustresnet/reproduce/throughput.json)",
    )
    add(
        "--profile",
        type=Path,
        metavar="PATH",
        help=f"profile one call of each side of the {', '.join(PROFILED_PASSES)} rows into the "
        "text file PATH (the GPU's busy share and the top operators)",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda: no CUDA device is available")
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    if args.dtype == "fp16" and args.device != "cuda":
        parser.error("--dtype fp16 needs --device cuda")
    if not 3 <= args.aa_targets <= 9:
        parser.error("--aa-targets: 3 to 9 (APGD-T's loss needs 4 classes; AutoAttack uses 9)")
    return args


def _per_size(table: dict[str, dict[str, int]]) -> str:
    """A per-device, per-size default for --help: 'cpu tiny 64, A1 4; cuda ...'."""
    return "; ".join(
        f"{device} " + ", ".join(f"{size} {n}" for size, n in sizes.items())
        for device, sizes in table.items()
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the comparisons asked for, printing each table row as it is measured."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = torch.device(args.device)
    settings = Settings(device, args.dtype, args.channels_last, args.fuse, args.compile)
    machine.prepare(args.threads)
    progress = Progress(enabled=not sys.stdout.isatty())
    gpu = device.type == "cuda"
    info = machine.describe(device)
    if gpu:
        progress("measuring the matmul peak")
        info["matmul_peak_tflops"] = machine.matmul_peak(device, DTYPES[args.dtype] or torch.float)
    document = {"machine": info, "settings": settings.label(), "command": command(argv)}
    document["rows"] = rows = []

    def add(size: str, name: str, comparison: Comparison) -> None:
        calls = {"ours": comparison.ours, "baseline": comparison.baseline}
        timed = interleaved(
            calls, device=device, repeats=args.repeats, min_time=args.min_time,
            warmups=comparison.warmups, label=f"{size} {name}", progress=progress,
        )  # fmt: skip
        rows.append(results.row(size, name, comparison, timed, info.get("matmul_peak_tflops")))
        if args.profile and size in SIZES and name in PROFILED_PASSES:
            progress(f"{size} {name}: profile")
            reports = {
                side: kernel_report(calls[side], device, timed[side].median) for side in calls
            }
            append_profile(args.profile, f"{size} {name} ({settings.label()})", reports)
        if size in SIZES:  # the network's MACs per image, as the paper counts them
            rows[-1]["macs"] = profile(spec_of(size)).macs
        print(results.line(rows[-1], gpu), flush=True)
        info["load_average_end"] = machine.load_average()
        save(document, args)  # after every row: an interrupted run keeps the rows it finished

    if args.profile:
        write_text(args.profile, f"# Profiles: `{document['command']}`\n\n")
    print(results.head(gpu), flush=True)
    for size in args.sizes if set(args.passes) & set(PASSES) else ():
        progress(f"{size}: building the network")
        case = make_case(size, settings, args)
        for name in (p for p in args.passes if p in PASSES):
            if name != "autoattack" or case.aa_samples:
                add(size, name, PASSES[name](case))
    if "loader" in args.passes:
        info["loader_workers"] = workers = loader_workers(args)
        batch, batches = LOADER_BATCH[device.type], args.loader_batches
        add("–", "loader", loader(device, batch_size=batch, batches=batches, workers=workers))
    if "stream" in args.passes:
        batch, batches = LOADER_BATCH[device.type], args.loader_batches
        add("–", "stream", streamed(device, batch_size=batch, batches=batches))


def loader_workers(args: argparse.Namespace) -> int:
    """DataLoader worker processes: --loader-workers, else one per torch thread (at most 8; a
    single thread: none, the loading runs in this process as DeviceLoader's does)."""
    if args.loader_workers is not None:
        return args.loader_workers
    threads = torch.get_num_threads()
    return min(threads, 8) if threads > 1 else 0


def save(document: dict[str, Any], args: argparse.Namespace) -> None:
    """The run so far: as JSON with --json, as this setting's RESULTS.md section with --write."""
    if args.json:
        write_json(args.json, document)
    if args.throughput:
        record_throughput(document, machine.summary(document["machine"]), args.throughput)
    if args.write:
        heading = f"## {document['settings']}"
        gpu = "matmul_peak_tflops" in document["machine"]
        text = results.section(heading, notes(document, args), document["rows"], gpu)
        results.record(heading, text, args.write)


def make_case(size: str, settings: Settings, args: argparse.Namespace) -> Case:
    """The network, batch and FLOPs every pass of `size` shares."""
    kind = settings.device.type
    model = build(size, settings.device)
    x, y = random_batch(args.batch or BATCH[kind][size], settings.device)
    return Case(
        size=size,
        model=model,
        x=x,
        y=y,
        flops=pass_flops(size),
        settings=settings,
        aa_samples=args.aa_samples or AA_SAMPLES[kind][size],
        aa_targets=args.aa_targets,
    )


def command(argv: Sequence[str]) -> str:
    """The command that repeats this measurement, less the options that only say where its
    results go (--json, --profile, --write, --throughput) and their paths."""
    required, optional = ("--json", "--profile"), ("--write", "--throughput")
    kept, i = [], 0
    while i < len(argv):
        arg, following = argv[i], argv[i + 1] if i + 1 < len(argv) else "-"
        i += 1
        if arg in required or (arg in optional and not following.startswith("-")):
            i += 1  # the option's path
        elif arg not in optional and not arg.startswith(
            tuple(f"{o}=" for o in (*required, *optional))
        ):
            kept.append(arg)
    return " ".join(["python -m benchmarks", *map(shlex.quote, kept)])


def notes(document: dict[str, Any], args: argparse.Namespace) -> str:
    """The section's text above its table: machine, command, and what each pass ran."""
    info = document["machine"]
    lines = [
        f"Machine: {machine.summary(info)}, {_load(info.get('load_average_end'))} at the last row.",
        f"Command: `{document['command']}` ({args.repeats} interleaved rounds, median; each "
        f"timing repeats a call for at least {args.min_time} s).",
        f"Ours: {document['settings']}. Networks: random weights, BatchNorm statistics measured "
        "on random images; batches: random images and labels.",
    ]
    if "matmul_peak_tflops" in info:
        lines.append(
            f"Matmul peak (MFU's denominator): {info['matmul_peak_tflops']:.0f} TFLOP/s, "
            f"{machine.PEAK_SIZE}³ in {args.dtype} (fp32 as TF32), mean of ten."
        )
    lines += [pass_note(name, args, info) for name in args.passes]
    return "\n".join(f"- {line}" for line in lines)


def _load(value: float | None) -> str:
    return "load n/a" if value is None else f"{value:.1f}"


def pass_note(name: str, args: argparse.Namespace, info: dict[str, Any]) -> str:
    """What pass `name` ran on each side, and how its FLOPs are counted."""
    eps, step = f"{PGD20.eps * 255:g}/255", f"{PGD20.step_size * 255:g}/255"
    if name == "forward":
        return "forward: inference logits, no autograd graph (`predict`); ours on the fused copy."
    if name == "attack":
        return (
            "attack: one attack step, the input gradient of the cross-entropy with the model "
            f"frozen; ours on the fused copy. Check: on the first {REFERENCE_IMAGES} images, each "
            "side's error against the definition in fp64."
        )
    if name == "trades":
        return (
            f"trades: one TRADES-{TRADES.steps} training step (eps {TRADES.eps * 255:g}/255, "
            f"step {TRADES.step_size * 255:g}/255, beta {TRADES.beta:g}) and an SGD step; ours "
            "`make_objective('trades')`, the baseline the authors' `trades_loss` (parameters "
            "frozen by a loop, the clean softmax recomputed at every attack step). FLOPs: "
            f"{TRADES.steps} attack steps, a clean forward, two training forwards and backwards."
        )
    if name == "pgd20":
        return (
            f"pgd20: PGD-{PGD20.steps} (eps {eps}, step {step}, no random start) of the batch, "
            "labels = clean predictions; ours `pgd` + `predict`, the baseline the straightforward "
            "loop (`loss.backward()` with parameter gradients). Warm-up: one PGD step. FLOPs: the "
            "attack steps and a forward."
        )
    if name == "autoattack":
        samples = ", ".join(
            f"{size} {args.aa_samples or AA_SAMPLES[args.device][size]}" for size in args.sizes
        )
        return (
            "autoattack: APGD-CE + APGD-T, ours `robustresnet.attacks.autoattack` on the fused "
            "copy, the baseline pyautoattack on the definition. A fixed model whose head keeps "
            "every sample robust, so both run the whole budget: 100 APGD-CE iterations and 100 "
            f"per target class of APGD-T, {args.aa_targets} target "
            "classes (AutoAttack's standard is 9; the model has one class more). Images per "
            f"size: {samples} (0: not run). Warm-up: one attack step. FLOPs: the iterations."
        )
    if name == "stream":
        return (
            f"stream: {args.loader_batches} training batches of {LOADER_BATCH[args.device]}, "
            f"{EXTRA_FRACTION:.0%} of each from {DATASET:,} extra images in an .npz on disk, "
            "delivered on the device: ours streams them (`open_extra`, windows read by a "
            "background thread), the baseline holds the same file in memory (`load_extra`)."
        )
    return (
        f"loader: {args.loader_batches} training batches of {LOADER_BATCH[args.device]} (crop "
        f"with 4-pixel padding, flip) from {DATASET:,} random uint8 images, delivered on the "
        f"device: ours `DeviceLoader` in this process ({info['threads']} torch thread(s)), the "
        f"baseline a DataLoader over per-sample transforms in {info.get('loader_workers', 0)} "
        "worker processes (0: in this process)."
    )


if __name__ == "__main__":
    main()
