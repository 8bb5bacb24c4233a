"""The model layer: architecture spec, blocks, network builder, zoo and checkpoint loading."""

from . import zoo
from .cellnet import CellNetwork
from .cellspec import CellNetSpec
from .compat import load_weights, save_weights
from .network import RobustResNet, build_model
from .spec import ArchSpec, StageSpec
from .specs import Spec, load_spec, spec_from_dict
from .zoo import PRESETS, get_spec, resolve_spec

__all__ = [
    "PRESETS",
    "ArchSpec",
    "CellNetSpec",
    "CellNetwork",
    "RobustResNet",
    "StageSpec",
    "build_model",
    "get_spec",
    "load_spec",
    "load_weights",
    "resolve_spec",
    "save_weights",
    "Spec",
    "spec_from_dict",
    "zoo",
]
