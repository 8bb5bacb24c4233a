"""Running a planned sweep locally (one or N trials at a time) or on Ray, with a summary JSON."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .._io import write_json
from .._progress import progress
from ..errors import ConfigError
from .execute import execute_trial
from .expand import Trial
from .spec import SweepSpec

PLAN_FILE = "sweep-plan.json"
SUMMARY_FILE = "sweep-summary.json"
BACKENDS = ("local", "ray")


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
            "base": str(spec.base),
            "overrides": [*spec.overrides, *trial.overrides],
            "run_dir": str(out_dir / trial.name),
            "threads": threads,
            "trainer": trainer,
        }
        for trial in trials
    ]


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
) -> dict[str, Any]:
    """Run every trial not yet finished; return (and write) the sweep summary."""
    if backend not in BACKENDS:
        raise ConfigError("backend", backend, f"one of {list(BACKENDS)}")
    if parallel < 1:
        raise ConfigError("parallel", parallel, "at least 1")
    out_dir = Path(out_dir)
    threads = int(spec.num_cpus) if backend == "ray" else default_threads(spec, parallel)
    jobs = make_jobs(spec, trials, out_dir, threads=threads, trainer=trainer)
    write_json(
        out_dir / PLAN_FILE,
        {
            "sweep": spec.name,
            "base": str(spec.base),
            "overrides": list(spec.overrides),
            "trials": [t.to_dict() for t in trials],
        },
    )
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

    try:
        if backend == "ray":
            from .ray_backend import run_on_ray

            run_on_ray(
                jobs, record, address=address, num_cpus=spec.num_cpus, num_gpus=spec.num_gpus
            )
        else:
            _run_local(jobs, record, parallel=parallel)
    finally:
        bar.close()
    return summary


def _run_local(
    jobs: Iterable[dict[str, Any]], record: Callable[[dict[str, Any]], None], *, parallel: int
) -> None:
    """Each job in a subprocess, `parallel` at a time; results recorded as they finish."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(execute_trial, job) for job in jobs]
        for future in as_completed(futures):
            record(future.result())
