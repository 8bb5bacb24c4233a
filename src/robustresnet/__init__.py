"""RobustResNets: the CVPR 2023 design space, zoo, scaling rule, training and evaluation."""

from ._malloc import keep_freed_memory
from .arch import (
    ArchSpec,
    CellNetSpec,
    StageSpec,
    build_model,
    get_spec,
    load_weights,
    resolve_spec,
    save_weights,
    zoo,
)
from .arch.fuse import fuse
from .arch.profile import Profile, profile
from .arch.scaling import robust_scaling
from .attacks import autoattack, fgsm, frozen, perturb, pgd
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    FolderInUseError,
    RobustResNetError,
    Stopped,
)
from .evaluate import evaluate, merge_reports
from .train.config import ExperimentConfig, load_config
from .train.trainer import train

__version__ = "0.1.0"

__all__ = [
    "ArchSpec",
    "CellNetSpec",
    "StageSpec",
    "build_model",
    "get_spec",
    "load_weights",
    "resolve_spec",
    "save_weights",
    "zoo",
    "fuse",
    "Profile",
    "profile",
    "robust_scaling",
    "autoattack",
    "evaluate",
    "fgsm",
    "frozen",
    "merge_reports",
    "ExperimentConfig",
    "load_config",
    "train",
    "perturb",
    "pgd",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FolderInUseError",
    "RobustResNetError",
    "Stopped",
    "keep_freed_memory",
    "__version__",
]
