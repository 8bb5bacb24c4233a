"""`rrn eval CHECKPOINT`: clean, FGSM, PGD-20, CW-40 and AutoAttack accuracy as in the paper."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._io import write_text
from ..arch import ArchSpec, resolve_spec
from ..arch.compat import load_model, metadata_spec, read_state_dict
from ..arch.zoo import PRESETS, apply_overrides, canonical_preset
from ..attacks.spec import parse_number
from ..data import ImageDataset, load_dataset
from ..errors import CheckpointError, ConfigError, in_file
from ..evaluate import DEFAULT_ATTACKS, evaluate, to_markdown
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
        "rerunning the same command resumes it.",
        **example_epilog(
            "rrn eval runs/digits-demo --data digits -n 200 --attacks clean,pgd20,cw40",
            "rrn eval runs/a1 --data cifar10 --root data --attacks clean,pgd20,cw40,aa --out eval",
            "rrn eval Huang2022Revisiting_WRN-A4.pt --arch wrn-a4 --activation silu "
            "--mean cifar10 --attacks aa",
            "rrn eval model.safetensors --arch spec.yaml --attacks 'pgd50:eps=4/255,aa:"
            "attacks=apgd-ce+apgd-t'",
        ),
    )
    parser.add_argument("checkpoint", help="run directory, .safetensors or the authors' .pth")
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
    parser.add_argument("--eps", default="8/255", help="radius in [0,1] units (default: 8/255)")
    parser.add_argument("--norm", choices=("inf", "2"), default="inf", help="threat model")
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
    """Build and load the model, read the data, evaluate, write and print the report."""
    eps = parse_number(args.eps, "--eps")
    _check_numbers(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device or "auto", field="--device")
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
    out = Path(args.out) if args.out else None
    report = evaluate(
        model,
        dataset.images[args.offset : stop],
        dataset.labels[args.offset : stop],
        attacks=[a for a in args.attacks.split(",") if a.strip()],
        eps=eps,
        norm=args.norm,
        batch_size=args.batch_size,
        seed=args.seed,
        state_path=out / "report.json" if out else None,
        offset=args.offset,
        name=args.name or Path(args.checkpoint).stem,
        sanity_checks=not args.no_sanity_checks,
        amp_dtype=torch.bfloat16 if args.bf16 else None,
        source={"checkpoint": str(weights), "data": f"{dataset.name}/{args.split}"},
        quiet=args.quiet,
        fuse=not args.no_fuse,
    )
    table = to_markdown(report)
    if out:
        write_text(out / "report.md", table)
    if args.json:
        print_json(report)
    else:
        print(table, end="")
    return 0
