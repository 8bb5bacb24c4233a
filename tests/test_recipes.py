"""Shipped recipes by name: resolution (a path that exists wins), the unknown-name error,
`rrn recipes` and its --json, `rrn train ... --print-config`, run-directory names."""

from __future__ import annotations

import json

import pytest
import yaml

from robustresnet.cli import main
from robustresnet.cli.train import _run_name
from robustresnet.errors import ConfigError
from robustresnet.recipes import RECIPES_DIR, find_file, recipes
from robustresnet.train.config import load_config


@pytest.mark.parametrize(
    ("name", "kind", "path"),
    [
        ("digits-demo", "train", "digits-demo.yaml"),
        ("cifar10/trades/robustresnet-a1", "train", "cifar10/trades/robustresnet-a1.yaml"),
        ("digits-demo", "sweep", "sweeps/digits-demo.yaml"),
    ],
)
def test_a_name_is_the_path_under_the_recipes_folder(name, kind, path):
    assert find_file(name, kind) == RECIPES_DIR / path


def test_an_existing_path_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits-demo").write_text("model: {name: wrn-28-10}\n")
    assert find_file("digits-demo").resolve() == (tmp_path / "digits-demo").resolve()
    assert load_config("digits-demo").model.name == "wrn-28-10"


@pytest.mark.parametrize(
    ("text", "kind", "near"),
    [
        ("configs/digits-demo.yaml", "train", "digits-demo"),  # the old repository path
        ("cifar10/trades/robustresnet-a9", "train", "cifar10/trades/robustresnet-a1"),
        ("sweeps/digits-demo", "sweep", "digits-demo"),
        ("digits-base", "sweep", None),  # a training recipe is no sweep
    ],
)
def test_an_unknown_name_lists_near_ones_and_points_to_rrn_recipes(text, kind, near):
    with pytest.raises(ConfigError) as info:
        find_file(text, kind)
    assert info.value.field == "config" and info.value.value == text
    assert "`rrn recipes` lists them" in info.value.expected
    if near is not None:
        assert "did you mean" in info.value.expected and near in info.value.expected


def test_every_recipe_has_a_one_line_description():
    found = recipes()
    assert len(found) == len({(r.kind, r.name) for r in found})
    for recipe in found:
        assert 10 < len(recipe.description) <= 100, recipe.name
    assert recipes("sweep") and all(r.path.parent.name == "sweeps" for r in recipes("sweep"))


def test_rrn_recipes_lists_one_line_each(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(recipes())
    kind, name, description = lines[0].split(maxsplit=2)
    assert (kind, name) == ("train", "cifar10/advanced/robustresnet-a1")
    assert description.startswith("robustresnet-a1 on cifar10, the advanced recipe")
    assert ["sweep", "digits-demo"] in [line.split()[:2] for line in lines]
    assert lines[-1].split()[:2] == ["experiment", "width-grid"]  # experiments last


def test_rrn_recipes_json(capsys):
    assert main(["recipes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["name"]) for r in rows] == [(r.kind, r.name) for r in recipes()]
    row = next(r for r in rows if r["name"] == "cifar100/mart/wrn-70-16")
    assert row["description"] == "wrn-70-16 on cifar100, mart, the paper's baseline recipe"
    assert find_file(row["name"]) == RECIPES_DIR / row["path"]


def test_print_config_shows_the_resolved_config_and_trains_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "digits-demo", "optim.lr=0.2", "~data.flip", "--print-config"]
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert list(tmp_path.iterdir()) == []  # no run directory
    assert printed["optim"]["lr"] == 0.2 and printed["data"]["flip"] is True  # back to default
    assert printed["run"]["batch_size"] == 128  # from the recipe
    assert printed["ema"]["tau"] is None  # a default the recipe leaves out is shown too
    expected = load_config("digits-demo", ["optim.lr=0.2", "~data.flip"])
    assert printed == expected.to_dict()
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(printed))  # a recipe of one's own
    assert main(["train", "mine.yaml", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == printed


def test_print_config_of_an_unknown_name_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "digits-dmeo", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rrn train: error: config: got 'digits-dmeo'")
    assert "did you mean digits-demo" in err and list(tmp_path.iterdir()) == []


def test_run_directory_names(tmp_path):
    assert _run_name("cifar10/trades/robustresnet-a1") == "cifar10-trades-robustresnet-a1"
    assert _run_name("digits-demo") == "digits-demo"
    (tmp_path / "study.yaml").write_text("model: {name: wrn-28-10}\n")
    assert _run_name(str(tmp_path / "study.yaml")) == "study"
