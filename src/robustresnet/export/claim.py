"""The AutoAttack figure a run can claim: which report, which attacks, how many test images.

A leaderboard entry is standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) on the whole test
split at the run's threat model; anything less is refused unless the caller allows a partial
claim, which then says what it is ("AutoAttack (apgd-ce+apgd-t) on 50 of 10,000 test images").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..attacks.autoattack import STANDARD
from ..data.datasets import SPLIT_SIZES, load_dataset
from ..errors import ConfigError
from ..evaluate import eps_text
from .run import EvaluatedRun

# RobustBench's threat-model names and the radius of its CIFAR leaderboards.
THREAT_MODELS = {"inf": "Linf", "2": "L2"}
LEADERBOARD_EPS = {"inf": 8 / 255, "2": 0.5}


@dataclass(frozen=True)
class AutoAttackClaim:
    """Clean and AutoAttack accuracy (fractions) of one report, with what the evaluation covered."""

    clean: float
    robust: float
    attacks: tuple[str, ...]
    eps: float
    norm: str
    samples: int
    test_size: int
    partial: bool
    report: dict[str, Any] = field(compare=False, repr=False)  # the report it comes from

    @property
    def label(self) -> str:
        """ "AutoAttack", or "AutoAttack (apgd-ce+apgd-t)" for a subset of its attacks."""
        standard = self.attacks == STANDARD
        return "AutoAttack" if standard else f"AutoAttack ({'+'.join(self.attacks)})"

    @property
    def coverage(self) -> str:
        """E.g. "AutoAttack (apgd-ce+apgd-t) on 50 of 10,000 test images"."""
        return f"{self.label} on {self.samples:,} of {self.test_size:,} test images"


def autoattack_claim(run: EvaluatedRun, *, allow_partial: bool = False) -> AutoAttackClaim:
    """The run's AutoAttack result; ConfigError naming the report when it is not a standard one
    on the full test split at the run's threat model (unless `allow_partial`)."""
    eps, norm = run.config.threat_model()
    found = [(r, a) for r in run.reports for a in r["settings"]["attacks"] if a["kind"] == "aa"]
    if not found:
        raise _refusal(run, "an AutoAttack evaluation (set eval.autoattack, or `rrn eval --attacks "
                       "clean,aa --out DIR` and pass its report)")  # fmt: skip
    at_threat = [(r, a) for r, a in found if _same_threat(a, eps, norm)]
    if not at_threat:
        a = found[0][1]
        raise _refusal(
            run, f"AutoAttack at the run's threat model ({THREAT_MODELS[norm]}, eps "
            f"{eps_text(eps, norm)}), not at {THREAT_MODELS[a['norm']]} eps {a['eps']:g}",
        )  # fmt: skip
    # the widest evaluation: most images, then the standard attacks
    report, attack = max(
        at_threat, key=lambda ra: (_samples(ra[0]), ra[1]["autoattack"] == list(STANDARD))
    )
    size, samples, attacks = _test_size(run, report), _samples(report), tuple(attack["autoattack"])
    partial = attacks != STANDARD or samples != size or report["samples"]["offset"] != 0
    claim = AutoAttackClaim(
        clean=report["accuracy"]["clean"],
        robust=report["accuracy"][attack["name"]],
        attacks=attacks,
        eps=eps,
        norm=norm,
        samples=samples,
        test_size=size,
        partial=partial,
        report=report,
    )
    if claim.partial and not allow_partial:
        raise _refusal(
            run, f"standard AutoAttack ({', '.join(STANDARD)}) on all {size:,} test images; it "
            f"holds {claim.coverage} (--allow-partial exports it, saying so in the footnote)",
        )  # fmt: skip
    return claim


def _same_threat(attack: dict[str, Any], eps: float, norm: str) -> bool:
    return attack["norm"] == norm and math.isclose(attack["eps"], eps, rel_tol=1e-9)


def _samples(report: dict[str, Any]) -> int:
    return int(report["samples"]["n"])


def _test_size(run: EvaluatedRun, report: dict[str, Any]) -> int:
    """Images in the test split the report was made on (which must be the run's dataset)."""
    data = run.config.data
    source = (report.get("source") or {}).get("data")
    if source is not None and source != f"{data.name}/test":
        raise _refusal(run, f"an evaluation of the run's test split {data.name}/test, not {source}")
    if data.name in SPLIT_SIZES:
        return SPLIT_SIZES[data.name][1]
    return len(load_dataset(data.name, data.root, split="test", quiet=True, **data.options).labels)


def _refusal(run: EvaluatedRun, expected: str) -> ConfigError:
    return ConfigError("report", str(run.report_path), expected)
