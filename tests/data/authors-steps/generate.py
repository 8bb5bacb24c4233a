"""Make the authors' training-step vectors and advanced schedule (tests/data/authors-steps).

Drives the training losses and trainer of the authors' repository
(zhichao-lu/robust-residual-network), imported from a checkout of it, on the CPU:

* `{network}-{activation}-{dtype}.json/.safetensors`, network in {robust, basic}, activation in
  {relu, silu}, dtype in {float64, float32}: one training step of a small `PreActResNet` from
  fixed weights and inputs. The relu files hold the three baseline losses (`trades`, `pgd_at`,
  `mart`), the silu files the advanced TRADES (`advanced_trades`). Per case the safetensors hold
  `<case>/noise` (the attack's start displacement, float32 as their code draws it),
  `<case>/x_adv` (the input of the final adversarial forward), `<case>/loss`,
  `<case>/grad/<param>` and `<case>/buffers/<BatchNorm buffer>` (after the step), and, shared,
  `weights/<state_dict key>` (before the step), `x` and `y`. The float32 JSON also holds the
  noise floor of the authors' code: the same step in channels_last, and against float64.
* `schedule.json`: per step of their `WATrainer.train` loop with the advanced defaults, the
  learning rate and momentum of each parameter group, the BatchNorm momentum and the EMA decay;
  and the parameter names that their `group_weight` keeps out of weight decay.

Rerun (from the repository root; every file is rewritten, byte-identical on the same day):

    python tests/data/authors-steps/generate.py --authors CHECKOUT [--commit SHA] [--out DIR]

with a checkout of their repository (a clone, or `git archive <commit> | tar -x` of it).

`--commit` may be left out when the checkout is a git work tree; `--out` defaults to this
script's folder. The date written is `SOURCE_DATE_EPOCH` when set, else today (UTC).

Their code was written for CUDA and older packages; `install_shims` adapts the process (never
their files) so it runs unmodified on a CPU-only torch without torchvision.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.machinery
import json
import math
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

EPS = 8 / 255
STEP = 2 / 255
STEPS = 10
BETA = 6.0
LABEL_SMOOTHING = 0.1  # trades_loss default, kept by WATrainer.trades_loss
BN_MOMENTUM_ADVANCED = 0.01  # WATrainer.train sets it from the second step on
INPUT_SHAPE = (8, 3, 10, 10)  # small files; odd sizes (10, 5, 3) after each stride 2
SATURATED = 0.1  # fraction of pixels set to exactly 0 or 1
INPUT_SEED = 2023
WEIGHT_SEEDS = {
    ("robust", "relu"): 1,
    ("robust", "silu"): 2,
    ("basic", "relu"): 3,
    ("basic", "silu"): 4,
}
DIFFER = 1e-6  # two adversarial pixels differ when further apart than float32 rounding
REPOSITORY = "zhichao-lu/robust-residual-network"
NOTE = (
    "Keys: weights/<state_dict key> (before the step), x, y; per case <case>/noise (float32 "
    "start displacement), <case>/x_adv (input of the final adversarial forward), <case>/loss, "
    "<case>/grad/<param> (zeros for params_without_grad: their grad stayed None), "
    "<case>/buffers/<BatchNorm buffer> (after the step). Each case starts from the weights."
)

# Schedule run: 0.025 * EPOCHS is OneCycleLR's warm-up (an integer >= 2, as the 400/10 recipe).
EPOCHS = 80
WARMUP_EPOCHS = 2
LEN_TRAIN = 10
BATCH_SIZE = 4  # update_steps = floor(10 / 4) + 1 = 3
EMA_PROBE = "fc.bias"  # 0 in the live model, reset to 1 in the EMA copy before each step


@dataclass(frozen=True)
class Case:
    """One loss call: its seed, how their code starts the attack, what each forward is."""

    name: str
    seed: int
    function: str
    start: str
    start_scale: float
    clamped_start: bool
    forwards: tuple[str, ...]
    first_attack: int
    beta: float | None
    label_smoothing: float
    bn_momentum: float
    bn_attack: str
    bn_outer: str


BASELINE_BN_ATTACK = "eval mode: running statistics, not updated"
ATTACKS = tuple(f"attack {i + 1}" for i in range(STEPS))
CASES = {
    "relu": (
        Case(
            name="trades",
            seed=11,
            function="core.losses.trades.TradesLoss(step_size=2/255, epsilon=8/255, "
            "perturb_steps=10, beta=6.0)(model, x, y, optimizer)",
            start="normal",
            start_scale=0.001,
            clamped_start=False,
            forwards=("clean, eval (KL target)", *ATTACKS, "clean, train", "adversarial, train"),
            first_attack=1,
            beta=BETA,
            label_smoothing=0.0,
            bn_momentum=0.1,
            bn_attack=BASELINE_BN_ATTACK,
            bn_outer="train mode: batch statistics; the clean and the adversarial forward "
            "both update the running statistics",
        ),
        Case(
            name="pgd_at",
            seed=12,
            function="core.losses.madrys.MadrysLoss(step_size=2/255, epsilon=8/255, "
            "perturb_steps=10)(model, x, y, optimizer)",
            start="normal",
            start_scale=STEP,
            clamped_start=False,
            forwards=(*ATTACKS, "adversarial, train"),
            first_attack=0,
            beta=None,
            label_smoothing=0.0,
            bn_momentum=0.1,
            bn_attack=BASELINE_BN_ATTACK,
            bn_outer="train mode: batch statistics; the adversarial forward updates the "
            "running statistics",
        ),
        Case(
            name="mart",
            seed=13,
            function="core.losses.mart.MartLoss(step_size=2/255, epsilon=8/255, "
            "perturb_steps=10, beta=6.0)(model, x, y, optimizer)",
            start="normal",
            start_scale=STEP,
            clamped_start=False,
            forwards=(*ATTACKS, "clean, train", "adversarial, train"),
            first_attack=0,
            beta=BETA,
            label_smoothing=0.0,
            bn_momentum=0.1,
            bn_attack=BASELINE_BN_ATTACK,
            bn_outer="train mode: batch statistics; the clean and the adversarial forward "
            "both update the running statistics",
        ),
    ),
    "silu": (
        Case(
            name="advanced_trades",
            seed=14,
            function="adv_core.losses.trades.trades_loss(model, x, y, optimizer, "
            "step_size=2/255, epsilon=8/255, perturb_steps=10, beta=6.0, advnorm=True), "
            "after adv_core.utils.set_bn_momentum(model, momentum=0.01)",
            start="uniform",
            start_scale=EPS,
            clamped_start=True,
            forwards=("clean, train (KL target)", *ATTACKS, "clean, train", "adversarial, train"),
            first_attack=1,
            beta=BETA,
            label_smoothing=LABEL_SMOOTHING,
            bn_momentum=BN_MOMENTUM_ADVANCED,
            bn_attack="train mode with track_running_stats False: batch statistics, "
            "running statistics not updated",
            bn_outer="train mode: batch statistics; only the adversarial forward updates the "
            "running statistics (the clean one runs with track_running_stats False)",
        ),
    ),
}


@dataclass
class Step:
    """What one training step leaves: named tensors, and the parameters it gave no gradient."""

    tensors: dict[str, torch.Tensor]
    without_grad: list[str]


class _Placeholder:
    """Stands for any torchvision class: takes any arguments and does nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        del args, kwargs


def _placeholder_attr(name: str) -> type:
    """Module `__getattr__` of the torchvision stubs: every public name is a placeholder."""
    if name.startswith("__"):
        raise AttributeError(name)
    return _Placeholder


class _Frame:
    """The part of pandas.DataFrame their train loop uses to log batch metrics."""

    def __init__(
        self, data: dict[str, float] | None = None, index: list[int] | None = None
    ) -> None:
        del index
        self.rows = [] if data is None else [dict(data)]

    def append(self, other: _Frame, ignore_index: bool = False) -> _Frame:
        """A frame with the rows of both."""
        del ignore_index
        out = _Frame()
        out.rows = self.rows + other.rows
        return out

    def mean(self) -> dict[str, float]:
        """Column means."""
        return {k: sum(r[k] for r in self.rows) / len(self.rows) for k in self.rows[0]}


def _append_rows(self: Any, other: Any, ignore_index: bool = False) -> Any:
    """DataFrame.append as pandas < 2 had it, over pd.concat."""
    import pandas as pd

    return pd.concat([self, other], ignore_index=ignore_index)


def _stub(name: str, **attrs: object) -> types.ModuleType:
    """A module registered in sys.modules under `name`, holding `attrs`."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch._dynamo asks find_spec
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _same_tensor(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    """Tensor.cuda on a CPU-only machine: the tensor itself."""
    del args, kwargs
    return self


def _no_op() -> None:
    """torch.cuda.synchronize on a CPU-only machine."""


def install_shims(authors: Path) -> None:
    """Make their unmodified code importable and runnable here (the process only)."""
    sys.path.insert(0, str(authors))
    # models/__init__.py and core/__init__.py register classes with mlconfig (config loading only).
    _stub("mlconfig", register=lambda obj: obj)
    # core/dataset.py and adv_core/datas/* import torchvision for data loading, which we never run.
    vision = _stub("torchvision", __getattr__=_placeholder_attr)
    for sub in ("transforms", "datasets"):
        setattr(vision, sub, _stub(f"torchvision.{sub}", __getattr__=_placeholder_attr))
    # adv_core/losses/trades.py moves its start noise with .cuda().
    torch.Tensor.cuda = _same_tensor
    # WATrainer.train synchronises CUDA after every step.
    torch.cuda.synchronize = _no_op
    try:
        import pandas as pd
    except ImportError:
        # WATrainer.train logs batch metrics in a pandas DataFrame; our venv has no pandas.
        _stub("pandas", DataFrame=_Frame)
    else:
        if not hasattr(pd.DataFrame, "append"):
            # WATrainer.train uses DataFrame.append, removed in pandas 2.
            pd.DataFrame.append = _append_rows
    import adv_core.datas

    # adv_core/utils/parser.py imports the package by its old name, adv_core.data.
    sys.modules["adv_core.data"] = adv_core.datas
    import models

    # core/losses/madrys.py tests isinstance(model, models.DARTS_model.NetworkCIFAR).
    models.DARTS_model = _stub("models.DARTS_model", NetworkCIFAR=type("NetworkCIFAR", (), {}))


def load_authors(authors: Path) -> types.SimpleNamespace:
    """Their network, losses and trainer, imported from the checkout after the shims."""
    install_shims(authors)
    import adv_core.utils  # first: their package cycle fails when entered at losses.trades
    from adv_core.furnace.watrain_dist import WATrainer
    from adv_core.losses.trades import trades_loss
    from core.losses.madrys import MadrysLoss
    from core.losses.mart import MartLoss
    from core.losses.trades import TradesLoss
    from models.resnet import PreActResNet

    return types.SimpleNamespace(
        PreActResNet=PreActResNet,
        TradesLoss=TradesLoss,
        MadrysLoss=MadrysLoss,
        MartLoss=MartLoss,
        trades_loss=trades_loss,
        set_bn_momentum=adv_core.utils.set_bn_momentum,
        parser_train=adv_core.utils.parser_train,
        WATrainer=WATrainer,
    )


def model_dict(network: str, activation: str) -> dict[str, Any]:
    """The `model:` config of one test network, in the schema of tests/data/reference."""
    robust = network == "robust"
    return {
        "name": "PreActResNet",
        "num_classes": 10,
        "channel_configs": [8, 16, 16, 16] if robust else [4, 4, 8, 8],
        "depth_configs": [2, 1, 1],
        "stride_config": [1, 2, 2],
        "block_types": ["robust_res_block" if robust else "basic_block"] * 3,
        "kernel_size_configs": [3, 3, 3],
        "activations": [{"relu": "ReLU", "silu": "SiLU"}[activation]] * 3,
        "normalizations": ["BatchNorm"] * 3,
        "scales": 8,
        "base_width": 10,
        "cardinality": 4,
        "se_reduction": 64,
        "pre_process": False,
    }


def build_network(lib: types.SimpleNamespace, spec: dict[str, Any], seed: int) -> nn.Module:
    """Their PreActResNet in float64, with BatchNorm made non-trivial."""
    torch.manual_seed(seed)
    torch.set_default_dtype(torch.float64)
    try:
        net = lib.PreActResNet(**{k: v for k, v in spec.items() if k != "name"})
    finally:
        torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.75, 1.25)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net


def make_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Images quantised to k/255 (float64) with saturated pixels, and int64 labels."""
    g = torch.Generator().manual_seed(INPUT_SEED)
    k = torch.randint(0, 256, INPUT_SHAPE, generator=g)
    saturate = torch.rand(INPUT_SHAPE, generator=g) < SATURATED
    k = torch.where(saturate, 255 * torch.randint(0, 2, INPUT_SHAPE, generator=g), k)
    y = torch.randint(0, 10, INPUT_SHAPE[:1], generator=g)
    return k.double() / 255, y


def start_noise(case: Case, shape: torch.Size) -> torch.Tensor:
    """The attack's start displacement, drawn as their code draws it after the case seed."""
    torch.manual_seed(case.seed)
    if case.start == "uniform":
        return torch.FloatTensor(shape).uniform_(-case.start_scale, case.start_scale)
    return case.start_scale * torch.randn(shape)


def call_loss(
    lib: types.SimpleNamespace, case: Case, model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Their loss for one case; returns the scalar training loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # they only call zero_grad on it
    if case.name == "advanced_trades":
        lib.set_bn_momentum(model, momentum=BN_MOMENTUM_ADVANCED)
        loss, _ = lib.trades_loss(
            model,
            x,
            y,
            optimizer,
            step_size=STEP,
            epsilon=EPS,
            perturb_steps=STEPS,
            beta=BETA,
            advnorm=True,
        )
        return loss
    make = {"trades": lib.TradesLoss, "pgd_at": lib.MadrysLoss, "mart": lib.MartLoss}[case.name]
    criterion = make(step_size=STEP, epsilon=EPS, perturb_steps=STEPS, beta=BETA)
    _, loss, _ = criterion(model, x, y, optimizer)
    return loss


def run_case(
    lib: types.SimpleNamespace,
    case: Case,
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype,
    channels_last: bool = False,
) -> Step:
    """One training step with their loss on a fresh copy of `net`; the tensors it leaves."""
    model = copy.deepcopy(net).to(dtype)
    x = x.to(dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    inputs: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach().clone()))
    torch.manual_seed(case.seed)
    loss = call_loss(lib, case, model, x, y)
    loss.backward()
    hook.remove()
    noise = start_noise(case, x.shape)
    start = x + noise
    if case.clamped_start:
        start = torch.clamp(start, 0.0, 1.0)
    assert len(inputs) == len(case.forwards), (case.name, len(inputs))
    assert torch.equal(inputs[case.first_attack], start), f"{case.name}: start is not x + noise"
    assert not torch.equal(inputs[-1], x), f"{case.name}: the last forward is not adversarial"
    out = {"noise": noise, "x_adv": inputs[-1], "loss": loss.detach()}
    for name, p in model.named_parameters():
        out[f"grad/{name}"] = torch.zeros_like(p) if p.grad is None else p.grad
    for name, b in model.named_buffers():
        out[f"buffers/{name}"] = b
    tensors = {k: v.detach().contiguous().clone() for k, v in out.items()}
    return Step(tensors, [n for n, p in model.named_parameters() if p.grad is None])


def divergence(a: Step, b: Step, names: list[str]) -> dict[str, float]:
    """How far step `b` is from step `a`: loss, all parameter gradients, adversarial pixels."""
    ta, tb = a.tensors, b.tensors
    ga = torch.cat([ta[f"grad/{n}"].double().flatten() for n in names])
    gb = torch.cat([tb[f"grad/{n}"].double().flatten() for n in names])
    la, lb = ta["loss"].double().item(), tb["loss"].double().item()
    moved = (ta["x_adv"].double() - tb["x_adv"].double()).abs() > DIFFER
    return {
        "loss_rel_diff": abs(lb - la) / abs(la),
        "grad_rel_l2_diff": ((gb - ga).norm() / ga.norm()).item(),
        "grad_cosine": (ga @ gb / (ga.norm() * gb.norm())).item(),
        "x_adv_fraction_differing": moved.double().mean().item(),
    }


def case_meta(case: Case, step: Step) -> dict[str, Any]:
    """The JSON description of one case and the loss it gave."""
    return {
        "function": case.function,
        "eps": EPS,
        "step_size": STEP,
        "steps": STEPS,
        "distance": "l_inf",
        "beta": case.beta,
        "label_smoothing": case.label_smoothing,
        "bn_momentum": case.bn_momentum,
        "bn_attack": case.bn_attack,
        "bn_outer": case.bn_outer,
        "forwards": list(case.forwards),
        "start": {
            "kind": case.start,
            "scale": case.start_scale,
            "clamped": case.clamped_start,
            "dtype": "float32",
            "projected_to_eps_ball": False,
        },
        "seed": case.seed,
        "loss": step.tensors["loss"].item(),
        "params_without_grad": step.without_grad,
    }


def write_pair(out: Path, stem: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """`stem`.safetensors and `stem`.json in `out`."""
    save_file(tensors, str(out / f"{stem}.safetensors"))
    (out / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")


def make_vectors(
    lib: types.SimpleNamespace, network: str, activation: str, common: dict[str, Any], out: Path
) -> None:
    """The float64 and float32 files of one (network, activation)."""
    spec = model_dict(network, activation)
    net = build_network(lib, spec, WEIGHT_SEEDS[network, activation])
    names = [n for n, _ in net.named_parameters()]
    x, y = make_inputs()
    cases = CASES[activation]
    runs64 = {c.name: run_case(lib, c, net, x, y, torch.float64) for c in cases}
    for dtype in (torch.float64, torch.float32):
        label = str(dtype).removeprefix("torch.")
        stem = f"{network}-{activation}-{label}"
        tensors = {f"weights/{k}": v.to(dtype) for k, v in net.state_dict().items()}
        tensors.update(x=x.to(dtype), y=y)
        meta = {
            "name": stem,
            "model": spec,
            "params": sum(p.numel() for p in net.parameters()),
            "dtype": label,
            "input_shape": list(INPUT_SHAPE),
            **common,
            "note": NOTE,
            "cases": {},
        }
        for case in cases:
            if dtype == torch.float64:
                step = runs64[case.name]
            else:
                step = run_case(lib, case, net, x, y, dtype)
            tensors.update({f"{case.name}/{k}": v for k, v in step.tensors.items()})
            meta["cases"][case.name] = case_meta(case, step)
            if dtype == torch.float32:
                layout = run_case(lib, case, net, x, y, dtype, channels_last=True)
                meta["cases"][case.name]["noise_floor"] = {
                    "x_adv_differing_means": f"|difference| > {DIFFER}",
                    "channels_last_vs_contiguous": divergence(step, layout, names),
                    "float32_vs_float64": divergence(runs64[case.name], step, names),
                }
        write_pair(out, stem, {k: v.contiguous() for k, v in tensors.items()}, meta)


class _Replica(nn.Module):
    """What WATrainer.train expects of its model: the network under `.module`, as DDP."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output."""
        return self.module(x)


class StepRecorder:
    """Stands in for WATrainer.trades_loss: records the step's schedule, returns a zero loss."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.epoch = 0
        self.rows: list[dict[str, Any]] = []
        self.probe_ema = dict(trainer.wa_model.named_parameters())[EMA_PROBE]
        live = trainer.model.module
        self.probe_live = dict(live.named_parameters())[EMA_PROBE]
        with torch.no_grad():
            self.probe_live.zero_()
        self.first_bn = next(m for m in live.modules() if isinstance(m, nn.BatchNorm2d))

    def read_decay(self) -> None:
        """Put the decay their ema_update applied after the last recorded step in its row."""
        assert not self.probe_live.any(), "the optimizer moved the live probe"
        if self.rows and "ema_decay" not in self.rows[-1]:
            self.rows[-1]["ema_decay"] = self.probe_ema[0].item()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
        """Record this step, reset the EMA probe, return a loss with zero gradients."""
        del x, y, beta
        self.read_decay()
        step = len(self.rows)
        groups = self.trainer.optimizer.param_groups
        self.rows.append(
            {
                "step": step,
                "epoch": self.epoch,
                "lr": [g["lr"] for g in groups],
                "momentum": [g["momentum"] for g in groups],
                "bn_momentum": self.first_bn.momentum,
            }
        )
        with torch.no_grad():
            self.probe_ema.fill_(1.0)
        live = self.trainer.model.module.parameters()
        loss = torch.stack([(p * 0).sum() for p in live]).sum()
        return loss, {"loss": 0.0}


def build_trainer(lib: types.SimpleNamespace, net: nn.Module) -> Any:
    """A WATrainer with the advanced defaults, set up as its constructor does, minus the rest."""
    parser = lib.parser_train()
    parser.add_argument("--tau", type=float, default=0.995)  # added by adv-main_dist.py
    args = parser.parse_args(
        ["--desc", "authors-steps", "--advnorm", "--adjust-bn", "True", "--lr", "0.4"]
        + ["--weight-decay", "0.0005", "--beta", "6.0", "--batch-size", str(BATCH_SIZE)]
        + ["--num-adv-epochs", str(EPOCHS), "--warmup-epochs", str(WARMUP_EPOCHS)]
    )
    args.len_train = LEN_TRAIN  # set by adv-main_dist.py from the training set
    trainer = object.__new__(lib.WATrainer)
    trainer.params = args
    trainer.model = net
    trainer.init_optimizer(args.num_adv_epochs)  # before the DDP wrap, as in Trainer.__init__
    trainer.with_cutmix = False
    trainer.wa_model = copy.deepcopy(net)
    trainer.model = _Replica(net)
    trainer.update_steps = int(math.floor(args.len_train / args.batch_size) + 1)
    trainer.warmup_steps = args.warmup_epochs * trainer.update_steps
    trainer.last_lr = 0
    return trainer


def make_schedule(lib: types.SimpleNamespace, common: dict[str, Any], out: Path) -> None:
    """schedule.json: their WATrainer.train loop driven for EPOCHS epochs of tiny batches."""
    spec = model_dict("robust", "silu")
    net = build_network(lib, spec, WEIGHT_SEEDS["robust", "silu"])
    names = [n for n, _ in net.named_parameters()]
    trainer = build_trainer(lib, net)
    groups = trainer.optimizer.param_groups
    no_decay = {id(p) for p in groups[1]["params"]}
    batch = (torch.zeros(BATCH_SIZE, 3, 1, 1), torch.zeros(BATCH_SIZE, dtype=torch.long))
    settings = {
        "epochs": EPOCHS,
        "warmup_epochs": WARMUP_EPOCHS,
        "len_train": LEN_TRAIN,
        "batch_size": BATCH_SIZE,
        "update_steps": trainer.update_steps,
        "warmup_steps": trainer.warmup_steps,
        "scheduler": trainer.params.scheduler,
        "scheduler_total_steps": trainer.scheduler.total_steps,
        "pct_start": 0.025,  # fixed in their init_scheduler for 'cosinew'
        "lr": trainer.params.lr,
        "weight_decay": [g["weight_decay"] for g in groups],
        "nesterov": trainer.params.nesterov,
        "initial_lr": groups[0]["initial_lr"],
        "max_lr": groups[0]["max_lr"],
        "min_lr": groups[0]["min_lr"],
        "div_factor": groups[0]["max_lr"] / groups[0]["initial_lr"],
        "final_div_factor": groups[0]["initial_lr"] / groups[0]["min_lr"],
        "base_momentum": groups[0]["base_momentum"],
        "max_momentum": groups[0]["max_momentum"],
        "tau": trainer.params.tau,
        "advnorm": trainer.params.advnorm,
        "adjust_bn": trainer.params.adjust_bn,
    }
    recorder = StepRecorder(trainer)
    trainer.trades_loss = recorder
    for epoch in range(1, EPOCHS + 1):
        recorder.epoch = epoch
        loader = [batch] * trainer.update_steps
        trainer.train(loader, epoch=epoch, adversarial=True, verbose=False)
    recorder.read_decay()
    live_bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    ema_bn = [m for m in trainer.wa_model.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_params = {id(p) for m in live_bn for p in m.parameters()}
    meta = {
        "name": "schedule",
        **common,
        "driver": "WATrainer.train(loader, epoch=e, adversarial=True, verbose=False) for e = "
        "1..epochs (it steps the scheduler once at the end of each epoch); their "
        "trades_loss replaced by a recorder returning a zero-gradient loss. Row per step "
        "(0-based): lr and momentum per param group [decay, no decay] as optimizer.step used "
        "them, BatchNorm momentum of the live model during the step, and the decay their "
        "ema_update applied after it (read from a probe parameter).",
        "settings": settings,
        "model": spec,
        "parameter_names": names,
        "no_weight_decay": [n for n, p in net.named_parameters() if id(p) in no_decay],
        "batchnorm_with_weight_decay": [
            n for n, p in net.named_parameters() if id(p) in bn_params and id(p) not in no_decay
        ],
        "ema_bn_buffers_shared_with_live_model": all(
            e.running_mean is m.running_mean and e.running_var is m.running_var
            for e, m in zip(ema_bn, live_bn, strict=True)
        ),
        "rows": recorder.rows,
    }
    (out / "schedule.json").write_text(json.dumps(meta, indent=1) + "\n")


def authors_commit(authors: Path, given: str | None) -> str:
    """The commit of the checkout: `given`, or asked of git when the checkout is a work tree."""
    if given:
        return given
    result = subprocess.run(
        ["git", "-C", str(authors), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{authors} is not a git work tree: pass --commit")
    return result.stdout.strip()


def run_date() -> str:
    """SOURCE_DATE_EPOCH as a UTC date when set, else today's UTC date."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        if epoch
        else datetime.datetime.now(datetime.timezone.utc)
    )
    return now.date().isoformat()


def main() -> None:
    """Parse the command line and write every file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", type=Path, required=True, help="checkout of their repository")
    parser.add_argument("--commit", help="the checkout's commit (default: git rev-parse HEAD)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: the same float32 sums on every machine
    common = {
        "authors": {
            "repository": REPOSITORY,
            "commit": authors_commit(args.authors, args.commit),
        },
        "torch": torch.__version__,
        "threads": 1,
        "date": run_date(),
        "generator": "tests/data/authors-steps/generate.py",
    }
    lib = load_authors(args.authors.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    for network in ("robust", "basic"):
        for activation in ("relu", "silu"):
            make_vectors(lib, network, activation, common, args.out)
    make_schedule(lib, common, args.out)


if __name__ == "__main__":
    main()
