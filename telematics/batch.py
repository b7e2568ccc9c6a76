"""What becomes of each reading of a provider batch: pure, given what the database said about it.

`storage.readings.store_batch` looks the batch up (cars, consents, events seen, the same reading
already stored, every reading's nearest verified neighbours) and writes what this decides; the
decision itself is here, so that it can be tested without a database and has one implementation.

Readings of the same car within a batch are each other's neighbours too, in time order, whatever
their order in the batch: a reading verified earlier in the batch is a neighbour of the later ones
exactly as if it had been stored before them.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, NamedTuple

from telematics.checks import (
    ODOMETER_DECREASED,
    VEHICLE_UNKNOWN,
    Consent,
    Limits,
    Neighbourhood,
    Point,
    check_reading,
)

Kind = Literal["duplicate_event", "duplicate_reading", "verified", "quarantined"]


class Candidate(NamedTuple):
    """One reading of the batch, with the database's answers about it."""

    #: Its position in the batch.
    position: int
    provider_id: int
    event_id: str
    #: The enrolled, active car with its VIN; None: no such car.
    vehicle_id: int | None
    point: Point
    consent: Consent = "granted"
    #: Its provider event was stored before (only known when the thorough look-up asked).
    seen: bool = False
    #: The id of the identical reading (car, instant, odometer) already stored, if the look-up asked.
    stored_id: int | None = None
    #: The car's nearest verified reading at or before the instant, and its id; and after it.
    before: Point | None = None
    before_id: int | None = None
    after: Point | None = None


class Decision(NamedTuple):
    """What to write for a candidate (see `Kind`)."""

    position: int
    kind: Kind
    reasons: tuple[str, ...] = ()
    #: A duplicate reading: the stored reading's id, when it was stored before this batch ...
    same_id: int | None = None
    #: ... or the batch position of the reading verified earlier in this batch.
    same_as: int | None = None
    #: A quarantined decrease: reviewers see it (`review_status` open) ...
    for_review: bool = False
    #: ... and the first one of its car in this batch opens the car's rollback case.
    opens_rollback: bool = False
    #: The neighbours it was judged against (for the rollback case's evidence).
    before: Point | None = None
    after: Point | None = None


_new = tuple.__new__  # the common decision, built without NamedTuple's argument handling


def _nearest_before(a: Point | None, b: Point | None) -> Point | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if (a.recorded_at, a.odometer_m) >= (b.recorded_at, b.odometer_m) else b


def _nearest_after(a: Point | None, b: Point | None) -> Point | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if (a.recorded_at, a.odometer_m) <= (b.recorded_at, b.odometer_m) else b


def decide_batch(candidates: Sequence[Candidate], now: datetime, limits: Limits) -> list[Decision]:
    """One decision per candidate, in the batch's order.

    - an event already stored, or sent twice in the batch: `duplicate_event` (nothing is written);
    - no active car with that VIN: `quarantined` (`vehicle_unknown`);
    - the identical reading already verified, before or earlier in this batch: `duplicate_reading`
      (its event is recorded against that reading);
    - otherwise the order-free checks against its neighbours decide `verified` or `quarantined`.
    """
    decisions: list[Decision] = []
    seen_events: set[tuple[int, str]] = set()
    per_car = Counter(c.vehicle_id for c in candidates)
    #: Per car with several readings in the batch: its readings verified so far, sorted, and the
    #: batch position of each (for duplicates of them).
    verified: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    verified_at: dict[tuple[int, datetime, int], int] = {}
    rollback_opened: set[int] = set()
    append = decisions.append
    for position, provider_id, event_id, vehicle_id, point, consent, seen, stored_id, before, before_id, after in candidates:
        event = (provider_id, event_id)
        if seen or event in seen_events:
            append(Decision(position, "duplicate_event"))
            continue
        seen_events.add(event)
        if vehicle_id is None:
            append(Decision(position, "quarantined", (VEHICLE_UNKNOWN,)))
            continue
        if stored_id is None and before == point:
            stored_id = before_id  # the identical verified reading is its own "before"
        if stored_id is not None:
            append(Decision(position, "duplicate_reading", same_id=stored_id))
            continue
        several = per_car[vehicle_id] > 1
        if several:
            key = (vehicle_id, point.recorded_at, point.odometer_m)
            if key in verified_at:
                append(Decision(position, "duplicate_reading", same_as=verified_at[key]))
                continue
            mine = verified.get(vehicle_id)
            if mine:
                j = bisect.bisect_right(mine, (point.recorded_at, 1 << 62))
                if j > 0:
                    before = _nearest_before(before, Point(mine[j - 1][1], mine[j - 1][0]))
                if j < len(mine):
                    after = _nearest_after(after, Point(mine[j][1], mine[j][0]))
        reasons = check_reading(point, Neighbourhood(before, after, now, True, consent), limits)
        if not reasons:
            if several:
                verified_at[key] = position
                bisect.insort(verified[vehicle_id], (point.recorded_at, point.odometer_m))
            append(_new(Decision, (position, "verified", (), None, None, False, False, None, None)))
            continue
        decreased = ODOMETER_DECREASED in reasons
        opens = decreased and vehicle_id not in rollback_opened
        if opens:
            rollback_opened.add(vehicle_id)
        append(
            Decision(position, "quarantined", reasons, for_review=decreased, opens_rollback=opens, before=before, after=after)
        )
    return decisions
