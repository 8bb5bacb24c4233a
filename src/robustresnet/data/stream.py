"""Extra training data that stays on disk: memory-mapped `.npz` files, their folders, `.npy` pairs.

Generated sets (1M-50M images, Wang et al. 2023) do not fit in memory, so `open_extra` maps them
and checks every shard up front; the loader reads windows of them while it trains (extra_order).

Accepted paths (images N x H x W x C uint8, as the base dataset's images; labels N integers):
- `FILE.npz` with members `image` and `label`, stored uncompressed (`np.savez`; a member of
  `np.savez_compressed` cannot be mapped and is refused with the command that converts it);
- a folder of such `.npz` shards, read in the order of their names as one set;
- a folder holding `image.npy` and `label.npy` (the same names as the `.npz` members).

An `.npz` member is mapped at its own offset: the zip local file header (30 bytes, then the name
and the extra field, whose lengths are read from the local header itself: `np.savez` writes a
Zip64 extra field there that the central directory lacks), then the `.npy` header.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from ..errors import DataError

PAIR_NAMES = ("image.npy", "label.npy")
LABEL_SAMPLE = 4096  # labels spot-checked per shard when it is opened (first, last and these)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
_HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
}
CONVERT_HINT = (
    "memory-mapping needs uncompressed members: convert it with "
    "python -c \"import numpy as np; d = np.load('IN.npz'); "
    "np.savez('OUT.npz', image=d['image'], label=d['label'])\" "
    "(or split a set too large for memory into a folder of np.savez shards)"
)


@dataclass(frozen=True, eq=False)
class Shard:
    """One file (or .npy pair) of a streamed set: memory-mapped images (N,H,W,C) and labels (N,)."""

    path: Path
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


class StreamedExtra:
    """Extra images and labels on disk, one logical set over its shards, read on demand."""

    def __init__(self, shards: list[Shard], *, num_classes: int, source: str) -> None:
        self.shards, self.num_classes, self.source = tuple(shards), num_classes, source
        self.starts = np.cumsum([0] + [len(s) for s in shards])  # first index of each shard
        height, width, channels = shards[0].images.shape[1:]
        self.image_shape = (channels, height, width)  # as the loader's N,C,H,W batches

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shard_sizes(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.shards)

    def read(self, start: int, stop: int, images: np.ndarray, labels: np.ndarray) -> None:
        """Copy images [start, stop) into `images` (N,H,W,C uint8) and their labels into
        `labels` (int64), one contiguous read per shard; a label out of range is a DataError."""
        done = 0
        shard_index = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start + done < stop:
            shard = self.shards[shard_index]
            lo = start + done - int(self.starts[shard_index])
            hi = min(len(shard), stop - int(self.starts[shard_index]))
            _read_rows(shard.images, lo, hi, images[done : done + hi - lo])
            piece = labels[done : done + hi - lo]
            piece[:] = _read_rows(shard.labels, lo, hi, np.empty(hi - lo, shard.labels.dtype))
            _check_labels(piece, self.num_classes, shard.path, lo)
            done, shard_index = done + hi - lo, shard_index + 1


def _read_rows(array: np.memmap, lo: int, hi: int, out: np.ndarray) -> np.ndarray:
    """Rows [lo, hi) of the memory-mapped `array` read from its file into `out` (C-contiguous,
    the same dtype). A plain read, not the mapping: mapped pages would stay in this process's
    resident memory, which then grew to the file's size over a pass (measured: 656 MB after one
    pass over a 600 MB file); read, it stays at the buffers' size."""
    row = array.strides[0]
    view = memoryview(out).cast("B")
    with open(array.filename, "rb", buffering=0) as file:
        file.seek(array.offset + lo * row)
        filled = 0
        while filled < len(view):
            count = file.readinto(view[filled:])
            if not count:
                raise DataError(f"{array.filename}: ends before image {hi} (truncated while read)")
            filled += count
    return out


def open_extra(
    path: str | os.PathLike,
    *,
    num_classes: int,
    image_shape: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> StreamedExtra:
    """Map the extra set at `path` and check every shard before training starts: headers, sizes,
    image shape (`image_shape` = the base dataset's (C, H, W); None: the first shard's), dtype,
    image/label counts, and labels in [0, num_classes) at the first, last and `LABEL_SAMPLE`
    positions drawn with `seed` (the rest are checked as they are read)."""
    path = Path(path).expanduser()
    shards = [_check_shard(s, num_classes) for s in _open_shards(path)]
    if image_shape is None:
        image_shape = _chw(shards[0])
    for shard in shards:
        if _chw(shard) != tuple(image_shape):
            channels, height, width = image_shape
            raise DataError(
                f"{shard.path}: images of shape {tuple(shard.images.shape)}, expected "
                f"Nx{height}x{width}x{channels} uint8 (the base dataset's image size)"
            )
        _spot_check(shard, num_classes, seed)
    return StreamedExtra(shards, num_classes=num_classes, source=str(path))


def _chw(shard: Shard) -> tuple[int, int, int]:
    height, width, channels = shard.images.shape[1:]
    return channels, height, width


def _open_shards(path: Path) -> list[Shard]:
    expected = "an .npz file, a folder of .npz shards, or a folder with image.npy and label.npy"
    if path.is_file() and path.suffix == ".npz":
        return [_open_npz(path)]
    if not path.is_dir():
        found = "not found" if not path.exists() else "not an .npz file or folder"
        raise DataError(f"{path}: {found}; expected {expected}")
    npz = sorted(p for p in path.iterdir() if p.suffix == ".npz" and p.is_file())
    pair = [path / name for name in PAIR_NAMES]
    has_pair = any(p.exists() for p in pair)
    if npz and has_pair:
        raise DataError(f"{path}: holds both .npz shards and .npy files; expected {expected}")
    if npz:
        return [_open_npz(p) for p in npz]
    if not has_pair:
        raise DataError(f"{path}: no .npz shards and no image.npy/label.npy; expected {expected}")
    missing = [p.name for p in pair if not p.is_file()]
    if missing:
        raise DataError(f"{path}: {missing[0]} is missing (an .npy pair is image.npy + label.npy)")
    return [Shard(path, _open_npy(pair[0]), _open_npy(pair[1]))]


def _open_npy(path: Path) -> np.ndarray:
    """A plain .npy file, its header checked against its size, then memory-mapped."""
    with open(path, "rb") as file:
        size = path.stat().st_size
        _read_npy_header(file, path.name, path, stored=size, file_size=size)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot memory-map it ({err})") from err


def _open_npz(path: Path) -> Shard:
    """An uncompressed .npz: its `image` and `label` members memory-mapped in place."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz, corrupt or truncated ({err})") from err
    arrays = {}
    with open(path, "rb") as file:
        for key in ("image", "label"):
            info = infos.get(f"{key}.npy")
            if info is None:
                raise DataError(f"{path}: member '{key}' is missing (expected image and label)")
            if info.compress_type != zipfile.ZIP_STORED:
                raise DataError(f"{path}: member '{key}' is compressed; {CONVERT_HINT}")
            arrays[key] = _map_member(path, file, info)
    return Shard(path, arrays["image"], arrays["label"])


def _map_member(path: Path, file: BinaryIO, info: zipfile.ZipInfo) -> np.ndarray:
    """The member's array, mapped at the offset its local header and .npy header give."""
    header = b""
    if info.header_offset >= 0:  # a corrupt central directory can point before the file
        file.seek(info.header_offset)
        header = file.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise DataError(f"{path}: no zip local header for {info.filename} (corrupt .npz)")
    name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    file.seek(start)
    file_size = path.stat().st_size
    dtype, shape, offset = _read_npy_header(file, info.filename, path, info.file_size, file_size)
    if math.prod(shape) == 0:
        return np.empty(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=start + offset, shape=shape)


def _read_npy_header(
    file: BinaryIO, member: str, path: Path, stored: int, file_size: int
) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, header length) of the .npy at the file's position; DataError when the
    header is not one, or its shape x itemsize differs from the `stored` bytes of the member."""
    begin = file.tell()
    try:
        version = npy_format.read_magic(file)
        if version not in _HEADER_READERS:
            raise ValueError(f".npy format version {version} (expected 1.0 or 2.0)")
        shape, fortran_order, dtype = _HEADER_READERS[version](file)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: {member} has no valid .npy header ({err})") from None
    if fortran_order or dtype.hasobject:
        raise DataError(f"{path}: {member} must be a C-ordered array of numbers")
    header_length = file.tell() - begin
    need = math.prod(shape) * dtype.itemsize
    if need != stored - header_length:
        raise DataError(
            f"{path}: {member} header says {shape} of {dtype} ({need} bytes) but "
            f"{stored - header_length} bytes are stored (truncated, or a header that lies)"
        )
    if begin + header_length + need > file_size:
        raise DataError(
            f"{path}: truncated: {member} needs {begin + header_length + need} bytes, "
            f"the file has {file_size}"
        )
    return dtype, shape, header_length


def _check_shard(shard: Shard, num_classes: int) -> Shard:
    images, labels = shard.images, shard.labels
    shape_ok = images.ndim == 4 and images.shape[-1] in (1, 3) and 0 not in images.shape[1:]
    if images.dtype != np.uint8 or not shape_ok:  # an empty image: nothing to read or train on
        raise DataError(
            f"{shard.path}: images must be NxHxWxC uint8 (C = 1 or 3, H, W > 0), got shape "
            f"{images.shape} of {images.dtype}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{shard.path}: labels must be N integers, got {labels.shape} of {labels.dtype}"
        )
    if len(labels) != len(images):
        raise DataError(f"{shard.path}: {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise DataError(f"{shard.path}: no images")
    if num_classes < 1:
        raise DataError(f"{shard.path}: num_classes must be positive, got {num_classes}")
    return shard


def _spot_check(shard: Shard, num_classes: int, seed: int) -> None:
    """Labels at the first, last and LABEL_SAMPLE seeded positions in [0, num_classes)."""
    n = len(shard)
    drawn = np.random.default_rng([seed, n]).integers(0, n, size=min(n, LABEL_SAMPLE))
    positions = np.unique(np.concatenate([[0, n - 1], drawn]))
    _check_labels(np.asarray(shard.labels[positions]), num_classes, shard.path, 0, positions)


def _check_labels(
    labels: np.ndarray,
    num_classes: int,
    path: Path,
    first: int,
    positions: np.ndarray | None = None,
) -> None:
    """DataError naming the shard and the image index of the first label out of range."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        index = int(positions[bad[0]]) if positions is not None else first + int(bad[0])
        raise DataError(
            f"{path}: label {int(labels[bad[0]])} of image {index} out of range for "
            f"{num_classes} classes"
        )
