"""Every committed sweep file parses, expands and plans (names, networks, MACs) without training."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustresnet.sweep.plan import plan_sweep
from robustresnet.sweep.spec import load_sweep
from robustresnet.train.config import load_config

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


def test_a_method_axis_keeps_the_shared_objective_settings_and_drops_the_rest(tmp_path):
    """A TRADES base with beta and a method axis: the PGD-AT trial has no beta, the same eps."""
    base = SWEEPS / "digits-base.yaml"
    sweep = tmp_path / "methods.yaml"
    sweep.write_text(f"name: methods\nbase: {base}\naxes:\n  method: [trades, pgd_at, mart]\n")
    plan = plan_sweep(load_sweep(sweep), tmp_path)
    configs = {
        t.values["method"]: load_config(base, list(t.overrides)).objective for t in plan.trials
    }
    assert set(configs) == {"trades", "pgd_at", "mart"}
    assert type(configs["pgd_at"]).name == "pgd_at" and not hasattr(configs["pgd_at"], "beta")
    assert configs["pgd_at"].eps == configs["trades"].eps == 0.1
    assert configs["mart"].beta == configs["trades"].beta == 6.0
