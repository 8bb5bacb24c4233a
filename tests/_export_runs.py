"""Run directories as `rrn export` reads them, made in a second: tiny digits models evaluated by
`evaluate` (their report.json records the weights digest), no training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from _arch_checks import randomise_batchnorms
from _train_helpers import TINY_SPEC, tiny_config

from robustresnet import ArchSpec, build_model, evaluate, save_weights
from robustresnet._io import write_json
from robustresnet.data import load_dataset

STANDARD_AA = ("clean", "aa")
SPEC = ArchSpec.from_dict(
    {**TINY_SPEC, "mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616]}
)
EPS = 0.5  # AutoAttack breaks every image of an untrained model at once: a fast full evaluation


def digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The 355 test digits at the tiny spec's 8x8 input."""
    test = load_dataset("digits", split="test", size=8)
    return test.images, test.labels


def fake_run(
    folder: Path,
    *,
    attacks: Sequence[str] = STANDARD_AA,
    n: int | None = None,
    report_eps: float = EPS,
    weights: str = "best",
    data: dict[str, Any] | None = None,
    spec: ArchSpec = SPEC,
) -> torch.nn.Module:
    """config.yaml (threat model L∞ EPS), arch.yaml, weights/WEIGHTS.safetensors and report.json
    of `attacks` on the first `n` test digits; returns the model."""
    config = tiny_config(eval={"eps": EPS}, data=data or {})
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    spec.save(folder / "arch.yaml")
    model = randomise_batchnorms(build_model(spec)).eval()
    save_weights(model, folder / "weights" / f"{weights}.safetensors")
    images, labels = digits_test()
    report = evaluate(model, images[:n], labels[:n], attacks=list(attacks), eps=report_eps,
                      sanity_checks=False)  # fmt: skip
    write_json(folder / "report.json", report)
    return model
