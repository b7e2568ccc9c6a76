"""Evaluation rounds against PostgreSQL: results, outbox rows, idempotency, corrections, seasons."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import asyncpg
import pytest

from prorate.rounds import parse_round
from storage.evaluation import evaluate_round

from .helpers import add_reading, make_car, make_participation, seoul

ROUND = parse_round("2023-05")


async def counts(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow("select (select count(*) from period_results), (select count(*) from outbox)")
    assert row is not None
    return row[0], row[1]


async def test_round_writes_results_and_outbox_rows(conn: asyncpg.Connection) -> None:
    car = await make_car(conn, first_registration=date(2018, 3, 1))
    pid = await make_participation(conn, car, start=(date(2022, 3, 1), 45_000_000), end=(date(2023, 3, 5), 53_000_500))
    staged = await evaluate_round(conn, ROUND)
    assert (staged.candidates, staged.to_write, staged.problems) == (1, 1, [])
    r = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert r is not None
    # The same figures as `carmileage calc` for these inputs (tests/prorate/test_prorate_calc_cli.py).
    assert (r["days"], r["baseline_km"], r["actual_km"], r["reduction_km"]) == (
        369, Decimal("11365.5"), Decimal("8000.5"), Decimal("3365.0"))
    assert (r["reduction_rate_pct"], r["points"], r["tier_by"], r["round"]) == (Decimal("29.61"), 70_000, "amount", "2023-05")
    assert r["baseline_method"] == "national"
    payload = json.loads(
        await conn.fetchval(
            "select cm_result_payload(r, o.supersedes_event_id)::text from outbox o "
            "join period_results r on r.id = o.period_result_id where r.participation_id = $1",
            pid,
        )
    )
    assert payload["event_id"] == str(r["event_id"])
    assert payload["points"] == 70_000 and payload["supersedes"] is None
    ev = payload["evidence"]
    assert ev["start_reading"]["source"] == "telematics" and ev["end_reading"]["odometer_m"] == 53_000_500
    assert ev["baseline"]["explanation"] == "45000.0 km over 1461 days since first registration 2018-03-01: 30.8 km/day"


async def test_running_a_round_again_changes_nothing(conn: asyncpg.Connection) -> None:
    for i in range(3):
        car = await make_car(conn)
        await make_participation(conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 1), 40_000_000 + i * 5_000_000))
    await evaluate_round(conn, ROUND)
    before = await counts(conn)
    again = await evaluate_round(conn, ROUND)
    assert (again.to_write, again.unchanged) == (0, 3)
    assert await counts(conn) == before == (3, 3)
    # A later round with nothing new changes nothing either.
    assert (await evaluate_round(conn, parse_round("2023-06"))).to_write == 0


async def test_corrected_reading_yields_a_new_version_and_a_superseding_event(conn: asyncpg.Connection) -> None:
    car = await make_car(conn)
    pid = await make_participation(conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 1), 50_000_000))
    await evaluate_round(conn, ROUND)
    first = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert first is not None
    # A reviewer corrects the end reading: a new reading replaces it, verified before the next cutoff.
    old_end = await conn.fetchval("select end_reading_id from participations where id = $1", pid)
    new_end = await add_reading(conn, car, 49_000_000, date(2023, 3, 1), source="reviewer",
                                verified_at=seoul(date(2023, 5, 10)))
    await conn.execute("update readings set status = 'superseded' where id = $1", old_end)
    await conn.execute("update participations set end_reading_id = $2 where id = $1", pid, new_end)

    assert (await evaluate_round(conn, ROUND)).to_write == 0  # verified after this round's cutoff
    staged = await evaluate_round(conn, parse_round("2023-06"))
    assert (staged.to_write, staged.superseding) == (1, 1)
    rows = await conn.fetch("select * from period_results where participation_id = $1 order by version", pid)
    assert [r["version"] for r in rows] == [1, 2]
    assert rows[0]["superseded_by"] == rows[1]["id"] and rows[1]["superseded_by"] is None
    assert rows[1]["actual_km"] == Decimal("9000.0")
    out = await conn.fetchrow("select * from outbox where event_id = $1", rows[1]["event_id"])
    assert out is not None and out["supersedes_event_id"] == first["event_id"]
    assert (await evaluate_round(conn, parse_round("2023-06"))).to_write == 0


async def test_end_readings_verified_after_the_cutoff_wait_for_the_next_round(conn: asyncpg.Connection) -> None:
    car = await make_car(conn)
    await make_participation(conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 4, 20), 41_000_000),
                             end_verified_at=seoul(date(2023, 5, 2)))
    assert (await evaluate_round(conn, ROUND)).candidates == 0
    assert (await evaluate_round(conn, parse_round("2023-06"))).to_write == 1


async def test_season_points_wait_for_the_end_of_the_end_data_window(conn: asyncpg.Connection) -> None:
    car = await make_car(conn)
    pid = await make_participation(conn, car, program="season", season_year=2022,
                                   start=(date(2022, 11, 28), 40_000_000), end=(date(2023, 4, 3), 41_874_000))
    staged = await evaluate_round(conn, parse_round("2023-03"))  # end reading not verified yet
    assert staged.candidates == 0
    # Verified on 3 April: the May round is the first after the window (until 30 April) closed.
    await conn.execute("update readings set verified_at = $1 where id = (select end_reading_id from participations where id = $2)",
                       seoul(date(2023, 4, 3)), pid)
    staged = await evaluate_round(conn, parse_round("2023-05"))
    assert (staged.to_write, staged.special_points) == (1, 10_000)
    r = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert r is not None
    assert (r["season_days"], r["season_km"], r["special_points"], r["points"]) == (121, Decimal("1799.6"), 10_000, 0)


async def test_season_not_yet_evaluable_is_counted_as_waiting(conn: asyncpg.Connection) -> None:
    car = await make_car(conn)
    await make_participation(conn, car, program="season", season_year=2022,
                             start=(date(2022, 11, 28), 40_000_000), end=(date(2023, 3, 20), 41_000_000))
    staged = await evaluate_round(conn, parse_round("2023-03"))  # cutoff 1 March: not verified yet
    assert staged.candidates == 0
    await conn.execute("update readings set verified_at = $1 where recorded_at > $2", seoul(date(2023, 2, 20)), seoul(date(2023, 2, 1)))
    await conn.execute("update readings set recorded_at = $1 where recorded_at > $1", seoul(date(2023, 2, 20)))
    staged = await evaluate_round(conn, parse_round("2023-03"))
    assert (staged.candidates, staged.waiting, staged.to_write) == (0, 1, 0)


async def test_participations_that_cannot_be_computed_are_listed_and_get_nothing(conn: asyncpg.Connection) -> None:
    good = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                    end=(date(2023, 3, 1), 45_000_000))
    rollback = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                        end=(date(2023, 3, 1), 39_000_000))
    new_car = await make_participation(conn, await make_car(conn, first_registration=date(2021, 9, 1), district="해운대구"),
                                       start=(date(2022, 3, 1), 10_000_000), end=(date(2023, 3, 1), 15_000_000))
    other_car = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                         end=(date(2023, 3, 1), 45_000_000))
    await conn.execute("update participations set end_reading_id = (select end_reading_id from participations"
                       " where id = $1) where id = $2", good, other_car)
    staged = await evaluate_round(conn, ROUND)
    expected = {(rollback, "odometer_decreased"), (new_car, "district_unknown"), (other_car, "reading_of_another_car")}
    assert {(pid, code) for pid, code, _ in staged.problems} == expected
    written = {r[0] for r in await conn.fetch("select participation_id from period_results")}
    assert written == {good}
    problems = await conn.fetch("select participation_id, code from evaluation_problems")
    assert {(r[0], r[1]) for r in problems} == expected


async def test_dry_run_writes_nothing(conn: asyncpg.Connection) -> None:
    await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 1), 45_000_000))
    staged = await evaluate_round(conn, ROUND, dry_run=True)
    assert staged.to_write == 1
    assert await counts(conn) == (0, 0)
    assert await conn.fetchval("select count(*) from evaluation_runs") == 0


@pytest.mark.parametrize(
    ("basis", "expected_start"),
    [("capture", date(2022, 3, 1)), ("upload", date(2022, 3, 3)), ("approval", date(2022, 3, 5))],
)
async def test_photo_readings_count_on_the_rule_sets_date(conn: asyncpg.Connection, basis: str, expected_start: date) -> None:
    from prorate.rules import rule_set_named

    rules = rule_set_named("seoul-2022")
    custom = rules.model_copy(update={"readings": rules.readings.model_copy(update={"photo_date_basis": basis})})
    car = await make_car(conn)
    # 15:30 UTC on 28 Feb is 1 March in Seoul.
    from .helpers import utc

    sid = await add_reading(conn, car, 40_000_000, date(2022, 3, 6), source="photo",
                            captured_at=utc(2022, 2, 28, 15, 30), uploaded_at=seoul(date(2022, 3, 3)),
                            approved_at=seoul(date(2022, 3, 5)))
    eid = await add_reading(conn, car, 45_000_000, date(2023, 3, 1))
    pid = await conn.fetchval(
        "insert into participations (vehicle_id, program, rule_set, enrolled_on, start_reading_id, end_reading_id)"
        " values ($1, 'annual', 'seoul-2022', '2022-03-01', $2, $3) returning id", car.vehicle_id, sid, eid)
    await evaluate_round(conn, ROUND, sets=(custom,))
    assert await conn.fetchval("select start_date from period_results where participation_id = $1", pid) == expected_start


async def test_results_are_linked_to_their_round_run(conn: asyncpg.Connection) -> None:
    await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 1), 45_000_000))
    await evaluate_round(conn, ROUND, operator="ops-kim")
    run = await conn.fetchrow("select * from evaluation_runs")
    assert run is not None
    assert (run["round"], run["new_results"], run["operator"]) == ("2023-05", 1, "ops-kim")
    assert run["cutoff"] == seoul(date(2023, 5, 1), 0) - timedelta(0)
