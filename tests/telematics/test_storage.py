"""Storing readings against PostgreSQL: idempotency, order-free checks, quarantine, rollback cases,
consent, and correctness per car when writers race."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

import asyncpg

from storage.readings import BatchItem, NewReading, store_batch, store_verified_reading
from telematics.payload import parse_mqtt_payload
from telematics.reading import OdometerReading, Rejected
from tests.telematics.conftest import Car, enrol_cars, make_provider

NOW = datetime.now(UTC).replace(microsecond=0)


def odo(car: Car, km: float, at: datetime, event_id: str | None = None) -> OdometerReading:
    value = Decimal(str(km))
    return OdometerReading(
        event_id or f"e-{car.id}-{at.timestamp()}-{km}", car.vin, int(value * 1000), at, value, "km"
    )


def items(provider_id: int, readings: list[OdometerReading]) -> list[BatchItem]:
    return [BatchItem(provider_id, NOW, r) for r in readings]


async def verified(pool: asyncpg.Pool, car: Car) -> list[tuple[datetime, int]]:
    rows = await pool.fetch(
        "select recorded_at, odometer_m from readings where vehicle_id = $1 and status = 'verified' order by recorded_at",
        car.id,
    )
    return [(r["recorded_at"], r["odometer_m"]) for r in rows]


async def test_store_then_replay_counts_duplicates(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        batch = items(p.id, [odo(car, 1000 + k, NOW - timedelta(hours=10 - k)) for k in range(5)])
        first = await store_batch(conn, batch)
        again = await store_batch(conn, batch)
        # The same readings under new event ids are duplicates too (same car, instant and odometer).
        renamed = await store_batch(
            conn,
            [b._replace(reading=b.reading._replace(event_id="x" + b.reading.event_id)) for b in batch],  # type: ignore[union-attr]
        )
    assert [o.status for o in first.items] == ["accepted"] * 5
    assert [o.status for o in again.items] == ["duplicate"] * 5
    assert [o.status for o in renamed.items] == ["duplicate"] * 5
    assert len(await verified(pool, car)) == 5
    counts = await pool.fetchrow(
        "select sum(accepted) a, sum(duplicates) d, sum(quarantined) q from ingest_counts where provider_id = $1",
        p.id,
    )
    assert counts is not None
    assert (counts["a"], counts["d"], counts["q"]) == (5, 10, 0)


async def test_an_event_sent_again_is_a_duplicate_whatever_it_now_says(pool: asyncpg.Pool) -> None:
    """The provider's event id decides: an event id already stored is a duplicate, even with a
    different (plausible) value or among new events, and the counts say so exactly once."""
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        await store_batch(conn, items(p.id, [odo(car, 1000, NOW - timedelta(hours=10), event_id="e1")]))
        mixed = await store_batch(
            conn,
            items(
                p.id,
                [
                    odo(car, 1010, NOW - timedelta(hours=9), event_id="e2"),
                    odo(car, 1020, NOW - timedelta(hours=8), event_id="e1"),  # e1 again, new content
                    odo(car, 1030, NOW - timedelta(hours=7), event_id="e3"),
                ],
            ),
        )
    assert [o.status for o in mixed.items] == ["accepted", "duplicate", "accepted"]
    assert mixed.retries == 1  # the first attempt does not look for seen events
    assert [km for _, km in await verified(pool, car)] == [1_000_000, 1_010_000, 1_030_000]
    counts = await pool.fetchrow(
        "select sum(accepted) a, sum(duplicates) d from ingest_counts where provider_id = $1", p.id
    )
    assert counts is not None and (counts["a"], counts["d"]) == (3, 1)


async def test_a_redelivery_is_looked_up_thoroughly_at_once(pool: asyncpg.Pool) -> None:
    """A batch the broker marked as redelivered probes for seen events on its first attempt."""
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        batch = items(p.id, [odo(car, 1000 + k, NOW - timedelta(hours=10 - k)) for k in range(3)])
        await store_batch(conn, batch[:2])
        again = await store_batch(conn, batch, expect_duplicates=True)
    assert [o.status for o in again.items] == ["duplicate", "duplicate", "accepted"]
    assert again.retries == 0


async def test_readings_of_one_car_within_a_batch_are_each_others_neighbours(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        out = await store_batch(
            conn,
            items(
                p.id,
                [
                    odo(car, 1000, NOW - timedelta(hours=5)),
                    odo(car, 1100, NOW - timedelta(hours=3)),
                    odo(car, 1050, NOW - timedelta(hours=4)),  # between them, plausible
                    odo(car, 990, NOW - timedelta(hours=2)),  # lower than the one an hour before
                    odo(car, 1100, NOW - timedelta(hours=3), event_id="same-again"),  # identical reading
                ],
            ),
        )
    assert [o.status for o in out.items] == ["accepted", "accepted", "accepted", "quarantined", "duplicate"]
    assert out.items[3].reasons == ("odometer_decreased",)
    assert out.items[4].reading_id == out.items[1].reading_id
    assert out.disputes == 1


async def test_arrival_order_does_not_matter(pool: asyncpg.Pool) -> None:
    """A plausible history cut into batches in random order is verified whole, every time."""
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        cars = await enrol_cars(conn, 3, [p])
        rng = random.Random(7)
        for car in cars:
            history = [odo(car, 20_000 + 7 * k, NOW - timedelta(hours=200 - 2 * k)) for k in range(60)]
            rng.shuffle(history)
            size = rng.randint(3, 17)
            for i in range(0, len(history), size):
                out = await store_batch(conn, items(p.id, history[i : i + size]))
                assert {o.status for o in out.items} <= {"accepted", "duplicate"}
            stored = await verified(pool, car)
            assert len(stored) == 60
            assert [m for _, m in stored] == sorted(m for _, m in stored)


async def test_rollback_opens_one_case_per_car(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        await store_batch(conn, items(p.id, [odo(car, 50_000, NOW - timedelta(days=3))]))
        out1 = await store_batch(conn, items(p.id, [odo(car, 12, NOW - timedelta(days=2))]))
        out2 = await store_batch(conn, items(p.id, [odo(car, 40, NOW - timedelta(days=1))]))
    assert out1.items[0].reasons == ("odometer_decreased",) and out1.disputes == 1
    assert out2.items[0].status == "quarantined" and out2.disputes == 0
    d = await pool.fetchrow(
        "select * from disputes where vehicle_id = $1 and kind = 'rollback' and status = 'open'", car.id
    )
    assert d is not None
    assert d["district"] == "강남구" and d["reasons"] == ["odometer_decreased"]
    assert d["details"]["before"]["odometer_m"] == 50_000_000
    q = await pool.fetch(
        "select review_status, reasons from quarantined_readings where vehicle_id = $1", car.id
    )
    assert [r["review_status"] for r in q] == ["open", "open"]


async def test_unknown_cars_consent_and_the_future(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        other = await make_provider(conn)
        granted, never, withdrawn = await enrol_cars(conn, 3)
        await conn.execute(
            "insert into vehicle_consents (provider_id, vehicle_id) values ($1, $2)", p.id, granted.id
        )
        await conn.execute(
            "insert into vehicle_consents (provider_id, vehicle_id) values ($1, $2)", other.id, never.id
        )
        await conn.execute(
            "insert into vehicle_consents (provider_id, vehicle_id, withdrawn_at) values ($1, $2, now())",
            p.id,
            withdrawn.id,
        )
        ghost = Car(0, "KMHZZ00ZZZZ999999", "nobody")
        out = await store_batch(
            conn,
            items(
                p.id,
                [
                    odo(granted, 10, NOW - timedelta(hours=1)),
                    odo(never, 10, NOW - timedelta(hours=1)),
                    odo(withdrawn, 10, NOW - timedelta(hours=1)),
                    odo(ghost, 10, NOW - timedelta(hours=1)),
                    odo(granted, 11, NOW + timedelta(hours=1)),
                ],
            ),
        )
    assert [o.reasons for o in out.items] == [
        (),
        ("consent_missing",),
        ("consent_withdrawn",),
        ("vehicle_unknown",),
        ("recorded_in_future",),
    ]
    row = await pool.fetchrow(
        "select vin, vehicle_id, raw from quarantined_readings where id = $1", out.items[3].quarantine_id
    )
    assert row is not None
    assert (row["vin"], row["vehicle_id"]) == (ghost.vin, None)


async def test_unreadable_payloads_are_quarantined_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        bad = [
            BatchItem(p.id, NOW, rejected=cast(Rejected, a)) for a in parse_mqtt_payload(b'{"odometer": NaN}')
        ]
        first = await store_batch(conn, bad + bad)
        again = await store_batch(conn, bad)
    assert [o.status for o in first.items] == ["quarantined", "duplicate"]
    assert [o.status for o in again.items] == ["duplicate"]
    rows = await pool.fetch("select reasons, raw from quarantined_readings where provider_id = $1", p.id)
    assert [(r["reasons"], r["raw"]) for r in rows] == [(["non_finite_number"], '{"odometer": NaN}')]


async def test_a_previous_reading_long_ago_is_still_a_neighbour(pool: asyncpg.Pool) -> None:
    """Look-ups use a window of recent months; older neighbours are found all the same."""
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        await store_batch(conn, items(p.id, [odo(car, 80_000, NOW - timedelta(days=200))]))
        await store_batch(conn, items(p.id, [odo(car, 30_000, NOW - timedelta(days=700))]))  # a late upload
        out = await store_batch(
            conn,
            items(
                p.id,
                [odo(car, 79_000, NOW - timedelta(hours=1)), odo(car, 20_000, NOW - timedelta(days=600))],
            ),
        )
    assert [o.reasons for o in out.items] == [("odometer_decreased",), ("odometer_decreased",)]


async def test_racing_writers_store_each_reading_once(pool: asyncpg.Pool) -> None:
    """Two workers given overlapping batches (redeliveries, resends) in different orders."""
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        cars = await enrol_cars(conn, 4, [p])
    history = [odo(car, 1_000 + 3 * k, NOW - timedelta(hours=100 - k)) for car in cars for k in range(50)]
    rng = random.Random(3)

    async def worker(seed: int) -> None:
        mine = list(history)
        random.Random(seed).shuffle(mine)
        async with pool.acquire() as conn:
            for i in range(0, len(mine), 40):
                await store_batch(conn, items(p.id, mine[i : i + 40]))

    await asyncio.gather(*(worker(rng.randint(0, 10**6)) for _ in range(3)))
    for car in cars:
        stored = await verified(pool, car)
        assert len(stored) == 50
        assert [m for _, m in stored] == sorted(m for _, m in stored)
    events = await pool.fetchval("select count(*) from provider_events where provider_id = $1", p.id)
    assert events == 200


async def test_store_verified_reading_for_photos_and_reviewers(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        await store_batch(conn, items(p.id, [odo(car, 10_000, NOW - timedelta(days=10))]))
        ok = await store_verified_reading(
            conn, NewReading(car.id, 10_500_000, NOW - timedelta(days=5), "photo", uploaded_at=NOW)
        )
        again = await store_verified_reading(
            conn, NewReading(car.id, 10_500_000, NOW - timedelta(days=5), "photo")
        )
        low = await store_verified_reading(
            conn, NewReading(car.id, 9_000_000, NOW - timedelta(days=1), "photo")
        )
        overruled = await store_verified_reading(
            conn,
            NewReading(car.id, 9_000_000, NOW - timedelta(days=1), "reviewer", approved_at=NOW),
            ignore={"odometer_decreased"},
        )
        tele = await store_verified_reading(
            conn, NewReading(car.id, 1_000, NOW - timedelta(hours=2), "telematics", provider_id=p.id)
        )
    assert ok.reading_id and not ok.reasons
    assert again.duplicate and again.reading_id == ok.reading_id
    # A photo reading the checks refuse is reported, not quarantined: the photo flow opens its case.
    assert low.reading_id is None and low.reasons == ("odometer_decreased",) and low.quarantine_id is None
    assert overruled.reading_id is not None
    assert tele.quarantine_id is not None and tele.reasons == ("odometer_decreased",) and tele.dispute_id


async def test_an_identical_superseded_reading_is_a_duplicate(pool: asyncpg.Pool) -> None:
    """The unique key covers superseded readings too: the batch starts over with the thorough
    look-up and counts the resend as a duplicate."""
    async with pool.acquire() as conn:
        p = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [p])
        first = await store_batch(conn, items(p.id, [odo(car, 500, NOW - timedelta(hours=3))]))
        await conn.execute(
            "update readings set status = 'superseded' where id = $1", first.items[0].reading_id
        )
        again = await store_batch(
            conn, items(p.id, [odo(car, 500, NOW - timedelta(hours=3), event_id="resent")])
        )
    assert again.items[0].status == "duplicate"
    assert again.items[0].reading_id == first.items[0].reading_id
    assert again.retries == 1


async def test_a_reading_without_consent_never_becomes_a_case(pool: asyncpg.Pool) -> None:
    """Issue 18.3: a decrease sent by a provider the member never consented to is quarantined for
    consent alone: no rollback dispute, nothing in the review queue."""
    async with pool.acquire() as conn:
        allowed = await make_provider(conn)
        stranger = await make_provider(conn)
        (car,) = await enrol_cars(conn, 1, [allowed])
        await store_batch(conn, items(allowed.id, [odo(car, 50_000, NOW - timedelta(days=2))]))
        out = await store_batch(conn, items(stranger.id, [odo(car, 10, NOW - timedelta(hours=1))]))
        single = await store_verified_reading(
            conn,
            NewReading(car.id, 20_000, NOW - timedelta(hours=2), "telematics", stranger.id, "single-1"),
            now=NOW,
        )
    assert [o.reasons for o in out.items] == [("consent_missing",)]
    assert single.reasons == ("consent_missing",) and single.dispute_id is None
    assert await pool.fetchval("select count(*) from disputes where vehicle_id = $1", car.id) == 0
    statuses = await pool.fetch("select review_status from quarantined_readings where vehicle_id = $1", car.id)
    assert [r["review_status"] for r in statuses] == ["none", "none"]
