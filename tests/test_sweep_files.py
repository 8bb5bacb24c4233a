"""Every committed sweep file parses, expands and plans (names, networks, MACs) without training."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustresnet.sweep.plan import plan_sweep
from robustresnet.sweep.spec import load_sweep

SWEEPS = Path(__file__).resolve().parents[1] / "configs" / "sweeps"
FILES = sorted(p for p in SWEEPS.glob("*.yaml") if not p.name.endswith("-base.yaml"))


def test_the_studies_are_there():
    assert {p.stem for p in FILES} >= {"digits-demo", "cifar10-robust-scaling", "cifar10-blocks"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sweep_file_plans(path, tmp_path):
    plan = plan_sweep(load_sweep(path), tmp_path)
    assert plan.trials, f"{path.name} expands to no run"
    names = [trial.name for trial in plan.trials]
    assert len(set(names)) == len(names)
