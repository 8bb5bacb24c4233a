"""Evaluation split any way gives the same flags: shards, batch sizes, torchrun ranks; merges
refuse what does not fit together, naming the shard."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _digits_model import held_out, trained_mlp
from conftest import REPO

from robustresnet import ConfigError
from robustresnet.evaluate import evaluate, merge_reports, shard_bounds

WHITE_BOX = {"attacks": ("clean", "fgsm", "pgd5", "cw5"), "eps": 0.1, "sanity_checks": False}


def test_shards_are_whole_batches_covering_everything_once():
    bounds = [shard_bounds(100, i, 3, block=16, offset=5) for i in range(3)]
    assert bounds[0][0] == 5 and bounds[-1][1] == 105
    assert all(a[1] == b[0] and a[1] % 16 == 0 for a, b in zip(bounds, bounds[1:], strict=False))
    assert shard_bounds(20, 0, 2, block=16)[1] == 16 and shard_bounds(8, 0, 2, block=16) == (0, 0)
    x, y = held_out(8)
    with pytest.raises(ConfigError, match="fewer batches of 16 than shards"):
        evaluate(trained_mlp(), x, y, batch_size=16, shard=(0, 2), **WHITE_BOX)


def test_white_box_flags_do_not_depend_on_batch_size_or_sharding():
    """Each PGD / CW start comes from (seed, sample index), not from the batch."""
    x, y = held_out(90)
    whole = evaluate(trained_mlp(), x, y, batch_size=32, **WHITE_BOX)
    other_batch = evaluate(trained_mlp(), x, y, batch_size=7, **WHITE_BOX)
    parts = [
        evaluate(trained_mlp(), x, y, batch_size=16, shard=(i, 3), **WHITE_BOX) for i in (2, 0, 1)
    ]
    merged = merge_reports(parts)
    assert other_batch["flags"] == whole["flags"] == merged["flags"]
    assert merged["samples"]["ranges"] == [[0, 32], [32, 32], [64, 26]]
    assert merged["wall_seconds"] <= merged["seconds"]["total"]


def test_autoattack_flags_do_not_depend_on_sharding_at_one_batch_size():
    x, y = held_out(24)
    options = {"attacks": ("clean", "aa:attacks=apgd-ce"), "eps": 0.1, "batch_size": 8,
               "sanity_checks": False}  # fmt: skip
    whole = evaluate(trained_mlp(), x, y, **options)
    merged = merge_reports([evaluate(trained_mlp(), x, y, shard=(i, 2), **options) for i in (0, 1)])
    assert merged["flags"] == whole["flags"]


def test_merge_refuses_gaps_overlaps_and_other_settings_naming_the_shard():
    x, y = held_out(40)
    parts = [
        evaluate(trained_mlp(), x, y, batch_size=10, shard=(i, 4), **WHITE_BOX) for i in range(4)
    ]
    with pytest.raises(ConfigError, match=r"samples 10\.\.19 are missing"):
        merge_reports([parts[0], *parts[2:]])
    with pytest.raises(ConfigError, match="samples 10..19.*disjoint"):
        merge_reports([*parts, parts[1]])
    other = evaluate(trained_mlp(), x[:10], y[:10], batch_size=10, **{**WHITE_BOX, "eps": 0.2})
    with pytest.raises(ConfigError, match=r"samples 10\.\.19.*same settings"):
        merge_reports([other, *parts[1:]])


SCRIPT = """
import json, sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from _digits_model import held_out, trained_mlp
from robustresnet.evaluate import evaluate
dist.init_process_group("gloo")
torch.set_num_threads(1)
x, y = held_out(60)
report = evaluate(trained_mlp(), x, y, batch_size=16, state_path={out!r}, **{options!r})
if dist.get_rank() == 0:
    print(json.dumps(report["flags"]))
dist.destroy_process_group()
"""


def test_two_torchrun_ranks_give_the_flags_of_one_process(tmp_path):
    x, y = held_out(60)
    alone = evaluate(trained_mlp(), x, y, batch_size=16, **WHITE_BOX)
    script = tmp_path / "ranks.py"
    out = tmp_path / "report.json"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests"), out=str(out), options=WHITE_BOX))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               str(script)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == alone["flags"]
    written = json.loads(out.read_text())
    assert written["flags"] == alone["flags"] and written["samples"]["n"] == 60
    assert sorted(p.name for p in tmp_path.glob("report.shard-*")) == [
        "report.shard-0-of-2.json",
        "report.shard-1-of-2.json",
    ]
