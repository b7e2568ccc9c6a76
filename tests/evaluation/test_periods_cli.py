"""`carmileage periods designate|show` and the designation inside `carmileage evaluate`."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import asyncpg
import pytest

from ingest.cli import main

from .helpers import connect_car, enrol, make_car, stream


@pytest.fixture
def db_env(fresh_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CARMILEAGE_DATABASE_URL", fresh_database_url)
    return fresh_database_url


async def _seed(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        car = await make_car(conn)
        await connect_car(conn, car)
        pid = await enrol(conn, car, date(2022, 3, 15))
        await stream(conn, car, date(2022, 3, 15), date(2023, 3, 20), every_days=2)
        return pid
    finally:
        await conn.close()


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def test_designate_dry_run_then_run_then_again(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    pid = asyncio.run(_seed(db_env))
    assert main(["periods", "designate", "--dry-run", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["dry_run"], s["starts"], s["ends"]) == (True, 1, 1)
    assert asyncio.run(_fetch(db_env, "select * from period_readings")) == []

    assert main(["periods", "designate"]) == 0
    assert "designated 1 start and 1 end readings" in capsys.readouterr().out
    assert main(["periods", "designate", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["starts"], again["ends"]) == (0, 0)

    assert main(["periods", "show", str(pid), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["period"] == {"first_day": "2022-03-15", "last_day": "2023-03-15",
                               "end_designated_from": "2023-03-23", "end_from": None, "end_until": None,
                               "complete": True}
    assert shown["end_reading"]["recorded_on"] == "2023-03-14" and shown["end_reading"]["source"] == "telematics"
    assert [d["stage"] for d in shown["designations"]] == ["start", "end"]
    assert main(["periods", "show", str(pid)]) == 0
    text = capsys.readouterr().out
    assert "period: 2022-03-15 – 2023-03-15" in text and "designated end" in text
    assert main(["periods", "show", "999999"]) == 1


def test_evaluate_designates_first_and_a_dry_run_writes_nothing(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(db_env))
    assert main(["evaluate", "--round", "2023-05", "--dry-run", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["designated"]["starts"], s["designated"]["ends"], s["new_results"]) == (1, 1, 1)
    rows = asyncio.run(_fetch(db_env, "select start_reading_id, end_reading_id from participations"))
    assert [tuple(r) for r in rows] == [(None, None)]

    assert main(["evaluate", "--round", "2023-05"]) == 0
    out = capsys.readouterr().out
    assert "designated 1 start and 1 end readings" in out and "1 new and 0 superseding" in out
    assert len(asyncio.run(_fetch(db_env, "select * from outbox"))) == 1
