"""One process at a time per run or evaluation folder: an advisory lock (flock) on FOLDER/.lock,
which the kernel releases however its holder ends (exit, crash, kill)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import CheckpointError, FolderInUseError

try:
    import fcntl
except ImportError:  # Windows: no flock, so folders are not locked there
    fcntl = None

LOCK_FILE = ".lock"
_ATTEMPTS = 10  # a holder that ends between our open and flock removes the file: open again


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold FOLDER/.lock (creating FOLDER) while the block runs; raise FolderInUseError at once
    when another process holds it, CheckpointError when FOLDER cannot be a folder. Folders this
    call created are removed again if left empty."""
    folder = Path(folder)
    if fcntl is None:
        yield folder
        return
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    path = folder / LOCK_FILE
    try:
        fd = _acquire(folder, path)
    except OSError as err:  # a file in the way, no permission, a read-only disk
        if folder.exists() and not folder.is_dir():
            raise CheckpointError(f"{folder} is a file, not a run directory") from None
        raise CheckpointError(f"cannot use {folder} as a folder for this run: {err}") from err
    try:
        # Written in place, not temp-file-then-rename: the lock belongs to this very inode.
        holder = {"pid": os.getpid(), "host": socket.gethostname()}
        holder["started"] = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield folder
    finally:
        path.unlink(missing_ok=True)  # while still holding it; see _acquire
        os.close(fd)
        for empty in created:
            try:
                empty.rmdir()
            except OSError:
                break


def _acquire(folder: Path, path: Path) -> int:
    """An open descriptor of `path`, exclusively locked."""
    for _ in range(_ATTEMPTS):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed by a holder that created it
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = f"{folder} is in use by {_holder(fd)}; wait for it or stop it"
            os.close(fd)
            raise FolderInUseError(message) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # we locked a file its last holder had already removed
    raise FolderInUseError(f"{folder}: could not lock {LOCK_FILE} in {_ATTEMPTS} attempts")


def _holder(fd: int) -> str:
    """Who holds the lock, as far as the lock file says (it may still be being written)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"process {holder['pid']} on host {holder['host']} (started {holder['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
