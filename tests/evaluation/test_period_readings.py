"""Connected cars' start and end readings are designated, and rounds evaluate them like photo ones."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal

import asyncpg

from prorate.rounds import parse_round
from storage.evaluation import evaluate_round
from storage.period_readings import Designation, designate_periods
from storage.readings import NewReading, store_verified_reading

from .helpers import (
    Car,
    add_reading,
    connect_car,
    enrol,
    make_car,
    make_participation,
    pointers,
    seoul,
    stream,
    utc,
)

ROUND = parse_round("2023-05")


async def designate_as_of(conn: asyncpg.Connection, at: datetime) -> Designation:
    async with conn.transaction():
        return await designate_periods(conn, as_of=at)


async def connected_car(
    conn: asyncpg.Connection, granted_at: datetime | None = None, withdrawn_at: datetime | None = None
) -> Car:
    """A car whose provider streams its readings (consent granted in 2020 unless told)."""
    car = await make_car(conn, first_registration=date(2018, 3, 1))
    await connect_car(conn, car, granted_at=granted_at, withdrawn_at=withdrawn_at)
    return car


async def test_a_connected_participant_is_evaluated_end_to_end(conn: asyncpg.Connection) -> None:
    """Readings stored through the telematics path; the round designates, evaluates and sends."""
    car = await make_car(conn, first_registration=date(2018, 3, 1))
    provider = await connect_car(conn, car)
    pid = await enrol(conn, car, date(2022, 3, 15))
    # A reading every 4 days from the day before enrolment until a week after the period's end.
    day, odo = date(2022, 3, 14), 45_000_000
    while day <= date(2023, 3, 22):
        at = seoul(day)
        stored = await store_verified_reading(
            conn,
            NewReading(vehicle_id=car.vehicle_id, odometer_m=odo, recorded_at=at, source="telematics",
                       provider_id=provider, provider_event_id=f"ev-{day}", received_at=at + timedelta(hours=1)),
        )
        assert stored.reading_id is not None, stored.reasons
        day, odo = day + timedelta(days=4), odo + 88_000
    await conn.execute("update readings set verified_at = received_at where vehicle_id = $1", car.vehicle_id)

    staged = await evaluate_round(conn, ROUND)
    assert staged.designation is not None
    assert (staged.designation.starts, staged.designation.ends) == (1, 1)
    assert (staged.to_write, staged.problems) == (1, [])
    r = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert r is not None
    # Start: the first reading on or after enrolment (18 March); end: the last on or before
    # 15 March 2023 (the 13th), 360 days and 90 readings of 88 km later.
    assert (r["start_date"], r["end_date"], r["days"]) == (date(2022, 3, 18), date(2023, 3, 13), 360)
    assert (r["start_odometer_m"], r["end_odometer_m"]) == (45_088_000, 45_088_000 + 90 * 88_000)
    assert r["actual_km"] == Decimal("7920.0")
    # national baseline: 45,088 km over 1,478 days since 2018-03-01 -> 10,982.2 km over 360 days
    assert (r["baseline_km"], r["points"], r["tier_by"]) == (Decimal("10982.2"), 70_000, "amount")
    payload = await conn.fetchval(
        "select cm_result_payload(r, o.supersedes_event_id)::text from outbox o "
        "join period_results r on r.id = o.period_result_id where r.participation_id = $1",
        pid,
    )
    evidence = json.loads(payload)["evidence"]
    assert evidence["start_reading"]["source"] == evidence["end_reading"]["source"] == "telematics"
    assert evidence["end_reading"]["provider_id"] == provider
    log = await conn.fetch("select stage, reason, as_of from period_readings where participation_id = $1", pid)
    assert sorted((x["stage"], x["reason"]) for x in log) == [("end", "rule"), ("start", "rule")]

    again = await evaluate_round(conn, ROUND)
    assert again.designation is not None
    assert (again.designation.starts, again.designation.ends, again.to_write, again.unchanged) == (0, 0, 0, 1)
    assert await conn.fetchval("select count(*) from outbox") == 1


async def test_the_end_waits_until_the_period_has_settled(conn: asyncpg.Connection) -> None:
    car = await connected_car(conn)
    pid = await enrol(conn, car, date(2022, 3, 15))
    days = await stream(conn, car, date(2022, 3, 10), date(2023, 3, 31))

    d = await designate_as_of(conn, seoul(date(2022, 3, 15), 9))
    assert (d.starts, d.ends) == (0, 0)  # the day's reading (noon) is not there yet
    d = await designate_as_of(conn, seoul(date(2022, 6, 1)))
    assert (d.starts, d.ends) == (1, 0)
    assert await pointers(conn, pid) == (days[date(2022, 3, 15)], None)
    # The last day is 15 March 2023; the end is designated from 23 March (7 settling days).
    assert (await designate_as_of(conn, seoul(date(2023, 3, 22), 23))).ends == 0
    assert (await designate_as_of(conn, seoul(date(2023, 3, 23), 0))).ends == 1
    assert await pointers(conn, pid) == (days[date(2022, 3, 15)], days[date(2023, 3, 15)])


async def test_a_late_reading_does_not_move_the_designation(conn: asyncpg.Connection) -> None:
    car = await connected_car(conn)
    pid = await enrol(conn, car, date(2022, 3, 15))
    days = await stream(conn, car, date(2022, 3, 15), date(2023, 3, 12), m_per_day=20_000)
    await designate_as_of(conn, seoul(date(2023, 4, 1)))
    chosen = await pointers(conn, pid)
    assert chosen == (days[date(2022, 3, 15)], days[date(2023, 3, 12)])
    await evaluate_round(conn, ROUND, designate=False)
    first = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert first is not None and first["end_date"] == date(2023, 3, 12)
    # The car had buffered a reading of 14 March and an earlier one of the enrolment day's morning;
    # they arrive on 20 April.
    await add_reading(conn, car, 47_280_000, date(2023, 3, 14), verified_at=seoul(date(2023, 4, 20)))
    await conn.execute(
        "insert into readings (vehicle_id, odometer_m, recorded_at, source, verified_at) values ($1, $2, $3, 'telematics', $4)",
        car.vehicle_id, 39_990_000, seoul(date(2022, 3, 15), 7), seoul(date(2023, 4, 20)),
    )
    d = await designate_as_of(conn, seoul(date(2023, 4, 25)))
    assert (d.starts, d.ends, d.corrections) == (0, 0, 0)
    assert await pointers(conn, pid) == chosen
    staged = await evaluate_round(conn, parse_round("2023-06"))
    assert (staged.to_write, staged.unchanged) == (0, 1)


async def test_a_superseded_reading_moves_to_its_correction_and_yields_a_new_version(conn: asyncpg.Connection) -> None:
    car = await connected_car(conn)
    pid = await enrol(conn, car, date(2022, 3, 15))
    days = await stream(conn, car, date(2022, 3, 15), date(2023, 3, 20), every_days=5)
    await evaluate_round(conn, ROUND)
    v1 = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert v1 is not None and v1["end_reading_id"] == days[date(2023, 3, 15)]
    # A reviewer corrects the end reading: the true value at the same instant, verified on 10 May.
    old_end = days[date(2023, 3, 15)]
    fixed = await conn.fetchval(
        """insert into readings (vehicle_id, odometer_m, recorded_at, source, approved_at, verified_at)
           select vehicle_id, odometer_m - 500000, recorded_at, 'reviewer', $2, $2 from readings where id = $1
           returning id""",
        old_end, seoul(date(2023, 5, 10)),
    )
    await conn.execute("update readings set status = 'superseded' where id = $1", old_end)

    staged = await evaluate_round(conn, parse_round("2023-06"))
    assert staged.designation is not None and staged.designation.corrections == 1
    assert await pointers(conn, pid) == (days[date(2022, 3, 15)], fixed)
    assert (staged.to_write, staged.superseding) == (1, 1)
    rows = await conn.fetch("select * from period_results where participation_id = $1 order by version", pid)
    assert [r["version"] for r in rows] == [1, 2] and rows[0]["superseded_by"] == rows[1]["id"]
    assert rows[1]["actual_km"] == v1["actual_km"] - Decimal("500.0")
    out = await conn.fetchrow("select * from outbox where period_result_id = $1", rows[1]["id"])
    assert out is not None and out["supersedes_event_id"] == v1["event_id"]
    log = await conn.fetchrow(
        "select * from period_readings where participation_id = $1 and reason = 'correction'", pid
    )
    assert log is not None and (log["stage"], log["reading_id"], log["replaces_reading_id"]) == ("end", fixed, old_end)


async def test_a_photo_participation_gets_the_correction_of_its_photo_reading(conn: asyncpg.Connection) -> None:
    """Whichever flow set a pointer, a superseded reading is replaced by its correction."""
    car = await make_car(conn)  # no consent: a photo participation
    pid = await make_participation(conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 2), 45_000_000))
    _, old_end = await pointers(conn, pid)
    fixed = await add_reading(conn, car, 44_000_000, date(2023, 3, 2), source="reviewer")
    await conn.execute("update readings set status = 'superseded' where id = $1", old_end)
    d = await designate_as_of(conn, seoul(date(2023, 4, 1)))
    assert (d.starts, d.ends, d.corrections) == (0, 0, 1)
    assert (await pointers(conn, pid))[1] == fixed


async def test_a_superseded_reading_nothing_corrects_is_designated_anew(conn: asyncpg.Connection) -> None:
    car = await connected_car(conn)
    pid = await enrol(conn, car, date(2022, 3, 15))
    days = await stream(conn, car, date(2022, 3, 15), date(2023, 3, 20))
    await designate_as_of(conn, seoul(date(2023, 4, 1)))
    await conn.execute("update readings set status = 'superseded' where id = $1", days[date(2023, 3, 15)])
    await conn.execute("update readings set status = 'superseded' where id = $1", days[date(2022, 3, 15)])
    d = await designate_as_of(conn, seoul(date(2023, 4, 2)))
    assert (d.starts, d.ends, d.corrections) == (1, 1, 0)
    assert await pointers(conn, pid) == (days[date(2022, 3, 16)], days[date(2023, 3, 14)])


async def test_a_season_participant(conn: asyncpg.Connection) -> None:
    car = await connected_car(conn)
    pid = await enrol(conn, car, date(2022, 11, 20), program="season", season_year=2022)
    # 14 km a day from 15 November to 20 April.
    days = await stream(conn, car, date(2022, 11, 15), date(2023, 4, 20), m_per_day=14_000)

    staged = await evaluate_round(conn, parse_round("2023-03"), designation_as_of=seoul(date(2023, 3, 1)))
    assert staged.designation is not None and (staged.designation.starts, staged.designation.ends) == (1, 0)
    assert await pointers(conn, pid) == (days[date(2022, 12, 1)], None)
    # The season's last day is 31 March; its end is designated from 8 April, before the May round.
    assert (await designate_as_of(conn, seoul(date(2023, 4, 7)))).ends == 0
    staged = await evaluate_round(conn, parse_round("2023-05"))
    assert (staged.to_write, staged.special_points, staged.problems) == (1, 10_000, [])
    # The end is the first reading from the season's end instant (1 April 00:00 KST): the car is
    # measured over all of the season's 121 days, not 120.
    assert await pointers(conn, pid) == (days[date(2022, 12, 1)], days[date(2023, 4, 1)])
    r = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert r is not None
    assert (r["start_date"], r["end_date"], r["days"]) == (date(2022, 12, 1), date(2023, 4, 1), 121)
    assert (r["actual_km"], r["season_km"], r["season_days"]) == (Decimal("1694.0"), Decimal("1694.0"), 121)


async def test_a_connected_season_needs_1800_km_not_1785(conn: asyncpg.Connection) -> None:
    """Issue 15, item 2: 1,800 km over the whole season earns; measured on 120 days it needed 1,785."""
    car = await connected_car(conn)
    pid = await enrol(conn, car, date(2022, 11, 20), program="season", season_year=2022)
    # Noon readings: 1 December at 40,000 km, 31 March at 41,790 km, 1 April at 41,800 km.
    start = await add_reading(conn, car, 40_000_000, date(2022, 12, 1))
    await add_reading(conn, car, 41_790_000, date(2023, 3, 31))
    end = await add_reading(conn, car, 41_800_000, date(2023, 4, 1))
    await add_reading(conn, car, 41_900_000, date(2023, 4, 3))
    staged = await evaluate_round(conn, parse_round("2023-05"))
    assert await pointers(conn, pid) == (start, end)
    assert (staged.to_write, staged.special_points) == (1, 10_000)
    r = await conn.fetchrow("select * from period_results where participation_id = $1", pid)
    assert r is not None and (r["days"], r["season_km"]) == (121, Decimal("1800.0"))


async def test_a_season_without_readings_after_its_end_is_measured_to_its_last_reading(conn: asyncpg.Connection) -> None:
    """No reading in the week after 1 April (the car stood still, or its stream stopped): the
    latest reading within the season ends it, and the coverage rule decides whether it counts."""
    parked, stopped = await connected_car(conn), await connected_car(conn)
    p_parked = await enrol(conn, parked, date(2022, 11, 20), program="season", season_year=2022)
    p_stopped = await enrol(conn, stopped, date(2022, 11, 20), program="season", season_year=2022)
    parked_days = await stream(conn, parked, date(2022, 12, 1), date(2023, 3, 30), m_per_day=10_000)
    await add_reading(conn, parked, 50_000_000, date(2023, 4, 9))  # after the end window
    stopped_days = await stream(conn, stopped, date(2022, 12, 1), date(2023, 2, 20), m_per_day=10_000)
    staged = await evaluate_round(conn, parse_round("2023-05"))
    assert await pointers(conn, p_parked) == (parked_days[date(2022, 12, 1)], parked_days[date(2023, 3, 30)])
    assert await pointers(conn, p_stopped) == (stopped_days[date(2022, 12, 1)], stopped_days[date(2023, 2, 20)])
    assert [(pid, code) for pid, code, _ in staged.problems] == [(p_stopped, "season_coverage_too_low")]
    r = await conn.fetchrow("select * from period_results where participation_id = $1", p_parked)
    assert r is not None and (r["days"], r["special_points"]) == (119, 10_000)


async def test_ended_participations_are_left_alone_unless_their_period_was_complete(conn: asyncpg.Connection) -> None:
    early, late = await connected_car(conn), await connected_car(conn)
    p_early = await enrol(conn, early, date(2022, 3, 15))
    p_late = await enrol(conn, late, date(2022, 3, 15))
    await stream(conn, early, date(2022, 3, 15), date(2023, 3, 20))
    late_days = await stream(conn, late, date(2022, 3, 15), date(2023, 3, 20))
    # Scrapped before the period's last day, and sold two days after it.
    for pid, on in ((p_early, date(2023, 1, 10)), (p_late, date(2023, 3, 17))):
        await conn.execute(
            "update participations set status = 'ended', end_reason = 'scrapped', ended_on = $2 where id = $1", pid, on
        )
    staged = await evaluate_round(conn, ROUND)
    assert await pointers(conn, p_early) == (None, None)
    assert await pointers(conn, p_late) == (late_days[date(2022, 3, 15)], late_days[date(2023, 3, 15)])
    assert staged.to_write == 1


async def test_photo_participations_are_left_to_the_photo_flow(conn: asyncpg.Connection) -> None:
    # A car without a consent with a verified mid-period photo: nothing is designated.
    photo_car = await make_car(conn)
    p_photo = await enrol(conn, photo_car, date(2022, 3, 15))
    await add_reading(conn, photo_car, 41_000_000, date(2022, 7, 1), source="photo", captured_at=seoul(date(2022, 7, 1)))
    # A connected car whose start photo was accepted (a later reading than the rule's): kept.
    kept_car = await connected_car(conn)
    p_kept = await enrol(conn, kept_car, date(2022, 3, 15))
    await stream(conn, kept_car, date(2022, 3, 15), date(2023, 3, 20))
    await conn.execute("delete from readings where vehicle_id = $1 and recorded_at = $2",
                       kept_car.vehicle_id, seoul(date(2022, 3, 20)))
    photo_start = await add_reading(conn, kept_car, 40_150_000, date(2022, 3, 20), source="photo")
    await conn.execute("update participations set start_reading_id = $2 where id = $1", p_kept, photo_start)
    # A connected car whose end photo is being reviewed: its end waits for the reviewer.
    review_car = await connected_car(conn)
    p_review = await enrol(conn, review_car, date(2022, 3, 15))
    review_days = await stream(conn, review_car, date(2022, 3, 15), date(2023, 3, 20))
    sha = "ab" * 32
    await conn.execute("insert into photos (sha256, content_type, size_bytes) values ($1, 'image/jpeg', 1)", sha)
    await conn.execute(
        """insert into photo_submissions (participation_id, stage, claimed_km, dashboard_sha256, plate_sha256, status)
           values ($1, 'end', 51000, $2, $2, 'in_review')""",
        p_review, sha,
    )

    d = await designate_as_of(conn, seoul(date(2023, 4, 1)))
    assert (d.starts, d.ends) == (1, 1)
    assert await pointers(conn, p_photo) == (None, None)
    kept = await pointers(conn, p_kept)
    assert kept[0] == photo_start and kept[1] is not None  # the end from the photo start's next day on
    assert await pointers(conn, p_review) == (review_days[date(2022, 3, 15)], None)
    # Rejected: the member will not send another, so the stream marks the end.
    await conn.execute("update photo_submissions set status = 'rejected' where participation_id = $1", p_review)
    assert (await designate_as_of(conn, seoul(date(2023, 4, 2)))).ends == 1


async def test_consent_decides_who_is_connected(conn: asyncpg.Connection) -> None:
    cases: dict[str, tuple[dict[str, datetime], bool, bool]] = {
        # withdrawn mid-period: the start is designated, the end is left to an end photo
        "withdrawn_mid_period": (dict(withdrawn_at=utc(2022, 9, 1)), True, False),
        # withdrawn after the period ended: both
        "withdrawn_after": (dict(withdrawn_at=utc(2023, 3, 20)), True, True),
        # granted after the period ended: neither
        "granted_after": (dict(granted_at=utc(2023, 3, 20)), False, False),
        # a withdrawal never preceded by a grant (granted and withdrawn at once): neither
        "never_in_force": (dict(granted_at=utc(2022, 6, 1), withdrawn_at=utc(2022, 6, 1)), False, False),
        # granted a month into the period: both
        "granted_later": (dict(granted_at=utc(2022, 4, 15)), True, True),
    }
    pids = {}
    for name, (consent, _, _) in cases.items():
        car = await connected_car(conn, **consent)
        pids[name] = await enrol(conn, car, date(2022, 3, 15))
        await stream(conn, car, date(2022, 3, 15), date(2023, 3, 20), every_days=2)
    await designate_as_of(conn, seoul(date(2023, 4, 1)))
    for name, (_, start, end) in cases.items():
        s, e = await pointers(conn, pids[name])
        assert (s is not None, e is not None) == (start, end), name


async def test_dry_run_designates_and_evaluates_but_writes_nothing(conn: asyncpg.Connection) -> None:
    car = await connected_car(conn)
    pid = await enrol(conn, car, date(2022, 3, 15))
    await stream(conn, car, date(2022, 3, 15), date(2023, 3, 20), every_days=2)
    staged = await evaluate_round(conn, ROUND, dry_run=True)
    assert staged.designation is not None and (staged.designation.starts, staged.designation.ends) == (1, 1)
    assert staged.to_write == 1
    assert await pointers(conn, pid) == (None, None)
    row = await conn.fetchrow(
        "select (select count(*) from period_readings), (select count(*) from period_results), (select count(*) from outbox)"
    )
    assert tuple(row) == (0, 0, 0)  # type: ignore[arg-type]


async def test_a_mixed_world_is_evaluated_by_one_round(conn: asyncpg.Connection) -> None:
    photo = []
    for i in range(4):
        car = await make_car(conn)
        photo.append(await make_participation(conn, car, start=(date(2022, 3, 2), 40_000_000),
                                              end=(date(2023, 3, 3), 45_000_000 + i * 1_000_000)))
    connected = []
    for i in range(5):
        car = await connected_car(conn)
        connected.append(await enrol(conn, car, date(2022, 3, 15)))
        await stream(conn, car, date(2022, 3, 15), date(2023, 3, 20), every_days=1 + i, m_per_day=20_000 + 5_000 * i)
    season_car = await connected_car(conn)
    season = await enrol(conn, season_car, date(2022, 11, 1), program="season", season_year=2022)
    await stream(conn, season_car, date(2022, 11, 25), date(2023, 4, 5), m_per_day=20_000)
    running_car = await connected_car(conn)
    running = await enrol(conn, running_car, date(2022, 9, 1))  # its period ends in September 2023
    await stream(conn, running_car, date(2022, 9, 1), date(2023, 4, 20))

    # The round runs on its cutoff day.
    staged = await evaluate_round(conn, ROUND, designation_as_of=ROUND.cutoff)
    assert staged.designation is not None
    assert (staged.designation.starts, staged.designation.ends) == (7, 6)
    assert (staged.to_write, staged.problems) == (10, [])
    results = {r["participation_id"]: r for r in await conn.fetch("select * from period_results")}
    assert set(results) == {*photo, *connected, season}
    assert results[season]["special_points"] == 0  # 2,420 km over the season's 121 days
    # Daily readings end on the last day itself; every other day, on the day before.
    assert [results[p]["end_date"] for p in connected[:2]] == [date(2023, 3, 15), date(2023, 3, 14)]
    assert await conn.fetchval("select count(*) from outbox") == 10
    assert (await pointers(conn, running))[1] is None
