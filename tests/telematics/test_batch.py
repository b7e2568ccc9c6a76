"""`telematics.batch.decide_batch`: a provider batch's decisions, without a database."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from telematics.batch import Candidate, decide_batch
from telematics.checks import DEFAULT_LIMITS, ODOMETER_DECREASED, VEHICLE_UNKNOWN, Point

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def candidate(position: int, km: int, hours_ago: float, *, car: int | None = 1, event: str | None = None, **kw: object) -> Candidate:
    return Candidate(position, 7, event or f"e{position}", car, Point(km * 1000, at(hours_ago)), **kw)  # type: ignore[arg-type]


def kinds(cs: list[Candidate]) -> list[str]:
    return [d.kind for d in decide_batch(cs, NOW, DEFAULT_LIMITS)]


def test_an_event_sent_twice_or_seen_before_is_a_duplicate_and_writes_nothing() -> None:
    cs = [candidate(0, 100, 5, event="x"), candidate(1, 101, 4, event="x"), candidate(2, 102, 3, seen=True)]
    assert kinds(cs) == ["verified", "duplicate_event", "duplicate_event"]


def test_an_unknown_car_is_quarantined() -> None:
    (d,) = decide_batch([candidate(0, 100, 5, car=None)], NOW, DEFAULT_LIMITS)
    assert (d.kind, d.reasons, d.for_review) == ("quarantined", (VEHICLE_UNKNOWN,), False)


def test_the_same_reading_under_another_event_is_a_duplicate_of_the_first() -> None:
    first, again = candidate(0, 100, 5), candidate(1, 100, 5)
    stored = candidate(2, 100, 5, car=2, stored_id=77)
    own_before = candidate(3, 300, 5, car=3, before=Point(300_000, at(5)), before_id=88)
    decisions = decide_batch([first, again, stored, own_before], NOW, DEFAULT_LIMITS)
    assert [d.kind for d in decisions] == ["verified", "duplicate_reading", "duplicate_reading", "duplicate_reading"]
    assert (decisions[1].same_as, decisions[2].same_id, decisions[3].same_id) == (0, 77, 88)


def test_a_decrease_is_for_review_and_the_first_of_a_car_opens_its_case() -> None:
    cs = [candidate(0, 500, 10), candidate(1, 100, 5), candidate(2, 90, 4)]
    decisions = decide_batch(cs, NOW, DEFAULT_LIMITS)
    assert [d.kind for d in decisions] == ["verified", "quarantined", "quarantined"]
    assert all(ODOMETER_DECREASED in d.reasons and d.for_review for d in decisions[1:])
    assert [d.opens_rollback for d in decisions] == [False, True, False]
    assert decisions[1].before == Point(500_000, at(10))


def test_without_consent_nothing_is_compared_and_no_case_opens() -> None:
    (d,) = decide_batch([candidate(0, 1, 1, consent="missing", before=Point(900_000, at(2)))], NOW, DEFAULT_LIMITS)
    assert (d.kind, d.reasons, d.opens_rollback) == ("quarantined", ("consent_missing",), False)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**32 - 1), st.integers(0, 3))
def test_a_plausible_history_in_any_order_is_verified_whole(n: int, seed: int, stored: int) -> None:
    """Readings of one car, hourly and 30 km apart, shuffled, some of the earliest already
    stored (given as the database's neighbours): every one in the batch is verified."""
    rng = random.Random(seed)
    history = [Point(10_000_000 + 30_000 * k, at(200 - k)) for k in range(n + stored)]
    in_db, in_batch = history[:stored], history[stored:]
    db_before = in_db[-1] if in_db else None
    order = list(range(len(in_batch)))
    rng.shuffle(order)
    cs = [
        Candidate(pos, 7, f"e{k}", 1, in_batch[k], before=db_before if db_before else None)
        for pos, k in enumerate(order)
    ]
    decisions = decide_batch(cs, NOW, DEFAULT_LIMITS)
    assert [d.kind for d in decisions] == ["verified"] * len(cs)
