"""The paper's experiments: shipped sweep files, each with a `paper:` section naming the published
table its report compares with (and the figure it draws), found by name like every recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import read_yaml
from ..errors import ConfigError
from ..recipes import Recipe, find_file, recipes
from ..sweep import SweepSpec, parse_sweep
from .published import published_tables

# What a report draws beside its table: robust accuracy against MACs with the published points,
# robust accuracy against the depth share, or Kendall's tau of each stage's depth / widening.
FIGURES = ("macs", "depth_share", "kendall")


@dataclass(frozen=True)
class Experiment:
    """One experiment of the paper: its sweep (as `rrn sweep` runs it), its published table's
    name in the package's data, and the figure of its report (None: the table alone)."""

    name: str
    description: str
    path: Path
    sweep: SweepSpec
    table: str
    figure: str | None = None


def experiment_recipes() -> list[Recipe]:
    """The shipped experiments, by name, with their one-line descriptions."""
    return recipes("experiment")


def load_experiment(name: str | Path) -> Experiment:
    """The experiment `name` (a shipped experiment's name, or a path to such a file)."""
    path = find_file(name, "experiment", field="experiment")
    raw = read_yaml(path, "experiment") or {}
    if not isinstance(raw, dict):
        raise ConfigError("experiment", str(path), "a mapping: a sweep file with a paper section")
    paper = _paper_section(raw.pop("paper", None), path)
    sweep = parse_sweep(raw, root=path.parent, default_name=path.stem)
    description = Recipe("experiment", path.stem, path).description
    return Experiment(
        name=sweep.name,
        description=description,
        path=path,
        sweep=sweep,
        table=paper["table"],
        figure=paper.get("figure"),
    )


def _paper_section(paper: Any, path: Path) -> dict[str, Any]:
    """`paper: {table: NAME, figure: macs | depth_share | kendall}`, checked."""
    if not isinstance(paper, dict) or not set(paper) <= {"table", "figure"}:
        raise ConfigError(f"{path.name}: paper", paper, "{table: NAME, figure: KIND}")
    tables = published_tables()
    if paper.get("table") not in tables:
        raise ConfigError(f"{path.name}: paper.table", paper.get("table"), f"one of {list(tables)}")
    if paper.get("figure") not in (None, *FIGURES):
        raise ConfigError(f"{path.name}: paper.figure", paper["figure"], f"one of {FIGURES}")
    return paper
