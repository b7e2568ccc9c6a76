"""The programme rules of issue 15 in evaluation rounds: what is not paid is listed as not
computable, what was paid stays paid, the 2021 rule set is evaluated by 2022's rounds, and the
figures the API and the reward calculator's payload show read as the tier that pays."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from decimal import Decimal

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from ingest.cli import main
from prorate.rounds import parse_round
from storage.evaluation import evaluate_round

from .helpers import bearer, make_car, make_participation, seoul

MAY = parse_round("2023-05")


async def end(conn: asyncpg.Connection, pid: int, reason: str, on: date) -> None:
    await conn.execute(
        "update participations set status = 'ended', end_reason = $2, ended_on = $3, ended_at = $4 where id = $1",
        pid, reason, on, seoul(on),
    )


async def test_a_car_sold_before_the_round_is_not_paid_and_is_listed(conn: asyncpg.Connection) -> None:
    sold = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                    end=(date(2023, 3, 1), 45_000_000))
    sold_later = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                          end=(date(2023, 3, 1), 45_000_000))
    moved = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                     end=(date(2023, 3, 1), 45_000_000))
    await end(conn, sold, "ownership_transfer", date(2023, 4, 20))
    await end(conn, sold_later, "ownership_transfer", date(2023, 5, 3))  # after the cutoff (1 May)
    await end(conn, moved, "moved_out_of_seoul", date(2023, 4, 20))  # after its period: still paid
    staged = await evaluate_round(conn, MAY)
    assert [(pid, code) for pid, code, _ in staged.problems] == [(sold, "participation_transferred")]
    paid = {r[0] for r in await conn.fetch("select participation_id from period_results")}
    assert paid == {sold_later, moved}
    assert await conn.fetchval("select count(*) from outbox") == 2


async def test_a_result_paid_before_the_transfer_stays_and_is_not_listed_again(conn: asyncpg.Connection) -> None:
    pid = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                   end=(date(2023, 3, 1), 45_000_000))
    assert (await evaluate_round(conn, MAY)).to_write == 1
    await end(conn, pid, "ownership_transfer", date(2023, 5, 10))
    june = await evaluate_round(conn, parse_round("2023-06"))
    assert (june.to_write, june.unchanged, june.problems) == (0, 1, [])
    assert await conn.fetchval("select count(*) from period_results where superseded_by is null") == 1


async def test_a_participation_ended_before_its_end_reading_is_not_paid(conn: asyncpg.Connection) -> None:
    pid = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                   end=(date(2023, 3, 1), 45_000_000))
    await end(conn, pid, "withdrawn", date(2023, 2, 1))
    staged = await evaluate_round(conn, MAY)
    assert [code for _, code, _ in staged.problems] == ["participation_ended_early"]


async def test_a_participation_whose_ownership_was_refused_is_never_paid(conn: asyncpg.Connection) -> None:
    pid = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                   end=(date(2023, 3, 1), 45_000_000))
    try:
        await end(conn, pid, "ownership_refused", date(2023, 4, 1))
    except asyncpg.CheckViolationError:
        pytest.skip("this schema has no ownership_refused end reason yet (migration 0600)")
    staged = await evaluate_round(conn, MAY)
    assert [code for _, code, _ in staged.problems] == ["participation_ownership_refused"]


async def test_short_periods_and_partial_seasons_are_listed_and_get_nothing(conn: asyncpg.Connection) -> None:
    short = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                     end=(date(2022, 3, 2), 40_001_000))
    partial = await make_participation(conn, await make_car(conn), program="season", season_year=2022,
                                       start=(date(2023, 3, 31), 40_000_000), end=(date(2023, 4, 1), 40_010_000))
    await conn.execute("update participations set enrolled_on = '2022-11-20' where id = $1", partial)
    staged = await evaluate_round(conn, MAY)
    assert sorted((pid, code) for pid, code, _ in staged.problems) == [
        (short, "period_too_short"), (partial, "season_start_outside_window")]
    assert (staged.to_write, staged.points, staged.special_points) == (0, 0, 0)
    assert await conn.fetchval("select count(*) from period_results") == 0


async def test_2021_participations_are_evaluated_by_2022s_rounds(conn: asyncpg.Connection) -> None:
    annual = await make_participation(conn, await make_car(conn), rule_set="seoul-2021",
                                      start=(date(2021, 3, 1), 40_000_000), end=(date(2022, 3, 8), 49_000_000),
                                      override_km=Decimal("30"))
    season = await make_participation(conn, await make_car(conn), rule_set="seoul-2021", program="season",
                                      season_year=2021, start=(date(2021, 11, 25), 40_000_000),
                                      end=(date(2022, 4, 1), 41_800_000))
    await conn.execute("update participations set enrolled_on = '2021-11-20' where id = $1", season)
    march = await evaluate_round(conn, parse_round("2022-03"))  # end verified 8 March: not yet
    assert march.candidates == 0
    staged = await evaluate_round(conn, parse_round("2022-05"))
    assert (staged.to_write, staged.problems, staged.points, staged.special_points) == (2, [], 30_000, 10_000)
    r = await conn.fetchrow("select * from period_results where participation_id = $1", annual)
    assert r is not None
    # 372 days between the readings; the baseline covers the scheduled year (no day-proration).
    assert (r["rule_set"], r["days"], r["baseline_days"], r["baseline_km"]) == ("seoul-2021", 372, 365, Decimal("10950.0"))
    payload = json.loads(await conn.fetchval(
        "select cm_result_payload(r, null)::text from period_results r where participation_id = $1", annual))
    assert (payload["days"], payload["baseline_days"], payload["points"]) == (372, 365, 30_000)
    s = await conn.fetchrow("select * from period_results where participation_id = $1", season)
    assert s is not None and (s["season_km"], s["special_points"], s["days"]) == (Decimal("1800.0"), 10_000, 127)


async def test_a_2022_payload_does_not_name_baseline_days(conn: asyncpg.Connection) -> None:
    pid = await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                   end=(date(2023, 3, 5), 45_000_000))
    await evaluate_round(conn, MAY)
    payload = json.loads(await conn.fetchval(
        "select cm_result_payload(r, null)::text from period_results r where participation_id = $1", pid))
    assert "baseline_days" not in payload
    assert await conn.fetchval("select baseline_days from period_results where participation_id = $1", pid) == 369


async def test_the_api_and_the_payload_show_the_tier_that_pays(
    conn: asyncpg.Connection, eval_pool: asyncpg.Pool, http: TestClient
) -> None:
    """Issue 15, item 6: a rate a hair under 10 % pays 20,000 and reads 9.99 %, not 10.00 %; a
    reduction of a metre pays 20,000 and reads 0.1 km, not 0.0 km."""
    car = await make_car(conn)
    # 365 days × 10 km: baseline 3,650,000 m. 10 % is 365,000 m; 364,999 m less is 9.99997 %.
    hair = await make_participation(conn, car, start=(date(2023, 1, 1), 1_000_000),
                                    end=(date(2024, 1, 1), 1_000_000 + 3_285_001), override_km=Decimal("10"))
    metre = await make_participation(conn, await make_car(conn), start=(date(2023, 1, 1), 1_000_000),
                                     end=(date(2024, 1, 1), 1_000_000 + 3_649_999), override_km=Decimal("10"))
    await evaluate_round(conn, parse_round("2024-05"))
    rows = {r["participation_id"]: r for r in await conn.fetch("select * from period_results")}
    assert (rows[hair]["points"], rows[hair]["reduction_rate_pct"], rows[hair]["reduction_km"]) == (
        20_000, Decimal("9.99"), Decimal("365.0"))
    assert (rows[metre]["points"], rows[metre]["reduction_km"], rows[metre]["reduction_rate_pct"]) == (
        20_000, Decimal("0.1"), Decimal("0.01"))
    owner = await bearer(eval_pool, "citizen", car.owner_id)
    r = await http.get(f"/v1/participations/{hair}/results", headers=owner)
    assert r.status == 200, await r.text()
    (result,) = (await r.json())["results"]
    assert (result["reduction_rate_pct"], result["points"], result["baseline_days"]) == ("9.99", 20_000, 365)
    payload = json.loads(await conn.fetchval(
        "select cm_result_payload(r, null)::text from period_results r where participation_id = $1", metre))
    assert (payload["reduction_km"], payload["reduction_rate_pct"], payload["points"]) == (0.1, 0.01, 20_000)


@pytest.fixture
def db_env(fresh_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CARMILEAGE_DATABASE_URL", fresh_database_url)
    return fresh_database_url


async def _seed_short(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                 end=(date(2022, 3, 2), 40_001_000))
        await make_participation(conn, await make_car(conn), start=(date(2022, 3, 1), 40_000_000),
                                 end=(date(2023, 3, 1), 45_000_000))
    finally:
        await conn.close()


def test_evaluate_lists_them_as_not_computable_and_exits_1(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed_short(db_env))
    assert main(["evaluate", "--round", "2023-05", "--json"]) == 1
    out, err = capsys.readouterr()
    s = json.loads(out)
    assert (s["new_results"], s["problems"], s["problems_by_code"]) == (1, 1, {"period_too_short": 1})
    assert "period_too_short" in err


async def test_rule_sets_with_other_tiers_keep_their_own_bands(conn: asyncpg.Connection) -> None:
    """The round's SQL takes each participation's bands from its own rule set."""
    from prorate.rules import Tier, rule_set_named

    r21, r22 = rule_set_named("seoul-2021"), rule_set_named("seoul-2022")
    tiers = (Tier(rate_from_pct=Decimal(0), km_from=Decimal(0), points=20_000),
             Tier(rate_from_pct=Decimal(15), km_from=Decimal(1500), points=40_000))
    other = r22.model_copy(update={"tiers": tiers})
    # 365 days × 10 km = 3,650 km; 15 % is 547.5 km: 547.499 km reads 14.99 %, not 15.00 %.
    p22 = await make_participation(conn, await make_car(conn), start=(date(2023, 1, 1), 1_000_000),
                                   end=(date(2024, 1, 1), 1_000_000 + 3_102_501), override_km=Decimal("10"))
    # Under the 2021 set's own tiers, 9.99997 % still reads 9.99 %.
    p21 = await make_participation(conn, await make_car(conn), rule_set="seoul-2021",
                                   start=(date(2021, 3, 1), 1_000_000), end=(date(2022, 3, 1), 1_000_000 + 3_285_001),
                                   override_km=Decimal("10"))
    staged = await evaluate_round(conn, parse_round("2024-05"), sets=(r21, other))
    assert staged.problems == []
    rows = {r["participation_id"]: r for r in await conn.fetch("select * from period_results")}
    assert (rows[p22]["reduction_rate_pct"], rows[p22]["points"]) == (Decimal("14.99"), 20_000)
    assert (rows[p21]["reduction_rate_pct"], rows[p21]["points"]) == (Decimal("9.99"), 20_000)
