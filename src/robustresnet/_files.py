"""Reading the YAML and JSON files users hand us: every fault is one ConfigError line naming the
file and what is wrong (missing, not UTF-8, a syntax error at line L), never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# Configs, specs and sweep files are a few kB; a larger one is not one of them, and is refused
# before it is read into memory.
MAX_TEXT_BYTES = 16 * 2**20
_NOT_NESTED = "nested less deeply (the parser ran out of stack)"


def read_text(path: str | os.PathLike, field: str, *, limit: int | None = None) -> str:
    """The UTF-8 text of `path`, or ConfigError(field, path, ...) saying why it cannot be read."""
    path = Path(path)
    try:
        if limit is not None and (size := path.stat().st_size) > limit:
            raise ConfigError(field, str(path), f"a file under {limit} bytes (it has {size})")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(field, str(path), "an existing, readable file") from None
    except OSError as err:
        raise ConfigError(field, str(path), f"a readable file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        where = f"byte {err.start}: {err.object[err.start : err.start + 1]!r}"
        raise ConfigError(field, str(path), f"UTF-8 text (not at {where})") from None


def read_yaml(path: str | os.PathLike, field: str) -> Any:
    """The YAML document in `path` (None when empty); syntax errors name the line and column."""
    text = read_text(path, field, limit=MAX_TEXT_BYTES)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(field, str(path), f"valid YAML ({yaml_problem(err)})") from None
    except RecursionError:
        raise ConfigError(field, str(path), f"YAML {_NOT_NESTED}") from None


def read_json(path: str | os.PathLike, field: str) -> Any:
    """The JSON document in `path`; syntax errors name the line and column."""
    text = read_text(path, field)
    try:
        return json.loads(text)
    except ValueError as err:  # JSONDecodeError, or a number too large to convert
        raise ConfigError(field, str(path), f"valid JSON ({err})") from None
    except RecursionError:
        raise ConfigError(field, str(path), f"JSON {_NOT_NESTED}") from None


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem and where it is (PyYAML's own text spans lines)."""
    problem = getattr(err, "problem", None) or getattr(err, "context", None)
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(err).split())
