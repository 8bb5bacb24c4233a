"""`rrn eval CHECKPOINT`: clean, FGSM, PGD-20, CW-40 and AutoAttack accuracy as in the paper."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from .._io import write_text
from .._lock import folder_lock
from .._stop import Interrupt, StopFlag, on_stop_signals, signal_name
from ..arch import ArchSpec, resolve_spec
from ..arch.compat import load_model, metadata_spec, read_state_dict
from ..arch.zoo import PRESETS, apply_overrides, canonical_preset
from ..attacks.spec import PAPER_EPS, parse_number
from ..data import ImageDataset, load_dataset
from ..errors import CheckpointError, ConfigError, Stopped, in_file
from ..evaluate import DEFAULT_ATTACKS, evaluate, merge_report_files, to_markdown
from ..train import distributed as ddp
from ..train.config import MAX_COUNT, MAX_SEED, MAX_THREADS, load_config
from ..train.setup import pick_device
from ._common import add_output_flags, example_epilog, print_json

_RUN_WEIGHTS = ("best", "last", "ema")  # weights/NAME.safetensors of a training run, in this order


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`rrn eval` and its options."""
    parser = subparsers.add_parser(
        "eval",
        help="robust accuracy of a checkpoint under FGSM, PGD, CW and AutoAttack",
        description="Evaluate a checkpoint with the paper's protocol. Attacks run only on the "
        "samples classified correctly; with --out the report is saved after every batch and "
        "rerunning the same command resumes it (SIGTERM or Ctrl-C stops it with exit code 143 "
        "or 130; the --out folder is locked while it runs).",
        **example_epilog(
            "rrn eval runs/digits-demo --data digits -n 200 --attacks clean,pgd20,cw40",
            "rrn eval runs/a1 --data cifar10 --root data --attacks clean,pgd20,cw40,aa --out eval",
            "rrn eval Huang2022Revisiting_WRN-A4.pt --arch wrn-a4 --activation silu "
            "--mean cifar10 --attacks aa",
            "rrn eval model.safetensors --arch spec.yaml --attacks 'pgd50:eps=4/255,aa:"
            "attacks=apgd-ce+apgd-t'",
            "rrn eval runs/a1 --attacks aa --shard 0/4 --out eval/part0   # one of 4 jobs",
            "rrn eval merge eval/part0 eval/part1 eval/part2 eval/part3 --out eval/all",
            "torchrun --nproc-per-node 8 -m robustresnet eval runs/a1 --attacks aa --out eval",
        ),
    )
    parser.add_argument("checkpoint", help="run directory, .safetensors or the authors' .pth; "
                        "or `merge` followed by shard folders")  # fmt: skip
    parser.add_argument(
        "shards", nargs="*", metavar="DIR", help="(merge) the shards' --out folders"
    )
    parser.add_argument("--shard", metavar="I/N", help="evaluate shard I of N (from 0), cut at "
                        "multiples of --batch-size; merge the --out folders with `rrn eval "
                        "merge`")  # fmt: skip
    parser.add_argument("--arch", help="preset name, spec file or run directory (default: "
                        "the run directory's arch.yaml or the safetensors metadata)")  # fmt: skip
    parser.add_argument("--weights", choices=_RUN_WEIGHTS, help="which weights of a run directory")
    parser.add_argument("--num-classes", type=int, help="override the spec's class count")
    parser.add_argument("--activation", help="one activation for every stage (e.g. silu)")
    parser.add_argument("--mean", help="in-model input normalisation, e.g. cifar10")
    parser.add_argument("--data", help="dataset (default: the run directory's, else cifar10)")
    parser.add_argument("--root", help="data folder (default: the run's, $RRN_DATA or ./data)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("-n", type=int, help="number of samples (default: all)")
    parser.add_argument("--offset", type=int, default=0, help="index of the first sample")
    parser.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS),
                        help="comma list of clean, fgsm, pgdN, cwN, aa; options as "
                        "NAME:key=value, e.g. pgd50:eps=4/255 or aa:attacks=apgd-ce+apgd-t "
                        f"(default: {','.join(DEFAULT_ATTACKS)})")  # fmt: skip
    parser.add_argument("--eps", help="radius in [0,1] units (default: the run's, else 8/255)")
    parser.add_argument("--norm", choices=("inf", "2"), help="(default: the run's, else inf)")
    parser.add_argument("--batch-size", type=int, default=256, help="(default: 256)")
    parser.add_argument("--seed", type=int, default=0, help="random starts (default: 0)")
    parser.add_argument("--device", help="e.g. cuda, cpu (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fp32 default)")
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW weights")
    parser.add_argument("--no-sanity-checks", action="store_true", help="skip masking checks")
    parser.add_argument("--no-fuse", action="store_true",
                        help="attack the model itself, not its fused copy")  # fmt: skip
    parser.add_argument("--out", help="folder for report.json (resumable state) and report.md")
    parser.add_argument("--name", help="model name in the table (default: checkpoint name)")
    add_output_flags(parser)
    parser.set_defaults(func=run)
    return parser


def _weights_path(checkpoint: Path, choice: str | None) -> Path:
    """The checkpoint file itself, or a run directory's weights/{best,last,ema}.safetensors."""
    if not checkpoint.is_dir():
        if not checkpoint.is_file():
            raise CheckpointError(f"{checkpoint}: no such checkpoint file or run directory")
        return checkpoint
    for name in (choice,) if choice else _RUN_WEIGHTS:
        for path in (
            checkpoint / "weights" / f"{name}.safetensors",
            checkpoint / f"{name}.safetensors",
        ):
            if path.is_file():
                return path
    raise CheckpointError(f"{checkpoint}: no weights/{choice or 'best|last|ema'}.safetensors")


def _spec(args: argparse.Namespace, weights: Path, num_classes: int) -> ArchSpec:
    """--arch, else the run directory's arch.yaml, else the spec saved in the safetensors file."""
    overrides = {"num_classes": args.num_classes, "activation": args.activation, "mean": args.mean}
    source = args.arch or (args.checkpoint if Path(args.checkpoint).is_dir() else None)
    if source is None:
        return apply_overrides(_metadata_spec(weights), **overrides)
    if args.num_classes is None and _is_preset(source):
        overrides["num_classes"] = num_classes  # a preset's 10 classes follow the dataset
    return resolve_spec(source, **overrides)


def _is_preset(name: str) -> bool:
    try:
        return canonical_preset(name) in PRESETS
    except (ConfigError, KeyError):
        return False


def _metadata_spec(weights: Path) -> ArchSpec:
    """The ArchSpec that `save_weights` stores in a safetensors file's metadata."""
    spec = metadata_spec(weights) if weights.suffix == ".safetensors" else None
    if spec is not None:
        return spec
    raise ConfigError(
        "--arch", None, f"a preset, spec file or run directory ({weights} has no spec)"
    )


def _dataset(args: argparse.Namespace, input_size: Callable[[int], int]) -> ImageDataset:
    """--data, else the run directory's training dataset (with its reader options), else CIFAR-10;
    digits are presented at the model's input size, any other size mismatch is an error."""
    name, root, options = args.data, args.root, {}
    run_config = Path(args.checkpoint) / "config.yaml"
    if name is None and run_config.is_file():
        with in_file(run_config):
            data = load_config(run_config).data
        name, root, options = data.name, root or data.root, dict(data.options)
    name = name or "cifar10"
    dataset = load_dataset(name, root, split=args.split, quiet=args.quiet, **options)
    size = input_size(len(dataset.classes))
    if dataset.images.shape[-1] != size and name == "digits" and "size" not in options:
        dataset = load_dataset(name, root, split=args.split, quiet=args.quiet, size=size)
    if dataset.images.shape[-1] != size:
        raise ConfigError(
            "--data", f"{name} at {dataset.images.shape[-1]}px", f"{size}px images (model input)"
        )
    return dataset


def _check_numbers(args: argparse.Namespace) -> None:
    """The integer options within the limits of a training config's (no overflow, no NaN)."""
    for flag, value, low, high in (
        ("--seed", args.seed, 0, MAX_SEED),
        ("--batch-size", args.batch_size, 1, MAX_COUNT),
        ("--threads", args.threads, 1, MAX_THREADS),
    ):
        if value is not None and not low <= value <= high:
            raise ConfigError(flag, value, f"an integer in [{low}, {high}]")


def run(args: argparse.Namespace) -> int:
    """`rrn eval`: the --out folder locked while it runs (by rank 0 under torchrun); SIGTERM or
    SIGINT stops at once, with the finished batches saved in --out, and says how to resume."""
    if args.checkpoint == "merge":
        return _merge(args)
    if args.shards:
        raise ConfigError("rrn eval", args.shards, "one checkpoint (or `merge DIR...`)")
    out = Path(args.out) if args.out else None
    lock = folder_lock(out) if out and ddp.detect_world().is_main else nullcontext()
    try:
        with lock, on_stop_signals(StopFlag(graceful=False)):
            return _evaluate(args, out)
    except Interrupt as stop:
        name = signal_name(stop.signum)
        if out is None or not (out / "report.json").is_file():
            hint = "nothing was saved" + ("" if out else " (--out FOLDER saves every batch)")
        else:
            resume = shlex.join(["rrn", *args.argv])
            hint = f"the finished batches are in {out / 'report.json'}; resume with: {resume}"
        raise Stopped(stop.signum, f"stopped by {name}; {hint}") from None


def _parse_shard(text: str) -> tuple[int, int]:
    """ "I/N" as (I, N), 0 <= I < N."""
    index, _, count = text.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit() and int(index) < int(count)):
        raise ConfigError("--shard", text, "I/N with 0 <= I < N, e.g. 0/4")
    return int(index), int(count)


def _merge(args: argparse.Namespace) -> int:
    """`rrn eval merge DIR... --out DIR`: the shards' reports as one, checked to fit together."""
    if not args.shards or not args.out:
        raise ConfigError("rrn eval merge", args.shards, "shard folders and --out FOLDER")
    report = merge_report_files([Path(d) for d in args.shards], Path(args.out))
    if args.json:
        print_json(report)
    else:
        print(to_markdown(report), end="")
    return 0


def _threat_model(args: argparse.Namespace) -> tuple[float, str, str]:
    """(eps, norm, where they come from): the options, else the run's config, else 8/255 L∞."""
    run_config = Path(args.checkpoint) / "config.yaml"
    eps, norm, origin = PAPER_EPS, "inf", "the paper's 8/255, L-inf"
    if run_config.is_file():
        with in_file(run_config):
            eps, norm = load_config(run_config).threat_model()
        origin = f"{run_config}"
    if args.eps is not None or args.norm is not None:
        origin = "the command line" if args.eps and args.norm else f"the command line and {origin}"
    eps = parse_number(args.eps, "--eps") if args.eps is not None else eps
    return eps, args.norm or norm, origin


def _evaluate(args: argparse.Namespace, out: Path | None) -> int:
    """Build and load the model, read the data, evaluate, write and print the report."""
    eps, norm, origin = _threat_model(args)
    shard = _parse_shard(args.shard) if args.shard else None
    _check_numbers(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    world = ddp.init(pick_device(args.device or "auto", field="--device").type)
    device = pick_device(args.device or "auto", world.local_rank, field="--device")
    try:
        status = _evaluate_on(args, out, device, eps, norm, origin, shard, world)
        ddp.barrier(world)  # no rank leaves the group while rank 0 still writes the report
        return status
    finally:
        ddp.shutdown(world)


def _evaluate_on(args, out, device, eps, norm, origin, shard, world) -> int:
    """The evaluation itself, on this process's device (its shard under torchrun)."""
    weights = _weights_path(Path(args.checkpoint), args.weights)
    state = read_state_dict(weights)  # a corrupt file fails before the data is read
    dataset = _dataset(args, lambda classes: _spec(args, weights, classes).input_size)
    stop = len(dataset.labels) if args.n is None else args.offset + args.n
    if not 0 <= args.offset < stop <= len(dataset.labels):
        raise ConfigError("-n/--offset", (args.n, args.offset), f"a range in 0..{len(dataset)}")
    model = load_model(_spec(args, weights, len(dataset.classes)), state, str(weights))
    model = model.to(device).eval()
    if not args.no_channels_last:
        model = model.to(memory_format=torch.channels_last)
    report = evaluate(
        model,
        dataset.images[args.offset : stop],
        dataset.labels[args.offset : stop],
        attacks=[a for a in args.attacks.split(",") if a.strip()],
        eps=eps,
        norm=norm,
        batch_size=args.batch_size,
        seed=args.seed,
        state_path=out / "report.json" if out else None,
        offset=args.offset,
        name=args.name or Path(args.checkpoint).stem,
        sanity_checks=not args.no_sanity_checks,
        amp_dtype=torch.bfloat16 if args.bf16 else None,
        source={
            "checkpoint": str(weights),
            "data": f"{dataset.name}/{args.split}",
            "threat_model": f"eps and norm from {origin}",
        },  # fmt: skip
        quiet=args.quiet,
        fuse=not args.no_fuse,
        shard=shard,
    )
    if not world.is_main:
        return 0  # rank 0 writes and prints the merged report
    table = to_markdown(report)
    if out:
        write_text(out / "report.md", table)
    if args.json:
        print_json(report)
    else:
        print(table, end="")
    return 0
