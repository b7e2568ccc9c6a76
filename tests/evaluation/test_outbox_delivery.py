"""Delivery to a real (loopback) reward calculator that fails, times out and answers twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date

import asyncpg
import jsonschema
import pytest
from aiohttp import web

from ingest.outbox_sender import OutboxSender, backoff_s, retry_after_s
from prorate.rounds import parse_round
from storage.evaluation import evaluate_round
from storage.outbox import claim_due, counts, mark_delivered, retry_items
from telematics.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

from .helpers import make_car, make_participation
from .parity import schema_validator

SECRET = b"reward-calculator-shared-secret"
# What the receiver does with the first request of an event, by the event's mode.
MODES = ("ok", "fail_500", "timeout_after_processing", "lost_answer", "retry_after")


@dataclass
class Receiver:
    """A reward calculator: verifies signatures, refuses a body its contract does not describe
    (docs/reward-calculator.schema.json), drops duplicates by Idempotency-Key."""

    mode_of: Callable[[str], str]
    requests: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    accepted: dict[str, dict[str, object]] = field(default_factory=dict)
    duplicates: int = 0
    bad_signatures: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        v = verify([SECRET.decode()], request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER), body, time.time())
        if not v.ok:
            self.bad_signatures += 1
            return web.json_response({"error": v.code}, status=401)
        key = request.headers["Idempotency-Key"]
        self.requests[key].append(time.monotonic())
        attempt = len(self.requests[key])
        mode = self.mode_of(key)
        if mode == "refuse":
            return web.json_response({"error": "participation unknown here"}, status=422)
        try:
            schema_validator().validate(json.loads(body))
        except jsonschema.ValidationError as e:
            return web.json_response({"error": f"not the contract: {e.message}"}, status=422)
        if attempt == 1 and mode == "fail_500":
            return web.Response(status=500, text="database is down")
        if attempt == 1 and mode == "retry_after":
            return web.Response(status=429, headers={"Retry-After": "1"})
        # Processing: a duplicate is recognised by its key and dropped.
        if key in self.accepted:
            self.duplicates += 1
        else:
            payload = json.loads(body)
            assert payload["event_id"] == key
            self.accepted[key] = payload
        if attempt == 1 and mode == "timeout_after_processing":
            await asyncio.sleep(2)  # processed, but the answer comes too late
        if attempt == 1 and mode == "lost_answer":
            return web.Response(status=502, text="proxy lost the answer")
        return web.json_response({"ok": True})


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[Callable[[str], str]], Receiver]]:
    runners: list[web.AppRunner] = []

    async def start(mode_of: Callable[[str], str]) -> Receiver:
        rec = Receiver(mode_of)
        app = web.Application()
        app.router.add_post("/results", rec.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        rec.url = f"http://127.0.0.1:{port}/results"
        runners.append(runner)
        return rec

    yield start  # type: ignore[misc]
    for r in runners:
        await r.cleanup()


def modes_in_turn(keys: list[str]) -> dict[str, str]:
    """Each failure kind for every fifth result (event ids are random: a hash of them left one
    kind out now and then)."""
    return {k: MODES[i % len(MODES)] for i, k in enumerate(sorted(keys))}


def sender(pool: asyncpg.Pool, url: str, name: str, **kw: object) -> OutboxSender:
    options: dict[str, object] = {
        "timeout_s": 0.5, "lease_s": 5.0, "backoff_base_s": 0.05, "backoff_max_s": 0.3,
        "poll_interval_s": 0.05, "batch_size": 4, "concurrency": 3, "worker_id": name,
    }
    options.update(kw)
    return OutboxSender(pool, url, SECRET, **options)  # type: ignore[arg-type]


async def seed_results(conn: asyncpg.Connection, n: int) -> None:
    for i in range(n):
        car = await make_car(conn)
        await make_participation(conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 1), 40_000_000 + i * 700_000))
    assert (await evaluate_round(conn, parse_round("2023-05"))).to_write == n


async def wait_until_settled(pool: asyncpg.Pool, within_s: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        c = await counts(pool)
        if c["pending"] == 0:
            return c
        await asyncio.sleep(0.1)
    raise AssertionError(f"outbox not settled: {await counts(pool)}")


async def test_every_result_arrives_at_least_once_through_failures(
    eval_pool: asyncpg.Pool, conn: asyncpg.Connection, receiver: Callable[..., Receiver]
) -> None:
    await seed_results(conn, 30)
    mode_of = modes_in_turn([str(r[0]) for r in await conn.fetch("select event_id from outbox")])
    rec = await receiver(lambda key: mode_of.get(key, "ok"))  # type: ignore[misc]
    senders = [sender(eval_pool, rec.url, f"sender-{i}") for i in range(3)]
    for s in senders:
        await s.start()
    try:
        c = await wait_until_settled(eval_pool)
    finally:
        for s in senders:
            await s.stop()
    events = {str(r[0]) for r in await conn.fetch("select event_id from outbox")}
    assert c == {"pending": 0, "delivered": 30, "dead": 0}
    assert set(rec.accepted) == events  # every result arrived
    assert rec.duplicates >= 1  # ...some more than once, and the receiver dropped those by key
    assert rec.bad_signatures == 0
    assert {mode_of[k] for k in events} == set(MODES)  # every failure kind happened
    # Retry-After: 1 was honoured.
    for key in events:
        if mode_of[key] == "retry_after":
            first, second = rec.requests[key][:2]
            assert second - first >= 0.95
    payload = next(iter(rec.accepted.values()))
    evidence = payload["evidence"]
    assert isinstance(evidence, dict)
    assert {"start_reading", "end_reading", "baseline"} <= set(evidence)
    assert evidence["start_reading"]["source"] == "telematics"
    assert evidence["baseline"]["method"] == "national"


async def test_a_refusal_is_dead_lettered_with_its_reason_and_can_be_retried(
    eval_pool: asyncpg.Pool, conn: asyncpg.Connection, receiver: Callable[..., Receiver]
) -> None:
    await seed_results(conn, 2)
    refusing = True
    rec = await receiver(lambda key: "refuse" if refusing else "ok")  # type: ignore[misc]
    s = sender(eval_pool, rec.url, "solo")
    while await s.run_once():
        pass
    assert await counts(eval_pool) == {"pending": 0, "delivered": 0, "dead": 2}
    row = await conn.fetchrow("select * from outbox limit 1")
    assert row is not None
    assert row["last_status"] == 422 and "participation unknown here" in row["last_error"]
    refusing = False
    assert await retry_items(eval_pool, all_dead=True) == 2
    while await s.run_once():
        pass
    assert await counts(eval_pool) == {"pending": 0, "delivered": 2, "dead": 0}


async def test_rows_of_a_sender_that_died_are_taken_over_after_its_lease(
    eval_pool: asyncpg.Pool, conn: asyncpg.Connection, receiver: Callable[..., Receiver]
) -> None:
    await seed_results(conn, 3)
    rec = await receiver(lambda key: "ok")  # type: ignore[misc]
    claimed = await claim_due(conn, "crashed-sender", 10, lease_s=60)
    assert len(claimed) == 3
    s = sender(eval_pool, rec.url, "survivor")
    assert await s.run_once() == 0  # still leased
    # The crashed sender's lease runs out (moved to the past rather than waited for).
    await conn.execute("update outbox set lease_until = now() - interval '1 second' where claimed_by = 'crashed-sender'")
    assert await s.run_once() == 3
    assert len(rec.accepted) == 3
    # The crashed sender coming back cannot overwrite the survivor's outcome.
    assert not await mark_delivered(conn, claimed[0].id, "crashed-sender", 200)


async def test_an_unreachable_calculator_is_retried(eval_pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    await seed_results(conn, 1)
    s = sender(eval_pool, "http://127.0.0.1:9/nowhere", "solo")
    assert await s.run_once() == 1
    row = await conn.fetchrow("select * from outbox")
    assert row is not None
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "connection failed" in row["last_error"]
    assert row["next_attempt_at"] > row["created_at"]


def test_backoff_grows_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    for attempts in range(1, 30):
        d = backoff_s(attempts, 2.0, 3600.0, rng)
        step = min(3600.0, 2.0 * 2 ** (attempts - 1))
        assert step / 10 <= d <= step


def test_retry_after_forms() -> None:
    assert retry_after_s("120") == 120
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 30) == 30
    assert retry_after_s("soon") is None and retry_after_s(None) is None


async def test_stop_finishes_the_requests_in_flight(
    eval_pool: asyncpg.Pool, conn: asyncpg.Connection, receiver: Callable[..., Receiver]
) -> None:
    await seed_results(conn, 1)
    rec = await receiver(lambda key: "ok")  # type: ignore[misc]
    original = rec.handle
    arrived = asyncio.Event()
    answer = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await answer.wait()
        return await original(request)

    rec.handle = slow
    app = web.Application()
    app.router.add_post("/slow", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        s = sender(eval_pool, f"http://127.0.0.1:{runner.addresses[0][1]}/slow", "stopping", timeout_s=2.0)
        await s.start()
        await asyncio.wait_for(arrived.wait(), 5)
        stopping = asyncio.create_task(s.stop())
        done, _ = await asyncio.wait({stopping}, timeout=0.5)
        assert not done  # stop() waits while the request is unanswered...
        answer.set()
        await asyncio.wait_for(stopping, 5)  # ...and returns once the answer is in and recorded
        assert await counts(eval_pool) == {"pending": 0, "delivered": 1, "dead": 0}
        assert len(rec.accepted) == 1
    finally:
        await runner.cleanup()
