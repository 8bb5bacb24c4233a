"""`rrn sweep SWEEP`: expand a study's axes into runs and train them, resumably."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..errors import Stopped
from ._common import add_output_flags, example_epilog, print_json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `rrn sweep`."""
    parser = subparsers.add_parser(
        "sweep",
        help="run a study: many trainings over a grid of architectures and recipes",
        description=(
            "SWEEP is a shipped sweep's name (`rrn recipes` lists them; one writes into "
            "runs/NAME under the current folder) or a YAML file (a path that exists wins). "
            "Expand its axes (depth/width grids, block, activation, normalisation, "
            "kernel size, RobustScaling targets, method, seeds, any dotted config key; zipped "
            "axes; MAC/params filters) into named runs and train each with `rrn train` into "
            "OUT/NAME. Finished runs are skipped, interrupted ones resumed, failures recorded "
            "in OUT/NAME/failed.json while the sweep goes on; OUT/sweep-summary.json sums up. "
            "SIGTERM or Ctrl-C stops the running trials with a checkpoint (exit 143 / 130); "
            "the same command continues the sweep. --backend slurm submits the unfinished "
            "trials as one SLURM job array and returns (see docs/clusters.md); --status shows "
            "each trial's state from its run directory, whatever ran it."
        ),
        **example_epilog(
            "rrn sweep digits-demo --dry-run",
            "rrn sweep digits-demo --parallel 2 --report",
            "rrn sweep study.yaml --out runs/study --backend ray --address auto",
            "rrn sweep study.yaml --out runs/study --backend slurm",
            "rrn sweep study.yaml --out runs/study --status",
            "rrn sweep study.yaml --trainer 'torchrun --nproc-per-node 4 -m robustresnet train'",
        ),
    )
    parser.add_argument("sweep", metavar="SWEEP", help="sweep name or YAML file")
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: output: in the file, else runs/SWEEP-NAME)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the runs with params and MACs; train nothing"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="local backend: trials at a time (threads split among them)",
    )
    parser.add_argument(
        "--status", action="store_true", help="each trial's state and progress; run nothing"
    )
    parser.add_argument("--backend", choices=("local", "ray", "slurm"), default="local")
    parser.add_argument("--address", help="ray: 'local' (start one), 'auto' or ray://HOST:PORT")
    parser.add_argument(
        "--trainer",
        help="command prefix that trains (default: this interpreter's `-m robustresnet train`)",
    )
    parser.add_argument("--report", action="store_true", help="write `rrn report OUT` at the end")
    add_output_flags(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Plan the sweep, then list it (--dry-run) or run it."""
    from ..sweep import load_sweep, plan_sweep

    sweep = load_sweep(args.sweep)
    out = args.out or sweep.output or Path("runs") / sweep.name
    plan = plan_sweep(sweep, out)
    if args.dry_run:
        return _list(sweep.name, out, plan, as_json=args.json)
    if args.status:
        return _status(sweep.name, plan, out, as_json=args.json)
    return execute(args, sweep, plan, out, report=args.report)


def execute(args: argparse.Namespace, sweep, plan, out: Path, *, report: bool = False) -> int:
    """Train the planned trials (backend, parallel, address, trainer from `args`), resuming
    and skipping as the sweep does, or submit them to SLURM; print the outcome; with `report`
    write `rrn report OUT` at the end. Also `rrn reproduce`'s way to run an experiment."""
    from ..sweep import run_sweep, write_specs

    write_specs(plan, out)
    trainer = shlex.split(args.trainer) if args.trainer else None
    if args.backend == "slurm":
        return _submit(args, sweep, plan, out, trainer)
    try:
        summary = run_sweep(
            sweep,
            plan.trials,
            out,
            backend=args.backend,
            parallel=args.parallel,
            address=args.address,
            trainer=trainer,
            quiet=args.quiet,
            stop_on_signals=True,
        )
    except Stopped as stop:
        command = shlex.join(["rrn", *args.argv])
        raise Stopped(stop.signum, f"{stop}; continue with: {command}") from None
    if report:
        from ..report import make_report

        summary["report"] = make_report(out)["files"]
    if args.json:
        print_json(summary)
    else:
        for trial in summary["trials"]:
            note = f"  {trial['error']}" if trial["status"] == "failed" else ""
            print(f"{trial['status']:9} {trial['seconds']:8.1f}s  {trial['name']}{note}")
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items()))
        print(
            f"sweep {sweep.name}: {counts} in {summary['seconds']:.0f}s "
            f"({summary['cpu_seconds']:.0f} CPU-s); summary: "
            f"{out / 'sweep-summary.json'}"
        )
    return 1 if summary["counts"].get("failed") else 0


def _submit(args: argparse.Namespace, sweep, plan, out: Path, trainer: list[str] | None) -> int:
    """Queue the unfinished trials as a SLURM job array, say how to follow them, return."""
    from ..sweep.slurm_backend import JOBS_FILE, submit_sweep

    record, _ = submit_sweep(sweep, plan.trials, out, trainer=trainer)
    if args.json:
        print_json(record)
        return 0
    for name, job_id in record["jobs"].items():
        print(f"submitted  {job_id:>14}  {name}")
    for name in record["skipped"]:
        print(f"{'finished':>25}  {name}")
    status = shlex.join(["rrn", "sweep", str(args.sweep), "--out", str(out), "--status"])
    arrays = sorted({job_id.split("_")[0] for job_id in record["jobs"].values()})
    print(
        f"sweep {sweep.name}: {len(record['jobs'])} job(s) submitted, "
        f"{len(record['skipped'])} finished; job ids in {out / JOBS_FILE}\n"
        f"follow with: {status}" + (f"  (or squeue -j {','.join(arrays)})" if arrays else "")
    )
    return 0


def _status(name: str, plan, out: Path, *, as_json: bool) -> int:
    """--status: one line per trial (state, epochs done of all, step, error), then the counts."""
    from ..sweep.status import sweep_status

    status = {"sweep": name, **sweep_status(plan.trials, out)}
    if as_json:
        print_json(status)
        return 0
    width = max([len(t.name) for t in plan.trials] + [5])
    for row in status["trials"]:
        progress = f"epoch {row['epoch']}/{row['epochs']}" if "epochs" in row else ""
        note = f"  {row['error']}" if row.get("error") else ""
        print(f"{row['name']:{width}}  {row['state']:11}  {progress}{note}".rstrip())
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status["counts"].items()))
    print(f"sweep {name}: {counts or 'no trials'} ({out})")
    return 0


def _list(name: str, out: Path, plan, *, as_json: bool) -> int:
    """The dry run's output: one line per run, then what the filters left out."""
    from .._units import format_count

    if as_json:
        print_json(
            {
                "sweep": name,
                "output": str(out),
                "trials": [t.to_dict() for t in plan.trials],
                "excluded": [{**t.to_dict(), "reason": why} for t, why in plan.excluded],
            }
        )
        return 0
    width = max([len(t.name) for t in plan.trials] + [4])
    print(f"{'run':{width}}  {'depths':>10}  {'widening':>10}  {'#P':>7}  {'#F (MACs)':>9}")
    for trial in plan.trials:
        depths, widening = trial.shape_text()
        print(
            f"{trial.name:{width}}  {depths:>10}  {widening:>10}  "
            f"{format_count(trial.params):>7}  {format_count(trial.macs):>9}"
        )
    sys.stdout.flush()
    print(
        f"{len(plan.trials)} runs into {out}; {len(plan.excluded)} left out by the filters",
        file=sys.stderr,
    )
    return 0
