"""`rrn reproduce`: every experiment listed and costed, the published tables as data, the smoke
scale end to end (train, resume, compare) for block-topology, scaling, main and generated-data,
and the digits scale's runs and networks."""

from __future__ import annotations

import csv
import json
import math

import pytest

from robustresnet import build_model
from robustresnet.arch import get_spec
from robustresnet.cli import main
from robustresnet.errors import ConfigError
from robustresnet.reproduce.compare import Cell, rank_agreement
from robustresnet.reproduce.experiments import experiment_recipes, load_experiment
from robustresnet.reproduce.published import Column, Value, published_tables
from robustresnet.reproduce.scales import shrink
from robustresnet.reproduce.throughput import load_throughput

RUNS = {
    "block-topology": 30,
    "se-integration": 4,
    "rrb-capacities": 4,
    "scaling": 12,
    "depth-grid": 343,
    "width-grid": 512,
    "depth-share": 14,
    "main": 72,
    "sat-mart": 16,
    "advanced": 2,
    "generated-data": 6,
}


def test_list_names_every_experiment_with_a_description(capsys):
    assert main(["reproduce", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in listed} == set(RUNS)
    assert all(e["description"] for e in listed)


def test_every_experiment_has_its_published_table_and_every_row_a_figure():
    tables = published_tables()
    for recipe in experiment_recipes():
        experiment = load_experiment(recipe.name)
        assert experiment.table in tables
    main_rows = {row.label: row for row in tables["main"].rows}
    cell = main_rows["WRN-28-10"].results[Column("cifar100", "trades", "aa")]
    assert cell == Value(25.26, 0.06)
    assert main_rows["RobustResNet-A1"].results[Column("cifar10", "trades", "pgd20")].std is None
    assert {"robnet-large-v2", "advrush", "racl"} <= {
        row.match["network"] for row in tables["main"].rows
    }


@pytest.mark.parametrize("name", list(RUNS))
def test_dry_run_lists_runs_sizes_and_device_hours(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", name, "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["runs"]) == RUNS[name]
    assert all(r["macs"] > 0 and r["params"] > 0 and r["device_hours"] > 0 for r in listed["runs"])
    assert math.isclose(listed["device_hours"], sum(r["device_hours"] for r in listed["runs"]))
    assert listed["throughput"]["setting"].startswith("cuda")  # the shipped GPU entry
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_published_sizes_match_the_networks_run():
    """The scaling and capacity tables' #F are those of the networks the experiments train."""
    for name in ("scaling", "rrb-capacities"):
        experiment = load_experiment(name)
        from robustresnet.reproduce.study import experiment_plan

        _, plan = experiment_plan(experiment, "unused")
        rows = published_tables()[experiment.table].rows
        for row, trial in zip(rows, plan.trials, strict=True):
            assert trial.values["depths"] == row.match["depths"]
            published_10g_dw = row.label == "10G D&W"  # the README's 9.74G is not WRN-A2's
            assert published_10g_dw or abs(trial.macs / row.macs - 1) < 0.02, row.label


def test_estimate_scales_with_macs_and_epochs(tmp_path, capsys):
    bench = tmp_path / "bench.json"
    rows = [{"size": "A1", "pass": "trades", "macs": 5e9, "images": 8, "ours_images_per_s": 100.0}]
    bench.write_text(json.dumps({"settings": "cuda, bf16", "machine": {"gpu": "G"}, "rows": rows}))
    assert load_throughput(bench).seconds_per_pass(5e9) == pytest.approx(1 / 1200)
    assert (
        main(["reproduce", "scaling", "--dry-run", "--json", "--throughput-from", str(bench)]) == 0
    )
    listed = json.loads(capsys.readouterr().out)
    hours = {r["name"]: r["device_hours"] for r in listed["runs"]}
    macs = {r["name"]: r["macs"] for r in listed["runs"]}
    a, b = "d5-5-2-w10-10-10-s0", "d27-28-13-w10-14-6-s0"
    assert hours[b] / hours[a] == pytest.approx(macs[b] / macs[a])
    train = 100 * (50_000 - 1024) * 12  # epochs x images x TRADES-10 passes
    assert hours[a] * 3600 * 1200 > train  # plus validation and the final evaluation
    bench.write_text(json.dumps({"settings": "cpu", "rows": [{"pass": "trades", "size": "x"}]}))
    with pytest.raises(ConfigError, match="throughput-from"):
        load_throughput(bench)
    bench.write_text(json.dumps({"settings": "cpu", "rows": rows}))
    with pytest.raises(ConfigError, match="device"):
        load_throughput(bench, device="cuda")  # the file measured the CPU alone
    shipped = load_throughput(), load_throughput(device="cpu")
    assert [t.setting.split(",")[0] for t in shipped] == ["cuda", "cpu"]  # GPU first


def test_cells_flag_beyond_two_combined_standard_deviations():
    column = Column("cifar10", "trades", "aa")
    cell = Cell("r", column, Value(50.0, 0.3), Value(49.0, 0.4), finished=3, planned=3)
    assert cell.combined_std == pytest.approx(0.5) and cell.flagged is False
    assert Cell("r", column, Value(50.0, 0.3), Value(48.9, 0.4), 3, 3).flagged
    assert not Cell("r", column, Value(50.0), Value(40.0), 1, 1).flagged  # no spread: not judged
    assert Cell("r", column, Value(50.0), None, 0, 3).difference is None


def test_generated_data_is_marked_beyond_the_paper_with_wang_2023_figures():
    """Wang et al. 2023 Table 2's WRN-28-10 with 20M generated images, as RobustBench lists it
    (Wang2023Better_WRN-28-10: clean 92.44, AutoAttack 67.31); RobustResNet-A1 has none."""
    experiment = load_experiment("generated-data")
    assert experiment.description.startswith("Beyond the paper: Wang et al. 2023")
    table = published_tables()[experiment.table]
    assert "Wang et al. 2023" in table.source and "Table 2" in table.source
    rows = {row.label: row for row in table.rows}
    assert rows["WRN-28-10, 20M"].results == {
        Column("cifar10", "trades", "clean"): Value(92.44),
        Column("cifar10", "trades", "aa"): Value(67.31),
    }
    assert not any(rows[f"RobustResNet-A1, {size}"].results for size in ("1M", "20M", "50M"))
    bases = {row.match["base"] for row in table.rows}
    assert bases == set(experiment.sweep.bases)


@pytest.mark.parametrize("name", ["block-topology", "scaling", "main", "generated-data"])
def test_smoke_scale_runs_resumes_and_compares(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", name, "--scale", "smoke", "--parallel", "2", "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "runs" / "reproduce" / f"{name}-smoke"
    summary = json.loads((out / "sweep-summary.json").read_text())
    assert summary["counts"] == {"finished": 3}
    assert main(["reproduce", name, "--scale", "smoke", "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"skipped": 3}  # a rerun resumes

    assert main(["reproduce", name, "--scale", "smoke", "--report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == {"finished": 3} and report["cells_with_runs"] > 0
    with open(out / "report" / "comparison.csv") as file:
        cells = [c for c in csv.DictReader(file) if c["ours"]]
    assert cells and all(c["finished"] == c["planned"] for c in cells)
    assert all(0 <= float(c["ours"]) <= 100 for c in cells)
    text = (out / "report" / "comparison.md").read_text()
    assert "published against ours" in text
    # a published figure whose runs the smoke left out (generated-data's one row has them all)
    assert ("| – | not run |" in text) == (name != "generated-data")
    assert "**Scale: smoke.**" in text and report["scale"] == "smoke"
    if name == "scaling":
        assert (out / "report" / "robust_vs_macs.png").stat().st_size > 0


def _digits_runs(name: str, capsys) -> list[dict]:
    assert main(["reproduce", name, "--scale", "digits", "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["scale"] == "digits" and listed["output"].endswith(f"{name}-digits")
    return listed["runs"]


def test_digits_scale_keeps_the_scaling_budgets_apart(capsys, tmp_path, monkeypatch):
    """Depths halved (rounded up) and channels / 8: every run of the 5G, 10G, 20G and 40G
    groups stays below every run of the next group, as at full size."""
    monkeypatch.chdir(tmp_path)
    runs = _digits_runs("scaling", capsys)
    assert len(runs) == RUNS["scaling"]
    first = next(r for r in runs if r["name"] == "d27-28-13-w10-14-6-s0")
    assert first["shape"][0] == "14-14-7"  # ceil(27 / 2), ceil(28 / 2), ceil(13 / 2)
    groups = [[r["macs"] for r in runs[i : i + 3]] for i in range(0, len(runs), 3)]
    assert all(max(low) < min(high) for low, high in zip(groups, groups[1:], strict=False))
    assert max(groups[-1]) < 3e7  # minutes on a CPU, not hours


def test_digits_scale_runs_one_dataset_with_every_seed(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = _digits_runs("block-topology", capsys)
    assert len(runs) == RUNS["block-topology"] // 2  # CIFAR-10's; digits has one dataset
    assert {r["name"].split("-")[0] for r in runs} == {"cifar10"}
    assert {r["name"][-2:] for r in runs} == {"s0", "s1", "s2"}
    # main: the NAS cell networks shrink too (fewer cells, fewer channels)
    names = {r["name"] for r in _digits_runs("main", capsys)}
    assert {"cifar10-trades-advrush-s0", "cifar10-trades-robustresnet-a4-s2"} <= names


@pytest.mark.parametrize("scale", ["smoke", "digits"])
@pytest.mark.parametrize("preset", ["robustresnet-a1", "robnet-large-v2", "racl"])
def test_shrunk_networks_build_and_run(preset, scale):
    import torch

    spec = shrink(get_spec(preset), scale)
    assert build_model(spec)(torch.rand(2, 3, 8, 8)).shape == (2, 10)


def test_rank_agreement_is_kendalls_tau_over_rows_measured():
    column = Column("cifar10", "trades", "pgd20")

    def cell(row, published, ours):
        return Cell(row, column, Value(published), None if ours is None else Value(ours), 1, 1)

    same = [cell("a", 50, 10), cell("b", 52, 11), cell("c", 54, 12), cell("d", 56, None)]
    assert rank_agreement(same) == [
        {"column": "cifar10/trades/pgd20", "rows": 3, "tau": pytest.approx(1.0),
         "p": pytest.approx(1 / 3)}
    ]  # fmt: skip
    reversed_ = [cell("a", 50, 12), cell("b", 52, 11), cell("c", 54, 10)]
    assert rank_agreement(reversed_)[0]["tau"] == pytest.approx(-1.0)
    assert rank_agreement(same[:2]) == []  # two rows: no ranking to judge


def test_digits_report_compares_the_dataset_it_runs(tmp_path):
    """Before any run: every CIFAR-10 cell planned and 'not started', no CIFAR-100 cell."""
    from robustresnet.reproduce.report import reproduce_report
    from robustresnet.reproduce.study import experiment_plan

    experiment = load_experiment("block-topology")
    _, plan = experiment_plan(experiment, tmp_path, scale="digits")
    summary = reproduce_report(experiment, plan, tmp_path, scale="digits")
    with open(summary["files"]["csv"]) as file:
        cells = list(csv.DictReader(file))
    assert {c["dataset"] for c in cells} == {"cifar10"} and len(cells) == 5 * 3
    assert all(c["planned"] == "3" and c["finished"] == "0" for c in cells)
    assert summary["runs"] == {"not started": 15} and summary["scale"] == "digits"
    assert "**Scale: digits.**" in (tmp_path / "report" / "comparison.md").read_text()
