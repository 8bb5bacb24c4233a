"""Attacks by name (clean, fgsm, pgd20, cw40, aa, pgd50:eps=4/255, ...) for evaluation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any, Literal

import torch
from torch import nn

from .._seeds import seeded, stream_seed
from ..errors import ConfigError
from .autoattack import STANDARD, autoattack, parse_attacks
from .pgd import fgsm, pgd, predict, random_start

Kind = Literal["clean", "fgsm", "pgd", "aa"]
_LABELS = {"clean": "Clean", "fgsm": "FGSM", "aa": "AA"}
_DEFAULT_STEPS = {"pgd": 20, "cw": 40}
PAPER_EPS = 8 / 255  # the paper's L∞ radius: the default of every attack and objective


@dataclass(frozen=True)
class AttackSpec:
    """One attack of an evaluation; `name` is its key in reports, `label` its column heading.

    A PGD step size of None is eps / 10 (0.8/255 at 8/255: the paper's PGD-20 and CW-40)."""

    name: str
    kind: Kind
    eps: float = PAPER_EPS
    norm: Literal["inf", "2"] = "inf"
    steps: int = 0
    step_size: float | None = None
    loss: Literal["ce", "cw"] = "ce"
    random_start: bool = True
    autoattack: tuple[str, ...] = STANDARD

    def __post_init__(self) -> None:
        where = f"attack {self.name}"
        if self.kind not in ("clean", "fgsm", "pgd", "aa"):
            raise ConfigError(f"{where}: kind", self.kind, "clean, fgsm, pgd or aa")
        if self.norm not in ("inf", "2"):
            raise ConfigError(f"{where}: norm", self.norm, '"inf" or "2"')
        if not 0 <= self.eps <= (1 if self.norm == "inf" else float("inf")):
            raise ConfigError(f"{where}: eps", self.eps, "a radius in image units, e.g. 8/255")
        if self.kind == "fgsm" and self.norm != "inf":
            raise ConfigError(where, self.norm, "norm inf (FGSM is an L∞ attack)")
        if self.kind == "pgd" and self.step_size is None:
            object.__setattr__(self, "step_size", self.eps / 10)
        if self.step_size is not None and not self.step_size >= 0:
            raise ConfigError(f"{where}: step_size", self.step_size, "a number >= 0")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ConfigError(f"{where}: steps", self.steps, "an integer >= 0")
        if self.loss not in ("ce", "cw"):
            raise ConfigError(f"{where}: loss", self.loss, '"ce" or "cw"')

    @property
    def label(self) -> str:
        """The paper's column name (PGD-20, CW-40, AA), or the name as written with options."""
        if self.kind == "aa" and self.autoattack != STANDARD:
            custom = "AA (" + "+".join(self.autoattack) + ")"
            return custom if self.name.count(":") == 1 else self.name
        if ":" in self.name:
            return self.name
        if self.kind == "pgd":
            return f"{'CW' if self.loss == 'cw' else 'PGD'}-{self.steps}"
        return _LABELS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        """The settings that matter for this kind of attack, as JSON-ready values."""
        fields = {"clean": (), "fgsm": ("eps", "norm"), "aa": ("eps", "norm", "autoattack")}
        keep = fields.get(self.kind, ("eps", "norm", "steps", "step_size", "loss", "random_start"))
        values = {k: v for k, v in asdict(self).items() if k in keep}
        if "autoattack" in values:
            values["autoattack"] = list(values["autoattack"])
        return {"name": self.name, "kind": self.kind, **values}

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        seed: int,
        indices: Sequence[int],
    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Per-sample robust flags of (x, y), {name: flags[, name/sub: ...]}, and warnings.

        `indices` are the samples' indices in the whole evaluation: each PGD / CW start is drawn
        from (seed, attack, index), so flags do not depend on batching or sharding; AutoAttack
        draws per batch, seeded from (seed, attack, first index)."""
        if self.kind == "aa":
            batch_seed = stream_seed(seed, self.name, int(indices[0])) % 2**31
            result = autoattack(
                model, x, y, eps=self.eps, norm=self.norm, attacks=self.autoattack, seed=batch_seed
            )
            subs = {f"{self.name}/{k}": v for k, v in result.flags_after.items()}
            return {self.name: result.flags, **subs}, list(result.warnings)
        if self.kind == "fgsm":
            x = fgsm(model, x, y, eps=self.eps)
        elif self.kind == "pgd":
            noise = None
            if self.random_start:
                draws = [
                    random_start(x[:1], eps=self.eps, norm=self.norm,
                                 generator=seeded(seed, self.name, int(i)))
                    for i in indices
                ]  # fmt: skip
                noise = torch.cat(draws)
            x = pgd(
                model, x, y, eps=self.eps, step_size=self.step_size, steps=self.steps,
                loss=self.loss, norm=self.norm, start_noise=noise,
            )  # fmt: skip
        return {self.name: predict(model, x, batch_size=len(x)).argmax(1) == y}, []


def parse_number(text: str, field: str) -> float:
    """A float or a fraction such as 8/255 (units are explicit: never rescaled)."""
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError, OverflowError):  # Fraction reads no nan or inf
        raise ConfigError(field, text, "a number such as 0.5 or 8/255") from None


def _options(spec: AttackSpec, options: list[str]) -> dict[str, Any]:
    """The changes that `key=value` options ask for (eps, steps, step_size, norm, ...)."""
    changes: dict[str, Any] = {}
    for option in options:
        key, _, value = option.partition("=")
        key = key.strip().replace("-", "_")
        if key in ("eps", "step_size"):
            changes[key] = parse_number(value, f"{spec.name}: {key}")
        elif key == "steps" and value.strip().isdigit():
            changes[key] = int(value)
        elif key == "norm" and value in ("inf", "2"):
            changes[key] = value
        elif key == "random_start" and value in ("0", "1", "true", "false"):
            changes[key] = value in ("1", "true")
        elif key == "attacks" and spec.kind == "aa":
            changes["autoattack"] = parse_attacks(value)
        else:
            raise ConfigError(
                f"attack {spec.name}", option, "eps=, steps=, step_size=, norm=, random_start= "
                "or (aa only) attacks=apgd-ce+apgd-t",
            )  # fmt: skip
    return changes


def parse_attack(text: str, *, eps: float = PAPER_EPS, norm: str = "inf") -> AttackSpec:
    """`NAME[:key=value...]` (the command line's form): NAME is clean, fgsm, aa, pgdN or cwN."""
    head, *options = text.strip().split(":")
    match = re.fullmatch(r"(clean|fgsm|aa|pgd|cw)(\d*)", head.strip().lower())
    if match is None:
        raise ConfigError("attack", text, "clean, fgsm, pgdN, cwN or aa, with :key=value options")
    base, digits = match.groups()
    if digits and base not in _DEFAULT_STEPS:
        raise ConfigError("attack", text, f"no step count after {base!r}")
    kind = "pgd" if base in _DEFAULT_STEPS else base
    steps = int(digits) if digits else _DEFAULT_STEPS.get(base, 0)
    loss = "cw" if base == "cw" else "ce"
    spec = AttackSpec(text.strip(), kind, eps=eps, norm=norm, steps=steps, loss=loss)
    return replace(spec, **{"step_size": None, **_options(spec, options)})  # None: eps / 10
