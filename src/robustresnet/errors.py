"""The exception types users meet: each names the field or file at fault."""

from __future__ import annotations

from typing import Any


class RobustResNetError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(RobustResNetError, ValueError):
    """An invalid field of a spec or config: names the field, the value and what was expected."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field, self.value, self.expected = field, value, expected
        super().__init__(f"{field}: got {value!r}, expected {expected}")


class CheckpointError(RobustResNetError):
    """A checkpoint that cannot be read or does not fit the architecture."""


class DataError(RobustResNetError):
    """A dataset file that is missing, corrupt or not in the expected format."""


class FolderInUseError(RobustResNetError):
    """A run or evaluation folder that another process is using (it holds FOLDER/.lock)."""


class Stopped(RobustResNetError):
    """Work stopped on a signal with its state saved; the exit code is 128 + the signal number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
