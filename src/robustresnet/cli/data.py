"""`rrn data info NAME`: read a dataset, check its files, print sizes, shapes and class counts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..data import DATASETS, ImageDataset, data_root, load_dataset, load_extra
from ..data.datasets import SPLITS
from ._common import add_output_flags, example_epilog, print_json

_EXTRA_SUFFIXES = (".pickle", ".pkl", ".npz")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`rrn data` with its `info` action."""
    parser = subparsers.add_parser(
        "data",
        help="inspect and check datasets",
        description="Inspect datasets. Data root: --root, else $RRN_DATA, else ./data.",
        **example_epilog(
            "rrn data info digits",
            "rrn data info cifar10 --root ~/datasets --json",
            "rrn data info cifar100 --download --root data",
            "rrn data info data/ti_500K_pseudo_labeled.pickle",
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = actions.add_parser(
        "info",
        help="sizes, shapes and class counts; reading every file checks it",
        **example_epilog("rrn data info svhn --root data --split test"),
    )
    info.add_argument("name", help=f"one of {', '.join(DATASETS)}, or an extra-data .pickle/.npz")
    info.add_argument("--root", help="data folder (default: $RRN_DATA or ./data)")
    info.add_argument("--split", help="one split only (default: all labelled splits)")
    info.add_argument("--download", action="store_true", help="fetch CIFAR-10/100 if absent")
    add_output_flags(info)
    info.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load each requested split (any fault raises DataError) and report it."""
    datasets = [_load(args, split) for split in _splits(args)]
    root = data_root(args.root)
    report = {
        "name": datasets[0].name,
        "root": None if _is_extra(args.name) or args.name == "digits" else str(root),
        "splits": {d.split: describe(d) for d in datasets},
        "ok": True,
    }
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0


def describe(dataset: ImageDataset) -> dict[str, Any]:
    """Size, image shape, classes and per-class counts of one split."""
    counts = dataset.class_counts()
    mean = dataset.images.float().mean(dim=(0, 2, 3)).div(255).tolist() if len(dataset) else []
    return {
        "images": len(dataset),
        "shape": list(dataset.images.shape[1:]),
        "dtype": str(dataset.images.dtype).removeprefix("torch."),
        "num_classes": dataset.num_classes,
        "class_counts": counts,
        "channel_mean": [round(m, 4) for m in mean],
        "source": dataset.source,
    }


def format_report(report: dict[str, Any]) -> str:
    """A small table: one line per split."""
    lines = [f"{report['name']}: files read and checked" + _root_note(report)]
    lines.append(f"{'split':<7}{'images':>8}  {'shape':<10}{'classes':>8}  per class    source")
    for split, info in report["splits"].items():
        shape = "x".join(map(str, info["shape"]))
        counts = info["class_counts"]
        spread = f"{min(counts)}..{max(counts)}" if counts else "-"
        lines.append(
            f"{split:<7}{info['images']:>8}  {shape:<10}{info['num_classes']:>8}  "
            f"{spread:<11}  {info['source']}"
        )
    return "\n".join(lines)


def _root_note(report: dict[str, Any]) -> str:
    return f" (root {report['root']})" if report["root"] else ""


def _is_extra(name: str) -> bool:
    return Path(name).suffix in _EXTRA_SUFFIXES


def _splits(args: argparse.Namespace) -> list[str]:
    if args.split or _is_extra(args.name):
        return [args.split or "extra"]
    key = args.name.lower().replace("_", "-")
    return [s for s in SPLITS.get(key, ("train", "test")) if s in ("train", "val", "test")][:2]


def _load(args: argparse.Namespace, split: str) -> ImageDataset:
    if _is_extra(args.name):
        return load_extra(args.name)
    return load_dataset(args.name, args.root, split=split, download=args.download, quiet=args.quiet)
