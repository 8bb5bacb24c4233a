"""Validation during training (model selection) and the final evaluation report of a run."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..arch.compat import load_weights
from ..attacks import frozen, pgd


def validate(t: Any) -> dict[str, float]:
    """Clean and PGD accuracy of the selected model (EMA when on) on the held-out images."""
    cfg, objective = t.config.eval, t.config.objective
    model = t.eval_model
    step_size = cfg.val_step_size if cfg.val_step_size is not None else objective.eps / 10
    # Its own generator: validation draws nothing from the training RNG, so resume stays exact.
    generator = torch.Generator(device=t.device).manual_seed(t.config.run.seed)
    images, labels = t.data.val.images, t.data.val.labels
    clean = robust = 0
    with frozen(model):
        for i in range(0, len(labels), cfg.batch_size):
            x = images[i : i + cfg.batch_size].to(t.device).float().div_(255)
            y = labels[i : i + cfg.batch_size].to(t.device)
            with torch.no_grad():
                correct = model(x).argmax(1) == y
            x_adv = pgd(
                model,
                x,
                y,
                eps=objective.eps,
                step_size=step_size,
                steps=cfg.val_steps,
                loss=cfg.val_loss,
                norm=objective.norm,
                generator=generator,
            )
            with torch.no_grad():
                still = model(x_adv).argmax(1) == y
            clean += int(correct.sum())
            robust += int((correct & still).sum())
    return {"val_clean": clean / len(labels), "val_robust": robust / len(labels)}


def final_report(t: Any, *, quiet: bool = False) -> dict[str, Any]:
    """Evaluate the selected model on the test split; write report.json and report.md."""
    from ..evaluate import evaluate, write_report

    cfg, objective = t.config.eval, t.config.objective
    model = _selected_model(t)
    n = cfg.final_samples or len(t.data.test.labels)
    attacks = tuple(cfg.final_attacks)
    report = evaluate(
        model,
        t.data.test.images[:n],
        t.data.test.labels[:n],
        attacks=attacks,
        eps=objective.eps,
        norm=objective.norm,
        batch_size=cfg.batch_size,
        seed=t.config.run.seed,
        quiet=quiet,
    )
    write_report(t.run_dir, report)
    return report


def _selected_model(t: Any) -> Any:
    """The best checkpoint's weights when validation chose one, else the final model."""
    model = t.eval_model
    best = t.run_dir / "weights" / "best.safetensors"
    if t.best.get("epoch") is not None and best.is_file():
        model = copy.deepcopy(model)
        load_weights(model, best)
    return model
