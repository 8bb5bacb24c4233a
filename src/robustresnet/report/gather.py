"""Reading run directories (config.yaml, arch.yaml, report.json) into one flat row per run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..arch import ArchSpec
from ..arch.profile import profile
from ..errors import ConfigError
from ..train.final import read_reports

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
        row = read_run(run_dir, plans.get(run_dir.resolve()))
        row["run_dir"] = run_dir.relative_to(root).as_posix()  # the CSV stays valid if moved
        rows.append(row)
    if not rows:
        raise ConfigError("runs_dir", str(root), "a directory containing runs (config.yaml)")
    return rows


def read_run(run_dir: Path, planned: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row of one run directory; `planned` is its entry in a sweep plan, when there is one."""
    row: dict[str, Any] = {"name": run_dir.name, "model": run_dir.name, "status": _status(run_dir)}
    config = _read_yaml(run_dir / "config.yaml")
    if config:
        row.update(_config_fields(config))
    if planned:
        row["model"] = planned["group"]
        row.update(_axis_fields(planned["values"]))
    if (run_dir / "arch.yaml").is_file():
        row.update(arch_fields(ArchSpec.load(run_dir / "arch.yaml")))
    if row["status"] == "finished":
        row.update(read_metrics(read_reports(run_dir)))
        row.update(_trial_times(run_dir / TRIAL_FILE))
    row["run_dir"] = str(run_dir)
    return row


def arch_fields(spec: ArchSpec) -> dict[str, Any]:
    """Block, depths, widening, their totals and the depth share, per-stage D_i / W_i, sizes."""
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


def read_metrics(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (percent) under each attack of the paper's table, from a run's final reports
    (the second one, when present, is AutoAttack on a subset), with what each figure is: the
    attack as run (`{attack}_attacks`, e.g. aa:attacks=apgd-ce+apgd-t) and its sample count."""
    metrics: dict[str, Any] = {"test_samples": reports[0].get("samples", {}).get("n")}
    for report in reports:
        for key, value in report.get("accuracy", {}).items():
            name = "aa" if key.startswith("aa:") else key
            if name in ATTACKS and name not in metrics:
                metrics[name] = 100.0 * float(value)
                metrics[f"{name}_attacks"] = key
                metrics[f"{name}_samples"] = report.get("samples", {}).get("n")
    return metrics


def _trial_times(path: Path) -> dict[str, Any]:
    """Wall and CPU seconds of the training, as `rrn sweep` recorded them."""
    if not path.is_file():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    return {"train_seconds": record.get("seconds"), "train_cpu_seconds": record.get("cpu_seconds")}


def _status(run_dir: Path) -> str:
    if (run_dir / "report.json").is_file():
        return "finished"
    return "failed" if (run_dir / FAILED_FILE).is_file() else "incomplete"


def _config_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The training settings a study compares: dataset, method, seed, epochs."""
    return {
        "dataset": config.get("data", {}).get("name"),
        "method": config.get("objective", {}).get("name"),
        "seed": config.get("run", {}).get("seed"),
        "epochs": config.get("schedule", {}).get("epochs"),
    }


def _axis_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Sweep axes that the run's own files do not record: the scaling point and dotted keys."""
    fields: dict[str, Any] = {}
    if "scaling" in values:
        fields["scaling_rule"] = values["scaling"]["rule"]
        fields["scaling_target"] = values["scaling"]["target"]
    fields.update({axis: value for axis, value in values.items() if "." in axis})
    return fields


def _read_plans(root: Path) -> dict[Path, dict[str, Any]]:
    """Run directory -> its trial entry, from every sweep plan under `root`."""
    entries = {}
    for plan_path in root.rglob(PLAN_FILE):
        plan = json.loads(plan_path.read_text())
        for trial in plan.get("trials", []):
            entries[(plan_path.parent / trial["name"]).resolve()] = trial
    return entries


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _single(values: Any) -> Any:
    """The common value of every stage, or the per-stage values joined by '/'."""
    values = list(values)
    return values[0] if len(set(values)) == 1 else "/".join(str(v) for v in values)
