"""Validation during training (model selection) and the final evaluation report of a run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .._io import write_json, write_text
from ..arch.compat import load_weights
from ..evaluate import evaluate, to_markdown

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def validate(t: Any) -> dict[str, float]:
    """Clean and PGD accuracy of the selected model (EMA when on) on the held-out images."""
    cfg, objective = t.config.eval, t.config.objective
    attack = f"{cfg.val_loss if cfg.val_loss == 'cw' else 'pgd'}{cfg.val_steps}"
    if cfg.val_step_size is not None:
        attack += f":step_size={cfg.val_step_size!r}"
    report = evaluate(
        t.eval_model,
        t.data.val.images,
        t.data.val.labels,
        attacks=("clean", attack),
        eps=objective.eps,
        norm=objective.norm,
        batch_size=cfg.batch_size,
        seed=t.config.run.seed,  # its own generators: the training RNG is untouched
        sanity_checks=False,
        fuse=t.config.run.fuse,
    )
    return {"val_clean": report["accuracy"]["clean"], "val_robust": report["accuracy"][attack]}


def final_report(t: Any, *, quiet: bool = False) -> list[dict[str, Any]]:
    """Evaluate the selected model on the test split; write report.json and report.md.

    AutoAttack on a subset (`eval.autoattack_samples`) is a second report beside the first."""
    cfg, objective = t.config.eval, t.config.objective
    model = _selected_model(t)
    name = t.spec.name or t.run_dir.name
    aa = "aa:attacks=" + "+".join(cfg.autoattack) if cfg.autoattack else None
    runs = [(name, list(cfg.final_attacks), cfg.final_samples)]
    if aa and cfg.autoattack_samples is None:
        runs[0][1].append(aa)
    elif aa:
        runs.append((f"{name} (AutoAttack subset)", ["clean", aa], cfg.autoattack_samples))
    reports = []
    for index, (label, attacks, samples) in enumerate(runs):
        n = samples or len(t.data.test.labels)
        reports.append(
            evaluate(
                model,
                t.data.test.images[:n],
                t.data.test.labels[:n],
                attacks=attacks,
                eps=objective.eps,
                norm=objective.norm,
                batch_size=cfg.batch_size,
                seed=t.config.run.seed,
                state_path=t.run_dir / f"eval-state-{index}.json",  # a killed evaluation resumes
                name=label,
                quiet=quiet,
                fuse=t.config.run.fuse,
            )
        )
    write_json(t.run_dir / REPORT_JSON, reports[0] if len(reports) == 1 else reports)
    write_text(t.run_dir / REPORT_MD, _markdown(t, reports))
    return reports


def read_reports(run_dir: Path) -> list[dict[str, Any]]:
    """The final reports of a finished run (a list, even when there is one)."""
    data = json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))
    return data if isinstance(data, list) else [data]


def _markdown(t: Any, reports: list[dict[str, Any]]) -> str:
    """One table per report, and which checkpoint was evaluated."""
    if t.best.get("epoch") is not None:
        chosen = f"best checkpoint (epoch {t.best['epoch']}, validation robust accuracy "
        chosen += f"{100 * t.best['val_robust']:.2f}%)"
    else:
        chosen = "final weights"
    which = "EMA " if t.ema is not None else ""
    parts = [f"Test accuracy (%) of the {which}{chosen}:\n"]
    parts += [to_markdown(report) for report in reports]
    return "\n".join(parts)


def _selected_model(t: Any) -> Any:
    """The best checkpoint's weights when validation chose one, else the final model."""
    model = t.eval_model
    best = t.run_dir / "weights" / "best.safetensors"
    if t.best.get("epoch") is not None and best.is_file():
        model = copy.deepcopy(model)
        load_weights(model, best)
    return model
