"""Write the paper's training recipes into the package, one YAML per run:
`python tools/generate_recipes.py [OUT]` (default: src/robustresnet/recipes).

Baseline (BAT): CIFAR-10 / CIFAR-100 x TRADES / PGD-AT / MART x the networks of the paper's tables,
and TRADES for the NAS baselines of its main table (RobNet-large-v2, AdvRush, RACL).
Advanced (AAT): CIFAR-10, RobustResNet-A1 and WRN-A4. Generated data (beyond the paper): Wang et
al. 2023's recipe with 1M / 20M / 50M EDM images, for WRN-28-10 and RobustResNet-A1, each value's
source in a comment above it. The digits recipes and the sweeps are written by hand. Each file's
first line is its one-line description (`rrn recipes` shows it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

RECIPES = Path(__file__).resolve().parents[1] / "src" / "robustresnet" / "recipes"
NETWORKS = (
    *(f"robustresnet-a{i}" for i in range(1, 5)),
    *(f"wrn-a{i}" for i in range(1, 5)),
    "wrn-28-10",
    "wrn-34-10",
    "wrn-34-12",
    "wrn-34-r",
    "wrn-46-14",
    "wrn-70-16",
)
# The NAS baselines of the main table (paper Table 2): TRADES only, as published.
NAS_BASELINES = ("robnet-large-v2", "advrush", "racl")
# The starts of the authors' baseline losses (core/losses/*.py): x + 0.001 N(0, 1) for TRADES,
# x + step_size N(0, 1) for PGD-AT and MART, the first gradient taken there unclamped.
OBJECTIVES = {
    "trades": {"name": "trades", "beta": 6.0, "start": "normal", "start_std": 0.001},
    "pgd_at": {"name": "pgd_at", "start": "normal", "start_std": "2/255"},
    "mart": {"name": "mart", "beta": 6.0, "start": "normal", "start_std": "2/255"},
}
# The paper's tables: clean, FGSM, PGD-20, CW-40 (step eps / 10) and standard AutoAttack.
FINAL = {
    "final_attacks": ["clean", "fgsm", "pgd20", "cw40"],
    "autoattack": ["apgd-ce", "apgd-t", "fab-t", "square"],
}


def baseline(dataset: str, objective: str, network: str) -> dict:
    """The paper's baseline recipe (its main tables)."""
    return {
        "model": {"name": network},
        "data": {
            "name": dataset,
            "root": "data",
            "val_size": 1024,
            "crop_padding": 4,
            "flip": True,
            "rotation": 20.0 if dataset == "cifar100" else 0.0,
            "rotation_mode": "nearest",
        },
        "objective": {
            **OBJECTIVES[objective],
            "eps": "8/255",
            "step_size": "2/255",
            "steps": 10,
            "norm": "inf",
            "clamp_start": False,
            "attack_bn": "eval",
        },
        "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 2.0e-4, "grad_clip": 5.0},
        "schedule": {"kind": "step", "epochs": 100, "milestones": [0.75, 0.9]},
        "eval": {"every": 1, "from_epoch": 50, "val_steps": 20, "val_loss": "ce", **FINAL},
        "run": {"batch_size": 128, "seed": 0, "checkpoint_every": 100},
    }


def advanced(network: str) -> dict:
    """The advanced CIFAR-10 recipe with 500K pseudo-labelled extra images, as the authors'
    advanced trainer (adv-main_dist.py with the README's flags) runs it."""
    return {
        "model": {
            "name": network,
            "activation": "silu",
            "bn_momentum": 0.01,
            "bn_momentum_first_step": 1.0,
        },
        "data": {
            "name": "cifar10",
            "root": "data",
            "val_size": 1024,
            "extra": "data/ti_500K_pseudo_labeled.pickle",
            "extra_fraction": 0.7,
            "extra_kind": "external",
            "epoch_images": 50000,
        },
        "objective": {
            "name": "trades",
            "beta": 6.0,
            "eps": "8/255",
            "step_size": "2/255",
            "steps": 10,
            "start": "uniform",
            "clamp_start": True,
            "attack_bn": "train",
            "label_smoothing": 0.1,
            "bn_adversarial_only": True,
        },
        "optim": {
            "lr": 0.4,
            "momentum": [0.85, 0.95],
            "nesterov": True,
            "weight_decay": 5.0e-4,
            "no_decay": "bn_in_name",
            "grad_clip": None,
        },
        "schedule": {"kind": "onecycle", "epochs": 400, "warmup_epochs": 10, "interval": "epoch"},
        "ema": {"tau": 0.995, "warmup_epochs": 10},
        "eval": {
            "every": 1,
            "from_epoch": 0,
            "ties": "latest",
            "val_steps": 40,
            "val_loss": "cw",
            "val_step_size": "2/255",
            **FINAL,
        },
        "run": {"batch_size": 1024, "seed": 0, "checkpoint_every": 25},
    }


# Wang et al. 2023, "Better Diffusion Models Further Improve Adversarial Training" (ICML 2023), as
# its repository wzekai99/DM-Improves-AT (at b390f25) runs it: train-wa.py, whose trainer is
# gowal21uncovering/utils/watrain.py. Per data size: batch, lr, epochs and the generated share of
# each batch. The README gives the 1M command only; the 20M one comes from a third-party copy of
# the authors' train-wa.py command for 20m.npz, and 50M is assumed to run as 20M (docs/recipes.md).
GENERATED = {
    "1m": {"batch": 512, "lr": 0.2, "epochs": 400, "fraction": 0.7, "from": "README command"},
    "20m": {"batch": 2048, "lr": 0.2, "epochs": 2400, "fraction": 0.8, "from": "20M command"},
    "50m": {"batch": 2048, "lr": 0.2, "epochs": 2400, "fraction": 0.8, "from": "50M: as 20M"},
}
GENERATED_NETWORKS = ("wrn-28-10", "robustresnet-a1")
# Their one-cycle schedule and weight-averaging warm-up both last 2.5% = 1/40 of the run (pct_start
# 0.025; warmup_steps = 0.025 x epochs x update_steps): whole epochs for these runs.
GENERATED_WARMUP_SHARE = 40


def generated(network: str, size: str) -> tuple[dict, dict[str, str]]:
    """Wang et al. 2023's recipe with `size` generated CIFAR-10 images, and each value's source."""
    run = GENERATED[size]
    warmup = run["epochs"] // GENERATED_WARMUP_SHARE
    config = {
        "model": {
            "name": network,
            "activation": "silu",
            "mean": "cifar10",
            "std": "cifar10",
            "bn_momentum": 0.01,
            "bn_momentum_first_step": 1.0,
        },
        "data": {
            "name": "cifar10",
            "root": "data",
            "val_size": 1024,
            "extra": f"data/generated/{size}.npz",
            "extra_fraction": run["fraction"],
            "extra_kind": "generated",
            "epoch_images": 50000,
            "crop_padding": 4,
            "flip": True,
        },
        "objective": {
            "name": "trades",
            "beta": 5.0,
            "eps": "8/255",
            "step_size": "2/255",
            "steps": 10,
            "start": "uniform",
            "clamp_start": True,
            "attack_bn": "train",
            "label_smoothing": 0.1,
            "bn_adversarial_only": False,
        },
        "optim": {
            "lr": run["lr"],
            "momentum": [0.85, 0.95],
            "nesterov": True,
            "weight_decay": 5.0e-4,
            "no_decay": "norm",
            "grad_clip": None,
        },
        "schedule": {
            "kind": "onecycle",
            "epochs": run["epochs"],
            "warmup_epochs": warmup,
            "interval": "epoch",
        },
        "ema": {"tau": 0.995, "warmup_epochs": warmup},
        "eval": {
            "every": 1,
            "from_epoch": 0,
            "ties": "latest",
            "val_steps": 40,
            "val_loss": "cw",
            "val_step_size": "2/255",
            **FINAL,
        },
        "run": {"batch_size": run["batch"], "seed": 0, "checkpoint_every": 0},
    }
    return config, _generated_notes(network, size)


def _generated_notes(network: str, size: str) -> dict[str, str]:
    """Where each value of the generated-data recipe comes from in DM-Improves-AT."""
    origin = {
        "README command": "the README's 1M command",
        "20M command": "a third-party copy of their 20m.npz command",
        "50M: as 20M": "none published for 50M, 20M's assumed",
    }[GENERATED[size]["from"]]
    network_note = (
        "README --model wrn-28-10-swish (core/models/wideresnetwithswish.py)"
        if network == "wrn-28-10"
        else "not in Wang et al.: this library's network under their recipe, with their\n"
        "WRN's SiLU, input normalisation and BatchNorm momentum"
    )
    return {
        "model": "Values: wzekai99/DM-Improves-AT (b390f25) train-wa.py, file and argument "
        "above each;\nthe README gives only the 1M command (docs/recipes.md, generated data)",
        "model.name": network_note,
        "model.activation": "swish = nn.SiLU (wideresnetwithswish.py)",
        "model.mean": "in-model CIFAR10_MEAN / CIFAR10_STD (wideresnetwithswish.py forward)",
        "model.bn_momentum": "BatchNorm2d(momentum=0.01) (wideresnetwithswish.py); watrain.py "
        "train(): 1.0 at\nglobal step 0, then 0.01",
        "data.name": "--data cifar10s: CIFAR-10 and the generated images with their labels\n"
        "(core/data/cifar10s.py, add_aux_labels=True)",
        "data.val_size": "the first 1,024 training images held out for model selection\n"
        "(core/data/semisup.py data[1024:], cifar10s.py Subset 0..1023)",
        "data.extra": f"--aux-data-filename edm_data/cifar10/{size}.npz (keys image, label): a "
        "placeholder,\nreplace it with data.extra=PATH",
        "data.extra_fraction": f"--unsup-fraction: {origin}; int(batch x fraction)\n"
        "generated images per batch (semisup.py SemiSupervisedSampler)",
        "data.extra_kind": "EDM images of a model trained on CIFAR-10's training set alone: "
        "RobustBench\nlists Wang2023Better as additional_data false, footnoting them",
        "data.epoch_images": "an epoch is ceil(50,000 / batch) batches (semisup.py num_batches, "
        "dataset_size\nis CIFAR-10's 50,000 taken before the 1,024 are held out)",
        "data.crop_padding": "--augment base (parser default): RandomCrop(32, padding=4) and\n"
        "RandomHorizontalFlip (cifar10s.py), on generated images too",
        "objective.name": "--beta given: watrain.py trades_loss "
        "(gowal21uncovering/utils/trades.py)",
        "objective.beta": "--beta 5.0 (README command)",
        "objective.eps": "--attack-eps 8/255, --attack-step 2/255, --attack-iter 10 (parser "
        "defaults)",
        "objective.start": "trades.py: x + U(-eps, eps), clamped to [0, 1]",
        "objective.attack_bn": "trades.py: the attack runs in train mode, track_bn_stats(False)",
        "objective.label_smoothing": "--ls 0.1 (README; SmoothCrossEntropyLoss on the clean term)",
        "objective.bn_adversarial_only": "trades.py: track_bn_stats(True) before the clean and "
        "the adversarial forward",
        "optim.lr": f"--lr: {origin}",
        "optim.momentum": "--scheduler cosinew: OneCycleLR cycles momentum 0.95 -> 0.85 -> "
        "0.95 (its\ndefaults), replacing SGD's 0.9 (core/utils/train.py init_scheduler)",
        "optim.nesterov": "--nesterov True, --weight-decay 5e-4, --clip-grad None (parser "
        "defaults)",
        "optim.no_decay": "watrain.py group_weight: no decay for names holding 'batchnorm' "
        "(every BatchNorm)",
        "schedule.kind": "cosinew: OneCycleLR(max_lr=lr, pct_start=0.025, total_steps=epochs), "
        "stepped\nonce per epoch (core/utils/train.py, watrain.py train)",
        "schedule.epochs": f"--num-adv-epochs: {origin}",
        "schedule.warmup_epochs": "pct_start 0.025 x epochs",
        "ema.tau": "train-wa.py --tau 0.995 (WATrainer); decay min(tau, (1 + d) / (10 + d))",
        "ema.warmup_epochs": "watrain.py warmup_steps = 0.025 x epochs x (floor(50,000 / batch) "
        "+ 1): a plain\ncopy before; BatchNorm statistics copied from the live model",
        "eval.every": "train-wa.py: the weights-averaged model validated every epoch, the best "
        "(>=)\nkept",
        "eval.val_steps": "watrain.py eval_attack: PGD, CWLoss, 4 x --attack-iter steps of "
        "--attack-step",
        "eval.autoattack": "eval-aa.py: standard AutoAttack on the full test set (clean and AA "
        "published;\nFGSM, PGD-20 and CW-40 are this library's additions)",
        "run.batch_size": f"--batch-size: {origin}",
        "run.seed": "theirs: --seed 1 (parser default); seeds do not carry across codes",
    }


def write(path: Path, config: dict, title: str, notes: dict[str, str] | None = None) -> None:
    """One recipe as YAML under its one-line description; `notes` ("section.key" -> text) go in
    comment lines above their keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    if notes:
        text = _annotate(text, notes)
    note = "# Generated by tools/generate_recipes.py in the repository; edit that script."
    path.write_text(f"# {title}\n{note}\n{text}")


def _annotate(text: str, notes: dict[str, str]) -> str:
    """`text` (a two-level YAML mapping) with each note as comment lines above its key."""
    lines, section = [], ""
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip()
        if not line.startswith(" "):
            section, dotted, indent = key, key, ""
        else:
            dotted, indent = f"{section}.{key}", line[: len(line) - len(line.lstrip())]
        if not line.lstrip().startswith("-") and dotted in notes:
            lines += [f"{indent}# {part}" for part in notes[dotted].split("\n")]
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(out: Path = RECIPES) -> None:
    """Write every recipe under `out` (default: the package's recipes folder)."""
    for dataset in ("cifar10", "cifar100"):
        for objective in OBJECTIVES:
            networks = NETWORKS + NAS_BASELINES if objective == "trades" else NETWORKS
            for network in networks:
                title = f"{network} on {dataset}, {objective}, the paper's baseline recipe"
                path = out / dataset / objective / f"{network}.yaml"
                write(path, baseline(dataset, objective, network), title)
    for network in ("robustresnet-a1", "wrn-a4"):
        title = f"{network} on cifar10, the advanced recipe (500K extra images, EMA, SiLU)"
        write(out / "cifar10" / "advanced" / f"{network}.yaml", advanced(network), title)
    for network in GENERATED_NETWORKS:
        for size in GENERATED:
            images = f"{size.upper()} generated images"
            title = f"{network} on cifar10, Wang et al. 2023's recipe, {images}"
            config, notes = generated(network, size)
            write(out / "cifar10" / "generated" / f"{network}-{size}.yaml", config, title, notes)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else RECIPES)
