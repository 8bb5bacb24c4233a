"""The paper's recipes, shipped in the package: training configs and sweep files, found by name.

A training recipe's name is its path under this folder without `.yaml`
(`cifar10/trades/robustresnet-a1`, `digits-demo`); a sweep's is its path under `sweeps/`
(`digits-demo`, as `rrn sweep` takes it). The first line of each file, a `# ` comment, is its
one-line description. Wherever a recipe is asked for, a file path that exists wins over a name.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError

Kind = Literal["train", "sweep"]
# A plain folder beside this module (wheels are unpacked): load_config and the trainers it starts
# read the files by path.
RECIPES_DIR = Path(__file__).resolve().parent
SWEEPS_DIR = RECIPES_DIR / "sweeps"
SUFFIX = ".yaml"


@dataclass(frozen=True)
class Recipe:
    """One shipped file: `rrn train NAME` (kind "train") or `rrn sweep NAME` (kind "sweep")."""

    kind: Kind
    name: str
    path: Path

    @property
    def description(self) -> str:
        """The file's first line without its `# ` (empty when the file starts otherwise)."""
        with self.path.open(encoding="utf-8") as file:
            first = file.readline().strip()
        return first.removeprefix("#").strip() if first.startswith("#") else ""


def recipes(kind: Kind | None = None) -> list[Recipe]:
    """Every shipped recipe of `kind` (both kinds when None), training recipes first, by name."""
    found = []
    for path in RECIPES_DIR.rglob(f"*{SUFFIX}"):
        is_sweep = path.is_relative_to(SWEEPS_DIR)
        name = path.relative_to(SWEEPS_DIR if is_sweep else RECIPES_DIR).with_suffix("")
        found.append(Recipe("sweep" if is_sweep else "train", name.as_posix(), path))
    found.sort(key=lambda recipe: (recipe.kind != "train", recipe.name))
    return [recipe for recipe in found if kind in (None, recipe.kind)]


def find_file(
    text: str | os.PathLike,
    kind: Kind = "train",
    *,
    field: str = "config",
    root: Path | None = None,
) -> Path:
    """The file `text` means: an existing file (relative to `root` when given, else to the
    current folder), else the shipped recipe of `kind` it names; else ConfigError(field, text)
    with the nearest names."""
    path = Path(text) if root is None else root / text
    if path.is_file():
        return path
    names = {recipe.name: recipe.path for recipe in recipes(kind)}
    if str(text) in names:
        return names[str(text)]
    near = difflib.get_close_matches(str(text).removesuffix(SUFFIX), names, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    what = "a training recipe's" if kind == "train" else "a sweep's"
    raise ConfigError(
        field, str(text), f"an existing YAML file or {what} name{hint} (`rrn recipes` lists them)"
    )
