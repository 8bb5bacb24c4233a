"""RobustResNets: the CVPR 2023 design space, zoo, scaling rule, training and evaluation."""

from .arch import (
    ArchSpec,
    StageSpec,
    build_model,
    get_spec,
    load_weights,
    resolve_spec,
    save_weights,
    zoo,
)
from .arch.profile import Profile, profile
from .arch.scaling import robust_scaling
from .errors import CheckpointError, ConfigError, DataError, RobustResNetError

__version__ = "0.1.0"

__all__ = [
    "ArchSpec",
    "StageSpec",
    "build_model",
    "get_spec",
    "load_weights",
    "resolve_spec",
    "save_weights",
    "zoo",
    "Profile",
    "profile",
    "robust_scaling",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "RobustResNetError",
    "__version__",
]
