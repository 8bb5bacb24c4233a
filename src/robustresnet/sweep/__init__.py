"""`rrn sweep`: studies over the design space, run locally, on Ray or as SLURM jobs, resumable."""

from __future__ import annotations

from .execute import execute_trial, trial_state
from .expand import Trial, expand
from .plan import Plan, plan_sweep, trial_spec, write_specs
from .runner import run_sweep
from .slurm_backend import submit_sweep
from .spec import SlurmOptions, SweepSpec, load_sweep, parse_sweep
from .status import sweep_status

__all__ = [
    "Plan",
    "SlurmOptions",
    "SweepSpec",
    "Trial",
    "execute_trial",
    "expand",
    "load_sweep",
    "parse_sweep",
    "plan_sweep",
    "run_sweep",
    "submit_sweep",
    "sweep_status",
    "trial_spec",
    "trial_state",
    "write_specs",
]
