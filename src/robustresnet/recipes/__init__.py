"""The paper's recipes, shipped in the package: training configs and sweep files, found by name.

A training recipe's name is its path under this folder without `.yaml`
(`cifar10/trades/robustresnet-a1`, `digits-demo`); a sweep's is its path under `sweeps/`
(`digits-demo`, as `rrn sweep` takes it); a paper experiment's is its path under `experiments/`
(`block-topology`, as `rrn reproduce` takes it). The first line of each file, a `# ` comment, is its
one-line description. Wherever a recipe is asked for, a file path that exists wins over a name.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError

Kind = Literal["train", "sweep", "experiment"]
# A plain folder beside this module (wheels are unpacked): load_config and the trainers it starts
# read the files by path.
RECIPES_DIR = Path(__file__).resolve().parent
SWEEPS_DIR = RECIPES_DIR / "sweeps"
EXPERIMENTS_DIR = RECIPES_DIR / "experiments"
FOLDERS: dict[Kind, Path] = {"sweep": SWEEPS_DIR, "experiment": EXPERIMENTS_DIR}
SUFFIX = ".yaml"


@dataclass(frozen=True)
class Recipe:
    """One shipped file: `rrn train NAME` (kind "train"), `rrn sweep NAME` (kind "sweep") or
    `rrn reproduce NAME` (kind "experiment")."""

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
    order: list[Kind] = ["train", "sweep", "experiment"]
    for path in RECIPES_DIR.rglob(f"*{SUFFIX}"):
        found_kind = next((k for k, d in FOLDERS.items() if path.is_relative_to(d)), "train")
        folder = FOLDERS.get(found_kind, RECIPES_DIR)
        name = path.relative_to(folder).with_suffix("").as_posix()
        found.append(Recipe(found_kind, name, path))
    found.sort(key=lambda recipe: (order.index(recipe.kind), recipe.name))
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
    what = {"train": "a training recipe's", "sweep": "a sweep's", "experiment": "an experiment's"}[
        kind
    ]
    raise ConfigError(
        field, str(text), f"an existing YAML file or {what} name{hint} (`rrn recipes` lists them)"
    )
