"""`export_robustbench`: what a RobustBench submission needs, from a finished, evaluated run.

OUT/
  model_info/DATASET/THREAT/MODEL_ID.json   the leaderboard entry, in RobustBench's fields
  MODEL_ID.pt                               {"state_dict": ...}, RobustBench's key layout
  architecture.py                           plain PyTorch (torch only); get_model() builds it
  new_model_request.md                      the text of RobustBench's "new model" issue

What the run cannot know (paper title, authors, venue, link, model id) is a marked placeholder
until given; the result lists the placeholders left.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import write_json, write_text
from ..arch import ArchSpec
from ..arch.zoo import PRESETS
from ..errors import ConfigError
from ..train.config import DataConfig
from .claim import LEADERBOARD_EPS, THREAT_MODELS, AutoAttackClaim, autoattack_claim, eps_text
from .plain import check_reproduces, write_architecture, write_checkpoint
from .request import request_text
from .run import EvaluatedRun, read_run

# What each field says until the caller fills it in.
PLACEHOLDERS = {
    "name": "TODO: paper title (--name)",
    "authors": "TODO: authors (--authors)",
    "venue": "TODO: venue, e.g. CVPR 2023 (--venue)",
    "link": "TODO: URL of the paper or code (--link)",
}
MODEL_ID_PLACEHOLDER = "NameYearWord"  # RobustBench's <NameYearFirstWordOfTitle>, until given
ARCHITECTURE_FILE = "architecture.py"
REQUEST_FILE = "new_model_request.md"
# Preset families as leaderboards spell them ("wrn-28-10" is listed as "WideResNet-28-10").
_FAMILIES = {
    "robustresnet-": "RobustResNet-",
    "wrn-": "WideResNet-",
    "preactresnet-": "PreActResNet-",
}


@dataclass(frozen=True)
class RobustBenchExport:
    """The files written, the leaderboard entry, and the fields still holding placeholders."""

    model_info_path: Path
    checkpoint_path: Path
    architecture_path: Path
    request_path: Path
    model_info: dict[str, Any]
    weights: Path
    placeholders: tuple[str, ...]
    logits_difference: float

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


def export_robustbench(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    report: str | os.PathLike | None = None,
    allow_partial: bool = False,
    model_id: str | None = None,
    name: str | None = None,
    authors: str | None = None,
    venue: str | None = None,
    link: str | None = None,
    architecture: str | None = None,
    external: float | None = None,
    footnote: str | None = None,
) -> RobustBenchExport:
    """Write a RobustBench submission of `run_dir` to `out` (see the module docstring).

    `report` defaults to the run's report.json; `external` is a robust accuracy in percent from
    an adaptive evaluation of your own, if any; `footnote` is added to the generated one."""
    run = read_run(run_dir, report)
    claim = autoattack_claim(run, allow_partial=allow_partial)
    given = {"name": name, "authors": authors, "venue": venue, "link": link}
    placeholders = tuple(k for k, v in given.items() if v is None)
    if model_id is None:
        placeholders += ("model_id",)
        model_id = f"{MODEL_ID_PLACEHOLDER}_{_slug(run.name)}"
    _check_model_id(model_id)
    info = model_info(
        run, claim, {k: PLACEHOLDERS[k] if v is None else v for k, v in given.items()},
        architecture=architecture or architecture_name(run.spec), external=external,
        footnote=footnote,
    )  # fmt: skip
    out = Path(out)
    checkpoint = write_checkpoint(out / f"{model_id}.pt", run.model)
    header = _header(run, model_id, checkpoint.name)
    architecture_path = write_architecture(out / ARCHITECTURE_FILE, run.spec, header)
    difference = check_reproduces(run.model, architecture_path, checkpoint)  # before any claim
    info_path = out / "model_info" / run.config.data.name / THREAT_MODELS[claim.norm]
    info_path = write_json(info_path / f"{model_id}.json", info)
    request = write_text(
        out / REQUEST_FILE, request_text(info, claim, model_id, checkpoint.name, placeholders)
    )
    return RobustBenchExport(
        info_path, checkpoint, architecture_path, request, info, run.weights_path, placeholders,
        difference,
    )  # fmt: skip


def model_info(
    run: EvaluatedRun,
    claim: AutoAttackClaim,
    paper: dict[str, str],
    *,
    architecture: str,
    external: float | None = None,
    footnote: str | None = None,
) -> dict[str, Any]:
    """The leaderboard entry in RobustBench's field order; accuracies as percent strings."""
    data = run.config.data
    extra_kind = _extra_kind(data)
    info: dict[str, Any] = {
        "link": paper["link"],
        "name": paper["name"],
        "authors": paper["authors"],
        "additional_data": extra_kind == "external",
        "number_forward_passes": 1,  # a deterministic forward pass
        "dataset": data.name,
        "venue": paper["venue"],
        "architecture": architecture,
        "eps": eps_text(claim.eps, claim.norm),
        "clean_acc": _percent(claim.clean),
        "reported": _percent(claim.robust),
        "autoattack_acc": _percent(claim.robust),
    }
    if external is not None:
        info["external"] = f"{external:.2f}"
    notes = _footnotes(claim)
    if extra_kind == "generated":  # RobustBench's wording for Wang2023Better's entry
        notes.append(
            f"It uses synthetic images in training, {data.extra_fraction:.0%} of each batch."
        )
    if footnote:
        notes.append(footnote)
    if notes:
        info["footnote"] = " ".join(notes)
    return info


def architecture_name(spec: ArchSpec) -> str:
    """The leaderboard's spelling of a preset ("RobustResNet-A1", "WideResNet-28-10"), the
    spec's own name for any other, or its blocks and depths when it has none."""
    preset = PRESETS.get(spec.name or "")
    if preset is not None and _same_layout(spec, preset):
        prefix = next(p for p in _FAMILIES if spec.name.startswith(p))
        return _FAMILIES[prefix] + spec.name[len(prefix) :].upper()
    if spec.name:
        return spec.name
    blocks = "/".join(dict.fromkeys(s.block for s in spec.stages))
    depths = "-".join(str(d) for d in spec.depths)
    planes = "-".join(str(p) for p in spec.planes)
    return f"PreActResNet ({blocks}, depths {depths}, widths {planes})"


def _same_layout(spec: ArchSpec, preset: ArchSpec) -> bool:
    """The preset's stages and stem (activation, classes and input normalisation aside)."""
    keep = ("depth", "widening", "channels", "stride", "block", "kernel_size", "normalization")
    shape = [tuple(getattr(s, k) for k in keep) for s in spec.stages]
    return shape == [tuple(getattr(s, k) for k in keep) for s in preset.stages] and (
        spec.stem_channels,
        spec.block_options,
    ) == (preset.stem_channels, preset.block_options)


def _extra_kind(data: DataConfig) -> str | None:
    """`data.extra_kind` where the run trained on extra data (None where it did not); refused
    when unset: the leaderboard filters on additional_data, so it is never guessed."""
    if data.extra is None or data.extra_fraction == 0:
        return None
    if data.extra_kind is None:
        expected = (
            "external (real images from elsewhere: additional_data true) or generated "
            "(synthetic images: additional_data false, footnoted), set in the run's config.yaml"
        )
        raise ConfigError("data.extra_kind", None, expected)
    return data.extra_kind


def _footnotes(claim: AutoAttackClaim) -> list[str]:
    notes = []
    if claim.partial:
        notes.append(f"{claim.coverage}, not the full standard evaluation.")
    standard = LEADERBOARD_EPS[claim.norm]
    if not abs(claim.eps - standard) < 1e-9:
        notes.append(
            f"Evaluated at eps = {eps_text(claim.eps, claim.norm)}, not the leaderboard's "
            f"{eps_text(standard, claim.norm)}."
        )
    return notes


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def _check_model_id(model_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", model_id):
        raise ConfigError(
            "model_id", model_id, "a file name of letters, digits, '.', '_' and '-', e.g. "
            "Huang2022Revisiting_WRN-A4",
        )  # fmt: skip


def _header(run: EvaluatedRun, model_id: str, checkpoint: str) -> str:
    from .. import __version__  # here: the package imports its modules while it initialises

    return (
        f"{model_id}: exported by robustresnet {__version__} from {run.run_dir.resolve().name}"
        f" ({run.weights_path.name}).\n\n"
        "Usage (needs only torch):\n"
        "    import torch\n"
        "    from architecture import get_model\n"
        "    model = get_model()\n"
        f'    model.load_state_dict(torch.load("{checkpoint}", weights_only=True)["state_dict"])\n'
    )
