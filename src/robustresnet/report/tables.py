"""The report's numbers: the robust metric, per-model means over seeds, the paper-style table,
the CSV of every run and Kendall's tau between each axis and robust accuracy."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from typing import Any

from scipy.stats import kendalltau

from .._units import format_count
from ..errors import ConfigError
from .gather import ATTACKS

ATTACK_TITLES = {"clean": "clean", "pgd20": "PGD-20", "cw40": "CW-40", "aa": "AA"}
ROBUST_PREFERENCE = ("aa", "cw40", "pgd20")  # the strongest attack every run was evaluated with
# Columns shared by the runs of one model (they differ only in seed).
MODEL_KEYS = (
    "block",
    "method",
    "activation",
    "normalization",
    "kernel_size",
    "scaling_rule",
    "depths",
    "widening",
    "depth_share",
    "params",
    "macs",
)
NUMERIC_AXES = ("depth_share", "total_depth", "total_widening", "macs", "params", "scaling_target")


def finished(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of runs with a final evaluation."""
    return [row for row in rows if row["status"] == "finished"]


def pick_metric(rows: list[dict[str, Any]], metric: str = "auto") -> str:
    """`metric`, or the strongest attack present in every finished run ("auto")."""
    done = finished(rows)
    if metric != "auto":
        if metric not in ATTACKS or any(metric not in row for row in done):
            raise ConfigError("metric", metric, f"an attack every run reports, one of {ATTACKS}")
        return metric
    for name in ROBUST_PREFERENCE:
        if done and all(name in row for row in done):
            return name
    raise ConfigError("runs", len(done), "finished runs reporting pgd20, cw40 or aa")


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per model (runs differing only in seed): sizes, run count, mean and std."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in finished(rows):
        groups[row["model"]].append(row)
    models = []
    for name, members in groups.items():
        entry: dict[str, Any] = {"model": name, "runs": len(members)}
        entry.update({key: members[0][key] for key in MODEL_KEYS if key in members[0]})
        for attack in ATTACKS:
            measured = [row for row in members if attack in row]
            settings = {_setting(row, attack) for row in measured}
            if len(settings) > 1:  # never a mean over different attacks or sample sets
                entry[f"{attack}_setting"] = None
            elif measured:
                values = [row[attack] for row in measured]
                entry[attack] = statistics.fmean(values)
                entry[f"{attack}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
                entry[f"{attack}_setting"] = settings.pop()
        models.append(entry)
    return sorted(models, key=lambda m: (m["macs"] or 0, m["model"]))


def markdown_table(models: list[dict[str, Any]]) -> str:
    """model | #P | #F (MACs) | clean | PGD-20 | CW-40 | AA, as the paper's tables, in percent;
    with the per-stage depths D and widening W after the model's name. Each column says what it
    measured (a custom AutoAttack's attacks, the sample count); when models differ in that, so
    does each cell."""
    attacks = [a for a in ATTACKS if any(f"{a}_setting" in m for m in models)]
    shared = {a: {m.get(f"{a}_setting") for m in models if f"{a}_setting" in m} for a in attacks}
    header = ["model", "D", "W", "#P", "#F (MACs)"]
    header += [_title(a, *shared[a]) if len(shared[a]) == 1 else ATTACK_TITLES[a] for a in attacks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in models:
        cells = [m["model"], m.get("depths", "–"), m.get("widening", "–")]
        cells += [format_count(m["params"]), format_count(m["macs"])]
        cells += [_mean_std(m, a, labelled=len(shared[a]) > 1) for a in attacks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _setting(row: dict[str, Any], attack: str) -> tuple[str, int | None]:
    """What a run's figure for `attack` measured: the attack as named, and the sample count."""
    return row.get(f"{attack}_attacks", attack), row.get(f"{attack}_samples")


def _title(attack: str, setting: tuple[str, int | None] | None) -> str:
    """PGD-20 (355 images), AA (apgd-ce+apgd-t, 50 images); plain when runs differ."""
    if setting is None:
        return ATTACK_TITLES[attack]
    name, samples = setting
    parts = [name.split("attacks=", 1)[1]] if "attacks=" in name else []
    parts += [] if samples is None else [f"{samples} images"]
    return f"{ATTACK_TITLES[attack]} ({', '.join(parts)})" if parts else ATTACK_TITLES[attack]


def _mean_std(model: dict[str, Any], attack: str, *, labelled: bool = False) -> str:
    setting = model.get(f"{attack}_setting", ())
    if setting is None:
        return "runs differ in attack or samples"
    if attack not in model:
        return "–"
    text = f"{model[attack]:.2f}"
    if model["runs"] > 1:
        text += f" ± {model[f'{attack}_std']:.2f}"
    return f"{text} [{_title(attack, setting)}]" if labelled else text


def numeric_axes(rows: list[dict[str, Any]]) -> list[str]:
    """Numeric columns that vary across finished runs: depth share, D_i, W_i, sizes, ..."""
    done = finished(rows)
    keys = [
        *NUMERIC_AXES,
        *sorted({k for r in done for k in r if k[:1] in "DW" and k[1:].isdigit()}),
    ]
    keys += sorted({k for r in done for k in r if "." in k})
    varying = []
    for key in keys:
        values = [r.get(key) for r in done]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numbers and len(set(values)) > 1:
            varying.append(key)
    return varying


def kendall_table(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Kendall's tau (and its p-value) between each varying numeric axis and `metric`."""
    done = finished(rows)
    table = []
    for axis in numeric_axes(rows):
        result = kendalltau([r[axis] for r in done], [r[metric] for r in done])
        tau, p = float(result.statistic), float(result.pvalue)
        table.append(
            {
                "axis": axis,
                "tau": None if math.isnan(tau) else tau,
                "p_value": None if math.isnan(p) else p,
                "runs": len(done),
            }
        )
    return table


def kendall_markdown(table: list[dict[str, Any]], metric: str) -> str:
    """The tau table in Markdown."""
    lines = [
        f"| axis | Kendall τ with {ATTACK_TITLES[metric]} | p-value | runs |",
        "|---|---|---|---|",
    ]
    for entry in table:
        tau = "–" if entry["tau"] is None else f"{entry['tau']:+.3f}"
        p = "–" if entry["p_value"] is None else f"{entry['p_value']:.3g}"
        lines.append(f"| {entry['axis']} | {tau} | {p} | {entry['runs']} |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Every run, every column (the union over runs, in first-seen order)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
