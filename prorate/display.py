"""Reported figures that never read as another tier: the one formatting rule of every report.

Decisions are taken on exact values; reports round km to 0.1 and percentages to 0.01 (half up).
Plain rounding can carry a figure across a tier bound: a reduction rate of 9.99997 % (tier 20,000)
would read "10.00 %" (tier 30,000), a reduction of 0.001 km (earns 20,000) "0.0 km" (earns
nothing), a season's 1,800.04 km (earns nothing) "1,800.0 km" (earns). The rule:

    round half up; if the rounded figure lies in another band than the exact value, show instead
    the reported figure of the exact value's band that is nearest to it (the band's last step
    below an exclusive upper bound, its first step above an exclusive lower bound).

So a figure moves by less than one reported step, and always lies in its value's band: 9.99997 %
reads 9.99 %, 0.001 km reads 0.1 km, 1,800.04 km reads 1,800.1 km. The bands come from the rule
set (`bands_*`), whose bounds the rule model requires to be reported figures themselves. The
API, the pages and the reward calculator's payload show the figures a round stored, which the
round's SQL (`storage.evaluation`) computes by this same rule (the parity tests hold them equal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from prorate.period import KM_PLACES, PCT_PLACES, round_half_up
from prorate.rules import RuleSet, SeasonRules, Tier


@dataclass(frozen=True, slots=True)
class Cut:
    """A bound between two bands. `at` itself belongs to the band above when `upper_owns` (a
    tier's lower bound: 10 % is tier 2), else to the band below (0 km is "no reduction";
    the season's 1,800 km still earns)."""

    at: Fraction
    upper_owns: bool


def band(x: Fraction, cuts: Sequence[Cut]) -> int:
    """Index of the band `x` lies in: how many cuts lie below it (cuts ascending)."""
    return sum(1 for c in cuts if x > c.at or (x == c.at and c.upper_owns))


def shown(x: Fraction, places: int, cuts: Sequence[Cut]) -> Decimal:
    """`x` as reported to `places` decimals, in the same band as `x` (see the module's rule)."""
    d = round_half_up(x, places)
    b = band(x, cuts)
    if band(Fraction(d), cuts) == b:
        return d
    step = Fraction(1, 10**places)
    if Fraction(d) > x:
        c = cuts[b]  # the cut above x: the band's last step below it (or at it, when the band owns it)
        n = math.ceil(c.at / step) - 1 if c.upper_owns else math.floor(c.at / step)
    else:
        c = cuts[b - 1]  # the cut below x: the band's first step above it (or at it)
        n = math.ceil(c.at / step) if c.upper_owns else math.floor(c.at / step) + 1
    out = Decimal(n).scaleb(-places)
    if band(Fraction(n) * step, cuts) != b:
        raise ValueError(f"the band of {x} holds no reported figure to {places} decimals")
    return out if n != 0 else Decimal(0).quantize(Decimal(1).scaleb(-places))


def _tier_cuts(bounds: Sequence[Decimal]) -> tuple[Cut, ...]:
    # Only a positive reduction earns: 0 belongs to "nothing"; every other bound opens its tier.
    return (Cut(Fraction(0), upper_owns=False), *(Cut(Fraction(b), upper_owns=True) for b in bounds[1:]))


def bands_km(tiers: Sequence[Tier]) -> tuple[Cut, ...]:
    """The reduction's bands by amount, in km."""
    return _tier_cuts([t.km_from for t in tiers])


def bands_pct(tiers: Sequence[Tier]) -> tuple[Cut, ...]:
    """The reduction rate's bands, in percent."""
    return _tier_cuts([t.rate_from_pct for t in tiers])


def bands_season_km(season: SeasonRules) -> tuple[Cut, ...]:
    """The season distance's bands: up to `max_km` (inclusive) earns."""
    return (Cut(Fraction(season.max_km), upper_owns=False),)


def shown_reduction_km(reduction_m: Fraction, rules: RuleSet) -> Decimal:
    return shown(Fraction(reduction_m) / 1000, KM_PLACES, bands_km(rules.tiers))


def shown_rate_pct(rate: Fraction, rules: RuleSet) -> Decimal:
    return shown(rate * 100, PCT_PLACES, bands_pct(rules.tiers))


def shown_season_km(season_m: Fraction, season: SeasonRules) -> Decimal:
    return shown(Fraction(season_m) / 1000, KM_PLACES, bands_season_km(season))
