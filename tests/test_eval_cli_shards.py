"""`rrn eval` split across jobs (--shard, then `rrn eval merge`) or torchrun ranks gives the
report of one process; a run's evaluation defaults to the run's own threat model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _train_helpers import tiny_config
from conftest import REPO

from robustresnet.cli import main
from robustresnet.train.trainer import train

ATTACKS = ["--attacks", "clean,fgsm,pgd5,cw5", "--batch-size", "16", "--no-sanity-checks"]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny digits run trained at eps 0.1 (not the paper's 8/255)."""
    config = tiny_config(schedule={"epochs": 1}, eval={"final_attacks": ["clean"]})
    return train(config, tmp_path_factory.mktemp("runs") / "tiny", quiet=True)


def _report(folder):
    return json.loads((folder / "report.json").read_text())


def test_shards_merged_equal_one_process_and_misfits_are_named(run_dir, tmp_path, capsys):
    assert main(["eval", str(run_dir), *ATTACKS, "--quiet", "--out", str(tmp_path / "one")]) == 0
    parts = [tmp_path / f"part{i}" for i in range(3)]
    for i, part in enumerate(parts):
        args = ["eval", str(run_dir), *ATTACKS, "--quiet", "--shard", f"{i}/3", "--out", str(part)]
        assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", "merge", *map(str, parts), "--out", str(tmp_path / "all"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    merged, one = _report(tmp_path / "all"), _report(tmp_path / "one")
    assert printed["flags"] == merged["flags"]
    assert merged["flags"] == one["flags"] and merged["samples"]["n"] == one["samples"]["n"]
    capsys.readouterr()
    assert main(["eval", "merge", str(parts[0]), str(parts[2]), "--out", str(tmp_path / "x")]) == 2
    assert f"report {parts[2]}" in capsys.readouterr().err  # the shard after the gap is named


def test_a_runs_evaluation_takes_its_threat_model_and_says_so(run_dir, tmp_path):
    assert main(["eval", str(run_dir), "--attacks", "clean,pgd5", "-n", "16", "--quiet",
                 "--no-sanity-checks", "--out", str(tmp_path / "own")]) == 0  # fmt: skip
    report = _report(tmp_path / "own")
    assert report["settings"]["eps"] == 0.1 and "config.yaml" in report["source"]["threat_model"]
    weights = str(run_dir / "weights" / "last.safetensors")  # a bare checkpoint: the paper's
    bare = ["--data", "digits", "--attacks", "clean,pgd5", "-n", "16", "--no-sanity-checks"]
    assert main(["eval", weights, *bare, "--quiet", "--out", str(tmp_path / "bare")]) == 0
    assert _report(tmp_path / "bare")["settings"]["eps"] == pytest.approx(8 / 255)


def test_two_torchrun_ranks_write_the_report_of_one_process(run_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["eval", str(run_dir), *ATTACKS, "--quiet", "--out", str(one)]) == 0
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command = [*launch, "-m", "robustresnet", "eval", str(run_dir), *ATTACKS, "--quiet"]
    done = subprocess.run([*command, "--out", str(two)], env=ENV, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert _report(two)["flags"] == _report(one)["flags"]
    assert done.stdout.count("| model |") == 1  # one table, printed by rank 0
