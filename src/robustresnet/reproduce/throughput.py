"""Measured training speed for cost estimates: the TRADES-10 training step's images per second
that `python -m benchmarks` measures per network size, from one benchmark JSON (`--json`) or
from the table shipped beside this module (which `python -m benchmarks --throughput` updates)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import read_json
from .._io import write_text
from ..errors import ConfigError

THROUGHPUT_TABLE = Path(__file__).resolve().with_name("throughput.json")
# A TRADES-10 step per image in forward-and-backward passes: ten attack steps, then the clean
# and the adversarial term of the training loss.
TRADES_PASSES = 12
ROW_KEYS = ("size", "macs", "images", "ours_images_per_s")


@dataclass(frozen=True)
class Rate:
    """One measured size: its MACs per image and our TRADES-10 training images per second."""

    size: str
    macs: int
    images_per_s: float


@dataclass(frozen=True)
class Throughput:
    """The rates of one device setting ("cuda, bf16, channels_last, fuse"), where they come from
    (file, machine, command) and the seconds they give per forward-and-backward pass."""

    setting: str
    machine: str
    command: str
    source: str
    rates: tuple[Rate, ...]

    def seconds_per_pass(self, macs: int) -> float:
        """Seconds of one image's forward and backward pass of a network of `macs` MACs: the
        measured size nearest in MACs (log scale), per MAC, times `macs`."""
        rate = min(self.rates, key=lambda r: abs(math.log(r.macs / macs)))
        return macs / (rate.images_per_s * rate.macs * TRADES_PASSES)


def load_throughput(path: str | Path | None = None, *, device: str | None = None) -> Throughput:
    """The rates in `path` (a benchmark JSON or a table like the shipped one), else in the
    shipped table; of the setting on `device` ("cpu", "cuda"; default: cuda when measured)."""
    source = Path(path) if path is not None else THROUGHPUT_TABLE
    field = "throughput-from" if path is not None else "throughput table"
    raw = read_json(source, field)
    documents = raw.get("entries") if isinstance(raw, dict) and "entries" in raw else [raw]
    if not isinstance(documents, list):
        raise ConfigError(field, str(source), "a benchmark JSON or {entries: [...]}")
    entries = [_entry(doc, source, field) for doc in documents]
    entries = [e for e in entries if e.rates]
    if not entries:
        expected = "TRADES rows with MACs (`python -m benchmarks --passes trades --json PATH`)"
        raise ConfigError(field, str(source), expected)
    devices = {e.setting.split(",")[0]: e for e in reversed(entries)}  # the first of each wins
    wanted = device or ("cuda" if "cuda" in devices else next(iter(devices)))
    if wanted not in devices:
        measured = ", ".join(e.setting for e in entries)
        raise ConfigError("device", wanted, f"a device measured in {source.name} ({measured})")
    return devices[wanted]


def _entry(document: Any, source: Path, field: str) -> Throughput:
    """One benchmark document (or table entry) as a Throughput of its TRADES rows."""
    if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
        raise ConfigError(field, str(source), "benchmark results: {settings, machine, rows}")
    rates = []
    for row in document["rows"]:
        if isinstance(row, dict) and row.get("pass", "trades") == "trades" and "macs" in row:
            if not (row["macs"] > 0 and row["ours_images_per_s"] > 0):
                raise ConfigError(f"{field}: {row.get('size')}", row, "positive macs and rate")
            rates.append(Rate(str(row["size"]), int(row["macs"]), float(row["ours_images_per_s"])))
    machine = document.get("machine", "")
    if isinstance(machine, dict):  # a benchmark JSON's: the device and the date
        machine = f"{machine.get('gpu') or machine.get('cpu')}, {machine.get('date')}"
    return Throughput(
        setting=str(document.get("settings", "unknown")),
        machine=str(machine),
        command=str(document.get("command", "")),
        source=str(source),
        rates=tuple(rates),
    )


def record_throughput(
    document: dict[str, Any], machine: str, path: Path = THROUGHPUT_TABLE
) -> None:
    """Put the TRADES rows of a benchmark run into the table at `path`, replacing the entry of
    the same setting and keeping the others (called by `python -m benchmarks --throughput`)."""
    rows = [
        {key: row[key] for key in ROW_KEYS}
        for row in document["rows"]
        if row.get("pass") == "trades" and "macs" in row
    ]
    if not rows:
        return
    table = json.loads(path.read_text()) if path.is_file() else {}
    entry = {"settings": document["settings"], "machine": machine}
    entry |= {"command": document["command"], "rows": rows}
    entries = [e for e in table.get("entries", []) if e.get("settings") != entry["settings"]]
    about = (
        "TRADES-10 training images/s per network size (ours), measured by `python -m benchmarks "
        "--passes trades --throughput`; `rrn reproduce NAME --dry-run` costs runs with them."
    )
    text = json.dumps({"about": about, "entries": [*entries, entry]}, indent=2)
    write_text(path, text + "\n")
