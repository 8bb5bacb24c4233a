"""The built wheel carries the recipes: `rrn recipes`, `rrn train digits-demo --print-config` and
a named sweep's dry run work from the unpacked wheel alone, in an empty folder (about 15 s)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from robustresnet.recipes import recipes


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (no build/ or egg-info left in the checkout,
    none of theirs let in), unpacked as an installer would."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    build += ["--no-index", "--quiet", "-w", str(root / "dist"), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=120)
    (wheel,) = (root / "dist").glob("robustresnet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(root / "site")
    return root / "site"


def _rrn(site: Path, cwd: Path, *args: str) -> str:
    """`python -m robustresnet ARGS` with the unpacked wheel first on the path (this checkout's
    src/ nowhere on it), run in `cwd`; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    command = [sys.executable, "-m", "robustresnet", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_wheel_ships_the_recipes(site, tmp_path):
    rows = json.loads(_rrn(site, tmp_path, "recipes", "--json"))
    assert [(row["kind"], row["name"]) for row in rows] == [(r.kind, r.name) for r in recipes()]
    assert all(Path(row["path"]).is_relative_to(site / "robustresnet" / "recipes") for row in rows)

    config = yaml.safe_load(_rrn(site, tmp_path, "train", "digits-demo", "--print-config"))
    assert config["data"]["name"] == "digits" and config["objective"]["eps"] == 0.1

    plan = json.loads(_rrn(site, tmp_path, "sweep", "digits-demo", "--dry-run", "--json"))
    assert plan["output"] == "runs/digits-demo" and len(plan["trials"]) == 12
    # rrn reproduce reads its published tables and measured speeds from the wheel too
    cost = json.loads(_rrn(site, tmp_path, "reproduce", "se-integration", "--dry-run", "--json"))
    assert len(cost["runs"]) == 4 and cost["device_hours"] > 0
    assert list(tmp_path.iterdir()) == []  # nothing written in the working folder
