"""`carmileage outbox list|show|retry` and `carmileage report districts` against a real database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import date

import asyncpg
import pytest

from ingest.cli import main
from prorate.rounds import parse_round
from prorate.vehicle import SEOUL_DISTRICTS
from storage.evaluation import evaluate_round

from .helpers import make_car, make_participation


@pytest.fixture
def db_env(fresh_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CARMILEAGE_DATABASE_URL", fresh_database_url)
    return fresh_database_url


async def _seed(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # 강남구: two members; one drove less (earns), one more; one 종로구 member ended in 2023.
        for end_m, district in [(45_000_000, "강남구"), (60_000_000, "강남구"), (41_000_000, "종로구")]:
            car = await make_car(conn, district=district)
            await make_participation(conn, car, start=(date(2022, 3, 1), 40_000_000), end=(date(2023, 3, 1), end_m))
        await conn.execute(
            "update participations set status = 'ended', end_reason = 'scrapped', ended_on = '2023-04-01'"
            " where vehicle_id = (select id from vehicles where district = '종로구')"
        )
        await evaluate_round(conn, parse_round("2023-05"))
        await conn.execute("update outbox set status = 'dead', dead_at = now(), last_status = 422,"
                           " last_error = 'HTTP 422: unknown member' where id = (select min(id) from outbox)")
    finally:
        await conn.close()


async def _outbox_audit(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch("select action, actor_id, after::text as after from audit_log where entity = 'outbox'")
    finally:
        await conn.close()


def test_outbox_list_show_retry(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(db_env))
    assert main(["outbox", "list"]) == 0
    out = capsys.readouterr().out
    assert "pending: 2  delivered: 0  dead: 1" in out and "HTTP 422: unknown member" in out

    assert main(["outbox", "list", "--status", "dead", "--json"]) == 0
    [dead] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert dead["status"] == "dead"

    assert main(["outbox", "show", dead["event_id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["body"]["event_id"] == dead["event_id"]
    assert shown["body"]["evidence"]["baseline"]["method"] == "national"

    assert main(["outbox", "retry", str(dead["id"])]) == 0
    assert "1 event(s) due now" in capsys.readouterr().out
    assert main(["outbox", "list", "--status", "dead", "--json"]) == 0
    assert capsys.readouterr().out == ""
    [audit] = asyncio.run(_outbox_audit(db_env))
    assert audit["action"] == "outbox.retry" and audit["actor_id"].startswith("cli:")
    assert json.loads(audit["after"]) == {"status": "pending", "count": 1}
    assert main(["outbox", "retry", str(dead["id"] + 1000)]) == 1  # touches nothing: no audit entry
    assert len(asyncio.run(_outbox_audit(db_env))) == 1
    assert main(["outbox", "show", "999999"]) == 1
    assert main(["outbox", "retry", "not-an-id"]) == 2


def test_district_report(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(db_env))
    assert main(["report", "districts", "--year", "2023", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["district"] for r in rows] == list(SEOUL_DISTRICTS)
    by = {r["district"]: r for r in rows}
    gangnam, jongno = by["강남구"], by["종로구"]
    assert (gangnam["members"], gangnam["new_members"], gangnam["ended_participations"], gangnam["results"]) == ("2", "0", "0", "2")
    assert int(gangnam["points"]) > 0 and float(gangnam["verified_reduction_km"]) > 0
    assert (jongno["members"], jongno["ended_participations"]) == ("1", "1")
    assert by["마포구"]["members"] == "0"

    assert main(["report", "districts", "--year", "2022"]) == 0
    table = capsys.readouterr().out
    assert "합계" in table and "강남구" in table
    assert main(["report", "districts", "--year", "2022", "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["district"] == "종로구" and first["new_members"] == 1
