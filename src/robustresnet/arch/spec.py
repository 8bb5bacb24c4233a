"""`ArchSpec`: an immutable, validated description of a pre-activation residual network.

A spec is plain data: one `StageSpec` per stage plus the block hyper-parameters. It round-trips
through YAML/JSON (`to_dict`/`from_dict`, `save`/`load`) and converts the authors' `model:` config
section (`from_reference`). Invalid input raises `ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .._files import read_json, read_yaml
from .._io import write_text
from ..errors import ConfigError, in_file
from .blocks import BLOCKS
from .layers import ACTIVATIONS, NORMS, canonical_name

# The largest image side a spec may take: beyond it tensor sizes overflow, even on the meta device.
MAX_INPUT_SIZE = 2**16


def stage_base(index: int) -> int:
    """Channels per unit of widening in stage `index`: 16, 32, 64, ... as in WRN."""
    return 16 * 2**index


def _int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, value, f"an integer >= {minimum}")
    return value


def _choice(name: str, value: Any, choices: Mapping[str, Any], normalise=canonical_name) -> str:
    key = normalise(value) if isinstance(value, str) else None
    if key not in choices:
        raise ConfigError(name, value, "one of " + ", ".join(choices))
    return key


def input_stats(
    mean: Any, std: Any, in_channels: int
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Checked per-channel input normalisation: both or neither, one finite number per channel,
    positive std."""
    if (mean is None) != (std is None):
        raise ConfigError("std" if std is None else "mean", None, "mean and std together")
    out = []
    for name, value in (("mean", mean), ("std", std)):
        if value is not None:
            try:
                value = tuple(float(v) for v in value)
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(name, value, "a list of numbers") from None
            if not all(math.isfinite(v) for v in value):
                raise ConfigError(name, value, "finite numbers")
            if len(value) != in_channels:
                raise ConfigError(name, value, f"{in_channels} values, one per input channel")
            if name == "std" and min(value) <= 0:
                raise ConfigError(name, value, "positive values")
        out.append(value)
    return out[0], out[1]


@dataclass(frozen=True)
class StageSpec:
    """One stage: `depth` blocks of type `block`, width from `widening` (×16·2^i) or `channels`."""

    depth: int
    widening: int | None = None
    channels: int | None = None
    stride: int = 1
    block: str = "basic_block"
    kernel_size: int = 3
    activation: str = "relu"
    normalization: str = "batchnorm"

    def __post_init__(self) -> None:
        _int("depth", self.depth)
        if (self.widening is None) == (self.channels is None):
            raise ConfigError("widening", self.widening, "exactly one of widening or channels")
        if self.widening is not None:
            _int("widening", self.widening)
        if self.channels is not None:
            _int("channels", self.channels)
        if self.stride not in (1, 2) or isinstance(self.stride, bool):
            raise ConfigError("stride", self.stride, "1 or 2")
        if _int("kernel_size", self.kernel_size) % 2 == 0:
            raise ConfigError("kernel_size", self.kernel_size, "an odd integer (3, 5, ...)")
        object.__setattr__(self, "block", _choice("block", self.block, BLOCKS, _block_name))
        object.__setattr__(self, "activation", _choice("activation", self.activation, ACTIVATIONS))
        norm = _choice("normalization", self.normalization, NORMS)
        object.__setattr__(self, "normalization", norm)

    def planes(self, index: int) -> int:
        """Block width of this stage when it is stage `index` (output is planes · expansion)."""
        return self.channels if self.channels is not None else stage_base(index) * self.widening

    def to_dict(self) -> dict[str, Any]:
        """Plain dict without the unset one of widening/channels."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v is not None}


class SpecFile:
    """What every spec kind shares: a validated copy, plain data, and a YAML / JSON file."""

    def replace(self: _Spec, **changes: Any) -> _Spec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def _plain_fields(self, convert: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
        """Every set field as plain data: tuples become lists, `convert[name]` the named ones."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in convert:
                value = convert[f.name](value)
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                out[f.name] = value
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write YAML (.yaml/.yml) or JSON (.json), atomically."""
        return write_spec_data(self.to_dict(), Path(path))  # type: ignore[attr-defined]

    @classmethod
    def load(cls: type[_Spec], path: str | os.PathLike) -> _Spec:
        """Read a spec written by `save` (or by hand)."""
        data = read_spec_data(Path(path))
        with in_file(path):  # a field's error says which spec file to fix
            return cls.from_dict(data)  # type: ignore[attr-defined]


_Spec = TypeVar("_Spec", bound=SpecFile)


@dataclass(frozen=True)
class ArchSpec(SpecFile):
    """A whole network: stem, stages, head, block hyper-parameters, optional input normalisation."""

    stages: tuple[StageSpec, ...]
    stem_channels: int = 16
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    scales: int = 8
    base_width: int = 10
    cardinality: int = 4
    se_reduction: int = 64
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        stages = tuple(self.stages) if isinstance(self.stages, Sequence) else self.stages
        if not isinstance(stages, tuple) or not stages:
            raise ConfigError("stages", self.stages, "a non-empty list of stages")
        for i, stage in enumerate(stages):
            if not isinstance(stage, StageSpec):
                raise ConfigError(f"stages[{i}]", stage, "a StageSpec")
        object.__setattr__(self, "stages", stages)
        for name in (
            "stem_channels",
            "num_classes",
            "in_channels",
            "input_size",
            "scales",
            "base_width",
            "cardinality",
            "se_reduction",
        ):
            _int(name, getattr(self, name))
        if self.input_size > MAX_INPUT_SIZE:
            raise ConfigError("input_size", self.input_size, f"at most {MAX_INPUT_SIZE} pixels")
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError("name", self.name, "a string")
        mean, std = input_stats(self.mean, self.std, self.in_channels)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        self._check_widths()
        stride = self.total_stride
        if self.input_size < stride:
            raise ConfigError("input_size", self.input_size, f"at least the total stride {stride}")

    def _check_widths(self) -> None:
        for i, stage in enumerate(self.stages):
            planes = stage.planes(i)
            problem = BLOCKS[stage.block].width_error(planes, **self.block_options)
            if problem is not None:
                unit = "widening" if stage.widening is not None else "channels"
                value = stage.widening if stage.widening is not None else stage.channels
                raise ConfigError(
                    f"stages[{i}].{unit}", value, f"a width (now {planes}) that is {problem}"
                )

    @property
    def block_options(self) -> dict[str, int]:
        """The block hyper-parameters every block constructor receives."""
        return {
            "scales": self.scales,
            "base_width": self.base_width,
            "cardinality": self.cardinality,
            "se_reduction": self.se_reduction,
        }

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def widening(self) -> tuple[float, ...]:
        """Widening factor of each stage (channels / (16·2^i) for stages given by channels)."""
        return tuple(
            s.widening if s.widening is not None else s.channels / stage_base(i)
            for i, s in enumerate(self.stages)
        )

    @property
    def planes(self) -> tuple[int, ...]:
        """Block width of each stage."""
        return tuple(s.planes(i) for i, s in enumerate(self.stages))

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Output channels of each stage: planes · the block's expansion."""
        return tuple(
            p * BLOCKS[s.block].expansion for p, s in zip(self.planes, self.stages, strict=True)
        )

    @property
    def total_stride(self) -> int:
        out = 1
        for stage in self.stages:
            out *= stage.stride
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON; `from_dict` reads it back."""
        return self._plain_fields({"stages": lambda stages: [s.to_dict() for s in stages]})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        """Inverse of `to_dict`; unknown keys are rejected by name."""
        if not isinstance(data, Mapping):
            raise ConfigError("spec", data, "a mapping of spec fields")
        known = {f.name for f in dataclasses.fields(cls)}
        _reject_unknown("spec", data, known)
        stages = data.get("stages")
        if not isinstance(stages, list) or not stages:
            raise ConfigError("stages", stages, "a non-empty list of stage mappings")
        stage_fields = {f.name for f in dataclasses.fields(StageSpec)}
        parsed = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, Mapping):
                raise ConfigError(f"stages[{i}]", stage, "a mapping of stage fields")
            _reject_unknown(f"stages[{i}]", stage, stage_fields)
            if "depth" not in stage:
                raise ConfigError(f"stages[{i}].depth", None, "the stage's number of blocks")
            try:
                parsed.append(StageSpec(**stage))
            except ConfigError as err:
                raise ConfigError(f"stages[{i}].{err.field}", err.value, err.expected) from None
        return cls(**{**data, "stages": tuple(parsed)})

    @classmethod
    def from_reference(cls, cfg: Mapping[str, Any]) -> ArchSpec:
        """Convert the authors' `model:` config section (or a whole config holding one).

        Missing keys take the authors' constructor defaults, as their code does (see the warning).
        """
        cfg = cfg.get("model", cfg) if isinstance(cfg, Mapping) else cfg
        if not isinstance(cfg, Mapping):
            raise ConfigError("model", cfg, "a mapping (the `model:` section of a config)")
        _reject_unknown("model", cfg, set(_REFERENCE_DEFAULTS) | _REFERENCE_EXTRA)
        if cfg.get("name", "PreActResNet") != "PreActResNet":
            raise ConfigError("model.name", cfg["name"], "PreActResNet")
        if cfg.get("stem_stride", 1) != 1:
            raise ConfigError("model.stem_stride", cfg["stem_stride"], "1")
        ref = {k: cfg[k] if cfg.get(k) is not None else v for k, v in _REFERENCE_DEFAULTS.items()}
        lists = _reference_lists(ref)
        if "robust_res_block" in {_block_name(str(b)) for b in lists["block_types"]}:
            _warn_block_defaults(cfg)
        stages = tuple(_reference_stage(lists, i) for i in range(len(lists["depth_configs"])))
        stats = CIFAR10_STATS if cfg.get("pre_process") else (None, None)
        return cls(
            stages=stages,
            stem_channels=lists["channel_configs"][0],
            num_classes=ref["num_classes"],
            scales=ref["scales"],
            base_width=ref["base_width"],
            cardinality=ref["cardinality"],
            se_reduction=ref["se_reduction"],
            mean=stats[0],
            std=stats[1],
        )


# The authors' PreActResNet constructor defaults: their code builds these when a key is absent.
_REFERENCE_DEFAULTS: dict[str, Any] = {
    "num_classes": 10,
    "channel_configs": (16, 160, 320, 640),
    "depth_configs": (5, 5, 5),
    "stride_config": (1, 2, 2),
    "kernel_size_configs": (3, 3, 3),
    "block_types": ("basic_block",) * 3,
    "activations": ("ReLU",) * 3,
    "normalizations": ("BatchNorm",) * 3,
    "scales": 4,
    "base_width": 64,
    "cardinality": 8,
    "se_reduction": 16,
}
# Keys of their configs that do not change the network (`pre_process` is RobustBench's mu/sigma).
_REFERENCE_EXTRA = {
    "name",
    "drop_rate_config",
    "zero_init_residual",
    "use_init",
    "stem_stride",
    "pre_process",
}
_BLOCK_KEYS = ("scales", "base_width", "cardinality", "se_reduction")
# CIFAR-10 statistics of RobustBench's WRN-A4 (`pre_process=True`).
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))


def _reference_lists(ref: Mapping[str, Any]) -> dict[str, list]:
    """The per-stage lists of a reference config, checked to have one entry per stage."""
    lists = {}
    for key in (
        "channel_configs",
        "depth_configs",
        "stride_config",
        "kernel_size_configs",
        "block_types",
        "activations",
        "normalizations",
    ):
        value = ref[key]
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"model.{key}", value, "a list")
        lists[key] = list(value)
    stages = len(lists["depth_configs"])
    for key, value in lists.items():
        want = stages + 1 if key == "channel_configs" else stages
        if len(value) != want:
            extra = " (stem + one per stage)" if key == "channel_configs" else ""
            raise ConfigError(
                f"model.{key}",
                value,
                f"{want} entries{extra}: depth_configs has {stages} stages",
            )
    return lists


# StageSpec field → the reference key holding it, so errors name what the user wrote.
_REFERENCE_FIELD = {
    "depth": "depth_configs",
    "widening": "channel_configs",
    "channels": "channel_configs",
    "stride": "stride_config",
    "block": "block_types",
    "kernel_size": "kernel_size_configs",
    "activation": "activations",
    "normalization": "normalizations",
}


def _reference_stage(lists: Mapping[str, list], i: int) -> StageSpec:
    """Stage `i` of a reference config; widening when the channels are a multiple of 16·2^i."""
    channels = lists["channel_configs"][i + 1]
    divisible = isinstance(channels, int) and channels % stage_base(i) == 0
    size = {"widening": channels // stage_base(i)} if divisible else {"channels": channels}
    try:
        return StageSpec(
            depth=lists["depth_configs"][i],
            stride=lists["stride_config"][i],
            block=lists["block_types"][i],
            kernel_size=lists["kernel_size_configs"][i],
            activation=lists["activations"][i],
            normalization=lists["normalizations"][i],
            **size,
        )
    except ConfigError as err:
        key = _REFERENCE_FIELD.get(err.field, err.field)
        raise ConfigError(f"model.{key}[{i}]", err.value, err.expected) from None


def _warn_block_defaults(cfg: Mapping[str, Any]) -> None:
    missing = [k for k in _BLOCK_KEYS if cfg.get(k) is None]
    if missing:
        used = ", ".join(f"{k}={_REFERENCE_DEFAULTS[k]}" for k in missing)
        warnings.warn(
            f"robust_res_block config without {', '.join(missing)}: using the reference code's "
            f"constructor defaults ({used}), which is what the authors' code builds, a far larger "
            "network than the paper's; the paper's RobustResNets use scales=8, base_width=10, "
            "cardinality=4, se_reduction=64. Set these keys to build the paper's network.",
            UserWarning,
            stacklevel=3,
        )


def _block_name(name: str) -> str:
    """Block names keep their underscores: "Robust-Res-Block" → "robust_res_block"."""
    return name.strip().lower().replace("-", "_")


def _reject_unknown(where: str, data: Mapping[str, Any], known: set[str]) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{where}.{key}", data[key], "a known field: " + ", ".join(sorted(known))
            )


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ConfigError("path", str(path), "a .yaml, .yml or .json file name")


def write_spec_data(data: Mapping[str, Any], path: Path) -> Path:
    """A spec's dict as YAML (.yaml/.yml) or JSON (.json) by the suffix, atomically."""
    if _format(path) == "json":
        return write_text(path, json.dumps(data, indent=2) + "\n")
    return write_text(path, yaml.safe_dump(dict(data), sort_keys=False))


def read_spec_data(path: Path) -> Any:
    """The data of a YAML or JSON spec file (by the suffix)."""
    return read_json(path, "path") if _format(path) == "json" else read_yaml(path, "path")
