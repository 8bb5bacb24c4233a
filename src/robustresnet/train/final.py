"""Validation during training (model selection) and the final evaluation report of a run."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .._files import read_json
from .._io import write_json, write_text
from ..arch.compat import load_weights
from ..attacks.autoattack import STANDARD, parse_attacks
from ..attacks.spec import AttackSpec, parse_attack
from ..evaluate import evaluate, to_markdown
from .config import ExperimentConfig

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def validation_attack(config: ExperimentConfig) -> AttackSpec:
    """The PGD (CE loss) or CW attack that selects the best epoch."""
    cfg = config.eval
    eps, norm = config.threat_model()
    name = f"{'cw' if cfg.val_loss == 'cw' else 'pgd'}{cfg.val_steps}"
    return AttackSpec(
        name, "pgd", eps=eps, norm=norm, steps=cfg.val_steps, step_size=cfg.val_step_size,
        loss=cfg.val_loss,
    )  # fmt: skip


def final_evaluations(config: ExperimentConfig) -> list[tuple[str, list[AttackSpec], int | None]]:
    """(label suffix, attacks, samples) of each final report: the final attacks, with AutoAttack
    among them, or on its own subset (`eval.autoattack_samples`) in a second report."""
    cfg = config.eval
    eps, norm = config.threat_model()
    attacks = [parse_attack(text, eps=eps, norm=norm) for text in cfg.final_attacks]
    runs = [("", attacks, cfg.final_samples)]
    if cfg.autoattack:
        names = parse_attacks(cfg.autoattack)
        key = "aa" if names == STANDARD else "aa:attacks=" + "+".join(names)
        aa = AttackSpec(key, "aa", eps=eps, norm=norm, autoattack=names)
        if cfg.autoattack_samples is None:
            attacks.append(aa)
        else:
            clean = AttackSpec("clean", "clean")
            runs.append((" (AutoAttack subset)", [clean, aa], cfg.autoattack_samples))
    return runs


def validate(t: Any) -> dict[str, float]:
    """Clean and attacked accuracy of the selected model (EMA when on) on the held-out images."""
    attack = validation_attack(t.config)
    report = evaluate(
        t.eval_model,
        t.data.val.images,
        t.data.val.labels,
        attacks=(AttackSpec("clean", "clean"), attack),
        eps=attack.eps,
        norm=attack.norm,
        batch_size=t.config.eval.batch_size,
        seed=t.config.run.seed,  # its own generators: the training RNG is untouched
        sanity_checks=False,
        fuse=t.config.run.fuse,
    )
    return {"val_clean": report["accuracy"]["clean"], "val_robust": report["accuracy"][attack.name]}


def final_report(t: Any, *, quiet: bool = False) -> list[dict[str, Any]]:
    """Evaluate the selected model on the test split; write report.json and report.md."""
    model = _selected_model(t)
    name = t.spec.name or t.run_dir.name
    eps, norm = t.config.threat_model()
    reports = []
    for index, (suffix, attacks, samples) in enumerate(final_evaluations(t.config)):
        n = samples or len(t.data.test.labels)
        reports.append(
            evaluate(
                model,
                t.data.test.images[:n],
                t.data.test.labels[:n],
                attacks=attacks,
                eps=eps,
                norm=norm,
                batch_size=t.config.eval.batch_size,
                seed=t.config.run.seed,
                state_path=t.run_dir / f"eval-state-{index}.json",  # a killed evaluation resumes
                name=name + suffix,
                quiet=quiet or not t.world.is_main,
                fuse=t.config.run.fuse,
            )
        )
    if t.world.is_main:
        write_json(t.run_dir / REPORT_JSON, reports[0] if len(reports) == 1 else reports)
        write_text(t.run_dir / REPORT_MD, _markdown(t, reports))
    return reports


def read_reports(run_dir: Path) -> list[Any]:
    """The final reports of a finished run (a list, even when there is one); an unreadable file
    is a ConfigError naming it."""
    data = read_json(run_dir / REPORT_JSON, REPORT_JSON)
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
