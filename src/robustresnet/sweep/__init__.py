"""`rrn sweep`: studies over the design space, run locally or on Ray, resumable."""

from __future__ import annotations

from .execute import execute_trial, trial_state
from .expand import Trial, expand
from .plan import Plan, plan_sweep, trial_spec, write_specs
from .runner import run_sweep
from .spec import SweepSpec, load_sweep, parse_sweep

__all__ = [
    "Plan",
    "SweepSpec",
    "Trial",
    "execute_trial",
    "expand",
    "load_sweep",
    "parse_sweep",
    "plan_sweep",
    "run_sweep",
    "trial_spec",
    "trial_state",
    "write_specs",
]
