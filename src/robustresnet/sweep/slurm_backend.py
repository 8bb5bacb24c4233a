"""The SLURM backend through submitit: the unfinished trials as one job array, each job running
`execute_trial` (as the local and Ray backends do) into its run directory; the driver returns as
soon as the array is queued. A job warned of its time limit or preempted stops its trainer with
a checkpoint and is requeued; the requeued job finds the run interrupted and resumes it.

The output folder must be on a filesystem that every node shares: the jobs read the run
directories and submitit's pickles (OUT/slurm/) there."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from .._io import write_json
from ..errors import ConfigError
from .children import Children
from .execute import execute_trial, trial_state
from .expand import Trial
from .runner import make_jobs, write_plan
from .spec import SweepSpec

SLURM_DIR = "slurm"  # submitit's sbatch scripts, pickles and logs, one folder per job
JOBS_FILE = "sweep-slurm.json"  # the last submission: each trial's job id
# How long a warned job waits for its trainer's checkpoint; submitit warns 90 s before the end.
STOP_WAIT_SECONDS = 60
CLUSTERS = ("slurm", "local")  # "local": submitit's executor on this machine, for tests


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError as err:
        raise ConfigError(
            "backend", "slurm", "submitit installed: pip install 'robustresnet[slurm]'"
        ) from err
    return submitit


class SlurmTrial:
    """One trial as a submitit job: a callable that runs it, with the `checkpoint` method that
    submitit calls on the warning signal; it returns the same trial, which resumes the run."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self._children: Children | None = None

    def __call__(self) -> dict[str, Any]:
        # The trainer ignores submitit's warning signal, which SLURM sends to every process of
        # the job: the trainer stops on the SIGTERM that `checkpoint` sends, with a checkpoint.
        warning = getattr(signal, f"SIG{_import_submitit().JobEnvironment.USR_SIG}")
        self._children = Children(ignored=[warning])
        return execute_trial(self.job, self._children)

    def checkpoint(self) -> Any:
        """Stop the trainer (it saves a checkpoint) and return this trial for the requeued job."""
        if self._children is not None:
            self._children.stop_and_wait(signal.SIGTERM, STOP_WAIT_SECONDS)
        return _import_submitit().helpers.DelayedSubmission(SlurmTrial(self.job))

    def __getstate__(self) -> dict[str, Any]:
        return {"job": self.job}  # the running processes stay behind

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["job"])


def submit_sweep(
    spec: SweepSpec,
    trials: list[Trial],
    out_dir: str | Path,
    *,
    cluster: str = "slurm",
    trainer: list[str] | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    """Submit every unfinished trial as one job array; return the submission record (also
    written to OUT/sweep-slurm.json) and submitit's job handles. Finished trials are skipped."""
    if cluster not in CLUSTERS:
        raise ConfigError("cluster", cluster, f"one of {list(CLUSTERS)}")
    submitit = _import_submitit()
    out_dir = Path(out_dir).resolve()  # the jobs may start in another working directory
    executor = submitit.AutoExecutor(folder=out_dir / SLURM_DIR / "%j", cluster=cluster)
    executor.update_parameters(**executor_parameters(spec))
    write_plan(spec, trials, out_dir)
    threads = spec.threads or int(spec.num_cpus)
    jobs = make_jobs(spec, trials, out_dir, threads=threads, trainer=trainer)
    finished = [job["name"] for job in jobs if trial_state(Path(job["run_dir"])) == "finished"]
    pending = [job for job in jobs if job["name"] not in finished]
    with executor.batch():
        handles = [executor.submit(SlurmTrial(job)) for job in pending]
    record = {
        "sweep": spec.name,
        "output": str(out_dir),
        "backend": cluster,
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "jobs": {job["name"]: h.job_id for job, h in zip(pending, handles, strict=True)},
        "skipped": finished,
    }
    write_json(out_dir / JOBS_FILE, record)
    return record, handles


def executor_parameters(spec: SweepSpec) -> dict[str, Any]:
    """submitit's parameters for one trial's job, from the sweep's `resources`."""
    for field, amount in (("num_cpus", spec.num_cpus), ("num_gpus", spec.num_gpus)):
        if amount != int(amount):
            raise ConfigError(f"resources.{field}", amount, "a whole number for --backend slurm")
    slurm = spec.slurm
    params: dict[str, Any] = {
        "name": f"rrn-{spec.name}",
        "timeout_min": slurm.time_minutes,
        "cpus_per_task": max(1, int(spec.num_cpus)),
        "gpus_per_node": int(spec.num_gpus),
        "tasks_per_node": 1,
    }
    if slurm.mem_gb is not None:
        params["mem_gb"] = slurm.mem_gb
    optional = {"partition": slurm.partition, "account": slurm.account}
    params.update({f"slurm_{key}": value for key, value in optional.items() if value is not None})
    if slurm.sbatch:
        params["slurm_additional_parameters"] = dict(slurm.sbatch)
    return params
