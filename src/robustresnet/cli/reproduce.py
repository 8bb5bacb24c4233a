"""`rrn reproduce NAME`: run one of the paper's experiments, estimate its cost, compare it with
the published table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..reproduce import SCALES
from ._common import add_output_flags, example_epilog, print_json

ESTIMATE_NOTE = (
    "Estimate: each run's image passes (one image's forward and backward): training epochs x "
    "images x (attack steps + 2), validation, and the final evaluation with AutoAttack at its "
    "full budget (an upper bound), times the seconds per pass of the measured TRADES-10 step "
    "(12 passes) at the measured size nearest the run's MACs, scaled by MACs. See "
    "docs/reproduce.md."
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `rrn reproduce`."""
    parser = subparsers.add_parser(
        "reproduce",
        help="run one of the paper's experiments, estimate its cost, compare with the paper",
        description=(
            "NAME is one of the paper's experiments (--list names them), each a sweep shipped "
            "with the package. --dry-run lists its runs with #P, MACs and estimated device-hours "
            "from a measured TRADES-10 speed (the package's table, or --throughput-from a "
            "`python -m benchmarks --json` file). --data ROOT trains it with `rrn sweep`'s "
            "machinery into OUT (default runs/reproduce/NAME): again resumes it. --report "
            "(alone: it trains nothing) writes OUT/report/comparison.md and .csv: each "
            "published figure against ours (mean ± std over seeds, runs finished), the "
            "difference, flagged beyond two combined standard deviations, and the paper's "
            "figure. --scale smoke runs any experiment in a minute or two on a CPU: 8x8 "
            "digits, tiny networks, 2 epochs, 3 of its runs. --scale digits runs all its runs "
            "of one dataset on 8x8 digits as the digits-base recipe trains, each network "
            "shrunk in proportion (depth / 4, channels / 8)."
        ),
        **example_epilog(
            "rrn reproduce --list",
            "rrn reproduce main --dry-run",
            "rrn reproduce scaling --dry-run --throughput-from bench.json --json",
            "rrn reproduce block-topology --data data --backend ray --address auto",
            "rrn reproduce block-topology --report",
            "rrn reproduce scaling --scale smoke",
            "rrn reproduce scaling --scale smoke --report",
            "rrn reproduce block-topology --scale digits --parallel 2",
        ),
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the experiment (see --list)")
    parser.add_argument("--list", action="store_true", help="name the paper's experiments")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the runs with sizes and cost; train nothing"
    )
    parser.add_argument("--report", action="store_true", help="compare with the published table")
    parser.add_argument("--data", type=Path, metavar="ROOT", help="where the datasets are")
    parser.add_argument("--out", type=Path, help="runs folder (default runs/reproduce/NAME)")
    parser.add_argument("--scale", choices=SCALES, default="full", help="full (default), smoke "
                        "or digits: where and how big the runs are")  # fmt: skip
    parser.add_argument("--throughput-from", type=Path, metavar="BENCH.json")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="whose throughput (default: "
                        "cuda when measured, else cpu)")  # fmt: skip
    parser.add_argument("--backend", choices=("local", "ray", "slurm"), default="local")
    parser.add_argument("--parallel", type=int, default=1, metavar="N", help="local: runs at once")
    parser.add_argument("--address", help="ray: 'local', 'auto' or ray://HOST:PORT")
    parser.add_argument("--trainer", help="command prefix that trains (see `rrn sweep --help`)")
    add_output_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """List, estimate, run or report, as the flags say."""
    from ..reproduce.experiments import experiment_recipes, load_experiment
    from ..reproduce.study import default_out, experiment_plan

    if args.list:
        return _list(experiment_recipes(), as_json=args.json)
    if args.name is None:
        raise ConfigError("NAME", None, "an experiment's name (rrn reproduce --list)")
    experiment = load_experiment(args.name)
    out = args.out or default_out(experiment, args.scale)
    if not (args.dry_run or args.report) and args.data is None and args.scale == "full":
        raise ConfigError("--data", None, "the datasets' folder to run, or --dry-run / --report")
    sweep, plan = experiment_plan(experiment, out, scale=args.scale, data_root=args.data)
    if args.dry_run:
        return _estimate(args, experiment, sweep, plan, out)
    if args.report:
        return _report(args, experiment, plan, out)
    from .sweep import execute

    return execute(args, sweep, plan, out)


def _list(found: list, *, as_json: bool) -> int:
    if as_json:
        print_json([{"name": r.name, "description": r.description} for r in found])
        return 0
    width = max(len(r.name) for r in found)
    for recipe in found:
        print(f"{recipe.name:{width}}  {recipe.description}")
    return 0


def _estimate(args: argparse.Namespace, experiment, sweep, plan, out: Path) -> int:
    """--dry-run: each run's size and device-hours, the total, and where the speed comes from."""
    from ..reproduce.cost import run_cost
    from ..reproduce.throughput import load_throughput
    from ..train.config import load_config

    throughput = load_throughput(args.throughput_from, device=args.device)
    configs: dict[tuple, Any] = {}
    runs = []
    for trial in plan.trials:
        key = (trial.base, *(o for o in trial.overrides if not o.startswith("model.name=")))
        if key not in configs:
            configs[key] = load_config(trial.base, [*sweep.overrides, *key[1:]])
        cost = run_cost(configs[key], trial.macs, throughput)
        depths, widening = trial.shape_text()
        runs.append(
            {
                **trial.to_dict(),
                "device_hours": cost.seconds / 3600,
                "passes": cost.passes,
                "shape": [depths, widening],
            }
        )
    total = sum(r["device_hours"] for r in runs)
    speed = {
        "setting": throughput.setting,
        "machine": throughput.machine,
        "command": throughput.command,
        "source": throughput.source,
        "rates": [vars(rate) for rate in throughput.rates],
    }
    if args.json:
        print_json(
            {
                "experiment": experiment.name,
                "scale": args.scale,
                "output": str(out),
                "runs": runs,
                "device_hours": total,
                "throughput": speed,
                "estimate": ESTIMATE_NOTE,
            }
        )
        return 0
    _print_runs(runs)
    rates = ", ".join(f"{r.size} ({r.macs / 1e9:.3g}G MACs) {r.images_per_s:.3g}" for r in
                      throughput.rates)  # fmt: skip
    print(
        f"{experiment.name}: {len(runs)} runs into {out}, about {total:,.1f} device-hours on "
        f"{throughput.setting}\nthroughput: TRADES-10 training images/s {rates}; measured on "
        f"{throughput.machine} by `{throughput.command}` ({throughput.source})\n{ESTIMATE_NOTE}"
    )
    if not throughput.setting.startswith("cuda"):
        print("No GPU throughput is measured here: these are CPU hours (see docs/reproduce.md).")
    return 0


def _print_runs(runs: list[dict[str, Any]]) -> None:
    from .._units import format_count

    width = max([len(r["name"]) for r in runs] + [3])
    print(f"{'run':{width}}  {'depths':>10}  {'widening':>10}  {'#P':>7}  {'#F':>7}  {'hours':>9}")
    for r in runs:
        depths, widening = r["shape"]
        print(
            f"{r['name']:{width}}  {depths:>10}  {widening:>10}  {format_count(r['params']):>7}  "
            f"{format_count(r['macs']):>7}  {r['device_hours']:9,.2f}"
        )
    sys.stdout.flush()


def _report(args: argparse.Namespace, experiment, plan, out: Path) -> int:
    from ..reproduce.report import reproduce_report

    summary = reproduce_report(experiment, plan, out, scale=args.scale)
    if args.json:
        print_json(summary)
    else:
        print(Path(summary["files"]["markdown"]).read_text(encoding="utf-8"))
        print(f"written to {Path(summary['files']['markdown']).parent}")
    return 0
