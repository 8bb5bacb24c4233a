"""Experiment configuration: frozen dataclasses filled from defaults < YAML < dotted overrides."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import yaml

from .._files import read_yaml as _read_yaml
from .._files import yaml_problem
from ..arch import ArchSpec
from ..arch.specs import Spec, spec_from_dict
from ..arch.zoo import apply_overrides, resolve_spec
from ..attacks.autoattack import parse_attacks
from ..attacks.spec import parse_attack
from ..data.datasets import check_options
from ..errors import ConfigError
from ..recipes import find_file
from .objectives import TRADES, Objective, check_settings, objective_class

NO_DECAY = ("none", "norm", "norm_and_bias", "bn_in_name")
EXTRA_KINDS = ("external", "generated")  # data.extra_kind: what RobustBench counts as additional
# Sane limits, checked when the config is read, before anything is allocated. Counts (images,
# batches, steps, epochs) stay below 2^31: torch's sizes overflow beyond, and no dataset is that
# large. Seeds are 32-bit, as every generator takes them.
MAX_COUNT = 2**31 - 1
MAX_SEED = 2**32 - 1
MAX_THREADS = 4096
# The loader holds an epoch's image indices (8 bytes each): 2^26 of them are 512 MiB.
MAX_EPOCH_IMAGES = 2**26
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
LOGGERS = ("tensorboard", "wandb", "mlflow")  # experiment trackers (train/loggers.py)

# Each field is given in explicit units: eps and step sizes are fractions of the [0, 1] pixel range
# (write "8/255"), epochs are counts, rotation is in degrees.


@dataclass(frozen=True)
class ModelConfig:
    """Which network: a preset / spec file / run directory (`name`), an inline `spec`, or the
    authors' `model:` section (`reference`); overrides apply to any of them."""

    name: str | None = None
    spec: dict | None = None
    reference: dict | None = None
    num_classes: int | None = None  # None: the dataset's class count
    activation: str | None = None
    sync_bn: bool = False
    bn_momentum: float | None = None  # BatchNorm running-statistics momentum; None: torch's 0.1
    bn_momentum_first_step: float | None = None  # the first step's (advanced recipe: 1.0)

    mean: str | tuple[float, ...] | None = None  # in-model input normalisation, or "cifar10"
    std: str | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("name", "spec", "reference") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError("model", given, "exactly one of model.name / spec / reference")
        for key in ("bn_momentum", "bn_momentum_first_step"):
            if getattr(self, key) is not None:
                _check_range(f"model.{key}", getattr(self, key), 0.0, 1.0)
        # A bad network fails here, before any data is read. A spec file named by a path that
        # does not exist yet is checked when the run starts: a sweep writes its trials' specs
        # after planning them.
        name = Path(self.name) if self.name is not None else None
        if name is None or name.exists() or name.suffix.lower() not in SPEC_SUFFIXES:
            self.arch_spec()

    def arch_spec(self, num_classes: int | None = None) -> Spec:
        """The network this section describes, overrides applied; a preset named without
        `model.num_classes` takes `num_classes` (the dataset's) when given. Errors name the
        model field they come from."""
        try:
            spec = self._base_spec(num_classes)
        except ConfigError as err:
            raise ConfigError(self._source_field(err.field), err.value, err.expected) from None
        try:
            return apply_overrides(
                spec,
                num_classes=self.num_classes,
                activation=self.activation,
                mean=self.mean,
                std=self.std,
            )
        except ConfigError as err:
            raise ConfigError(f"model.{err.field}", err.value, err.expected) from None

    def _base_spec(self, num_classes: int | None) -> Spec:
        if self.name is not None:
            spec = resolve_spec(self.name)
            preset = not Path(self.name).exists()
            if num_classes is not None and self.num_classes is None and preset:
                spec = spec.replace(num_classes=num_classes)  # a preset takes the dataset's classes
            return spec
        if self.spec is not None:
            return spec_from_dict(self.spec)
        return ArchSpec.from_reference(self.reference)

    def _source_field(self, field: str) -> str:
        """An ArchSpec error's field as the user wrote it under `model`."""
        if self.name is not None:  # a preset or file name itself, else a field in that file
            return "model.name" if field in ("arch", "path") else field
        if self.spec is not None:
            return f"model.{field}" if field.startswith("spec") else f"model.spec.{field}"
        return field  # from_reference names its fields model.* already


@dataclass(frozen=True)
class DataConfig:
    """Dataset, held-out validation images, extra data and augmentation."""

    name: str = "cifar10"
    root: str | None = None
    download: bool = False
    options: dict = field(default_factory=dict)  # reader options, e.g. digits {size: 16}
    val_size: int = 1024  # the first `val_size` training images are held out for model selection
    # Carmon pickle (read into memory), or streamed: an .npz, a folder of .npz shards, a folder
    # with image.npy + label.npy (docs/generated-data.md)
    extra: str | None = None
    extra_fraction: float = 0.0  # share of each batch from `extra` (rounded down, as Carmon's)
    # What `extra` holds, as RobustBench counts it: external (real images from elsewhere, e.g.
    # Carmon's pseudo-labelled Tiny Images: additional data) or generated (a generative model's
    # images, trained on the training set alone: not additional data, footnoted). Unset: `rrn
    # export robustbench` refuses to guess.
    extra_kind: str | None = None
    epoch_images: int | None = None  # images per epoch; None: one pass over the labelled images
    crop_padding: int = 4
    flip: bool = True
    rotation: float = 0.0  # degrees (CIFAR-100 recipes: 20)
    rotation_mode: str = "nearest"  # interpolation: nearest (torchvision's default) or bilinear

    def __post_init__(self) -> None:
        check_options(self.name, self.options, field="data")
        _check_range("data.val_size", self.val_size, 0, MAX_COUNT)
        _check_range("data.extra_fraction", self.extra_fraction, 0.0, 1.0)
        if self.extra_kind is not None:
            _check_choice("data.extra_kind", self.extra_kind, EXTRA_KINDS)
        if self.epoch_images is not None:
            _check_range("data.epoch_images", self.epoch_images, 1, MAX_EPOCH_IMAGES)
        _check_range("data.crop_padding", self.crop_padding, 0, MAX_COUNT)
        _check_range("data.rotation", self.rotation, 0.0, 180.0)
        _check_choice("data.rotation_mode", self.rotation_mode, ("nearest", "bilinear"))
        if self.extra_fraction > 0 and self.extra is None:
            raise ConfigError("data.extra", None, "a file path when data.extra_fraction > 0")


@dataclass(frozen=True)
class OptimConfig:
    """SGD settings."""

    lr: float = 0.1
    # A number, or [low, high] cycled by the one-cycle schedule: high at the ends, low at the
    # learning-rate peak (torch's OneCycleLR; the advanced recipe: [0.85, 0.95]).
    momentum: float | tuple[float, ...] = 0.9
    nesterov: bool = False
    weight_decay: float = 2e-4
    # none, norm (every normalisation parameter), norm_and_bias, or bn_in_name (the authors'
    # advanced trainer)
    no_decay: str = "none"
    grad_clip: float | None = 5.0  # max gradient norm; None: off

    def __post_init__(self) -> None:
        _check_range("optim.lr", self.lr, 0.0, None)
        cycled = isinstance(self.momentum, tuple)
        if cycled and (len(self.momentum) != 2 or self.momentum[0] > self.momentum[1]):
            raise ConfigError("optim.momentum", list(self.momentum), "a number or [low, high]")
        for value in self.momentum if cycled else (self.momentum,):
            _check_range("optim.momentum", value, 0.0, 1.0)
        _check_range("optim.weight_decay", self.weight_decay, 0.0, None)
        _check_choice("optim.no_decay", self.no_decay, NO_DECAY)
        if self.grad_clip is not None:
            _check_range("optim.grad_clip", self.grad_clip, 0.0, None)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule over `epochs`."""

    kind: str = "step"  # step (x0.1 at 75%, x0.01 at 90%), cosine, onecycle
    epochs: int = 100
    warmup_epochs: float = 0.0
    milestones: tuple[float, ...] = (0.75, 0.9)  # fractions of the run (step schedule)
    interval: str = "step"  # step: a new value every step; epoch: once per epoch (the authors')

    def __post_init__(self) -> None:
        _check_choice("schedule.kind", self.kind, ("step", "cosine", "onecycle"))
        _check_choice("schedule.interval", self.interval, ("step", "epoch"))
        _check_range("schedule.epochs", self.epochs, 1, MAX_COUNT)
        _check_range("schedule.warmup_epochs", self.warmup_epochs, 0.0, float(self.epochs))
        for m in self.milestones:
            _check_range("schedule.milestones", m, 0.0, 1.0)


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of the weights (`train.ema.ema_decay`); tau None is off.

    During the first `warmup_epochs` the average is a plain copy of the weights."""

    tau: float | None = None
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.tau is not None:
            _check_range("ema.tau", self.tau, 0.0, 1.0)
        _check_range("ema.warmup_epochs", self.warmup_epochs, 0.0, None)


@dataclass(frozen=True)
class EvalConfig:
    """Validation during training (model selection) and the final evaluation."""

    eps: float | None = None  # the threat model; None: the objective's eps and norm
    norm: str | None = None
    every: int = 1  # validate every k epochs (and after the last)
    from_epoch: int = 0  # best checkpoint chosen among epochs >= from_epoch
    ties: str = "earliest"  # a later epoch with equal validation accuracy: earliest or latest
    val_steps: int = 20
    val_loss: str = "ce"  # ce or cw
    val_step_size: float | None = None  # None: eps / 10 (0.8/255 at 8/255, as PGD-20)
    final_attacks: tuple[str, ...] = ("clean", "pgd20", "cw40")
    final_samples: int | None = None  # None: the whole test split
    autoattack: tuple[str, ...] = ()  # e.g. ["apgd-ce", "apgd-t"]; empty: no AutoAttack
    autoattack_samples: int | None = None
    batch_size: int = 500

    def __post_init__(self) -> None:
        if self.norm is not None:
            _check_choice("eval.norm", self.norm, ("inf", "2"))
        if self.eps is not None:
            _check_eps("eval.eps", self.eps, self.norm or "inf")
        _check_range("eval.every", self.every, 1, MAX_COUNT)
        _check_range("eval.from_epoch", self.from_epoch, 0, MAX_COUNT)
        _check_choice("eval.ties", self.ties, ("earliest", "latest"))
        _check_range("eval.val_steps", self.val_steps, 0, MAX_COUNT)
        _check_choice("eval.val_loss", self.val_loss, ("ce", "cw"))
        if self.val_step_size is not None:
            _check_eps("eval.val_step_size", self.val_step_size, self.norm or "inf")
        _check_range("eval.batch_size", self.batch_size, 1, MAX_COUNT)
        for key in ("final_samples", "autoattack_samples"):  # None: the whole test split
            if getattr(self, key) is not None:
                _check_range(f"eval.{key}", getattr(self, key), 1, MAX_COUNT)


@dataclass(frozen=True)
class WandbConfig:
    """Weights & Biases settings (`run.loggers: [wandb]`); the run is named after the run
    directory, and WANDB_MODE=offline keeps it on disk."""

    project: str | None = None  # None: $WANDB_PROJECT, else robustresnet
    entity: str | None = None  # None: the account's default team or user
    group: str | None = None  # e.g. one group for a sweep's seeds


@dataclass(frozen=True)
class MlflowConfig:
    """MLflow settings (`run.loggers: [mlflow]`); the run is named after the run directory."""

    experiment: str = "robustresnet"
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else a file store RUN_DIR/mlruns


@dataclass(frozen=True)
class RunConfig:
    """How the run executes: seed, batch, precision, device, checkpoints, trackers."""

    seed: int = 0
    batch_size: int = 128  # global batch (split across ranks)
    precision: str = "fp32"  # fp32, bf16 (autocast; CPU and GPU), fp16 (+ loss scaling; GPU)
    channels_last: bool = True  # measured faster on CPU for every block (benchmarks/RESULTS.md)
    compile: bool = False  # the attacks then run the compiled model, not its fused copy
    fuse: bool = True  # attacks (training and evaluation) run `robustresnet.fuse(model)`
    device: str = "auto"  # auto: cuda when available (the local rank's GPU), else cpu
    checkpoint_every: int = 0  # also checkpoint every N steps mid-epoch; 0: at epoch ends only
    threads: int | None = None  # torch CPU threads; None: torch's default
    loggers: tuple[str, ...] = ()  # experiment trackers: any of tensorboard, wandb, mlflow
    wandb: WandbConfig = field(default_factory=WandbConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    dist_timeout_minutes: float = 24 * 60.0  # how long a collective waits (the final AutoAttack)

    def __post_init__(self) -> None:
        _check_range("run.seed", self.seed, 0, MAX_SEED)
        _check_range("run.batch_size", self.batch_size, 1, MAX_COUNT)
        _check_choice("run.precision", self.precision, ("fp32", "bf16", "fp16"))
        check_device_name(self.device, "run.device")
        _check_range("run.checkpoint_every", self.checkpoint_every, 0, MAX_COUNT)
        if self.threads is not None:
            _check_range("run.threads", self.threads, 1, MAX_THREADS)
        for name in self.loggers:
            _check_choice("run.loggers", name, LOGGERS)
        if len(set(self.loggers)) != len(self.loggers):
            raise ConfigError("run.loggers", list(self.loggers), "each tracker named once")
        _check_range("run.dist_timeout_minutes", self.dist_timeout_minutes, 1.0, None)


@dataclass(frozen=True)
class ExperimentConfig:
    """One training run, resolved: every section with its defaults filled in."""

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    objective: Objective = field(default_factory=TRADES)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if isinstance(self.optim.momentum, tuple) and self.schedule.kind != "onecycle":
            raise ConfigError(
                "optim.momentum", list(self.optim.momentum), "a number (cycled momentum needs "
                "schedule.kind: onecycle)",
            )  # fmt: skip
        if self.eval.eps is None and not hasattr(self.objective, "eps"):
            raise ConfigError("eval.eps", None, "a radius: standard training has no eps to take")
        eps, norm = self.threat_model()
        for text in self.eval.final_attacks:  # a typo fails here, not after training
            parse_attack(text, eps=eps, norm=norm)
        parse_attacks(self.eval.autoattack or "standard")

    def threat_model(self) -> tuple[float, str]:
        """(eps, norm) of every evaluation of the run: the eval section's, else the objective's."""
        eps = self.eval.eps if self.eval.eps is not None else self.objective.eps
        return eps, self.eval.norm or getattr(self.objective, "norm", "inf")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples), ready for YAML."""
        data = dataclasses.asdict(self)
        data["objective"] = self.objective.settings()
        return _plain(data)

    def to_yaml(self) -> str:
        """The resolved config as YAML, sections in order: what a run records and
        `rrn train --print-config` shows."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Build and validate from a nested dict (older keys upgraded); unknown keys raise
        ConfigError."""
        return _build(cls, _upgrade(data), "")

    def replace(self, **sections: Any) -> ExperimentConfig:
        """A copy with whole sections replaced."""
        return dataclasses.replace(self, **sections)


def load_config(
    path: str | Path | None = None, overrides: typing.Sequence[str] = ()
) -> ExperimentConfig:
    """Defaults < the YAML file at `path` (or the shipped recipe it names, e.g. "digits-demo")
    < `overrides` such as ``["optim.lr=0.2"]``; an override ``~KEY`` removes the key (back to
    its default), as in Hydra."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(find_file(path))
    for item in overrides:
        if item.startswith("~"):
            _remove_dotted(data, item[1:].strip())
            continue
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("override", item, "KEY=VALUE with a dotted key, e.g. optim.lr=0.2")
        _set_dotted(data, key.strip(), _override_value(key.strip(), text))
    if "model" not in data:
        raise ConfigError("model", None, "a model section (model.name / spec / reference)")
    return ExperimentConfig.from_dict(data)


def read_yaml(path: str | Path, field: str = "config") -> dict[str, Any]:
    """A YAML mapping from `path` ({} when empty), or ConfigError(field, path, ...) saying why
    not: missing, unreadable, not UTF-8, not YAML (with the line), not a mapping."""
    data = _read_yaml(path, field)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(field, str(path), "a YAML mapping of sections")
    return data


def check_device_name(name: str, field: str) -> None:
    """`auto` or a device torch knows by name (cpu, cuda, cuda:1, mps); whether this machine
    has it is checked when the run starts."""
    if name == "auto":
        return
    try:
        torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(field, name, "auto, cpu, cuda, cuda:N or another torch device") from None


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for key in keys:
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(config_diff(va, vb, name + "."))
        elif va != vb:
            out.append(name)
    return out


def _upgrade(data: Any) -> Any:
    """A config dict written by an earlier version, in today's keys, so that its run directories
    still load and resume: `run.tensorboard: true` is `run.loggers: [..., tensorboard]` (false:
    no change). `data` itself is left as it is."""
    run = data.get("run") if isinstance(data, dict) else None
    if not isinstance(run, dict) or "tensorboard" not in run:
        return data
    run = dict(run)
    if run.pop("tensorboard") is True:
        loggers = run.get("loggers") or []
        if isinstance(loggers, (list, tuple)) and "tensorboard" not in loggers:
            run["loggers"] = [*loggers, "tensorboard"]
    return {**data, "run": run}


def _override_value(key: str, text: str) -> Any:
    """The YAML value of `key=text` (None when empty)."""
    if not text.strip():
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(key, text[:80], f"a YAML value ({yaml_problem(err)})") from None
    except RecursionError:
        raise ConfigError(key, text[:80], "a YAML value nested less deeply") from None


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(key, value, f"{part} to be a section")
        node = child
    node[parts[-1]] = value


def _remove_dotted(data: dict[str, Any], key: str) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        raise ConfigError(f"~{key}", None, "a key the config sets (~ removes it)")
    del node[last]


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from mapping `data`, converting each field by its type."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(where, data, "a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", data[unknown[0]], f"one of {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _objective(data: Any, key: str) -> Objective:
    """The objective a section names (default trades), built from its other settings; a setting
    it does not use is an error naming it."""
    if not isinstance(data, dict):
        raise ConfigError(key, data, "a mapping")
    cls = objective_class(data.get("name", "trades"))
    settings = {k: v for k, v in data.items() if k != "name"}
    check_settings(cls, settings)
    return _build(cls, settings, key + ".")


def _convert(tp: Any, value: Any, key: str) -> Any:
    """`value` as type `tp` (int, float, bool, str, dict, Optional, tuple, dataclass)."""
    if tp is Objective:
        return _objective(value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:
            try:
                return _convert(option, value, key)
            except ConfigError:
                continue
        return _convert(inner[-1], value, key)
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "a list")
        return tuple(_convert(args[0], v, key) for v in value)
    return _scalar(tp, value, key)


def _scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, value, "true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, value, "an integer")
    if tp is float:
        return _number(value, key)
    if tp is str:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(key, value, "a string")
    if tp is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(key, value, "a mapping")
    raise ConfigError(key, value, f"a value of type {tp}")


def _number(value: Any, key: str) -> float:
    """A float from a number or a fraction string such as "8/255"."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(Fraction(value.replace(" ", "")))
    except (ValueError, ZeroDivisionError, OverflowError):
        pass
    raise ConfigError(key, value, 'a number or a fraction such as "8/255"')


def _check_range(key: str, value: float, low: float | None, high: float | None) -> None:
    """`value` is finite and within [low, high] (None: unbounded); NaN is refused, as it would
    pass any comparison."""
    bounds = f"[{low}, {'inf' if high is None else high}]"
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, value, f"a finite value in {bounds}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(key, value, f"a value in {bounds}")


def _check_choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(key, value, f"one of {list(choices)}")


def _check_eps(key: str, value: float, norm: str) -> None:
    """L-inf radii are fractions of the [0, 1] range: 8 is refused, never divided by 255."""
    if not math.isfinite(value) or value < 0 or (norm == "inf" and value > 1):
        raise ConfigError(key, value, 'a fraction of the [0, 1] pixel range, e.g. "8/255"')


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
