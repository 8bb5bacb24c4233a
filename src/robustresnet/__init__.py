"""RobustResNets: the CVPR 2023 design space, zoo, scaling rule, training and evaluation."""

from .errors import CheckpointError, ConfigError, DataError, RobustResNetError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "RobustResNetError",
    "__version__",
]
