"""Reward tiers: the better of reduction rate and reduction amount decides; only a reduction earns.

Tier ranges are half-open: a tier holds from its own bounds (inclusive) up to the next tier's
bounds (exclusive). Both comparisons are made on exact fractions, so 9.9999 % is never "10 %".
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict

from prorate.rules import Tier

TierBasis = Literal["rate", "amount", "rate_and_amount", "none"]


class TierDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    points: int
    #: Which measure reached the tier that pays (both when they reach the same one).
    by: TierBasis
    #: Index into the rule set's tiers, or None when nothing is earned.
    tier: int | None


def _highest(values: list[Fraction], x: Fraction) -> int:
    """Index of the last bound `x` reaches (bounds ascending, bounds[0] == 0 <= x)."""
    i = 0
    for j, bound in enumerate(values):
        if x >= bound:
            i = j
    return i


def decide_points(reduction_m: Fraction, baseline_m: Fraction, tiers: tuple[Tier, ...]) -> TierDecision:
    """The points a period earns from its exact reduction and baseline (both in metres)."""
    if reduction_m <= 0 or baseline_m <= 0:
        return TierDecision(points=0, by="none", tier=None)
    rate_pct = reduction_m * 100 / baseline_m
    by_rate = _highest([Fraction(t.rate_from_pct) for t in tiers], rate_pct)
    by_amount = _highest([Fraction(t.km_from) * 1000 for t in tiers], reduction_m)
    best = max(by_rate, by_amount)
    basis: TierBasis = (
        "rate_and_amount" if by_rate == by_amount else ("rate" if by_rate > by_amount else "amount")
    )
    return TierDecision(points=tiers[best].points, by=basis, tier=best)
