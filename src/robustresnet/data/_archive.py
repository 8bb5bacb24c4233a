"""Reading named files from a dataset folder or from its .tar.gz archive without extracting it."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

from ..errors import DataError

# What tarfile/gzip raise on a truncated or corrupt archive.
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


def read_members(source: Path, folder: str, names: list[str]) -> dict[str, bytes]:
    """The bytes of `folder/NAME` for each name, from a directory or a .tar.gz archive."""
    if source.is_dir():
        return {name: _read_file(source / name) for name in names}
    wanted = {f"{folder}/{name}": name for name in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(source, "r|gz") as tar:  # one streaming pass over the archive
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is not None and member.isfile():
                    found[name] = tar.extractfile(member).read()
    except ARCHIVE_ERRORS as err:
        raise DataError(f"{source}: corrupt or truncated archive ({err})") from err
    missing = [f"{folder}/{name}" for name in names if name not in found]
    if missing:
        raise DataError(f"{source}: archive has no member {', '.join(missing)}")
    return found


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
