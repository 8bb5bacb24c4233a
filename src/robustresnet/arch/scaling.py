"""RobustScaling: networks sized to a MAC budget, and the depth-only / width-only baselines.

Compound rule (the paper's): stage depths in the ratio 2:2:1, widening factors 2:2.5:1, and total
depth : total widening = 7:3. The paper does not say how a target becomes integers; this module
does it so:

1. A total (of depths or of widening factors) is split over the stages in its ratio by largest
   remainders (ties to the earlier stage), so each total gives the closest integer split.
2. The total widening T_W where the 7:3 line (T_D = 7/3 · T_W) crosses the target is found, and
   every pair (T_D, T_W) with T_W within 2 of it is costed (exact MACs of the built network).
3. Among the pairs whose MACs lie within `tolerance` (2.5%) of the target, the one whose
   T_D : T_W is closest to 7:3 (in log ratio) wins, ties going to the closer MACs. When that
   best pair is still more than 15% off 7:3 (small targets, where one block is a big MAC step),
   the search allows up to 5%; when no pair is within 5%, the closest MACs win.

With it, 5G gives RobustResNet-A1 exactly and 10G / 20G / 40G land within one block or one unit of
widening of A2 / A3 / A4 per stage (the published A2 itself is 7.9% above 10G). Ratio first
within a tolerance, rather than closest MACs outright, because many integer shapes far from
7:3 hit a target almost exactly; the compound rule is about the shape.

A given depth share s = ΣD / (ΣD + ΣW) (the paper's study of the compound rule at 5G and 20G,
shares 0.3 to 0.95) replaces 7:3 by s : (1 - s) throughout; 0.7 is the rule itself.

Baselines: from the standard WRN nearest the target (WRN-28-10, 34-12, 46-14, 70-16), the total
depth is redistributed 2:2:1 with its widening kept ("depth"), or its total widening 2:2.5:1 with
its depths kept ("width"), both with the chosen block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from .._units import format_count, parse_count
from ..errors import ConfigError
from .profile import depth_costs, profile
from .spec import ArchSpec, StageSpec
from .zoo import get_spec

DEPTH_RATIO = (2, 2, 1)
WIDENING_RATIO = (2, 2.5, 1)
DEPTH_SHARE = 0.7  # total depth / (total depth + total widening): 7 : 3
STANDARD_WRNS = ("wrn-28-10", "wrn-34-12", "wrn-46-14", "wrn-70-16")
RULES = ("compound", "depth", "width")
_WINDOW = 2  # total widening searched on each side of the 7:3 crossing
MAX_MISS = 0.05  # a compound result is never further from its target than this
# Far beyond any network trained (the paper's largest has 40G MACs), and below the widths whose
# weight sizes overflow torch's, even on the meta device the counting uses.
MAX_TARGET_MACS = 10**15
RATIO_SLACK = 0.15  # |log ratio| beyond which MACs may go up to MAX_MISS to keep the shape


def apportion(total: int, ratio: Sequence[float]) -> tuple[int, ...]:
    """Integers in proportion to `ratio` that sum to `total` (largest remainders, ties to the
    earlier stage)."""
    exact = [total * r / sum(ratio) for r in ratio]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(ratio)), key=lambda i: (parts[i] - exact[i], i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return tuple(parts)


def scaled_spec(
    depths: Sequence[int],
    widening: Sequence[int],
    *,
    block: str = "robust_res_block",
    activation: str = "relu",
    **spec_fields: Any,
) -> ArchSpec:
    """A CIFAR-style spec (strides 1, 2, 2, ...) of these stage depths and widening factors."""
    stages = tuple(
        StageSpec(
            depth=d, widening=w, stride=1 if i == 0 else 2, block=block, activation=activation
        )
        for i, (d, w) in enumerate(zip(depths, widening, strict=True))
    )
    return ArchSpec(stages=stages, **spec_fields)


def _depth_per_widening(share: float) -> float:
    """Total depth per unit of total widening at a depth share (7/3 at 0.7)."""
    return share / (1 - share)


def _ratio_error(total_depth: int, total_widening: int, share: float) -> float:
    return abs(math.log(total_depth / total_widening / _depth_per_widening(share)))


def _line_macs(total_widening: int, share: float, options: dict[str, Any]) -> int:
    """MACs on the depth-share line at this total widening (depth total rounded)."""
    total_depth = round(_depth_per_widening(share) * total_widening)
    depths = apportion(max(len(DEPTH_RATIO), total_depth), DEPTH_RATIO)
    widening = apportion(total_widening, WIDENING_RATIO)
    return profile(scaled_spec(depths, widening, **options)).macs


def _crossing(target: int, share: float, options: dict[str, Any]) -> int:
    """The smallest total widening whose depth-share-line network reaches the target (at
    least 3)."""
    low = len(WIDENING_RATIO)
    # MACs grow about as T_W³ on the line: guess from one probe, then step to the crossing.
    probe = 15
    guess = max(low, round(probe * (target / _line_macs(probe, share, options)) ** (1 / 3)))
    while guess > low and _line_macs(guess - 1, share, options) >= target:
        guess -= 1
    while _line_macs(guess, share, options) < target:
        guess += 1
    return guess


class _Candidate(NamedTuple):
    miss: float  # |MACs / target - 1|
    ratio_error: float  # |log((T_D / T_W) / (s / (1 - s)))|, s the depth share
    depths: tuple[int, ...]
    widening: tuple[int, ...]


def _candidates(
    target: int, crossing: int, share: float, options: dict[str, Any]
) -> list[_Candidate]:
    """Every (depths, widening) split of the totals near the line's crossing, with exact MACs."""
    out = []
    for total_widening in range(max(3, crossing - _WINDOW), crossing + _WINDOW + 1):
        widening = apportion(total_widening, WIDENING_RATIO)
        costs = depth_costs(scaled_spec((1,) * len(widening), widening, **options))
        longest = math.ceil(4 * _depth_per_widening(share) * total_widening)
        for total_depth in range(len(DEPTH_RATIO), longest + 1):
            depths = apportion(total_depth, DEPTH_RATIO)
            if min(depths + widening) >= 1:
                miss = abs(costs.at(depths).macs / target - 1)
                ratio = _ratio_error(total_depth, total_widening, share)
                out.append(_Candidate(miss, ratio, depths, widening))
    return out


def _compound(target: int, tolerance: float, share: float, options: dict[str, Any]) -> _Candidate:
    """The compound rule's choice (see the module docstring)."""
    candidates = _candidates(target, _crossing(target, share, options), share, options)
    for limit in (tolerance, max(tolerance, MAX_MISS)):
        within = [c for c in candidates if c.miss <= limit]
        best = min(within, key=lambda c: (c.ratio_error, c.miss), default=None)
        if best is not None and (best.ratio_error <= RATIO_SLACK or limit >= MAX_MISS):
            return best
    best = min(candidates, key=lambda c: c.miss)
    if best.miss > MAX_MISS:
        smallest = profile(scaled_spec((1,) * len(DEPTH_RATIO), (1,) * len(DEPTH_RATIO), **options))
        raise ConfigError(
            "target_macs",
            format_count(target),
            f"a budget within {MAX_MISS:.0%} of a network of these blocks "
            f"(the smallest has {format_count(smallest.macs)} MACs)",
        )
    return best


def nearest_standard_wrn(target: int, *, input_size: int = 32) -> str:
    """The standard WRN (WRN-28-10, 34-12, 46-14, 70-16) whose MACs are nearest the target."""
    return min(
        STANDARD_WRNS,
        key=lambda name: abs(
            math.log(profile(get_spec(name), input_size=input_size).macs / target)
        ),
    )


def _baseline(target: int, rule: str, input_size: int) -> tuple[tuple, tuple]:
    """Depth-only or width-only redistribution of the nearest standard WRN's totals."""
    base = get_spec(nearest_standard_wrn(target, input_size=input_size))
    depths, widening = base.depths, tuple(int(w) for w in base.widening)
    if rule == "depth":
        return apportion(sum(depths), DEPTH_RATIO), widening
    return depths, apportion(sum(widening), WIDENING_RATIO)


def robust_scaling(
    target_macs: int | float | str,
    *,
    block: str = "robust_res_block",
    rule: Literal["compound", "depth", "width"] = "compound",
    tolerance: float = 0.025,
    activation: str = "relu",
    depth_share: float = DEPTH_SHARE,
    **spec_fields: Any,
) -> ArchSpec:
    """The network of `block`s that `rule` gives for a MAC budget ("10G", 5e9, ...).

    `depth_share` (compound only): ΣD / (ΣD + ΣW), 0.7 being the paper's 7:3. `spec_fields` go
    to `ArchSpec` (num_classes, input_size, mean, std, ...); MACs are counted at the spec's
    input size. See the module docstring for the rules.
    """
    target = parse_count(target_macs, field="target_macs")
    if target > MAX_TARGET_MACS:
        raise ConfigError("target_macs", target_macs, f"at most {format_count(MAX_TARGET_MACS)}")
    if rule not in RULES:
        raise ConfigError("rule", rule, "one of " + ", ".join(RULES))
    if not 0 < tolerance < 1:
        raise ConfigError("tolerance", tolerance, "a fraction between 0 and 1, such as 0.025")
    number = isinstance(depth_share, int | float) and not isinstance(depth_share, bool)
    if not number or not 0 < depth_share < 1:
        raise ConfigError("depth_share", depth_share, "a fraction between 0 and 1, such as 0.7")
    if rule != "compound" and depth_share != DEPTH_SHARE:
        raise ConfigError("depth_share", depth_share, f"{DEPTH_SHARE} (only compound sets it)")
    options = {"block": block, "activation": activation, **spec_fields}
    if rule == "compound":
        _, _, depths, widening = _compound(target, tolerance, depth_share, options)
    else:
        input_size = spec_fields.get("input_size", ArchSpec.input_size)
        depths, widening = _baseline(target, rule, input_size)
    name = f"{rule}-{target / 1e9:g}G-{block}"
    return scaled_spec(depths, widening, name=name, **options)
