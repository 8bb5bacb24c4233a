"""Every shipped sweep parses, expands and plans (names, networks, MACs) without training; sweeps
are found by name, and a shipped one writes under the current folder, never beside its file."""

from __future__ import annotations

import json

import pytest
import yaml

from robustresnet.cli import main
from robustresnet.errors import ConfigError
from robustresnet.recipes import RECIPES_DIR, recipes
from robustresnet.sweep.plan import plan_sweep
from robustresnet.sweep.spec import load_sweep
from robustresnet.train.config import load_config

SWEEPS = recipes("sweep")


def test_the_studies_are_there():
    names = {sweep.name for sweep in SWEEPS}
    assert names >= {"digits-demo", "cifar10-blocks"}


@pytest.mark.parametrize("name", [sweep.name for sweep in SWEEPS])
def test_sweep_file_plans(name, tmp_path):
    sweep = load_sweep(name)
    assert sweep.base.is_relative_to(RECIPES_DIR)  # its base is a shipped recipe too
    plan = plan_sweep(sweep, tmp_path)
    assert plan.trials, f"{name} expands to no run"
    names = [trial.name for trial in plan.trials]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda sweep: sweep.name)
def test_shipped_sweeps_name_their_base_and_set_no_output(sweep):
    """`base:` a recipe name (no path into the source tree); no `output:`, which would resolve
    beside the file, inside the installed package."""
    raw = yaml.safe_load(sweep.path.read_text())
    assert "output" not in raw and not raw["base"].endswith(".yaml")


def test_a_named_sweep_writes_under_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "digits-demo", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == "runs/digits-demo"
    assert main(["sweep", "digits-demo", "--dry-run", "--json", "--out", "elsewhere"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == "elsewhere"
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_a_file_beside_the_cwd_wins_over_a_sweep_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits-demo").write_text("name: mine\nbase: digits-base\naxes: {seed: [0]}\n")
    assert load_sweep("digits-demo").name == "mine"


def test_an_unknown_sweep_name_lists_near_ones():
    with pytest.raises(ConfigError, match="did you mean digits-demo") as info:
        load_sweep("digits-dmeo")
    assert info.value.field == "sweep" and "rrn recipes" in info.value.expected


def test_a_base_may_be_a_recipe_name_or_a_path_and_an_unknown_one_is_named(tmp_path):
    (tmp_path / "mine.yaml").write_text("model: {name: wrn-28-10}\n")
    for base, expected in (("digits-base", RECIPES_DIR / "digits-base.yaml"),
                           ("mine.yaml", tmp_path / "mine.yaml")):  # fmt: skip
        (tmp_path / "s.yaml").write_text(f"base: {base}\naxes: {{seed: [0]}}\n")
        assert load_sweep(tmp_path / "s.yaml").base == expected.resolve()
    (tmp_path / "s.yaml").write_text("base: cifar10/trades/wrn-a9\naxes: {seed: [0]}\n")
    with pytest.raises(ConfigError, match="did you mean cifar10/trades/wrn-a") as info:
        load_sweep(tmp_path / "s.yaml")
    assert info.value.field == "base"


def test_a_method_axis_keeps_the_shared_objective_settings_and_drops_the_rest(tmp_path):
    """A TRADES base with beta and a method axis: the PGD-AT trial has no beta, the same eps."""
    base = RECIPES_DIR / "digits-base.yaml"
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
