"""`rrn report`'s aggregation, tables, Kendall's tau and plots on rows built here as fixtures
(made-up accuracies, used only to check the arithmetic; the end-to-end report on real trained
runs is in tests/test_sweep_train.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from robustresnet.errors import ConfigError
from robustresnet.report.plots import pareto_front, plot_axis_effects, plot_pareto
from robustresnet.report.tables import (
    aggregate,
    kendall_table,
    markdown_table,
    numeric_axes,
    pick_metric,
    to_csv,
)


def _row(model, seed, d1, w1, macs, pgd20, *, block="basic_block", status="finished", **extra):
    row = {
        "name": f"{model}-s{seed}",
        "model": model,
        "status": status,
        "block": block,
        "seed": seed,
        "D1": d1,
        "W1": w1,
        "depths": str(d1),
        "widening": str(w1),
        "depth_share": d1 / (d1 + w1),
        "params": macs // 10,
        "macs": macs,
    }
    if status == "finished":
        row.update(clean=pgd20 + 30.0, pgd20=pgd20, cw40=pgd20 - 2.0, **extra)
    return row


@pytest.fixture
def rows():
    return [
        _row("small", 0, 1, 1, 1_000_000, 40.0),
        _row("small", 1, 1, 1, 1_000_000, 42.0),
        _row("deep", 0, 3, 1, 3_000_000, 55.0, block="robust_res_block"),
        _row("wide", 0, 1, 3, 3_000_000, 50.0),
        _row("big", 0, 3, 3, 9_000_000, 54.0),
        _row("broken", 0, 2, 2, 4_000_000, 0.0, status="failed"),
    ]


def test_pick_metric_prefers_the_strongest_attack_every_run_has(rows):
    assert pick_metric(rows) == "cw40"
    assert pick_metric(rows, "pgd20") == "pgd20"
    with pytest.raises(ConfigError):
        pick_metric(rows, "aa")


def test_aggregate_means_over_seeds_and_skips_unfinished(rows):
    models = {m["model"]: m for m in aggregate(rows)}
    assert set(models) == {"small", "deep", "wide", "big"}
    assert models["small"]["runs"] == 2
    assert models["small"]["pgd20"] == pytest.approx(41.0)
    assert models["small"]["pgd20_std"] == pytest.approx(1.41421356)
    assert [m["model"] for m in aggregate(rows)][0] == "small"  # sorted by MACs


def test_markdown_table_has_the_papers_columns(rows):
    table = markdown_table(aggregate(rows))
    lines = table.splitlines()
    assert lines[0] == "| model | D | W | #P | #F (MACs) | clean | PGD-20 | CW-40 |"
    assert "| small | 1 | 1 | 100K | 1.00M | 71.00 ± 1.41 | 41.00 ± 1.41 | 39.00 ± 1.41 |" in lines


def test_pareto_front():
    points = [(1, 40), (3, 55), (3, 50), (9, 54), (2, 39), (10, 60)]
    assert pareto_front(points) == [0, 1, 5]


def test_kendall_tau_between_axes_and_robust_accuracy(rows):
    assert set(numeric_axes(rows)) == {"depth_share", "D1", "W1", "macs", "params"}
    table = {e["axis"]: e for e in kendall_table(rows, "pgd20")}
    # pgd20 by D1: (1: 40, 42, 50), (3: 55, 54): every cross pair concordant.
    assert table["D1"]["tau"] > 0.6
    assert table["D1"]["runs"] == 5
    assert -1 <= table["W1"]["tau"] <= 1


def test_csv_has_every_column_of_every_run(rows):
    text = to_csv(rows)
    header = text.splitlines()[0].split(",")
    assert {"name", "model", "D1", "W1", "pgd20", "cw40", "macs"} <= set(header)
    assert len(text.splitlines()) == 1 + len(rows)


def test_plots_are_png_files(rows, tmp_path):
    models = aggregate(rows)
    taus = {e["axis"]: e["tau"] for e in kendall_table(rows, "pgd20")}
    paths = [
        plot_pareto(rows, models, "pgd20", "macs", tmp_path / "macs.png"),
        plot_pareto(rows, models, "pgd20", "params", tmp_path / "params.png"),
        plot_axis_effects(rows, numeric_axes(rows), taus, "pgd20", tmp_path / "axes.png"),
    ]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300


def test_columns_say_what_they_measured_and_never_mix_sample_sets(rows):
    """A custom AutoAttack on 50 images says so; runs of one model on different sample sets are
    not averaged."""
    for row in rows:
        row.update(pgd20_samples=355, aa=30.0, aa_attacks="aa:attacks=apgd-ce+apgd-t",
                   aa_samples=50)  # fmt: skip
    rows[1]["pgd20_samples"] = 100  # the second seed of "small" evaluated fewer images
    models = {m["model"]: m for m in aggregate(rows)}
    assert "pgd20" not in models["small"] and models["deep"]["pgd20"] == 55.0
    header, _, *lines = markdown_table(list(models.values())).splitlines()
    assert "AA (apgd-ce+apgd-t, 50 images)" in header and "| PGD-20 |" in header
    small = next(line for line in lines if line.startswith("| small"))
    assert "runs differ in attack or samples" in small
    deep = next(line for line in lines if line.startswith("| deep"))
    assert "55.00 [PGD-20 (355 images)]" in deep
