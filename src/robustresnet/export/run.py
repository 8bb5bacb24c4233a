"""A finished run as the exporters see it: config, spec, reports and the weights they evaluated.

Which weights to publish is not guessed from file names: every report records a digest of the
weights it evaluated (`weights_digest`), and the run's weight file with that digest is the one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..arch import ArchSpec, build_model, load_weights
from ..arch.specs import load_spec, require_arch_spec
from ..errors import CheckpointError, ConfigError
from ..evaluate import weights_digest
from ..train.checkpoint import ARCH, CONFIG, WEIGHTS_DIR
from ..train.config import ExperimentConfig, read_yaml
from ..train.final import REPORT_JSON

# Weight files of a run directory, in the order they are tried against the report's digest.
WEIGHT_FILES = ("best", "ema", "last")


@dataclass(frozen=True)
class EvaluatedRun:
    """A run directory with its evaluation report(s) and the model those reports evaluated."""

    run_dir: Path
    config: ExperimentConfig
    spec: ArchSpec
    report_path: Path
    reports: tuple[dict[str, Any], ...]
    weights_path: Path
    model: nn.Module  # `weights_path` loaded into the spec's network, in eval mode

    @property
    def name(self) -> str:
        """The spec's name, else the run directory's."""
        return self.spec.name or self.run_dir.resolve().name


def read_run(run_dir: str | os.PathLike, report: str | os.PathLike | None = None) -> EvaluatedRun:
    """Read `run_dir` (config.yaml, arch.yaml, weights/) and its `report` (default report.json).

    Refuses an unfinished report and reports of different weights; finds the weight file whose
    digest the report records."""
    run_dir = Path(run_dir)
    for name in (CONFIG, ARCH):
        if not (run_dir / name).is_file():
            raise ConfigError("run_dir", str(run_dir), f"a run directory holding {name}")
    config = ExperimentConfig.from_dict(read_yaml(run_dir / CONFIG))
    what = "rrn export writes model cards and standalone files of residual networks only"
    spec = require_arch_spec(load_spec(run_dir / ARCH), what)
    report_path = Path(report) if report is not None else run_dir / REPORT_JSON
    reports = read_reports(report_path)
    digests = {r.get("weights") for r in reports}
    if len(digests) != 1 or None in digests:
        raise ConfigError(
            "report", str(report_path), "reports of one model (they name different weights)"
        )
    weights_path, model = _evaluated_weights(run_dir, spec, digests.pop(), report_path)
    return EvaluatedRun(run_dir, config, spec, report_path, reports, weights_path, model)


def read_reports(path: Path) -> tuple[dict[str, Any], ...]:
    """The complete evaluation reports in `path` (one report or a list of them)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(
            "report", str(path), f"a readable report.json ({err.strerror}); evaluate the run "
            "first (`rrn train` writes one, or `rrn eval RUN_DIR --out DIR`)",
        ) from None  # fmt: skip
    except ValueError as err:
        raise ConfigError("report", str(path), f"valid JSON ({err})") from None
    reports = tuple(data if isinstance(data, list) else [data])
    for report in reports:
        if not isinstance(report, dict) or "accuracy" not in report or "settings" not in report:
            raise ConfigError("report", str(path), "an evaluation report (accuracy, settings)")
        if not report.get("complete"):
            raise ConfigError(
                "report", str(path), "a finished evaluation (complete: true); run the same "
                "evaluation again to resume it",
            )  # fmt: skip
    return reports


def _evaluated_weights(
    run_dir: Path, spec: ArchSpec, digest: str, report_path: Path
) -> tuple[Path, nn.Module]:
    """The run's weight file whose digest is `digest`, loaded."""
    tried = []
    for label in WEIGHT_FILES:
        path = run_dir / WEIGHTS_DIR / f"{label}.safetensors"
        if not path.is_file():
            continue
        model = load_weights(build_model(spec), path).eval()
        if weights_digest(model) == digest:
            return path, model
        tried.append(path.name)
    raise CheckpointError(
        f"{report_path}: it evaluated weights with digest {digest}, and no weight file of "
        f"{run_dir / WEIGHTS_DIR} has it (tried: {', '.join(tried) or 'none found'}); "
        "export the weights a report evaluated, or evaluate these weights"
    )
