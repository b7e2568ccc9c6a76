"""Order-free plausibility checks: a chain of small pure functions, Traccar-style.

A candidate reading is judged against the vehicle's *verified* readings ordered by `recorded_at`
(its nearest neighbour before and after in time), never against the order in which readings
arrived. Telematics ingestion, photo readings and reviewer readings all call `check_reading`, so
one rule set decides what a plausible odometer history is.

Every verified history stays consistent: each adjacent pair (by `recorded_at`) never decreases
and implies a plausible speed and daily distance. A candidate only ever changes its own two
adjacent pairs, so checking against the two nearest neighbours keeps that invariant whatever
the arrival order. All arithmetic is on integers (metres, microseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Literal, NamedTuple

#: Reason codes, stable: they are stored with quarantined readings and shown to reviewers.
VEHICLE_UNKNOWN = "vehicle_unknown"
CONSENT_MISSING = "consent_missing"
CONSENT_WITHDRAWN = "consent_withdrawn"
RECORDED_IN_FUTURE = "recorded_in_future"
ODOMETER_DECREASED = "odometer_decreased"
CONFLICTING_READING = "conflicting_reading"
SPEED_IMPLAUSIBLE = "speed_implausible"
DISTANCE_PER_DAY_IMPLAUSIBLE = "distance_per_day_implausible"
UNIT_JUMP = "unit_jump"

CHECK_REASONS = (
    VEHICLE_UNKNOWN,
    CONSENT_MISSING,
    CONSENT_WITHDRAWN,
    RECORDED_IN_FUTURE,
    ODOMETER_DECREASED,
    CONFLICTING_READING,
    SPEED_IMPLAUSIBLE,
    DISTANCE_PER_DAY_IMPLAUSIBLE,
    UNIT_JUMP,
)

_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 86_400_000_000
#: A value read in the wrong unit: metres as kilometres, miles as kilometres, and back.
_UNIT_FACTORS = (Fraction(1000), Fraction(1, 1000), Fraction(1609344, 1000000), Fraction(1000000, 1609344))


@dataclass(frozen=True, slots=True)
class Limits:
    """What a plausible odometer history is; the service takes these from its settings."""

    max_speed_kmh: int = 250
    max_km_per_day: int = 2000
    #: How far in the future (by our clock) a reading may claim to be recorded.
    clock_skew_s: int = 300
    #: Odometers report whole kilometres (or tenths): a difference this small is never "too fast",
    #: or two readings a few seconds apart across a kilometre tick would be flagged.
    resolution_m: int = 1000
    #: How close a ratio must come to 1000 or 1.609344 to count as a unit jump (relative).
    unit_jump_tolerance: Fraction = Fraction(2, 100)
    #: `clock_skew_s` as a timedelta, made once: building one for every reading cost more than
    #: the rest of the future check.
    clock_skew: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clock_skew", timedelta(seconds=self.clock_skew_s))


DEFAULT_LIMITS = Limits()


class Point(NamedTuple):
    """A reading as the checks see it: metres and the instant the car recorded them."""

    odometer_m: int
    recorded_at: datetime


Consent = Literal["granted", "missing", "withdrawn", "not_required"]


class Neighbourhood(NamedTuple):
    """Everything a candidate is judged against.

    `before` is the vehicle's verified reading with the latest `recorded_at` at or before the
    candidate's; `after` the one with the earliest `recorded_at` strictly after it. `now` is the
    receiving clock (for the future check). Photo and reviewer readings pass
    `consent="not_required"`.
    """

    before: Point | None
    after: Point | None
    now: datetime
    vehicle_known: bool = True
    consent: Consent = "not_required"


Check = Callable[[Point, Neighbourhood, Limits], tuple[str, ...]]
_NONE: tuple[str, ...] = ()


def _dt_us(a: datetime, b: datetime) -> int:
    """Microseconds from a to b (exact integer)."""
    d = b - a
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def pair_decreases(earlier: Point, later: Point) -> bool:
    return later.odometer_m < earlier.odometer_m


def pair_too_fast(earlier: Point, later: Point, limits: Limits) -> bool:
    """Average speed over the pair above `max_speed_kmh`, beyond the odometer's resolution."""
    distance = later.odometer_m - earlier.odometer_m - limits.resolution_m
    if distance <= 0:
        return False
    dt = _dt_us(earlier.recorded_at, later.recorded_at)
    if dt <= 0:
        return False  # same instant: conflicting_reading says it
    # distance_m / dt_h > max_kmh * 1000  <=>  distance_m * US_PER_HOUR > max_kmh * 1000 * dt_us
    return distance * _US_PER_HOUR > limits.max_speed_kmh * 1000 * dt


def pair_too_far_per_day(earlier: Point, later: Point, limits: Limits) -> bool:
    """More than `max_km_per_day` per day, counting an interval under a day as a whole day."""
    distance = later.odometer_m - earlier.odometer_m - limits.resolution_m
    if distance <= 0:
        return False
    dt = max(_dt_us(earlier.recorded_at, later.recorded_at), _US_PER_DAY)
    return distance * _US_PER_DAY > limits.max_km_per_day * 1000 * dt


def pair_plausible(earlier: Point, later: Point, limits: Limits) -> bool:
    """The invariant every adjacent pair of verified readings keeps: the same odometer at the same
    instant, otherwise none of `pair_decreases`, `pair_too_fast` and `pair_too_far_per_day`.

    In one pass (every reading stored is judged by it; a property test holds it to the three).
    """
    distance = later.odometer_m - earlier.odometer_m
    dt = _dt_us(earlier.recorded_at, later.recorded_at)
    if dt == 0:
        return distance == 0
    if distance < 0:
        return False
    distance -= limits.resolution_m
    if distance <= 0:
        return True
    return (dt < 0 or distance * _US_PER_HOUR <= limits.max_speed_kmh * 1000 * dt) and (
        distance * _US_PER_DAY <= limits.max_km_per_day * 1000 * max(dt, _US_PER_DAY)
    )


# -- the chain (each check looks at the candidate's pair with each neighbour) -------------------


def check_vehicle(c: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    return _NONE if n.vehicle_known else (VEHICLE_UNKNOWN,)


def check_consent(c: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    if n.consent == "missing":
        return (CONSENT_MISSING,)
    if n.consent == "withdrawn":
        return (CONSENT_WITHDRAWN,)
    return _NONE


def check_not_future(c: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    if c.recorded_at - n.now > limits.clock_skew:
        return (RECORDED_IN_FUTURE,)
    return _NONE


def check_never_decreasing(c: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    b, a = n.before, n.after
    if (b is not None and pair_decreases(b, c)) or (a is not None and pair_decreases(c, a)):
        return (ODOMETER_DECREASED,)
    return _NONE


def check_same_instant(c: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    """Two different odometer values recorded at the same instant cannot both be right."""
    b = n.before
    if b is not None and b.recorded_at == c.recorded_at and b.odometer_m != c.odometer_m:
        return (CONFLICTING_READING,)
    return _NONE


def check_speed(c: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    b, a = n.before, n.after
    if (b is not None and pair_too_fast(b, c, limits)) or (a is not None and pair_too_fast(c, a, limits)):
        return (SPEED_IMPLAUSIBLE,)
    return _NONE


def check_distance_per_day(c: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    b, a = n.before, n.after
    if (b is not None and pair_too_far_per_day(b, c, limits)) or (
        a is not None and pair_too_far_per_day(c, a, limits)
    ):
        return (DISTANCE_PER_DAY_IMPLAUSIBLE,)
    return _NONE


def _near_factor(value: int, reference: int, tolerance: Fraction) -> bool:
    if value <= 0 or reference <= 0:
        return False
    ratio = Fraction(value, reference)
    return any(abs(ratio - f) <= f * tolerance for f in _UNIT_FACTORS)


def check_unit_jump(c: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    """A failed pair whose ratio is ~1000 or ~1.609: probably a value sent in the wrong unit."""
    for earlier, later, other in ((n.before, c, n.before), (c, n.after, n.after)):
        if earlier is None or later is None or other is None:
            continue
        if not pair_plausible(earlier, later, limits) and _near_factor(
            c.odometer_m, other.odometer_m, limits.unit_jump_tolerance
        ):
            return (UNIT_JUMP,)
    return _NONE


#: The checks of a candidate's pairs with its neighbours, which name what is wrong with a pair.
PAIR_CHECKS: tuple[Check, ...] = (check_never_decreasing, check_same_instant, check_speed, check_distance_per_day)
#: The whole chain, in the order its reasons are given. An unknown vehicle has no history, and a
#: reading without consent is not compared with it, so `check_reading` stops at either.
CHAIN: tuple[Check, ...] = (check_vehicle, check_consent, check_not_future, *PAIR_CHECKS)
#: Run only when a pair was implausible, to say why it may be so.
FOLLOW_UPS: tuple[Check, ...] = (check_unit_jump,)
_NOT_CONSENTED = frozenset({"missing", "withdrawn"})


def check_reading(
    candidate: Point, neighbourhood: Neighbourhood, limits: Limits = DEFAULT_LIMITS
) -> tuple[str, ...]:
    """The reasons a candidate fails, in chain order; empty when it may be verified.

    Both pairs with the neighbours are first judged by `pair_plausible`, the invariant itself;
    only a pair found implausible goes through `PAIR_CHECKS` to name why (a property test holds
    the verdict to theirs). The caller finds the neighbours (see `storage.readings`), under a
    per-vehicle lock so that the verified history cannot change between the look-up and the
    insert.
    """
    n = neighbourhood
    if not n.vehicle_known:
        return (VEHICLE_UNKNOWN,)
    if n.consent in _NOT_CONSENTED:
        # Without the member's consent the reading is not judged against the car's history at
        # all: it is quarantined for consent alone and never becomes a reviewer's case.
        return check_consent(candidate, n, limits)
    reasons = check_not_future(candidate, n, limits)
    b, a = n.before, n.after
    if (b is None or pair_plausible(b, candidate, limits)) and (a is None or pair_plausible(candidate, a, limits)):
        return reasons
    named: tuple[str, ...] = ()
    for check in PAIR_CHECKS:
        named += check(candidate, n, limits)
    if named:
        for check in FOLLOW_UPS:
            named += check(candidate, n, limits)
    return reasons + named


def nearest_neighbours(candidate: Point, history: list[Point]) -> tuple[Point | None, Point | None]:
    """Nearest verified readings before (at or before) and after a candidate in a sorted history.

    Pure helper for callers (and tests) that hold a vehicle's whole history in memory; `history`
    must be sorted by (recorded_at, odometer_m).
    """
    import bisect

    keys = [(p.recorded_at, p.odometer_m) for p in history]
    # Everything recorded at the same instant counts as "before" (the checks then compare them).
    i = bisect.bisect_right(keys, (candidate.recorded_at, 1 << 62))
    before = history[i - 1] if i > 0 else None
    after = history[i] if i < len(history) else None
    return before, after
