"""`--download`: fetch the CIFAR archives, check the published MD5, extract inside root only."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

from .._io import atomic_write
from .._progress import progress
from ..errors import DataError
from ._archive import ARCHIVE_ERRORS
from ._cifar import CIFAR10, CIFAR100

# The official addresses and the MD5 sums published with them (the same torchvision checks).
CIFAR_SOURCES = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}
_CHUNK = 1 << 20


def download_cifar(
    name: str,
    root: str | os.PathLike,
    *,
    url: str | None = None,
    md5: str | None = None,
    quiet: bool = False,
) -> Path:
    """Download `name` (cifar10/cifar100) into `root`, verify it and extract it; the folder."""
    layout = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    root = Path(root)
    url = url or CIFAR_SOURCES[name][0]
    md5 = md5 or CIFAR_SOURCES[name][1]
    archive = root / layout.archive
    fetched = not (archive.is_file() and file_md5(archive) == md5)
    if fetched:
        fetch(url, archive, md5=md5, quiet=quiet)
    try:
        extract_safely(archive, root)
    except DataError:
        if fetched:  # a hostile archive we fetched ourselves is not kept
            archive.unlink(missing_ok=True)
        raise
    return root / layout.folder


def fetch(url: str, path: Path, *, md5: str, quiet: bool = False) -> Path:
    """Stream `url` to a temp file beside `path`; it becomes `path` only if its MD5 matches."""

    def write(tmp: Path) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with progress(
                total=size, quiet=quiet, unit="B", unit_scale=True, desc=path.name
            ) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise DataError(f"{url}: MD5 {digest.hexdigest()} does not match the expected {md5}")

    try:
        return atomic_write(path, write)
    except (OSError, http.client.HTTPException) as err:
        raise DataError(f"{url}: download failed ({err})") from err


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_safely(archive: Path, target: Path) -> None:
    """Extract a .tar.gz into `target`: regular files and folders only, all inside `target`."""
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            # The "data" filter (Python >= 3.11.4) is a second guard behind our own checks.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **extra)
        for entry in staging.iterdir():
            if (target / entry.name).exists():
                raise DataError(f"{archive}: {target / entry.name} already exists; not replaced")
            entry.rename(target / entry.name)
    except ARCHIVE_ERRORS as err:
        raise DataError(f"{archive}: corrupt or truncated archive ({err})") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse links, devices, absolute paths and `..`: nothing may land outside the target."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith(("/", "\\")) or ".." in path.parts:
        raise DataError(f"{archive}: refused member {member.name!r}: path leaves the target folder")
    if not (member.isfile() or member.isdir()):
        kind = "link" if member.issym() or member.islnk() else "special file"
        raise DataError(f"{archive}: refused member {member.name!r}: {kind} (only files allowed)")
