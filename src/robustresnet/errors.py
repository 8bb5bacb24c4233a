"""The exception types users meet: each names the field or file at fault."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
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


class WriteError(RobustResNetError, OSError):
    """A file that could not be written (full disk, missing permission, a file in the way); an
    OSError too, with the cause's errno, so callers can tell a full disk from the rest."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        super().__init__(cause.errno, f"cannot write {path}: {describe_os_error(cause)}")

    def __str__(self) -> str:
        return self.strerror  # without OSError's "[Errno N]" prefix


# A full disk and a used-up quota (EDQUOT is missing on some platforms).
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def describe_os_error(err: OSError) -> str:
    """What went wrong in words: a full disk or quota says so, anything else its strerror."""
    if err.errno in DISK_FULL:
        return "the disk is full (or the quota is used up)"
    return err.strerror or str(err)


@contextlib.contextmanager
def in_file(path: str | os.PathLike) -> Iterator[None]:
    """Name `path` in front of the field of any ConfigError raised inside: errors in a file a
    command read on its own (a run's config.yaml, a spec file) say which file to fix."""
    try:
        yield
    except ConfigError as err:
        if str(path) in str(err):  # the error names the file already (unreadable, not YAML)
            raise
        raise ConfigError(f"{path}: {err.field}", err.value, err.expected) from None
