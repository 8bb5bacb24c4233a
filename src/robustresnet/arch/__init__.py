"""The model layer: architecture spec, blocks, network builder, zoo and checkpoint loading."""

from . import zoo
from .compat import load_weights, save_weights
from .network import RobustResNet, build_model
from .spec import ArchSpec, StageSpec
from .zoo import PRESETS, get_spec, resolve_spec

__all__ = [
    "PRESETS",
    "ArchSpec",
    "RobustResNet",
    "StageSpec",
    "build_model",
    "get_spec",
    "load_weights",
    "resolve_spec",
    "save_weights",
    "zoo",
]
