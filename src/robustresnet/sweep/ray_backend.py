"""The Ray backend: each trial a Ray task with the sweep's CPU/GPU resources, writing into the
same run directories (on a cluster these must be on a filesystem every node shares)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .execute import execute_trial


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ConfigError(
            "backend", "ray", "Ray installed: pip install 'robustresnet[ray]'"
        ) from err
    return ray


def run_on_ray(
    jobs: list[dict[str, Any]],
    record: Callable[[dict[str, Any]], None],
    *,
    address: str | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> None:
    """Submit every job as a task and record results as they complete.

    `address`: None or "local" starts a local Ray instance, "auto" or "ray://..." joins a
    cluster; an instance already initialised in this process is used as it is.
    """
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        target = None if address in (None, "local") else address
        ray.init(address=target, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(execute_trial).options(num_cpus=num_cpus, num_gpus=num_gpus)
        pending = [task.remote(job) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            record(ray.get(done[0]))
    finally:
        if started_here:
            ray.shutdown()
