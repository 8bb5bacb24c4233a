"""A restricted unpickler for the CIFAR and Carmon et al. pickles: data in, never code, and never
more memory than the file's own size can justify.

Two guards keep a small hostile file from allocating gigabytes. Before unpickling, the opcodes
are walked: every counted argument (bytes, strings, frames) must fit in the bytes that follow,
and every memo index must be the next free one, since the C unpickler allocates a counted
argument's length, or a memo of the index's size, before it reads anything. While unpickling,
the few globals that make objects of a requested size (`bytearray(n)`, `ndarray(shape)`) check
that size against the file's, and numpy arrays are built of plain numbers only.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataError

_PLAIN = ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex")
# numpy moved its core from `numpy.core` to `numpy._core` in 2.0; files written by either load.
_CORES = ("numpy.core", "numpy._core")
_FROMBUFFER = {(f"{core}.numeric", "_frombuffer") for core in _CORES}  # protocol 5 arrays
_RECONSTRUCT = {(f"{core}.multiarray", "_reconstruct") for core in _CORES}
_SCALAR = {(f"{core}.multiarray", "scalar") for core in _CORES}
# Arrays hold plain numbers: bool, integers, floats, complex (never objects or records).
_ARRAY_KINDS = "biufc"

# Opcode -> the layout of its argument, from pickletools' table (the format's reference).
_ARGUMENTS = {op.code.encode("latin-1"): op.arg for op in pickletools.opcodes}
_LENGTH_FIELDS = {  # arguments that are a length, then that many bytes: (width, signed)
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}
_PUTS = {pickle.PUT, pickle.BINPUT, pickle.LONG_BINPUT}
_READ = {pickle.FRAME, *_PUTS}  # fixed-size arguments whose value is checked


def check_lengths(file: BinaryIO, size: int, source: str) -> None:
    """DataError unless every counted argument of the pickle at `file`'s position fits in its
    `size` bytes and every memo index is the next free one; the position is restored."""
    start = file.tell()
    memo = 0  # entries the memo holds so far
    while True:
        code = file.read(1)
        if code not in _ARGUMENTS:
            where = f"byte {file.tell() - 1 - start}"
            raise DataError(f"{source}: corrupt or truncated pickle (no valid opcode at {where})")
        if code == pickle.STOP:
            break
        if code == pickle.MEMOIZE:
            memo += 1
        arg = _ARGUMENTS[code]
        if arg is None:
            continue
        try:
            if arg.n in _LENGTH_FIELDS:
                width, signed = _LENGTH_FIELDS[arg.n]
                length = int.from_bytes(file.read(width), "little", signed=signed)
                _check_fits(length, size - (file.tell() - start), source, file.tell() - start)
                file.seek(length, io.SEEK_CUR)
                continue
            if arg.n >= 0 and code not in _READ:
                file.seek(arg.n, io.SEEK_CUR)  # a fixed-size value that allocates nothing
                continue
            value = arg.reader(file)
        except ValueError as err:  # a reader's "not enough data" or a malformed number
            raise DataError(f"{source}: corrupt or truncated pickle ({err})") from None
        if code == pickle.FRAME:
            _check_fits(value, size - (file.tell() - start), source, file.tell() - start)
        elif code in _PUTS:
            if value > memo:
                raise DataError(f"{source}: corrupt pickle (memo index {value} of {memo})")
            if value == memo:  # a new entry; a lower index replaces one
                memo += 1
    file.seek(start)


def _check_fits(length: int, left: int, source: str, offset: int) -> None:
    if not 0 <= length <= left:
        raise DataError(
            f"{source}: corrupt or truncated pickle (a field of {length} bytes at byte {offset}, "
            f"only {left} bytes left)"
        )


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only plain-data globals; those that make sized objects check the size first."""

    def __init__(self, file: BinaryIO, source: str, budget: int) -> None:
        # latin1 is numpy's advice for Python 2 pickles: array bytes survive unchanged.
        super().__init__(file, encoding="latin1")
        self.source, self.budget = source, budget
        self._globals: dict[tuple[str, str], Callable[..., Any]] = {
            ("builtins", "bytearray"): self._bytearray,
            # Protocol 0-2 pickles written by Python 3 store bytes as codecs.encode(str, "latin1").
            ("_codecs", "encode"): self._latin1,
            ("numpy", "ndarray"): self._ndarray,
            ("numpy", "dtype"): self._dtype,
            **{key: self._reconstruct for key in _RECONSTRUCT},
        }

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._globals:
            return self._globals[key]
        if key in _PLAIN or key in _FROMBUFFER or key in _SCALAR:
            return super().find_class(module, name)
        raise DataError(
            f"{self.source}: refused to unpickle global {module}.{name} "
            "(only containers, strings, numbers and numpy arrays are allowed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: refused persistent id {pid!r} in pickle")

    def _check_size(self, nbytes: int, what: str) -> None:
        if nbytes > self.budget:
            raise DataError(
                f"{self.source}: refused to make {what} of {nbytes} bytes from a pickle of "
                f"{self.budget} bytes (corrupt or hostile file)"
            )

    def _bytearray(self, *args: Any) -> bytearray:
        if args and isinstance(args[0], int):
            self._check_size(args[0], "a bytearray")
        return bytearray(*args)

    def _latin1(self, text: Any, encoding: str = "utf-8") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise DataError(f"{self.source}: refused codecs.encode(..., {encoding!r}) in pickle")
        return text.encode("latin-1")

    def _dtype(self, spec: Any, *_flags: Any) -> np.dtype:
        """The shared, immutable dtype of a plain number type (numpy ignores __setstate__ on
        those); object, record and foreign-byte-order dtypes are refused."""
        try:
            dtype = np.dtype(spec)
        except (TypeError, ValueError):
            dtype = None
        if dtype is None or dtype.kind not in _ARRAY_KINDS or dtype.isbuiltin != 1:
            raise DataError(f"{self.source}: refused numpy dtype {spec!r} (plain numbers only)")
        return dtype

    def _ndarray(self, shape: Any, dtype: Any = float) -> np.ndarray:
        dtype = self._dtype(dtype)
        self._check_size(_elements(shape, self.source) * dtype.itemsize, "an array")
        return np.ndarray(shape, dtype)

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not self._globals[("numpy", "ndarray")]:
            raise DataError(f"{self.source}: refused to reconstruct {subtype!r} (not an array)")
        return self._ndarray(shape, dtype)


def _elements(shape: Any, source: str) -> int:
    """The element count of an array shape (an int or a tuple of ints >= 0)."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims
    ):
        raise DataError(f"{source}: corrupt pickle (array shape {shape!r})")
    return math.prod(dims)


def load_pickle(data: bytes | str | Path, source: str | None = None) -> Any:
    """Unpickle `data` (bytes or a path) allowing only plain data and arrays of numbers, and
    nothing larger than the pickle itself."""
    if isinstance(data, str | Path):
        source = source or str(data)
        try:
            with open(data, "rb") as f:
                return _load(f, Path(data).stat().st_size, source)
        except OSError as err:
            raise DataError(f"{source}: cannot read: {err.strerror or err}") from err
    return _load(io.BytesIO(data), len(data), source or "<pickle>")


def _load(file: BinaryIO, size: int, source: str) -> Any:
    check_lengths(file, size, source)
    try:
        return _RestrictedUnpickler(file, source, size).load()
    except DataError:
        raise
    except Exception as err:  # truncated or corrupt: pickle raises many different types
        raise DataError(
            f"{source}: corrupt or truncated pickle ({type(err).__name__}: {err})"
        ) from err
