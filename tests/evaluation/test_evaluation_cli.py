"""`carmileage evaluate` as operators run it."""

from __future__ import annotations

import json
from datetime import date

import asyncpg
import pytest

from ingest.cli import main

from .helpers import make_car, make_participation


@pytest.fixture
def db_env(fresh_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CARMILEAGE_DATABASE_URL", fresh_database_url)
    return fresh_database_url


async def _seed(url: str, bad: bool = False) -> None:
    conn = await asyncpg.connect(url)
    try:
        await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                 end=(date(2023, 3, 1), 45_000_000))
        if bad:
            await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                     end=(date(2023, 3, 1), 30_000_000))
    finally:
        await conn.close()


async def _count(url: str, table: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        n: int = await conn.fetchval(f"select count(*) from {table}")
        return n
    finally:
        await conn.close()


def test_dry_run_then_run_then_rerun(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    asyncio.run(_seed(db_env))
    assert main(["evaluate", "--round", "2023-05", "--dry-run", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["dry_run"], s["new_results"], s["points"]) == (True, 1, 70_000)
    assert asyncio.run(_count(db_env, "outbox")) == 0

    assert main(["evaluate", "--round", "2023-05"]) == 0
    assert "1 new and 0 superseding" in capsys.readouterr().out
    assert asyncio.run(_count(db_env, "outbox")) == 1

    assert main(["evaluate", "--round", "2023-05", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["new_results"], s["unchanged"]) == (0, 1)
    assert asyncio.run(_count(db_env, "outbox")) == 1


def test_problems_are_listed_and_exit_non_zero(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    asyncio.run(_seed(db_env, bad=True))
    assert main(["evaluate", "--round", "2023-05"]) == 1
    err = capsys.readouterr().err
    assert "odometer_decreased" in err
    assert asyncio.run(_count(db_env, "period_results")) == 1


@pytest.mark.parametrize(("name", "needle"), [("2023-04", "no round in 2023-04"), ("2099-05", "cannot run before")])
def test_bad_rounds_are_refused(db_env: str, name: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--round", name]) == 2
    assert needle in capsys.readouterr().err
