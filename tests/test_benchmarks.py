"""`python -m benchmarks` end to end at its smallest setting: it runs, reports finite positive
figures and rewrites only its own RESULTS.md section. Never a speed: that is judged by ratios
against the baseline in the same run (benchmarks/RESULTS.md), not by a timed test."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from conftest import REPO

# autoattack: minutes even at 1 image
PASSES = ("forward", "attack", "trades", "pgd20", "loader", "stream")


def test_harness_end_to_end(tmp_path):
    out, results = tmp_path / "run.json", tmp_path / "RESULTS.md"
    stale = "## cpu, fp32, channels_last, fuse\n\nstale figures\n"
    results.write_text(f"# Results\n\n{stale}\n## cuda\n\nother device\n")
    src = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "benchmarks", "--device", "cpu", "--sizes", "tiny"]
    command += ["--batch", "2", "--repeats", "1", "--min-time", "0", "--threads", "1"]
    command += ["--passes", *PASSES, "--loader-batches", "2", "--json", str(out)]
    command += ["--write", str(results), "--profile", str(tmp_path / "profile.txt")]
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    rows = {row["pass"]: row for row in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == sorted(PASSES)
    for name, row in rows.items():
        keys = ["ours_images_per_s", "baseline_images_per_s", "ratio", "ours_peak_mib"]
        keys += ["ours_tflops", "baseline_tflops"] if name not in ("loader", "stream") else []
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in keys), row
    assert "flags differ" in rows["pgd20"]["check"]
    profiles = (tmp_path / "profile.txt").read_text()
    for name in ("forward", "attack", "trades", "pgd20"):
        for side in ("ours", "baseline"):
            assert f"## tiny {name} (cpu, fp32, channels_last, fuse), {side}\n" in profiles
    assert "aten::" in profiles and "--profile" not in json.loads(out.read_text())["command"]
    text = results.read_text()
    assert (
        "stale figures" not in text and "other device" in text and "| tiny | trades | 2 |" in text
    )


def test_scale_out_measures_one_and_two_ranks_with_equal_flags():
    """The evaluation scale-out row: two torchrun ranks against one, flags checked equal."""
    sys.path.insert(0, str(REPO))
    from benchmarks.scaleout import measure

    result = measure("tiny", images=16, batch=8, ranks=2, device="cpu")
    assert result["images_per_s_1"] > 0 and result["images_per_s_2"] > 0
    assert math.isclose(result["efficiency"], result["speedup"] / 2)


def test_extra_memory_writes_files_the_streamed_reader_takes(tmp_path):
    """The chunked writer of benchmarks/extra_memory.py (how its 6 GB file is made) writes
    what np.load and open_extra read, across more than one chunk."""
    import numpy as np

    from benchmarks import extra_memory
    from robustresnet.data import open_extra

    count = extra_memory.CHUNK + 5
    path = extra_memory.write_npz(tmp_path / "extra.npz", count, seed=3)
    extra = open_extra(path, num_classes=10, image_shape=(3, 32, 32))
    images, labels = np.empty((count, 32, 32, 3), np.uint8), np.empty(count, np.int64)
    extra.read(0, count, images, labels)
    with np.load(path) as data:
        assert (data["image"] == images).all() and (data["label"] == labels).all()
    assert len(np.unique(images[-5:])) > 1 and set(np.unique(labels)) == set(range(10))
