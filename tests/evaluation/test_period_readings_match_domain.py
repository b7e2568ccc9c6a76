"""The designation's SQL and its Python reference (prorate.period_bounds) agree, car by car.

Random (seeded, and hypothesis-generated) worlds of connected and photo cars, consents granted and
withdrawn, annual and season participations under the 2021 and 2022 rule sets, ended or not, with
readings that arrive late and readings around the instants periods end at (a season's 1 April
00:00 KST, a 2021 period's scheduled end), designated several times: each time later, when more
is known, which must only fill in what the earlier left open. Then a round evaluates what was
designated, and every participation's result (or refusal) and payload is the period rules'
(`prorate.evaluate.evaluate_participation`) for the designated readings.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prorate.evaluate import CarHistory, Participation, PeriodReading, evaluate_participation, reading_day
from prorate.period import add_months
from prorate.period_bounds import (
    Candidate,
    Consent,
    choose_end,
    choose_start,
    connected_for_end,
    connected_for_start,
    period_bounds,
)
from prorate.rounds import parse_round
from prorate.rules import rule_set_named
from storage.evaluation import evaluate_round
from storage.period_readings import designate_periods

from .helpers import connect_car, enrol, make_car, pointers, seoul
from .parity import compare_round

EDGE_DAYS = [date(2022, 1, 31), date(2022, 2, 28), date(2022, 3, 31), date(2022, 8, 31), date(2022, 12, 31)]


def reference(case: dict[str, Any], at: datetime, before: tuple[int | None, int | None]) -> tuple[int | None, int | None]:
    """What the rule designates at `at`, given what was designated before."""
    b = period_bounds(case["program"], case["enrolled_on"], case["season_year"], rule_set_named(case["rule_set"]))
    if not b.complete_before(case["ended_on"]):
        return before
    start_id, end_id = before
    rs: list[Candidate] = case["readings"]
    if start_id is None and connected_for_start(case["consents"], b, at):
        chosen = choose_start(rs, b, at)
        start_id = chosen.id if chosen else None
    if start_id is not None and end_id is None and connected_for_end(case["consents"], b):
        start = next(r for r in rs if r.id == start_id)
        chosen = choose_end(rs, start, b, at, case["ended_on"])
        end_id = chosen.id if chosen else None
    return start_id, end_id


async def make_case(conn: asyncpg.Connection, rng: random.Random, year: int = 2022) -> dict[str, Any]:
    """A car and its participation under the rule set of `year` (2021: end windows, no proration)."""
    car = await make_car(conn)
    season = rng.random() < 0.25
    shift = timedelta(days=(date(year, 1, 1) - date(2022, 1, 1)).days)
    enrolled_on = (
        date(year, 10, 1) + timedelta(days=rng.randrange(60))
        if season
        else rng.choice(EDGE_DAYS) + shift if rng.random() < 0.3 else date(year, 1, 1) + timedelta(days=rng.randrange(365))
    )
    rule_set = "seoul-2021" if year == 2021 else "seoul-2022"
    consents: list[Consent] = []
    kind = rng.choice(["none", "always", "withdrawn", "granted_late", "always"])
    if kind != "none":
        granted = seoul(enrolled_on) + timedelta(days=rng.randrange(-30, 400)) if kind == "granted_late" else seoul(date(2020, 1, 1))
        withdrawn = granted + timedelta(days=rng.randrange(0, 420)) if kind == "withdrawn" else None
        await connect_car(conn, car, granted_at=granted, withdrawn_at=withdrawn)
        consents.append(Consent(granted, withdrawn))
    pid = await enrol(conn, car, enrolled_on, program="season" if season else "annual",
                      season_year=year if season else None, rule_set=rule_set)
    ended_on = None
    if rng.random() < 0.2:
        ended_on = enrolled_on + timedelta(days=rng.randrange(30, 420))
        await conn.execute(
            "update participations set status = 'ended', end_reason = 'withdrawn', ended_on = $2 where id = $1",
            pid, ended_on,
        )
    readings: list[Candidate] = []
    # Readings anywhere, and some around the instant the period ends at (and its week after).
    end_instant = seoul(date(year + 1, 4, 1), 0) if season else seoul(add_months(enrolled_on, 12), 0)
    moments = sorted({seoul(enrolled_on, 0) + timedelta(hours=rng.randrange(-24 * 40, 24 * 420))
                      for _ in range(rng.randrange(0, 14))}
                     | {end_instant + timedelta(hours=rng.randrange(-24 * 3, 24 * 14))
                        for _ in range(rng.randrange(0, 4))})
    odo = 30_000_000
    odometers: dict[int, int] = {}
    for m in moments:
        odo += rng.randrange(0, 2_000_000)
        verified = m + timedelta(hours=rng.choice([1, 1, 1, 30, 24 * 20]))
        rid = await conn.fetchval(
            """insert into readings (vehicle_id, odometer_m, recorded_at, source, verified_at)
               values ($1, $2, $3, 'telematics', $4) returning id""",
            car.vehicle_id, odo, m, verified,
        )
        readings.append(Candidate(rid, m, verified))
        odometers[rid] = odo
    return {"pid": pid, "program": "season" if season else "annual", "season_year": year if season else None,
            "enrolled_on": enrolled_on, "ended_on": ended_on, "consents": consents, "readings": readings,
            "rule_set": rule_set, "odometers": odometers, "vehicle_id": car.vehicle_id}


async def designate_and_compare(conn: asyncpg.Connection, cases: list[dict[str, Any]], moments: list[datetime]) -> int:
    """Designate at each moment in turn and compare every participation with the reference;
    returns how many got an end."""
    expected: dict[int, tuple[int | None, int | None]] = {c["pid"]: (None, None) for c in cases}
    for at in moments:
        async with conn.transaction():
            await designate_periods(conn, as_of=at)
        for c in cases:
            expected[c["pid"]] = reference(c, at, expected[c["pid"]])
            assert await pointers(conn, c["pid"]) == expected[c["pid"]], (at, c)
    return len([e for e in expected.values() if e[1] is not None])


async def evaluate_and_compare(conn: asyncpg.Connection, cases: list[dict[str, Any]], round_name: str) -> int:
    """A round once every period has settled: each designated participation's result or refusal
    is the period rules' for its designated readings; returns how many were paid."""
    rnd = parse_round(round_name)
    staged = await evaluate_round(conn, rnd, designate=False)
    expected = {}
    for c in cases:
        start_id, end_id = await pointers(conn, c["pid"])
        if start_id is None or end_id is None:
            continue
        rules = rule_set_named(c["rule_set"])
        start, end = (
            PeriodReading(
                id=rid, vehicle_id=c["vehicle_id"], odometer_m=c["odometers"][rid],
                on=reading_day(source="telematics", recorded_at=r.recorded_at, basis=rules.readings.photo_date_basis),
            )
            for rid in (start_id, end_id)
            for r in c["readings"] if r.id == rid
        )
        participation = Participation(
            program=c["program"], rule_set=c["rule_set"], season_year=c["season_year"], enrolled_on=c["enrolled_on"],
            status="ended" if c["ended_on"] else "active", ended_on=c["ended_on"],
            end_reason="withdrawn" if c["ended_on"] else None,
            car=CarHistory(vehicle_id=c["vehicle_id"], first_registration_date=date(2018, 3, 1), district="강남구"),
        )
        expected[c["pid"]] = evaluate_participation(participation, start, end, round_first_day=rnd.first_day)
    rows = await compare_round(conn, {pid: code for pid, code, _ in staged.problems}, expected)
    assert staged.candidates == len(expected)
    return len(rows)


async def test_sql_and_reference_agree_over_two_designations(conn: asyncpg.Connection) -> None:
    rng = random.Random(20230501)
    cases = [await make_case(conn, rng) for _ in range(80)]
    ended = await designate_and_compare(
        conn, cases, [seoul(date(2023, 2, 10)), seoul(date(2023, 4, 5)), seoul(date(2024, 1, 1))]
    )
    assert ended >= 10  # the world exercised the end as well
    assert await evaluate_and_compare(conn, cases, "2025-01") >= 3  # and some of it is paid


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.randoms(use_true_random=False), st.sampled_from([2021, 2022]), st.lists(st.integers(0, 24 * 500), min_size=1, max_size=4))
async def test_sql_and_reference_agree_on_both_rule_sets(
    conn: asyncpg.Connection, rng: random.Random, year: int, hours: list[int]
) -> None:
    tr = conn.transaction()
    await tr.start()
    try:
        cases = [await make_case(conn, rng, year) for _ in range(30)]
        origin = seoul(date(year, 12, 1), 0)
        # Some moments drawn, then one when every period has settled.
        moments = [*sorted(origin + timedelta(hours=h) for h in hours), origin + timedelta(days=520)]
        await designate_and_compare(conn, cases, moments)
        await evaluate_and_compare(conn, cases, "2025-01")
    finally:
        await tr.rollback()
