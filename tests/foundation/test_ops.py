"""Operations: health, readiness, metrics, the API's own description, logs, settings, shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from ingest.logs import JsonFormatter, mask, request_id_var
from tests.conftest import ROOT, LiveService, cli_token, vehicle_payload


async def test_readyz_reports_postgresql(client: TestClient) -> None:
    r = await client.get("/readyz")
    assert r.status == 200
    assert (await r.json())["checks"]["postgresql"] == "ok"


async def test_readyz_fails_when_a_check_fails(client: TestClient) -> None:
    from ingest.state import READINESS

    async def broker_down() -> tuple[bool, str]:
        return False, "disconnected"

    client.app[READINESS]["mqtt"] = broker_down
    r = await client.get("/readyz")
    assert r.status == 503
    assert (await r.json())["checks"]["mqtt"] == "disconnected"


async def test_metrics(client: TestClient) -> None:
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert r.status == 200
    assert "carmileage_http_requests_total" in await r.text()


async def test_openapi_describes_every_operation(client: TestClient) -> None:
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    post = spec["paths"]["/v1/vehicles"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    assert "plate" in spec["components"]["schemas"][name]["properties"]
    assert {"201", "401", "403", "409", "422"} <= set(post["responses"])
    docs = await (await client.get("/docs")).text()
    assert "/v1/vehicles" in docs and "<script" not in docs


async def test_request_ids(client: TestClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r = await client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
    assert r.headers["X-Request-Id"] != "bad id <script>"
    r = await client.get("/nowhere")
    assert r.status == 404
    body = await r.json()
    assert body["error"]["code"] == "not_found"
    assert body["error"]["request_id"] == r.headers["X-Request-Id"]


async def test_method_not_allowed(client: TestClient) -> None:
    r = await client.delete("/v1/vehicles")
    assert r.status == 405
    assert (await r.json())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("plate 12가3456 enrolled", "plate 12가**** enrolled"),
        ("plate 서울12가3456", "plate 서울12가****"),
        ("plate 123가 4567", "plate 123가****"),
        ("vin KMHD841CBLU123456 ok", "vin KMH************** ok"),
        ("nothing to hide 12345678", "nothing to hide 12345678"),
    ],
)
def test_mask(text: str, masked: str) -> None:
    assert mask(text) == masked


def test_json_logs_carry_request_id_and_mask() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "car %s", ("12가3456",), None)
    record.vin = "KMHD841CBLU123456"
    token = request_id_var.set("rid-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "car 12가****"
    assert line["request_id"] == "rid-1"
    assert line["vin"] == "KMH**************"


def test_a_bad_setting_fails_with_one_clear_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "serve"],
        env={**os.environ, "CARMILEAGE_HTTP_PORT": "eighty"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("carmileage: bad setting CARMILEAGE_HTTP_PORT")


def test_cli_help_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for command in ("serve", "migrate", "tokens"):
        assert command in out.stdout


def _enrol(url: str, token: str, payload: dict[str, object]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(
        url + "/v1/vehicles",
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read())


def _wait_for_log(svc: LiveService, text: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while text not in svc.logs():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{svc.logs()[-2000:]}"
        time.sleep(0.02)


async def _wait_for_lock_waiters(database_url: str, n: int, within_s: float = 30) -> None:
    """Until `n` sessions of this database wait for a lock (the service's requests). Watched from
    a connection of its own: activity seen inside a transaction is a snapshot that never moves."""
    conn = await asyncpg.connect(database_url)
    try:
        await _watch_lock_waiters(conn, n, within_s)
    finally:
        await conn.close()


async def _watch_lock_waiters(conn: asyncpg.Connection, n: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        waiting = await conn.fetchval(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
        )
        if waiting == n:
            return
        assert time.monotonic() < deadline, f"{waiting} requests wait in the database, not {n}"
        await asyncio.sleep(0.02)


async def test_sigterm_drains_in_flight_requests(
    live_service_factory: Callable[..., LiveService], fresh_database_url: str
) -> None:
    """Requests the service is handling when SIGTERM arrives are still answered, then the process
    exits 0; the enrolments they carried are committed.

    The requests are in flight for certain: the test holds a lock on the cars' table, so each one
    waits inside the database until the service has begun shutting down."""
    svc = live_service_factory(fresh_database_url)
    assert svc.proc is not None
    token = cli_token(fresh_database_url, "citizen", "drain-owner")
    payloads = [vehicle_payload() for _ in range(5)]
    conn = await asyncpg.connect(fresh_database_url)
    try:
        held = conn.transaction()
        await held.start()
        await conn.execute("lock table vehicles in share row exclusive mode")
        enrolments = [asyncio.create_task(asyncio.to_thread(_enrol, svc.url, token, p)) for p in payloads]
        await _wait_for_lock_waiters(fresh_database_url, len(payloads))
        svc.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(_wait_for_log, svc, '"msg": "shutting down')
        await held.rollback()
        answers = await asyncio.gather(*enrolments)
        code = await asyncio.to_thread(svc.proc.wait, 30)
        stored = await conn.fetch(
            "select vin from vehicles where vin = any($1::text[])", [p["vin"] for p in payloads]
        )
    finally:
        await conn.close()
    assert code == 0, svc.logs()[-2000:]
    assert '"msg": "stopped"' in svc.logs()
    assert [status for status, _ in answers] == [201] * len(payloads), answers
    assert [body["vin"] for _, body in answers] == [p["vin"] for p in payloads]
    assert {r["vin"] for r in stored} == {p["vin"] for p in payloads}


def test_live_service_logs_json_with_masked_plates(
    live_service_factory: Callable[..., LiveService], fresh_database_url: str
) -> None:
    svc = live_service_factory(fresh_database_url)
    token = cli_token(fresh_database_url, "citizen", "log-owner")
    body = vehicle_payload()
    req = urllib.request.Request(
        svc.url + "/v1/vehicles",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Request-Id": "r-42"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201
    svc.terminate()
    logs = svc.logs()
    assert body["vin"] not in logs
    assert body["plate"] not in logs
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e.get("request_id") == "r-42" and e.get("status") == 201 for e in entries)


def test_tokens_cli(fresh_database_url: str) -> None:
    token = cli_token(fresh_database_url, "reviewer", "kim")
    assert token.startswith("cm_rev_")
    out = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "tokens", "list"],
        env={**os.environ, "CARMILEAGE_DATABASE_URL": fresh_database_url},
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert "reviewer" in out.stdout and "kim" in out.stdout and token not in out.stdout
