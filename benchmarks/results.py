"""Rows, the Markdown table, and benchmarks/RESULTS.md: one section per device and
setting holding only its latest run (earlier figures live in git history)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from robustresnet._io import write_text

from .passes import Comparison
from .timing import Timed

RESULTS = Path(__file__).with_name("RESULTS.md")
PREAMBLE = """# Benchmark results

Current figures of `python -m benchmarks` (see `--help`), one section per device and setting; each
`--write` run replaces its section, and earlier figures live in git history. In every row ours
(the library as the section's setting says) and the baseline (the network's definition: eager,
fp32, NCHW, unfused, written the way the authors' code does it) ran interleaved in the same
process: the ratio is ours ÷ baseline images/s (medians over the rounds; in brackets the lowest
and highest ratio of a single round). TFLOP/s counts the same work for both sides: FLOPs of the
convolutions and matrix products the pass needs (FlopCounterMode on the meta device, forward =
one forward pass, attack step = forward + input gradient, training = forward + backward), not the
extra work a side does. MFU (GPU) is ours ÷ a matmul peak measured at the start of the run in
the run's dtype. Warm-up: the untimed first call (compilation and one-off set-up included), or
a one-step version where the section says so. Check: a cheap comparison of the two sides'
results.
"""


def row(
    size: str, name: str, comparison: Comparison, timed: dict[str, Timed], peak: float | None
) -> dict[str, Any]:
    """The JSON record of one comparison; `peak`: the matmul TFLOP/s for MFU (GPU only)."""
    ours, base = timed["ours"], timed["baseline"]
    per_round = [b / o for o, b in zip(ours.seconds, base.seconds, strict=True)]
    record: dict[str, Any] = {
        "size": size,
        "pass": name,
        "images": comparison.images,
        "ours_images_per_s": comparison.images / ours.median,
        "baseline_images_per_s": comparison.images / base.median,
        "ratio": base.median / ours.median,
        "ratio_rounds": [min(per_round), max(per_round)],
        "ours_seconds": ours.seconds,
        "baseline_seconds": base.seconds,
        "ours_warmup_s": ours.warmup_s,
        "baseline_warmup_s": base.warmup_s,
        "ours_peak_mib": ours.peak_mib,
        "baseline_peak_mib": base.peak_mib,
        "check": comparison.check(ours.first, base.first),
    }
    if comparison.flops is not None:
        record["flops"] = comparison.flops
        record["ours_tflops"] = comparison.flops / ours.median / 1e12
        record["baseline_tflops"] = comparison.flops / base.median / 1e12
        if peak:
            record["mfu"] = record["ours_tflops"] / peak
    return record


def head(gpu: bool) -> str:
    """The table's header lines."""
    memory = "peak MiB ours / baseline" if gpu else "process peak RSS MiB"
    cells = ["size", "pass", "images", "ours img/s", "baseline img/s", "ratio (rounds)"]
    cells += ["ours TFLOP/s", "baseline TFLOP/s", *(["MFU"] * gpu), memory]
    cells += ["warm-up s ours / baseline", "check"]
    align = ["---"] * 3 + ["---:"] * (len(cells) - 4) + ["---"]
    return "| " + " | ".join(cells) + " |\n|" + "|".join(align) + "|"


def line(r: dict[str, Any], gpu: bool) -> str:
    """One row of the table."""
    low, high = r["ratio_rounds"]
    cells = [r["size"], r["pass"], f"{r['images']:,}"]
    cells += [_rate(r["ours_images_per_s"]), _rate(r["baseline_images_per_s"])]
    cells.append(f"**{r['ratio']:.2f}x** ({low:.2f}–{high:.2f})")
    cells += [_tflops(r.get("ours_tflops")), _tflops(r.get("baseline_tflops"))]
    if gpu:
        cells.append(f"{r['mfu']:.1%}" if "mfu" in r else "–")
        cells.append(f"{r['ours_peak_mib']:,.0f} / {r['baseline_peak_mib']:,.0f}")
    else:
        cells.append(f"{max(r['ours_peak_mib'], r['baseline_peak_mib']):,.0f}")
    cells += [f"{r['ours_warmup_s']:.2f} / {r['baseline_warmup_s']:.2f}", r["check"]]
    return "| " + " | ".join(cells) + " |"


def _rate(value: float) -> str:
    """Three significant digits, whole numbers from 100 up."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _tflops(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def section(heading: str, text: str, rows: list[dict[str, Any]], gpu: bool) -> str:
    """A RESULTS.md section: the heading, `text` (machine, command, notes), then the table."""
    table = "\n".join([head(gpu), *(line(r, gpu) for r in rows)])
    return f"{heading}\n\n{text.strip()}\n\n{table}\n"


def record(heading: str, text: str, path: Path = RESULTS) -> None:
    """Put `text` (a section starting with `heading`) in `path`, replacing the section with the
    same heading and keeping the others."""
    current = path.read_text() if path.is_file() else PREAMBLE
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        current = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", current, count=1)
    else:
        current = current.rstrip("\n") + "\n\n" + text
    write_text(path, current.rstrip("\n") + "\n")
