"""Robust accuracy as a cascade over per-sample flags: clean first, then each attack only on the
samples still classified correctly; the state (the report itself) is saved after every batch, so an
interrupted evaluation resumes where it stopped, and reports of disjoint sample ranges merge."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import platform
import time
import warnings
import zlib
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ._files import read_json
from ._io import write_json, write_text
from ._progress import progress
from .attacks.pgd import attack_model, frozen, margin_loss, memory_format_of, pgd, predict
from .attacks.spec import PAPER_EPS, AttackSpec, parse_attack
from .errors import ConfigError

FORMAT = "robustresnet-eval/1"
DEFAULT_ATTACKS = ("clean", "fgsm", "pgd20", "cw40")
_CODES = np.frombuffer(b".01", dtype=np.uint8)  # pending, not robust, robust


class EvaluationWarning(UserWarning):
    """A sign that the robustness figure may be overestimated (e.g. gradient masking)."""


def _encode(flags: torch.Tensor) -> str:
    return _CODES[flags.numpy().astype(np.int64) + 1].tobytes().decode()


def _decode(text: str) -> torch.Tensor:
    codes = np.frombuffer(text.encode(), dtype=np.uint8)
    return torch.from_numpy((np.searchsorted(_CODES, codes) - 1).astype(np.int8))


def _specs(attacks: Sequence[str | AttackSpec], eps: float, norm: str) -> list[AttackSpec]:
    """Attack specs with clean first, each once."""
    specs = [
        a if isinstance(a, AttackSpec) else parse_attack(a, eps=eps, norm=norm) for a in attacks
    ]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError("attacks", names, "each attack once")
    clean = [s for s in specs if s.kind == "clean"] or [parse_attack("clean")]
    return clean[:1] + [s for s in specs if s.kind != "clean"]


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _batch(images, labels, idx, device, memory_format):
    """Float images in [0, 1] (from uint8 or float) and labels of the samples `idx`, on `device`."""
    idx = idx.to(images.device)
    x = images[idx].to(device)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=memory_format), labels[idx].to(device)


def _environment(device: torch.device) -> dict[str, Any]:
    from . import __version__  # here: the package imports this module while it initialises

    try:
        autoattack_version = importlib.metadata.version("pyautoattack")
    except importlib.metadata.PackageNotFoundError:
        autoattack_version = None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or "CPU"
    return {
        "versions": {
            "robustresnet": __version__,
            "torch": torch.__version__,
            "pyautoattack": autoattack_version,
            "python": platform.python_version(),
        },
        "device": f"{device} ({name}, {torch.get_num_threads()} threads)",
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def weights_digest(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of every parameter and buffer: names, dtypes, shapes and values.

    A saved evaluation belongs to exactly these weights; resuming it for others would report
    another model's numbers."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _crc32(tensor: torch.Tensor) -> int:
    return zlib.crc32(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def _new_state(name, specs, images, labels, *, weights, eps, norm, seed, batch_size, offset,
               amp_dtype) -> dict:  # fmt: skip
    settings = {
        "eps": eps,
        "norm": norm,
        "seed": seed,
        "batch_size": batch_size,
        "precision": str(amp_dtype).removeprefix("torch.") if amp_dtype else "float32",
        "attacks": [s.to_dict() for s in specs],
    }
    samples = {"offset": offset, "n": len(labels), "labels_crc32": _crc32(labels.long()),
               "images_crc32": _crc32(images)}  # fmt: skip
    return {"format": FORMAT, "model": name, "weights": weights, "samples": samples,
            "settings": settings, "flags": {}, "seconds": {}, "check_warnings": [],
            "checked": False}  # fmt: skip


def _resume(path: Path | None, fresh: dict) -> dict:
    """The saved state at `path` when it belongs to the same evaluation, else `fresh`."""
    if path is None or not path.exists():
        return fresh
    saved = read_json(path, "state_path")
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ConfigError("state_path", str(path), f"an evaluation state ({FORMAT}); delete it")
    keys = ("format", "weights", "samples", "settings")  # the name may change (a moved run)
    different = [k for k in keys if saved.get(k) != fresh[k]]
    if different:
        why = "other weights" if "weights" in different else f"other {', '.join(different)}"
        raise ConfigError(
            "state_path", str(path), f"a state of this evaluation, but it was saved for {why}; "
            "delete it (or choose another --out) to evaluate afresh",
        )  # fmt: skip
    return {**{k: saved[k] for k in (*fresh, "versions", "device", "date") if k in saved},
            "model": fresh["model"]}  # fmt: skip


def _sanity_checks(model, x, y, *, eps, norm, seed, zero_grad_tolerance) -> list[str]:
    """Signs of gradient masking on one batch: zero input gradients; no decrease with eps."""
    found = []
    with frozen(model), torch.enable_grad():
        x_grad = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(margin_loss(y)(model(x_grad)).sum(), x_grad)
    zero = (grad.flatten(1).abs().sum(1) == 0).float().mean().item()
    if zero > zero_grad_tolerance:
        found.append(
            f"{zero:.0%} of samples have an all-zero input gradient of the margin loss: "
            "gradient-based attacks cannot work there (gradient masking?)"
        )
    radii = [min(eps * k, 1.0) if norm == "inf" else eps * k for k in (1, 2, 4)]
    accs = []
    for radius in radii:
        generator = torch.Generator(x.device).manual_seed(seed)  # the global RNG stays untouched
        x_adv = pgd(model, x, y, eps=radius, step_size=radius / 4, steps=10, norm=norm,
                    generator=generator)  # fmt: skip
        accs.append((predict(model, x_adv).argmax(1) == y).float().mean().item())
    if any(b > a for a, b in zip(accs, accs[1:], strict=False)) or accs[0] == accs[-1] > 0:
        found.append(
            f"PGD-10 robust accuracy does not decrease with eps "
            f"({', '.join(f'{r:.4g}: {a:.2%}' for r, a in zip(radii, accs, strict=True))}): "
            "the attack may not be working (gradient masking?)"
        )
    return found


def _save(path: Path | None, state: dict) -> None:
    """Write the state as a full report (complete: false until done); a rerun resumes it."""
    if path is not None:
        write_json(path, summarise(state))


def _record(state: dict, results: dict[str, torch.Tensor], idx, clean: torch.Tensor) -> None:
    """Write a batch's flags; samples misclassified clean count as not robust to every attack."""
    for key, flags in results.items():
        current = state["flags"].get(key)
        all_flags = _decode(current) if current else torch.full_like(clean, -1)
        all_flags[clean == 0] = 0
        all_flags[idx] = flags.to(torch.int8).cpu()
        state["flags"][key] = _encode(all_flags)


def _blocks(pending: torch.Tensor, offset: int, size: int) -> list[torch.Tensor]:
    """The pending samples batched by fixed blocks of `size` global indices, so a batch holds
    the same samples however the evaluation is split into shards (at block boundaries)."""
    if not len(pending):
        return []
    block = torch.div(pending + offset, size, rounding_mode="floor")
    counts = torch.unique_consecutive(block, return_counts=True)[1]
    return list(pending.split(counts.tolist()))


def _run(model, spec, state, images, labels, *, batch_size, seed, quiet, path) -> None:
    """Run one attack over its pending samples in batches, saving after each batch."""
    device = _device_of(model)
    fmt = memory_format_of(model)
    n = len(labels)
    clean = _decode(state["flags"].get("clean", "." * n))
    flags = _decode(state["flags"].get(spec.name, "." * n))
    pending = ((flags == -1) & (clean != 0)).nonzero().squeeze(1)
    offset = state["samples"]["offset"]
    batches = _blocks(pending, offset, batch_size)
    if spec.kind != "clean":
        flags[clean == 0] = 0
        state["flags"][spec.name] = _encode(flags)
    for idx in progress(batches, quiet=quiet, desc=spec.label, unit="batch"):
        start = time.perf_counter()
        x, y = _batch(images, labels, idx, device, fmt)
        indices = (idx + offset).tolist()
        results, messages = spec.run(model, x, y, seed=seed, indices=indices)
        _record(state, results, idx, clean)
        state["check_warnings"] = list(dict.fromkeys(state["check_warnings"] + messages))
        if spec.kind == "clean":
            clean = _decode(state["flags"]["clean"])
        seconds = state["seconds"]
        seconds[spec.name] = seconds.get(spec.name, 0.0) + time.perf_counter() - start
        _save(path, state)


def summarise(state: dict, *, pgd_aa_tolerance: float = 0.05) -> dict:
    """Accuracy, counts and warnings from a state's flags (recomputed, so merged states work)."""
    n = state["samples"]["n"]
    flags = {k: _decode(v) for k, v in state["flags"].items()}
    names = [a["name"] for a in state["settings"]["attacks"]]
    report = {k: v for k, v in state.items() if k != "flags"}
    report["correct"] = {k: int((f == 1).sum()) for k, f in flags.items()}
    report["accuracy"] = {k: c / n for k, c in report["correct"].items()}
    if all(name in flags for name in names):
        worst = torch.stack([flags[name] == 1 for name in names]).all(0)
        report["accuracy"]["worst_case"] = int(worst.sum()) / n
    report["complete"] = all(name in flags and not (flags[name] == -1).any() for name in names)
    report["seconds"] = {**state["seconds"], "total": sum(state["seconds"].values())}
    report["warnings"] = state["check_warnings"] + _gap_warnings(
        state, report["accuracy"], pgd_aa_tolerance
    )
    report["flags"] = state["flags"]
    return report


def _gap_warnings(state: dict, accuracy: dict[str, float], tolerance: float) -> list[str]:
    """PGD/CW much weaker than AutoAttack at the same eps is a sign of gradient masking."""
    found = []
    attacks = state["settings"]["attacks"]
    for aa in (a for a in attacks if a["kind"] == "aa" and a["name"] in accuracy):
        same = [a["name"] for a in attacks if a["kind"] == "pgd" and a["eps"] == aa["eps"]]
        white_box = min((accuracy[name] for name in same if name in accuracy), default=None)
        auto = accuracy[aa["name"]]
        if white_box is not None and white_box - auto > tolerance:
            found.append(
                f"PGD/CW robust accuracy {white_box:.2%} is {white_box - auto:.2%} above"
                f" AutoAttack's {auto:.2%}: gradient-based attacks seem weakened"
                " (gradient masking?)"
            )
    return found


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    /,
    *,
    attacks: Sequence[str | AttackSpec] = DEFAULT_ATTACKS,
    eps: float = PAPER_EPS,
    norm: str = "inf",
    batch_size: int = 256,
    seed: int = 0,
    state_path: str | Path | None = None,
    offset: int = 0,
    name: str = "model",
    source: dict[str, Any] | None = None,
    sanity_checks: bool = True,
    amp_dtype: torch.dtype | None = None,
    quiet: bool = True,
    pgd_aa_tolerance: float = 0.05,
    zero_grad_tolerance: float = 0.01,
    fuse: bool = True,
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Clean and robust accuracy of `model` on (images, labels) under each attack; the report.

    Each attack runs on the clean-correct samples, so its accuracy is the paper's figure for that
    attack alone; "worst_case" is the AND of all flags. With `state_path` the report is saved after
    every batch and a rerun resumes it. `images`: uint8 or float in [0, 1], NCHW, the first being
    sample `offset`; `source`: free notes kept in the report (e.g. the checkpoint path). With
    `fuse`, every attack runs the model's fused copy (the same function in fewer kernels).

    `shard=(i, n)` evaluates the i-th of n shards (cut at multiples of `batch_size`; merge them
    with `merge_reports`). Under torch.distributed every rank evaluates its shard and every rank
    gets the merged report (rank 0 writes it to `state_path`). Flags do not depend on the
    splitting: random starts come from (seed, sample index), batches from fixed index blocks.
    """
    if len(images) != len(labels) or len(labels) == 0:
        raise ConfigError("images/labels", (len(images), len(labels)), "the same non-zero length")
    if batch_size < 1:
        raise ConfigError("batch_size", batch_size, "an integer >= 1")
    if (
        shard is None
        and dist.is_available()
        and dist.is_initialized()
        and dist.get_world_size() > 1
    ):
        options = {k: v for k, v in locals().items() if k not in ("model", "images", "labels")}
        return _evaluate_distributed(model, images, labels, options)
    if shard is not None:
        lo, hi = shard_bounds(len(labels), *shard, block=batch_size, offset=offset)
        if hi <= lo:
            blocks = f"{len(labels)} samples make fewer batches of {batch_size} than shards"
            raise ConfigError("shard", f"{shard[0]}/{shard[1]}", f"a shard with samples ({blocks})")
        images, labels, offset = (
            images[lo - offset : hi - offset],
            labels[lo - offset : hi - offset],
            lo,
        )
    specs = _specs(attacks, eps, norm)
    path = Path(state_path) if state_path is not None else None
    fresh = _new_state(name, specs, images, labels, weights=weights_digest(model), eps=eps,
                       norm=norm, seed=seed, batch_size=batch_size, offset=offset,
                       amp_dtype=amp_dtype)  # fmt: skip
    state = _resume(path, fresh)
    if source is not None:
        state["source"] = source
    device = _device_of(model)
    model = attack_model(model, fuse=fuse)
    options = {"batch_size": batch_size, "seed": seed, "quiet": quiet, "path": path}
    with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
        _run(model, specs[0], state, images, labels, **options)
        if sanity_checks and not state["checked"]:
            _check(model, state, images, labels, batch_size, zero_grad_tolerance, path)
        for spec in specs[1:]:
            _run(model, spec, state, images, labels, **options)
    state.update(
        _environment(device), date=datetime.datetime.now(datetime.timezone.utc).isoformat()
    )
    _save(path, state)
    report = summarise(state, pgd_aa_tolerance=pgd_aa_tolerance)
    for message in report["warnings"]:
        warnings.warn(message, EvaluationWarning, stacklevel=2)
    return report


def shard_bounds(
    n: int, shard: int, shards: int, *, block: int, offset: int = 0
) -> tuple[int, int]:
    """[start, stop) global indices of shard `shard` of `shards` over samples offset..offset+n-1,
    cut at multiples of `block` (the batch size), so every shard's batches are whole blocks; with
    more shards than blocks some are empty."""
    if not (isinstance(shards, int) and shards >= 1 and 0 <= shard < shards):
        raise ConfigError("shard", f"{shard}/{shards}", "i/N with 0 <= i < N")
    first, last = offset // block, (offset + n - 1) // block
    blocks = last - first + 1
    lo = (first + shard * blocks // shards) * block
    hi = (first + (shard + 1) * blocks // shards) * block
    return max(lo, offset), min(hi, offset + n)


def shard_state_path(path: Path, shard: int, shards: int) -> Path:
    """Where shard `shard` of `shards` keeps its resumable state beside the merged `path`."""
    return path.with_name(f"{path.stem}.shard-{shard}-of-{shards}{path.suffix}")


def _evaluate_distributed(model, images, labels, options: dict[str, Any]) -> dict[str, Any]:
    """Every rank evaluates its shard; the merged report on every rank, written by rank 0
    before any rank returns (a rank that returned, and left the group, while rank 0 still wrote
    could abort in gloo's teardown)."""
    rank, size = dist.get_rank(), dist.get_world_size()
    path = options["state_path"]
    part_path = shard_state_path(Path(path), rank, size) if path is not None else None
    options.update(shard=(rank, size), state_path=part_path, quiet=options["quiet"] or rank > 0)
    lo, hi = shard_bounds(
        len(labels), rank, size, block=options["batch_size"], offset=options["offset"]
    )
    part = (
        evaluate(model, images, labels, **options) if hi > lo else None
    )  # more ranks than batches
    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, part)
    report = merge_reports([p for p in parts if p is not None])
    if rank == 0 and path is not None:
        write_json(Path(path), report)
    dist.barrier()
    return report


def _check(model, state, images, labels, batch_size, zero_grad_tolerance, path) -> None:
    """Run the sanity checks once, on (at most 64 of) the first clean-correct samples."""
    start = time.perf_counter()
    idx = (_decode(state["flags"]["clean"]) == 1).nonzero().squeeze(1)[: min(batch_size, 64)]
    if len(idx):
        x, y = _batch(images, labels, idx, _device_of(model), memory_format_of(model))
        settings = state["settings"]
        state["check_warnings"] += _sanity_checks(
            model, x, y, eps=settings["eps"], norm=settings["norm"], seed=settings["seed"],
            zero_grad_tolerance=zero_grad_tolerance,
        )  # fmt: skip
    state["checked"] = True
    state["seconds"]["sanity_checks"] = time.perf_counter() - start
    _save(path, state)


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from reports of disjoint sample ranges of the same model and settings."""
    if not reports:
        raise ConfigError("reports", [], "at least one report")
    ordered = sorted(reports, key=lambda r: r["samples"]["offset"])
    first = ordered[0]
    end = first["samples"]["offset"]
    for report in ordered:
        start, n = report["samples"]["offset"], report["samples"]["n"]
        who = report.get("origin", f"of {report['model']}")
        where = f"report {who}, samples {start}..{start + n - 1}"
        different = [k for k in ("weights", "settings") if report.get(k) != first.get(k)]
        if different:
            raise ConfigError(where, different, f"the same {' and '.join(different)} as the rest")
        if start < end:
            raise ConfigError(where, f"overlaps samples before {end}", "disjoint sample ranges")
        if start > end:
            raise ConfigError(where, f"samples {end}..{start - 1} are missing", "no gaps")
        end = start + n
    keys = set.intersection(*(set(r["flags"]) for r in ordered))
    seconds: dict[str, float] = {}
    for report in ordered:
        for key, value in report["seconds"].items():
            if key != "total":
                seconds[key] = seconds.get(key, 0.0) + value
    state = {
        **{
            k: v
            for k, v in first.items()
            if k in ("format", "model", "weights", "settings", "versions")
        },  # fmt: skip
        "device": first.get("device"),
        "date": max(r.get("date", "") for r in ordered),
        "samples": {
            "offset": first["samples"]["offset"],
            "n": sum(r["samples"]["n"] for r in ordered),
            "ranges": [[r["samples"]["offset"], r["samples"]["n"]] for r in ordered],
        },
        "flags": {k: "".join(r["flags"][k] for r in ordered) for k in sorted(keys)},
        "seconds": seconds,  # device time, added over the parts
        "wall_seconds": max(r.get("wall_seconds", r["seconds"].get("total", 0.0)) for r in ordered),
        "check_warnings": list(dict.fromkeys(w for r in ordered for w in r["check_warnings"])),
    }
    return summarise(state)


def merge_report_files(folders: Sequence[Path], out: Path) -> dict[str, Any]:
    """Merge the complete reports in `folders` (each a shard's --out) into out/report.json and
    out/report.md; an incomplete or unreadable shard, or shards that do not fit, name the folder."""
    reports = []
    for folder in folders:
        path = folder / "report.json"
        report = read_json(path, "rrn eval merge")
        if not isinstance(report, dict) or report.get("format") != FORMAT:
            raise ConfigError(str(path), None, "a report written by rrn eval")
        if not report.get("complete"):
            raise ConfigError(str(path), "incomplete", "a finished shard (rerun its command)")
        reports.append({**report, "origin": str(folder)})
    merged = merge_reports(reports)
    write_json(out / "report.json", merged)
    write_text(out / "report.md", to_markdown(merged))
    return merged


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def to_markdown(reports: dict[str, Any] | Sequence[dict[str, Any]]) -> str:
    """A table in the layout of the paper's (model | Clean | PGD-20 | CW-40 | AA), in percent."""
    reports = [reports] if isinstance(reports, dict) else list(reports)
    columns: dict[str, str] = {}
    for report in reports:
        for attack in report["settings"]["attacks"]:
            columns.setdefault(attack["name"], parse_attack(attack["name"]).label)
    lines = [
        "| model | " + " | ".join(columns.values()) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for report in reports:
        cells = [_percent(report["accuracy"].get(name)) for name in columns]
        lines.append(f"| {report['model']} | " + " | ".join(cells) + " |")
    for report in reports:
        settings, samples = report["settings"], report["samples"]
        lines.append("")
        lines.append(
            f"{report['model']}: {samples['n']} samples from index {samples['offset']}, "
            f"eps {eps_text(settings['eps'], settings['norm'])} (L{settings['norm']}), "
            f"seed {settings['seed']}, "
            f"{settings['precision']}; worst case over all attacks "
            f"{_percent(report['accuracy'].get('worst_case')) or '-'}%; "
            f"{report['seconds']['total']:.1f} s" + ("" if report["complete"] else " (incomplete)")
        )
        lines += [f"- warning: {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def eps_text(eps: float, norm: str = "inf") -> str:
    """An L∞ radius of whole 1/255 steps as people write it ("8/255"), any other as a plain
    number ("0.5"); RobustBench's spelling too."""
    steps = eps * 255
    if norm == "inf" and round(steps) > 0 and abs(steps - round(steps)) < 1e-6:
        return f"{round(steps)}/255"
    return f"{eps:g}"
