"""The README's and docs' examples run as shown.

Every fenced `python` block of a page runs, in order, as one script (later blocks use what
earlier ones made); every `rrn` command of a `bash` or `console` block runs, and a `console`
block's output must be printed as shown. A block preceded by `<!-- doc-test: skip (why) -->`
is not run (it needs a dataset, a GPU or minutes); `<!-- doc-test: any-output (why) -->` runs a
console block without comparing its output (times, dates). Each page runs in its own empty folder.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- doc-test: (skip|any-output) \((.+)\) -->")
RUN_LANGUAGES = {"python", "bash", "console"}


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, text, first line and doc-test marker."""

    language: str
    text: str
    line: int
    marker: str | None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of `page`, each with the marker on the line before its fence."""
    found, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, end = i + 1, lines.index("```", i + 1)
        previous = lines[i - 1] if i > 0 else ""
        marker = MARKER.match(previous)
        if previous.startswith("<!-- doc-test") and not marker:
            raise ValueError(f"{page.name}:{i}: malformed marker {previous!r}")
        text = "\n".join(lines[start:end]) + "\n"
        found.append(Block(fence[1], text, start, marker[1] if marker else None))
        i = end + 1
    return found


@dataclass(frozen=True)
class Command:
    """An `rrn` command of a shell block and, for a console block, the output it must print."""

    argv: list[str]
    expected: str | None
    line: int


def commands(block: Block) -> list[Command]:
    """The `rrn` commands of a bash block (one per logical line) or console block (`$ ` lines)."""
    found: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line, first = lines[i], i
        if block.language == "console" and not line.startswith("$ "):
            i += 1
            continue
        line = line.removeprefix("$ ")
        while line.endswith("\\"):
            i += 1
            line = line[:-1] + lines[i]
        i += 1
        argv = shlex.split(line, comments=True)
        if not argv or argv[0] != "rrn":
            continue
        expected = None
        if block.language == "console" and block.marker != "any-output":
            output = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            expected = "\n".join(output).strip("\n")
        found.append(Command(argv, expected, block.line + first))
    return found


def _run_python(page: Path, code: str, folder: Path, env: dict[str, str]) -> None:
    script = folder / "doc_examples.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, script.name], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{page.name}: python examples failed:\n{done.stderr[-3000:]}"


def _run_command(page: Path, command: Command, folder: Path, env: dict[str, str]) -> None:
    argv = [sys.executable, "-m", "robustresnet", *command.argv[1:]]
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)
    where = f"{page.name}:{command.line}: {shlex.join(command.argv)}"
    if command.expected is not None and command.expected.startswith(f"{command.argv[0]} "):
        assert done.returncode != 0, f"{where}: expected to fail"  # a documented error
        assert done.stderr.strip() == command.expected, f"{where}: stderr differs"
        return
    assert done.returncode == 0, f"{where}: exit {done.returncode}\n{done.stderr[-3000:]}"
    if command.expected is not None:
        assert done.stdout.strip("\n") == command.expected, f"{where}: output differs"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_examples_run_as_shown(page: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RRN_DATA": str(tmp_path / "data"), "PYTHONPATH": str(ROOT / "src")}
    env.pop("COLUMNS", None)
    ran = [b for b in blocks(page) if b.language in RUN_LANGUAGES and b.marker != "skip"]
    code = "".join(b.text for b in ran if b.language == "python")
    if code:
        _run_python(page, code, tmp_path, env)
    for block in ran:
        for command in commands(block) if block.language != "python" else []:
            _run_command(page, command, tmp_path, env)


def test_markers_say_why() -> None:
    """Every skipped block gives a reason, and a marker sits only before a fence."""
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("<!-- doc-test"):
                assert MARKER.match(line), f"{page.name}:{i + 1}: {line}"
                assert lines[i + 1].startswith("```"), f"{page.name}:{i + 1}: no block follows"
