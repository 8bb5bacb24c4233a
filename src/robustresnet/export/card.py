"""`export_card`: a model card (README.md with YAML front matter) beside the evaluated weights.

OUT/README.md           front matter: task, dataset, every reported attack with its accuracy and
                        sample count, threat model, architecture (params, MACs), training recipe,
                        license; body: the same for people, usage and the paper's citation
OUT/model.safetensors   the weights the report evaluated (spec in the metadata)
OUT/arch.yaml           the ArchSpec
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._io import write_text
from ..arch import save_weights
from ..arch.profile import Profile, profile
from ..attacks.spec import parse_attack
from ..evaluate import to_markdown
from .claim import THREAT_MODELS, eps_text
from .run import EvaluatedRun, read_run

CITATION = """\
@inproceedings{huang2023revisiting,
  title     = {Revisiting Residual Networks for Adversarial Robustness},
  author    = {Huang, Shihua and Lu, Zhichao and Deb, Kalyanmoy and Boddeti, Vishnu Naresh},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition
               (CVPR)},
  year      = {2023}
}"""
PAPER_TAG = "arxiv:2212.11005"  # links the card to the paper on the Hugging Face Hub
DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "svhn": "SVHN",
    "tiny-imagenet": "Tiny-ImageNet",
    "digits": "scikit-learn digits",
}


@dataclass(frozen=True)
class CardExport:
    """The files written and the card's front matter."""

    readme_path: Path
    weights_path: Path
    arch_path: Path
    front_matter: dict[str, Any]
    weights: Path  # the run's weight file that was exported

    def to_dict(self) -> dict[str, Any]:
        return {
            "readme_path": str(self.readme_path),
            "weights_path": str(self.weights_path),
            "arch_path": str(self.arch_path),
            "weights": str(self.weights),
            "front_matter": self.front_matter,
        }


def export_card(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    report: str | os.PathLike | None = None,
    model_id: str | None = None,
    license_id: str = "mit",
) -> CardExport:
    """Write README.md, model.safetensors and arch.yaml of `run_dir` into `out`."""
    run = read_run(run_dir, report)
    out = Path(out)
    title = model_id or run.name
    cost = profile(run.spec)
    front = front_matter(run, title, cost, license_id)
    text = "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n"
    readme = write_text(out / "README.md", text + _body(run, title, cost))
    weights = save_weights(run.model, out / "model.safetensors")
    arch = run.spec.save(out / "arch.yaml")
    return CardExport(readme, weights, arch, front, run.weights_path)


def front_matter(run: EvaluatedRun, title: str, cost: Profile, license_id: str) -> dict[str, Any]:
    """The card's metadata in the Hugging Face layout (model-index) plus the run's settings."""
    dataset = run.config.data.name
    eps, norm = run.config.threat_model()
    metrics = [m for report in run.reports for m in _metrics(report)]
    return {
        "license": license_id,
        "library_name": "robustresnet",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "adversarial-robustness", "robustresnet", PAPER_TAG],
        "datasets": [dataset],
        "metrics": ["accuracy"],
        "model-index": [
            {
                "name": title,
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "Image Classification"},
                        "dataset": {
                            "type": dataset,
                            "name": DATASET_NAMES.get(dataset, dataset),
                            "split": "test",
                        },
                        "metrics": metrics,
                    }
                ],
            }
        ],
        "threat_model": {"norm": THREAT_MODELS[norm], "eps": eps_text(eps, norm), "eps_value": eps},
        "architecture": _architecture(run, cost),
        "training": recipe(run),
    }


def _metrics(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per attack of the report: accuracy in percent, the attack's settings, samples."""
    samples = {"samples": report["samples"]["n"], "offset": report["samples"]["offset"]}
    entries = []
    for attack in report["settings"]["attacks"]:
        settings = {k: v for k, v in attack.items() if k not in ("name", "kind")}
        clean = attack["kind"] == "clean"
        label = parse_attack(attack["name"]).label  # "PGD-20", "AA", as the report's table
        entries.append(
            {
                "type": "accuracy" if clean else "robust_accuracy",
                "name": "Clean accuracy" if clean else f"{label} robust accuracy",
                "value": round(100 * report["accuracy"][attack["name"]], 2),
                "config": attack["name"],
                "args": {"attack": attack["name"], **settings, **samples},
            }
        )
    return entries


def _architecture(run: EvaluatedRun, cost: Profile) -> dict[str, Any]:
    spec = run.spec
    return {
        "name": run.name,
        "blocks": [s.block for s in spec.stages],
        "activations": [s.activation for s in spec.stages],
        "normalizations": [s.normalization for s in spec.stages],
        "depths": list(spec.depths),
        "planes": list(spec.planes),
        "input_normalization": spec.mean is not None,
        "params": cost.params,
        "macs": cost.macs,
        "input_size": list(cost.input_size),
    }


def recipe(run: EvaluatedRun) -> dict[str, Any]:
    """The training settings that define the recipe (objective, optimiser, schedule, EMA, data)."""
    config = run.config.to_dict()
    data, extra = config["data"], run.config.data.extra
    return {
        "objective": config["objective"],
        "optimizer": {"name": "sgd", **config["optim"]},
        "schedule": config["schedule"],
        "ema": config["ema"],
        "batch_size": config["run"]["batch_size"],
        "precision": config["run"]["precision"],
        "seed": config["run"]["seed"],
        "data": {
            "dataset": data["name"],
            "held_out": data["val_size"],
            "extra": Path(extra).name if extra else None,  # a local path means nothing elsewhere
            "extra_fraction": data["extra_fraction"],
            "crop_padding": data["crop_padding"],
            "flip": data["flip"],
            "rotation": data["rotation"],
        },
    }


def _body(run: EvaluatedRun, title: str, cost: Profile) -> str:
    from .. import __version__  # here: the package imports its modules while it initialises

    spec, config = run.spec, run.config
    eps, norm = config.threat_model()
    dataset = DATASET_NAMES.get(config.data.name, config.data.name)
    training = recipe(run)
    objective = ", ".join(f"{k} {v}" for k, v in training["objective"].items() if k != "name")
    optim = ", ".join(f"{k} {v}" for k, v in training["optimizer"].items() if k != "name")
    blocks = ", ".join(dict.fromkeys(s.block for s in spec.stages))
    return f"""\
# {title}

A pre-activation residual network ({blocks}; depths {_dashes(spec.depths)}, widths \
{_dashes(spec.planes)}) adversarially trained on {dataset} with {training["objective"]["name"]} \
for {config.schedule.epochs} epochs, evaluated at {THREAT_MODELS[norm]} eps = \
{eps_text(eps, norm)}. Exported by robustresnet {__version__} from the run \
`{run.run_dir.resolve().name}` ({run.weights_path.name}, the weights the report evaluated).

## Robust accuracy

Accuracy (%) on the test split; each attack runs on the images classified correctly.

{to_markdown(list(run.reports))}
## Architecture

{cost.params:,} parameters, {cost.macs:,} multiply-accumulates for one \
{"x".join(str(s) for s in cost.input_size)} image; in-model input normalisation: \
{"yes" if spec.mean is not None else "no"}. `arch.yaml` holds the full spec.

## Training recipe

- objective: {training["objective"]["name"]} ({objective})
- optimizer: SGD ({optim})
- schedule: {config.schedule.kind}, {config.schedule.epochs} epochs, batch \
{config.run.batch_size}, {f"EMA tau {config.ema.tau}" if config.ema.tau else "no EMA"}
- data: {dataset}, {config.data.val_size} training images held out for model selection, extra \
data {training["data"]["extra"] or "none"}

## Usage

```python
import torch
from robustresnet import ArchSpec, build_model, load_weights

model = load_weights(build_model(ArchSpec.load("arch.yaml")), "model.safetensors").eval()
size = ({spec.in_channels}, {spec.input_size}, {spec.input_size})
logits = model(torch.rand(1, *size))  # float images in [0, 1], NCHW
```

## Citation

```bibtex
{CITATION}
```
"""


def _dashes(values) -> str:
    return "-".join(str(v) for v in values)
