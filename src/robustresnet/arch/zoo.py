"""Named networks of the paper: a table of data, one line per preset, plus the authors' spellings.

`get_spec("robustresnet-a1", num_classes=100, activation="silu", mean="cifar10")` returns the
preset with overrides; `resolve_spec` also accepts a spec file or a run directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from . import genotypes as g
from .cellspec import Cell, CellNetSpec
from .spec import CIFAR10_STATS, ArchSpec, StageSpec
from .specs import Spec, load_spec

# name: (block, depths, widening, channels, stem channels); strides 1, 2, 2(, 2).
_TABLE: dict[
    str, tuple[str, tuple[int, ...], tuple[int, ...] | None, tuple[int, ...] | None, int]
] = {
    "robustresnet-a1": ("robust_res_block", (14, 14, 7), (5, 7, 3), None, 16),
    "robustresnet-a2": ("robust_res_block", (17, 17, 8), (7, 9, 4), None, 16),
    "robustresnet-a3": ("robust_res_block", (22, 22, 11), (8, 11, 5), None, 16),
    "robustresnet-a4": ("robust_res_block", (27, 28, 13), (10, 14, 6), None, 16),
    "wrn-a1": ("basic_block", (14, 14, 7), (5, 7, 3), None, 16),
    "wrn-a2": ("basic_block", (17, 17, 8), (7, 9, 4), None, 16),
    "wrn-a3": ("basic_block", (22, 22, 11), (8, 11, 5), None, 16),
    "wrn-a4": ("basic_block", (27, 28, 13), (10, 14, 6), None, 16),
    "wrn-28-10": ("basic_block", (4, 4, 4), (10, 10, 10), None, 16),
    "wrn-34-10": ("basic_block", (5, 5, 5), (10, 10, 10), None, 16),
    "wrn-34-12": ("basic_block", (5, 5, 5), (12, 12, 12), None, 16),
    "wrn-34-r": ("basic_block", (5, 5, 5), (20, 20, 8), None, 16),
    "wrn-46-14": ("basic_block", (7, 7, 7), (14, 14, 14), None, 16),
    "wrn-70-16": ("basic_block", (11, 11, 11), (16, 16, 16), None, 16),
    "preactresnet-18": ("basic_block", (2, 2, 2, 2), None, (64, 128, 256, 512), 64),
}

# The NAS baselines of the paper's main table, as the authors build them.
# name: (normal cell, reduction cell, layers, initial channels C, module layout, affine cell BNs)
_CELL_TABLE: dict[str, tuple[Cell, Cell, int, int, str, bool]] = {
    "robnet-large-v2": (g.ROBNET_LARGE_V2, g.ROBNET_LARGE_V2, 33, 64, "robnet", False),
    "advrush": (g.ADVRUSH_NORMAL, g.ADVRUSH_REDUCE, 23, 96, "darts", True),  # "7@96"
    "racl": (g.RACL_NORMAL, g.RACL_REDUCE, 23, 104, "darts", True),  # "7@104"
}

# Other spellings (after lower-casing and "_" → "-"): the authors' and RobustBench's names.
ALIASES: dict[str, str] = {
    "preactresnet18": "preactresnet-18",
    "preact-resnet-18": "preactresnet-18",
    "wideresnet-28-10": "wrn-28-10",
    "wideresnet-34-10": "wrn-34-10",
    "wideresnet-70-16": "wrn-70-16",
    "wideresnet-a4": "wrn-a4",
    "huang2022revisiting-wrn-a4": "wrn-a4",
    "wrn-34-20-20-8": "wrn-34-r",
    "robnet": "robnet-large-v2",
    "robnet-large": "robnet-large-v2",  # RobNets' robnet_large_v1 is the same code
    "robnet-large-v1": "robnet-large-v2",
    "advrush-7@96": "advrush",
    "racl-7@104": "racl",
}

# Per-channel statistics usable as `mean=` / `std=` shortcuts.
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": CIFAR10_STATS,
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _preset(name: str) -> ArchSpec:
    block, depths, widening, channels, stem = _TABLE[name]
    stages = tuple(
        StageSpec(
            depth=d,
            widening=None if widening is None else widening[i],
            channels=None if channels is None else channels[i],
            stride=1 if i == 0 else 2,
            block=block,
        )
        for i, d in enumerate(depths)
    )
    return ArchSpec(stages=stages, stem_channels=stem, name=name)


def _cell_preset(name: str) -> CellNetSpec:
    normal, reduce, layers, channels, layout, affine = _CELL_TABLE[name]
    return CellNetSpec(
        normal=normal,
        normal_concat=g.FOUR_NODES,
        reduce=reduce,
        reduce_concat=g.FOUR_NODES,
        layers=layers,
        init_channels=channels,
        layout=layout,
        affine=affine,
        name=name,
    )


PRESETS: dict[str, Spec] = {
    **{name: _preset(name) for name in _TABLE},
    **{name: _cell_preset(name) for name in _CELL_TABLE},
}


def canonical_preset(name: str) -> str:
    """The preset name for `name` in any spelling ("RobustResNet-A1" → "robustresnet-a1")."""
    key = str(name).strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in PRESETS:
        close = difflib.get_close_matches(key, list(PRESETS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError("arch", name, "one of " + ", ".join(PRESETS) + hint)
    return key


def _stats(name: str, value, index: int) -> tuple[float, ...] | None:
    if isinstance(value, str):
        key = value.lower().replace("-", "")
        if key not in DATASET_STATS:
            raise ConfigError(name, value, "numbers or one of " + ", ".join(DATASET_STATS))
        return DATASET_STATS[key][index]
    return None if value is None else tuple(value)


def apply_overrides(
    spec: Spec,
    *,
    num_classes: int | None = None,
    activation: str | None = None,
    mean: str | Sequence[float] | None = None,
    std: str | Sequence[float] | None = None,
) -> Spec:
    """`spec` with a new class count, one activation for every stage, or input normalisation.

    `mean`/`std` take numbers or a dataset name ("cifar10"); a name given to `mean` alone sets both.
    """
    changes: dict = {}
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if activation is not None and isinstance(spec, CellNetSpec):
        raise ConfigError("activation", activation, "none for a cell network (its ops use ReLU)")
    if activation is not None:
        changes["stages"] = tuple(
            dataclasses.replace(s, activation=activation) for s in spec.stages
        )
    if isinstance(mean, str) and std is None:
        std = mean
    if mean is not None or std is not None:
        changes["mean"], changes["std"] = _stats("mean", mean, 0), _stats("std", std, 1)
    return spec.replace(**changes) if changes else spec


def get_spec(
    name: str,
    *,
    num_classes: int | None = None,
    activation: str | None = None,
    mean: str | Sequence[float] | None = None,
    std: str | Sequence[float] | None = None,
) -> Spec:
    """The preset `name` (any spelling) with optional overrides."""
    spec = PRESETS[canonical_preset(name)]
    return apply_overrides(spec, num_classes=num_classes, activation=activation, mean=mean, std=std)


def resolve_spec(name_or_path: str | os.PathLike, **overrides) -> Spec:
    """A preset name, a YAML/JSON spec file, or a run directory holding `arch.yaml`."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "arch.yaml"
        if not path.is_file():
            raise ConfigError("arch", str(name_or_path), "a run directory containing arch.yaml")
    if path.is_file():
        return apply_overrides(load_spec(path), **overrides)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        raise ConfigError("arch", str(name_or_path), "an existing spec file")
    return get_spec(str(name_or_path), **overrides)
