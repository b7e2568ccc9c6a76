"""The order-free plausibility checks: verdicts against neighbours by recorded_at, never arrival."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from telematics.checks import (
    CHAIN,
    CONFLICTING_READING,
    CONSENT_MISSING,
    CONSENT_WITHDRAWN,
    DISTANCE_PER_DAY_IMPLAUSIBLE,
    ODOMETER_DECREASED,
    RECORDED_IN_FUTURE,
    SPEED_IMPLAUSIBLE,
    UNIT_JUMP,
    VEHICLE_UNKNOWN,
    Consent,
    Limits,
    Neighbourhood,
    Point,
    check_reading,
    nearest_neighbours,
    pair_decreases,
    pair_plausible,
    pair_too_far_per_day,
    pair_too_fast,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2024, 4, 1, 0, 0, tzinfo=UTC)
LIMITS = Limits()


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def verdict(
    candidate: Point, before: Point | None = None, after: Point | None = None, **kw: object
) -> tuple[str, ...]:
    return check_reading(candidate, Neighbourhood(before, after, NOW, **kw))  # type: ignore[arg-type]


def test_plausible_reading_between_neighbours_passes() -> None:
    assert verdict(Point(10_050_000, at(1)), Point(10_000_000, at(0)), Point(10_100_000, at(2))) == ()


def test_no_history_passes() -> None:
    assert verdict(Point(123_456_000, at(0))) == ()


def test_decrease_against_either_neighbour() -> None:
    assert verdict(Point(9_999_000, at(1)), before=Point(10_000_000, at(0))) == (ODOMETER_DECREASED,)
    # A reading recorded earlier than a verified one, with a higher value: the decrease is in time order.
    assert verdict(Point(10_200_000, at(1)), after=Point(10_100_000, at(2))) == (ODOMETER_DECREASED,)


def test_speed_and_daily_distance() -> None:
    # 300 km in one hour.
    reasons = verdict(Point(10_300_000, at(1)), before=Point(10_000_000, at(0)))
    assert SPEED_IMPLAUSIBLE in reasons
    # 2,400 km in 20 hours is 120 km/h, but more than 2,000 km in a day.
    assert verdict(Point(12_400_000, at(20)), before=Point(10_000_000, at(0))) == (
        DISTANCE_PER_DAY_IMPLAUSIBLE,
    )
    # 3,000 km over two days is fine.
    assert verdict(Point(13_000_000, at(48)), before=Point(10_000_000, at(0))) == ()


def test_resolution_allows_a_kilometre_tick_seconds_apart() -> None:
    before = Point(10_000_000, at(0))
    assert verdict(Point(10_001_000, before.recorded_at + timedelta(seconds=5)), before=before) == ()
    assert SPEED_IMPLAUSIBLE in verdict(
        Point(10_003_000, before.recorded_at + timedelta(seconds=5)), before=before
    )


def test_future_beyond_clock_skew() -> None:
    assert verdict(Point(1_000, NOW + timedelta(seconds=299))) == ()
    assert verdict(Point(1_000, NOW + timedelta(seconds=301))) == (RECORDED_IN_FUTURE,)


def test_same_instant_different_value_conflicts() -> None:
    assert verdict(Point(10_000_500, at(0)), before=Point(10_000_000, at(0))) == (CONFLICTING_READING,)


def test_unit_jumps_are_named() -> None:
    before = Point(50_000_000, at(0))  # 50,000 km
    # The same odometer sent in metres labelled as km: x1000.
    assert verdict(Point(50_000_000_000, at(1)), before=before) == (
        SPEED_IMPLAUSIBLE,
        DISTANCE_PER_DAY_IMPLAUSIBLE,
        UNIT_JUMP,
    )
    # Sent in miles labelled as km: a decrease by 1.609.
    assert verdict(Point(31_069_000, at(1)), before=before) == (ODOMETER_DECREASED, UNIT_JUMP)
    # A plausible pair is never a unit jump, whatever its ratio.
    assert UNIT_JUMP not in verdict(Point(80_467_000, at(24 * 30)), before=before)


def test_unknown_vehicle_and_consent() -> None:
    assert verdict(Point(1, at(0)), vehicle_known=False) == (VEHICLE_UNKNOWN,)
    assert verdict(Point(1, at(0)), consent="missing") == (CONSENT_MISSING,)
    assert verdict(Point(1, at(0)), consent="withdrawn") == (CONSENT_WITHDRAWN,)
    assert verdict(Point(1, at(0)), consent="granted") == ()


def test_a_reading_without_consent_is_judged_on_consent_alone() -> None:
    """A decrease without consent is not a rollback case: no reviewer sees what was not allowed."""
    history = Neighbourhood(Point(50_000, at(-1)), None, at(1), True, "missing")
    assert check_reading(Point(1, at(0)), history) == (CONSENT_MISSING,)
    assert check_reading(Point(1, at(0)), history._replace(consent="withdrawn")) == (CONSENT_WITHDRAWN,)
    assert ODOMETER_DECREASED in check_reading(Point(1, at(0)), history._replace(consent="granted"))


def test_limits_are_configurable() -> None:
    strict = Limits(max_speed_kmh=100, resolution_m=0)
    n = Neighbourhood(Point(0, at(0)), None, NOW)
    assert check_reading(Point(120_000, at(1)), n, strict) == (SPEED_IMPLAUSIBLE,)
    assert check_reading(Point(120_000, at(1)), n, LIMITS) == ()


# -- properties ---------------------------------------------------------------------------------


@st.composite
def plausible_histories(draw: st.DrawFn) -> list[Point]:
    """Readings of a car driving at most 80 km/h on average between any two of them."""
    n = draw(st.integers(2, 25))
    t = T0
    odo = draw(st.integers(0, 300_000_000))
    points = [Point(odo, t)]
    for _ in range(n - 1):
        dt_s = draw(st.integers(1, 5 * 86_400))
        t = t + timedelta(seconds=dt_s)
        odo += draw(st.integers(0, 80 * dt_s * 1000 // 3600))
        points.append(Point(odo, t))
    return points


def ingest(
    history: list[Point], arrival: list[Point]
) -> tuple[list[Point], list[tuple[Point, tuple[str, ...]]]]:
    """Feed readings in arrival order; each is judged against its nearest verified neighbours."""
    verified = sorted(history, key=lambda p: (p.recorded_at, p.odometer_m))
    refused = []
    for p in arrival:
        if p in verified:
            continue
        before, after = nearest_neighbours(p, verified)
        reasons = check_reading(p, Neighbourhood(before, after, NOW + timedelta(days=3650)), LIMITS)
        if reasons:
            refused.append((p, reasons))
        else:
            verified.append(p)
            verified.sort(key=lambda q: (q.recorded_at, q.odometer_m))
    return verified, refused


@settings(max_examples=150, deadline=None)
@given(plausible_histories(), st.randoms(use_true_random=False))
def test_a_plausible_history_is_verified_in_any_arrival_order(
    history: list[Point], rnd: random.Random
) -> None:
    arrival = list(history)
    rnd.shuffle(arrival)
    verified, refused = ingest([], arrival)
    assert refused == []
    assert verified == sorted(history, key=lambda p: (p.recorded_at, p.odometer_m))


@st.composite
def arbitrary_readings(draw: st.DrawFn) -> list[Point]:
    return draw(
        st.lists(
            st.builds(
                Point,
                st.integers(0, 2_000_000_000),
                st.integers(0, 60 * 86_400).map(lambda s: T0 + timedelta(seconds=s)),
            ),
            min_size=1,
            max_size=30,
        )
    )


@settings(max_examples=200, deadline=None)
@given(arbitrary_readings())
def test_the_verified_history_stays_consistent_whatever_arrives(arrival: list[Point]) -> None:
    """Every adjacent pair of verified readings keeps the rules, however bad the input."""
    verified, refused = ingest([], arrival)
    for earlier, later in itertools.pairwise(verified):
        assert pair_plausible(earlier, later, LIMITS), (earlier, later)
    # Nothing is dropped: each reading is verified or refused with reasons.
    assert set(arrival) == set(verified) | {p for p, _ in refused}
    assert all(reasons for _, reasons in refused)


@settings(max_examples=100, deadline=None)
@given(plausible_histories(), st.integers(1, 24), st.integers(1, 10_000))
def test_a_rollback_is_flagged_wherever_it_lands(history: list[Point], i: int, drop_km: int) -> None:
    """A reading lower than an earlier verified one is refused as a decrease."""
    i = i % len(history)
    target = history[i]
    if target.odometer_m < drop_km * 1000:
        return
    ghost = Point(target.odometer_m - drop_km * 1000, target.recorded_at + timedelta(seconds=1))
    before, after = nearest_neighbours(ghost, history)
    assert ODOMETER_DECREASED in check_reading(
        ghost, Neighbourhood(before, after, NOW + timedelta(days=3650))
    )


def _chain_only(candidate: Point, n: Neighbourhood, limits: Limits) -> tuple[str, ...]:
    reasons: tuple[str, ...] = ()
    for check in CHAIN:
        reasons += check(candidate, n, limits)
    return reasons


@st.composite
def neighbourhoods(draw: st.DrawFn) -> tuple[Point, Neighbourhood, Limits]:
    """A candidate with neighbours near the limits: a few metres and seconds either side of them."""
    limits = draw(
        st.builds(
            Limits, st.integers(1, 400), st.integers(1, 5000), st.integers(0, 3600), st.integers(0, 2000)
        )
    )
    candidate = Point(draw(st.integers(0, 10**9)), T0 + timedelta(microseconds=draw(st.integers(0, 10**12))))

    def near(sign: int) -> Point | None:
        if draw(st.booleans()):
            return None
        dt_us = draw(
            st.sampled_from([0, 1, 10**6, 3_600 * 10**6, 86_400 * 10**6])
            | st.integers(-(10**6), 5 * 86_400 * 10**6)
        )
        # At the speed or daily limit for that interval, give or take a little, or anything.
        edge = max(limits.max_speed_kmh * 1000 * dt_us // 3_600_000_000, 0) + limits.resolution_m
        day = (
            limits.max_km_per_day * 1000 * max(dt_us, 86_400 * 10**6) // (86_400 * 10**6)
            + limits.resolution_m
        )
        distance = draw(st.sampled_from([0, edge, day]) | st.integers(-5_000, 5_000_000)) + draw(
            st.integers(-2, 2)
        )
        return Point(
            candidate.odometer_m + sign * distance,
            candidate.recorded_at + sign * timedelta(microseconds=dt_us),
        )

    now = candidate.recorded_at + timedelta(seconds=draw(st.integers(-7200, 7200)))
    consent: Consent = draw(st.sampled_from(["granted", "missing", "withdrawn", "not_required"]))
    return candidate, Neighbourhood(near(-1), near(1), now, True, consent), limits


@settings(max_examples=3000, deadline=None)
@given(neighbourhoods())
def test_the_quick_verdict_agrees_with_the_chain(case: tuple[Point, Neighbourhood, Limits]) -> None:
    """A reading passes at once only where every check of the chain lets it through, and the
    reasons for a refused one are the chain's."""
    candidate, n, limits = case
    reasons = check_reading(candidate, n, limits)
    chain = _chain_only(candidate, n, limits)
    if n.consent in ("missing", "withdrawn"):
        # Not judged against a history the member did not let the provider add to.
        assert reasons == chain[:1] == ((CONSENT_MISSING,) if n.consent == "missing" else (CONSENT_WITHDRAWN,))
        return
    assert (reasons == ()) == (chain == ())
    assert reasons[: len(chain)] == chain


@settings(max_examples=3000, deadline=None)
@given(neighbourhoods())
def test_a_plausible_pair_is_one_no_check_of_a_pair_refuses(case: tuple[Point, Neighbourhood, Limits]) -> None:
    """`pair_plausible` (one pass) says what the three pair checks say together, either way round."""
    candidate, n, limits = case
    for other in (n.before, n.after):
        if other is None:
            continue
        for earlier, later in ((other, candidate), (candidate, other)):
            if earlier.recorded_at == later.recorded_at:
                expected = earlier.odometer_m == later.odometer_m
            else:
                expected = not (
                    pair_decreases(earlier, later)
                    or pair_too_fast(earlier, later, limits)
                    or pair_too_far_per_day(earlier, later, limits)
                )
            assert pair_plausible(earlier, later, limits) == expected, (earlier, later)
