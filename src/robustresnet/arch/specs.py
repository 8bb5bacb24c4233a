"""Any network spec: the one place that tells an `ArchSpec` from a `CellNetSpec` in data.

A residual network's dict has `stages`; a cell network's carries `kind: cell_network`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

from ..errors import ConfigError, in_file
from .cellspec import KIND, CellNetSpec
from .spec import ArchSpec, read_spec_data

Spec: TypeAlias = ArchSpec | CellNetSpec


def spec_from_dict(data: Mapping[str, Any]) -> Spec:
    """An `ArchSpec` or, for `kind: cell_network`, a `CellNetSpec` from its `to_dict` data."""
    if isinstance(data, Mapping) and "kind" in data:
        if data["kind"] != KIND:
            raise ConfigError("kind", data["kind"], f"{KIND} (or no kind: a residual network)")
        return CellNetSpec.from_dict(data)
    return ArchSpec.from_dict(data)


def load_spec(path: str | os.PathLike) -> Spec:
    """The spec in a YAML/JSON file written by either spec's `save` (or by hand)."""
    data = read_spec_data(Path(path))
    with in_file(path):  # a field's error says which spec file to fix
        return spec_from_dict(data)


def require_arch_spec(spec: Spec, what: str) -> ArchSpec:
    """`spec` when it is a residual network; a ConfigError saying `what` needs one otherwise."""
    if not isinstance(spec, ArchSpec):
        raise ConfigError(
            "arch", spec.name or "a cell network", f"a residual network (ArchSpec): {what}"
        )
    return spec
