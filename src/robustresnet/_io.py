"""Atomic file writes: temp file in the same folder, fsync, rename; a crash leaves the old file.

A temp file is `.NAME.XXXXXXXX.tmp` beside its target; one left by a killed process is stale, and
`remove_stale_temp_files` clears those of a folder the caller owns (a run directory on start)."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import WriteError

# The writer's temp names, and those of `tempfile.mkstemp` that earlier versions used: eight
# characters of [a-z0-9_] between the target's name and ".tmp".
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result over `path` only once it is complete.

    The file gets the permissions of any file the user creates (0666 less the umask). A system
    error while writing (no space, no permission: an OSError with an errno) raises WriteError
    naming `path`; other errors of `write` (a failed download) pass through unchanged."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _create_temp(path)
    except OSError as err:
        raise WriteError(path, err) from err
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as err:
        tmp_path.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and not isinstance(err, WriteError):
            raise WriteError(path, err) from err
        raise
    return path


def _create_temp(path: Path) -> Path:
    """A new empty temp file beside `path`, created with mode 0666 so the umask decides."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files this writer left under `folder` (killed mid-write); returns them.

    Only names of the writer's own pattern are touched, and only call this on a folder no other
    process is writing into."""
    candidates = Path(folder).rglob(".*.tmp")
    stale = [p for p in candidates if _TEMP_NAME.fullmatch(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write `data` to `path`."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write `text` (UTF-8) to `path`."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
