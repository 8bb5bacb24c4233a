"""A restricted unpickler for the CIFAR and Carmon et al. pickles: data in, never code."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import DataError

# The only globals a pickle of plain containers and numpy arrays needs. numpy moved its core
# from `numpy.core` to `numpy._core` in 2.0; files written by either must load.
_ALLOWED = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        # Protocol 0-2 pickles written by Python 3 store bytes as codecs.encode(str, "latin1").
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *(
            (f"numpy.{core}.{module}", name)
            for core in ("core", "_core")
            for module, name in (
                ("multiarray", "_reconstruct"),
                ("multiarray", "scalar"),
                ("numeric", "_frombuffer"),  # protocol 5 pickles of arrays
            )
        ),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in `_ALLOWED`; anything else is refused before it is imported."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        # latin1 is numpy's advice for Python 2 pickles: array bytes survive unchanged.
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise DataError(
                f"{self.source}: refused to unpickle global {module}.{name} "
                "(only containers, strings, numbers and numpy arrays are allowed)"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: refused persistent id {pid!r} in pickle")


def load_pickle(data: bytes | BinaryIO | str | Path, source: str | None = None) -> Any:
    """Unpickle `data` (bytes, a binary file or a path) allowing only plain data and arrays."""
    if isinstance(data, str | Path):
        source = source or str(data)
        try:
            with open(data, "rb") as f:
                return load_pickle(f, source)
        except OSError as err:
            raise DataError(f"{source}: cannot read: {err.strerror or err}") from err
    source = source or "<pickle>"
    file = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return _RestrictedUnpickler(file, source).load()
    except DataError:
        raise
    except Exception as err:  # truncated or corrupt: pickle raises many different types
        raise DataError(
            f"{source}: corrupt or truncated pickle ({type(err).__name__}: {err})"
        ) from err
