"""Running a planned sweep locally (one or N trials at a time) or on Ray, with a summary JSON."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .._io import write_json
from .._progress import progress
from .._stop import on_stop_signals, signal_name
from ..errors import ConfigError, Stopped
from .children import Children
from .execute import execute_trial
from .expand import Trial
from .spec import SweepSpec

PLAN_FILE = "sweep-plan.json"
SUMMARY_FILE = "sweep-summary.json"
BACKENDS = ("local", "ray")  # run here; `slurm_backend.submit_sweep` submits and returns


def make_jobs(
    spec: SweepSpec,
    trials: list[Trial],
    out_dir: Path,
    *,
    threads: int | None,
    trainer: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One plain-dict job per trial: what `execute_trial` needs, in any process."""
    return [
        {
            "name": trial.name,
            "base": str(trial.base or spec.base),
            "overrides": [*spec.overrides, *trial.overrides],
            "run_dir": str(out_dir / trial.name),
            "threads": threads,
            "trainer": trainer,
        }
        for trial in trials
    ]


def write_plan(spec: SweepSpec, trials: list[Trial], out_dir: Path) -> None:
    """OUT/sweep-plan.json: the trials this sweep runs, as `rrn report` reads them."""
    write_json(
        out_dir / PLAN_FILE,
        {
            "sweep": spec.name,
            "base": None if spec.base is None else str(spec.base),
            "overrides": list(spec.overrides),
            "trials": [t.to_dict() for t in trials],
        },
    )


def default_threads(spec: SweepSpec, parallel: int) -> int:
    """Threads per trial: the sweep's setting, else the cores shared among parallel trials."""
    if spec.threads:
        return int(spec.threads)
    return max(1, (os.cpu_count() or 1) // max(1, parallel))


def run_sweep(
    spec: SweepSpec,
    trials: list[Trial],
    out_dir: str | Path,
    *,
    backend: str = "local",
    parallel: int = 1,
    address: str | None = None,
    trainer: list[str] | None = None,
    quiet: bool = False,
    stop_on_signals: bool = False,
) -> dict[str, Any]:
    """Run every trial not yet finished; return (and write) the sweep summary.

    With `stop_on_signals` (as `rrn sweep` does) and the local backend, SIGTERM or SIGINT is
    passed on to the running trials, which checkpoint and exit; no other trial starts, and
    Stopped is raised once they have ended (running the sweep again resumes them)."""
    if backend not in BACKENDS:
        raise ConfigError("backend", backend, f"one of {list(BACKENDS)}")
    if parallel < 1:
        raise ConfigError("parallel", parallel, "at least 1")
    out_dir = Path(out_dir)
    threads = int(spec.num_cpus) if backend == "ray" else default_threads(spec, parallel)
    jobs = make_jobs(spec, trials, out_dir, threads=threads, trainer=trainer)
    write_plan(spec, trials, out_dir)
    summary = {
        "sweep": spec.name,
        "output": str(out_dir),
        "backend": backend,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trials": [],
    }
    order = {job["name"]: i for i, job in enumerate(jobs)}
    start = time.monotonic()
    bar = progress(total=len(jobs), quiet=quiet, desc=f"sweep {spec.name}", unit="trial")

    def record(result: dict[str, Any]) -> None:
        summary["trials"].append(result)
        summary["trials"].sort(key=lambda r: order[r["name"]])
        summary["counts"] = dict(Counter(r["status"] for r in summary["trials"]))
        summary["seconds"] = round(time.monotonic() - start, 2)
        summary["cpu_seconds"] = round(sum(r.get("cpu_seconds") or 0 for r in summary["trials"]), 2)
        write_json(out_dir / SUMMARY_FILE, summary)
        bar.update(1)
        bar.set_postfix_str(f"{result['name']}: {result['status']}")

    children = Children()
    try:
        if backend == "ray":
            from .ray_backend import run_on_ray

            run_on_ray(
                jobs, record, address=address, num_cpus=spec.num_cpus, num_gpus=spec.num_gpus
            )
        else:
            with on_stop_signals(children.stop) if stop_on_signals else nullcontext():
                _run_local(jobs, record, parallel=parallel, children=children)
    finally:
        bar.close()
    if children.stop_signal is not None:
        summary["stopped_by"] = signal_name(children.stop_signal)
        write_json(out_dir / SUMMARY_FILE, summary)
        raise _stopped(children.stop_signal, summary["trials"])
    return summary


def _run_local(
    jobs: Iterable[dict[str, Any]],
    record: Callable[[dict[str, Any]], None],
    *,
    parallel: int,
    children: Children,
) -> None:
    """Each job in a subprocess, `parallel` at a time; results recorded as they finish. Whatever
    ends this early (Ctrl-C where no stop is handled, an error) first stops the running trials."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(execute_trial, job, children) for job in jobs]
        try:
            for future in as_completed(futures):
                record(future.result())
        except BaseException as err:
            interrupted = isinstance(err, KeyboardInterrupt)
            children.stop(signal.SIGINT if interrupted else signal.SIGTERM)
            raise


def _stopped(signum: int, trials: list[dict[str, Any]]) -> Stopped:
    """Which trials a stop ended (each resumable) and how many it did not start."""
    stopped = [t["name"] for t in trials if t["status"] == "stopped"]
    waiting = sum(t["status"] == "not started" for t in trials)
    return Stopped(
        signum,
        f"stopped by {signal_name(signum)}: {len(stopped)} trial(s) stopped "
        f"({', '.join(stopped) or 'none'}), {waiting} not started",
    )
