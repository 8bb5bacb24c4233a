"""`rrn sweep` and `rrn report` end to end with the real trainer: tiny networks trained on 8x8
digits for one epoch, locally two at a time and as Ray tasks on a local Ray instance."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from robustresnet.cli import main
from robustresnet.sweep import load_sweep, plan_sweep, run_sweep, write_specs

BASE = {
    "model": {
        "spec": {
            "stem_channels": 8,
            "input_size": 8,
            "stages": [
                {"depth": 1, "widening": 1, "stride": 1},
                {"depth": 1, "widening": 1, "stride": 2},
                {"depth": 1, "widening": 1, "stride": 2},
            ],
        }
    },
    "data": {"name": "digits", "options": {"size": 8}, "val_size": 64, "crop_padding": 1},
    "objective": {"name": "pgd_at", "eps": 0.1, "step_size": 0.05, "steps": 1},
    "optim": {"lr": 0.05},
    "schedule": {"kind": "cosine", "epochs": 1},
    "eval": {"val_steps": 2, "final_attacks": ["clean", "pgd20", "cw40"], "final_samples": 16},
    "run": {"batch_size": 128},
}


def _write_sweep(folder: Path, **sweep) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "output": "runs", **sweep}))
    return path


def test_dry_run_lists_runs_with_sizes_and_applies_filters(tmp_path, capsys):
    path = _write_sweep(
        tmp_path,
        axes={"block": ["basic_block", "robust_res_block"], "width_grid": [[1, 2], [1], [1]]},
    )
    assert main(["sweep", str(path), "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = [t["name"] for t in listed["trials"]]
    assert names == ["basic-w1-1-1", "basic-w2-1-1", "rrb-w1-1-1", "rrb-w2-1-1"]
    macs = {t["name"]: t["macs"] for t in listed["trials"]}
    assert 0 < macs["basic-w1-1-1"] < macs["basic-w2-1-1"] < macs["rrb-w2-1-1"]
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing

    window = [macs["basic-w2-1-1"], None]
    sweep = load_sweep(
        _write_sweep(
            tmp_path,
            axes={"block": ["basic_block", "robust_res_block"], "width_grid": [[1, 2], [1], [1]]},
            filters={"macs": window},
        )
    )
    plan = plan_sweep(sweep, tmp_path / "runs")
    assert [t.name for t in plan.trials] == ["basic-w2-1-1", "rrb-w1-1-1", "rrb-w2-1-1"]
    assert [t.name for t, _ in plan.excluded] == ["basic-w1-1-1"]


def test_sweep_trains_records_failure_skips_finished_and_reports(tmp_path, capsys):
    # Three runs zipped: two blocks that train, and a held-out split larger than the data,
    # which the trainer refuses at run time: recorded as failed while the others go on.
    path = _write_sweep(
        tmp_path,
        zip=[
            {
                "block": ["basic_block", "robust_res_block", "basic_block"],
                "data.val_size": [64, 64, 5000],
            }
        ],
    )
    code = main(["sweep", str(path), "--parallel", "2", "--report", "--quiet", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # a run failed
    status = {t["name"]: t["status"] for t in summary["trials"]}
    assert status == {
        "basic-val_size64": "finished",
        "rrb-val_size64": "finished",
        "basic-val_size5000": "failed",
    }
    runs = tmp_path / "runs"
    failure = json.loads((runs / "basic-val_size5000" / "failed.json").read_text())
    assert "data.val_size" in failure["error"]
    arch = yaml.safe_load((runs / "rrb-val_size64" / "arch.yaml").read_text())
    assert {s["block"] for s in arch["stages"]} == {"robust_res_block"}

    with open(runs / "report" / "runs.csv") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(status)
    assert rows["rrb-val_size64"]["block"] == "robust_res_block"
    assert 0 <= float(rows["rrb-val_size64"]["cw40"]) <= float(rows["rrb-val_size64"]["clean"])
    assert float(rows["rrb-val_size64"]["macs"]) > float(rows["basic-val_size64"]["macs"])
    table = (runs / "report" / "report.md").read_text()
    columns = ("clean", "PGD-20", "CW-40")
    header = "| model | D | W | #P | #F (MACs) | " + " | ".join(f"{c} (16 images)" for c in columns)
    assert header in table
    assert "basic-val_size5000: failed" in table
    for png in ("robust_vs_macs.png", "robust_vs_params.png"):
        assert (runs / "report" / png).read_bytes()[:4] == b"\x89PNG"

    # Again, after a kill during the basic run's final evaluation (no report.json yet): that
    # run is resumed by the real trainer, the other finished one skipped, the failed one retried.
    (runs / "basic-val_size64" / "report.json").unlink()
    again = run_sweep(load_sweep(path), plan_sweep(load_sweep(path), runs).trials, runs, quiet=True)
    status = {t["name"]: (t["previous"], t["status"]) for t in again["trials"]}
    assert status == {
        "basic-val_size64": ("interrupted", "finished"),
        "rrb-val_size64": ("finished", "skipped"),
        "basic-val_size5000": ("failed", "failed"),
    }
    assert "--resume" in (runs / "basic-val_size64" / "train.log").read_text()
    assert (runs / "basic-val_size64" / "report.json").is_file()


def test_ray_backend_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install '.[ray]')")
    sweep = load_sweep(
        _write_sweep(tmp_path, axes={"seed": [0, 1]}, resources={"num_cpus": 1, "num_gpus": 0})
    )
    plan = plan_sweep(sweep, tmp_path / "runs")
    write_specs(plan, tmp_path / "runs")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_sweep(sweep, plan.trials, tmp_path / "runs", backend="ray", quiet=True)
    finally:
        ray.shutdown()
    assert summary["backend"] == "ray"
    assert summary["counts"] == {"finished": 2}
    for name in ("s0", "s1"):
        report = json.loads((tmp_path / "runs" / name / "report.json").read_text())
        assert 0 <= report["accuracy"]["pgd20"] <= report["accuracy"]["clean"]
        config = yaml.safe_load((tmp_path / "runs" / name / "config.yaml").read_text())
        assert config["run"]["seed"] == int(name[1:])
