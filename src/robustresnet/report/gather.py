"""Reading run directories (config.yaml, arch.yaml, report.json) into one flat row per run.

A run whose files cannot be read becomes a row of status "broken" with the reason, so one
damaged run never costs the report of the others."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .._files import read_json, read_yaml
from ..arch import CellNetSpec, Spec, load_spec
from ..arch.profile import profile
from ..errors import ConfigError, RobustResNetError
from ..train.final import REPORT_JSON, read_reports

ATTACKS = ("clean", "pgd20", "cw40", "aa")
PLAN_FILE = "sweep-plan.json"  # written by `rrn sweep` beside its run directories
FAILED_FILE = "failed.json"
TRIAL_FILE = "sweep-trial.json"  # written by `rrn sweep` when a run finishes


def find_run_dirs(root: Path) -> list[Path]:
    """Every directory under `root` (itself included) holding a run's config.yaml or failed.json."""
    found = {p.parent for name in ("config.yaml", FAILED_FILE) for p in root.rglob(name)}
    return sorted(found)


def gather(root: str | Path) -> list[dict[str, Any]]:
    """One row per run under `root`: identity, architecture, sizes, sweep axes and accuracies."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError("runs_dir", str(root), "a directory of run directories")
    plans = _read_plans(root)
    rows = []
    for run_dir in find_run_dirs(root):
        try:
            row = read_run(run_dir, plans.get(run_dir.resolve()))
        except RobustResNetError as err:  # listed with the reason; the other runs are reported
            row = {"name": run_dir.name, "model": run_dir.name, "status": "broken"}
            row["error"] = " ".join(str(err).split())
        row["run_dir"] = run_dir.relative_to(root).as_posix()  # the CSV stays valid if moved
        rows.append(row)
    if not rows:
        raise ConfigError("runs_dir", str(root), "a directory containing runs (config.yaml)")
    return rows


def read_run(run_dir: Path, planned: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row of one run directory; `planned` is its entry in a sweep plan, when there is one.
    A file that cannot be read, or holds something else than it should, raises ConfigError."""
    row: dict[str, Any] = {"name": run_dir.name, "model": run_dir.name, "status": _status(run_dir)}
    config_path = run_dir / "config.yaml"
    config = read_yaml(config_path, "config.yaml") if config_path.is_file() else None
    if config:
        row.update(_config_fields(config, config_path))
    if planned:
        row["model"] = planned["group"]
        row.update(_axis_fields(planned["values"]))
    if (run_dir / "arch.yaml").is_file():
        row.update(arch_fields(load_spec(run_dir / "arch.yaml")))
    if row["status"] == "finished":
        row.update(read_metrics(read_reports(run_dir), source=run_dir / REPORT_JSON))
        row.update(_trial_times(run_dir / TRIAL_FILE))
    row["run_dir"] = str(run_dir)
    return row


def arch_fields(spec: Spec) -> dict[str, Any]:
    """Block, depths, widening, their totals and the depth share, per-stage D_i / W_i, sizes;
    a cell network has no blocks or widening: its name (as the block), cells per stage, sizes."""
    if isinstance(spec, CellNetSpec):
        sized = profile(spec)
        return {
            "block": spec.name or "cell_network",
            "depths": "-".join(str(d) for d in spec.depths),
            "params": sized.params,
            "macs": sized.macs,
        }
    depths, widening = list(spec.depths), [float(w) for w in spec.widening]
    total_depth, total_widening = sum(depths), sum(widening)
    sized = profile(spec)
    fields: dict[str, Any] = {
        "block": _single(s.block for s in spec.stages),
        "activation": _single(s.activation for s in spec.stages),
        "normalization": _single(s.normalization for s in spec.stages),
        "kernel_size": _single(s.kernel_size for s in spec.stages),
        "depths": "-".join(str(d) for d in depths),
        "widening": "-".join(f"{w:g}" for w in widening),
        "total_depth": total_depth,
        "total_widening": total_widening,
        "depth_share": round(total_depth / (total_depth + total_widening), 4),
        "params": sized.params,
        "macs": sized.macs,
    }
    for i, (d, w) in enumerate(zip(depths, widening, strict=True), start=1):
        fields[f"D{i}"], fields[f"W{i}"] = d, w
    return fields


def read_metrics(reports: list[Any], source: str | Path = REPORT_JSON) -> dict[str, Any]:
    """Accuracy (percent) under each attack of the paper's table, from a run's final reports
    (the second one, when present, is AutoAttack on a subset), with what each figure is: the
    attack as run (`{attack}_attacks`, e.g. aa:attacks=apgd-ce+apgd-t) and its sample count.
    Reports that are not evaluation reports raise ConfigError naming `source`."""
    _check_reports(reports, source)
    metrics: dict[str, Any] = {"test_samples": _samples(reports[0])}
    for report in reports:
        for key, value in report["accuracy"].items():
            name = "aa" if key.startswith("aa:") else key
            if name in ATTACKS and name not in metrics:
                metrics[name] = 100.0 * float(value)
                metrics[f"{name}_attacks"] = key
                metrics[f"{name}_samples"] = _samples(report)
    return metrics


def _check_reports(reports: list[Any], source: str | Path) -> None:
    expected = "evaluation reports: mappings whose accuracy maps attacks to numbers in [0, 1]"
    if not reports:
        raise ConfigError(str(source), reports, expected)
    for report in reports:
        accuracy = report.get("accuracy") if isinstance(report, dict) else None
        if not isinstance(accuracy, dict) or not all(
            _is_fraction(value) for value in accuracy.values()
        ):
            raise ConfigError(str(source), report, expected)


def _is_fraction(value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and 0 <= value <= 1


def _samples(report: dict[str, Any]) -> Any:
    samples = report.get("samples")
    return samples.get("n") if isinstance(samples, dict) else None


def _trial_times(path: Path) -> dict[str, Any]:
    """Wall and CPU seconds of the training, as `rrn sweep` recorded them."""
    if not path.is_file():
        return {}
    record = read_json(path, TRIAL_FILE)
    if not isinstance(record, dict):
        raise ConfigError(str(path), record, "a mapping with seconds and cpu_seconds")
    return {"train_seconds": record.get("seconds"), "train_cpu_seconds": record.get("cpu_seconds")}


def _status(run_dir: Path) -> str:
    if (run_dir / "report.json").is_file():
        return "finished"
    return "failed" if (run_dir / FAILED_FILE).is_file() else "incomplete"


def _config_fields(config: Any, path: Path) -> dict[str, Any]:
    """The training settings a study compares: dataset, method, seed, epochs."""
    if not isinstance(config, dict):
        raise ConfigError(str(path), config, "a mapping of config sections")
    fields = {}
    for column, section, key in (
        ("dataset", "data", "name"),
        ("method", "objective", "name"),
        ("seed", "run", "seed"),
        ("epochs", "schedule", "epochs"),
    ):
        values = config.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {section}", values, "a mapping")
        fields[column] = values.get(key)
    return fields


def _axis_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Sweep axes that the run's own files do not record: the scaling point and dotted keys."""
    fields: dict[str, Any] = {}
    if "scaling" in values:
        fields["scaling_rule"] = values["scaling"]["rule"]
        fields["scaling_target"] = values["scaling"]["target"]
    fields.update({axis: value for axis, value in values.items() if "." in axis})
    return fields


def _read_plans(root: Path) -> dict[Path, dict[str, Any]]:
    """Run directory -> its trial entry, from every sweep plan under `root`; a damaged plan is
    a ConfigError naming it (it groups many runs: fix or remove it, then report again)."""
    entries = {}
    for plan_path in root.rglob(PLAN_FILE):
        plan = read_json(plan_path, PLAN_FILE)
        trials = plan.get("trials", []) if isinstance(plan, dict) else None
        if not isinstance(trials, list) or not all(_is_trial(t) for t in trials):
            expected = "the list of trials `rrn sweep` writes (fix or remove the file)"
            raise ConfigError(PLAN_FILE, str(plan_path), expected)
        for trial in trials:
            entries[(plan_path.parent / trial["name"]).resolve()] = trial
    return entries


def _is_trial(trial: Any) -> bool:
    return (
        isinstance(trial, dict)
        and isinstance(trial.get("name"), str)
        and isinstance(trial.get("group"), str)
        and isinstance(trial.get("values"), dict)
    )


def _single(values: Any) -> Any:
    """The common value of every stage, or the per-stage values joined by '/'."""
    values = list(values)
    return values[0] if len(set(values)) == 1 else "/".join(str(v) for v in values)
