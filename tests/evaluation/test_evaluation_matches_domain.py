"""The set-based SQL of a round and the Python domain (prorate) agree, participation by participation.

The round's SQL re-states the domain arithmetic on integers; this test is what keeps the two from
drifting apart. Inputs are random (seeded) plus exact tier and season boundaries.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from prorate.baseline import BaselineFacts, derive_baseline
from prorate.calc import compute
from prorate.errors import ProrateError
from prorate.period import Period, round_half_up
from prorate.rounds import parse_round
from prorate.rules import rule_set_named
from storage.evaluation import evaluate_round

from .helpers import add_reading, make_car

RULES = rule_set_named("seoul-2022")
ROUND = parse_round("2024-05")
DISTRICTS = ["강남구", "종로구", "노원구", "서초구", "해운대구"]


def reference(case: dict[str, Any]) -> dict[str, Any] | str:
    """What prorate computes for a case, or the problem code (checks in the round's order)."""
    try:
        period = Period(case["s"], case["e"])
        if case["end_m"] < case["start_m"]:
            raise ProrateError("odometer_decreased", "")
        baseline = derive_baseline(
            BaselineFacts(
                start_date=case["s"],
                start_odometer_m=case["start_m"],
                first_registration_date=case["reg"],
                acquired_date=case["acq"],
                acquired_odometer_m=case["acq_m"],
                district=case["district"],
                override_daily_km=case["override"],
            ),
            RULES.baseline,
        )
        f = compute(
            program=case["program"],
            rules=RULES,
            period=period,
            start_odometer_m=case["start_m"],
            end_odometer_m=case["end_m"],
            baseline=baseline,
            season_year=case["season_year"],
        )
    except ProrateError as e:
        return {"baseline_needs_district": "district_unknown"}.get(e.code, e.code)
    r = f.report()
    assert f.baseline is not None
    return {
        "days": f.days,
        "baseline_km": r["baseline_km"],
        "actual_km": r["actual_km"],
        "reduction_km": r["reduction_km"],
        "reduction_rate_pct": r["reduction_rate_pct"],
        "points": f.points or 0,
        "tier_by": f.tier_by,
        "special_points": f.special_points or 0,
        "season_km": r.get("season_km"),
        "baseline_daily_km": float(round_half_up(f.baseline.daily_m / 1000, 4)),
        "derivation": f.baseline.evidence(),
    }


def random_case(rng: random.Random) -> dict[str, Any]:
    program = "season" if rng.random() < 0.3 else "annual"
    if program == "season":
        season_year = rng.choice([2022, 2023])
        s = date(season_year, 12, 1) + timedelta(days=rng.randint(-40, 20))
        e = date(season_year + 1, 4, 1) + timedelta(days=rng.randint(-60, 35))
    else:
        season_year = None
        s = date(2022, 1, 1) + timedelta(days=rng.randint(0, 700))
        e = s + timedelta(days=rng.randint(-3, 420))
    start_m = rng.randint(0, 200_000_000)
    end_m = start_m + rng.randint(-2000, 30_000_000)
    reg = s - timedelta(days=rng.choice([rng.randint(0, 400), rng.randint(300, 6000)]))
    acq = acq_m = None
    if rng.random() < 0.25:
        acq = reg + timedelta(days=rng.randint(-5, max(0, (s - reg).days + 5)))
        acq_m = max(0, start_m - rng.randint(-1000, 50_000_000))
    override = Decimal(rng.randint(0, 800_000)) / 10_000 if rng.random() < 0.15 else None
    return {
        "program": program, "season_year": season_year, "s": s, "e": e, "start_m": start_m,
        "end_m": end_m, "reg": reg, "acq": acq, "acq_m": acq_m, "override": override,
        "district": rng.choice(DISTRICTS),
    }


def boundary_cases() -> list[dict[str, Any]]:
    """Reductions exactly on the 10 % / 1,000 km tier bounds and season km exactly at 1,800."""
    cases = []
    s, e = date(2023, 1, 1), date(2024, 1, 1)  # 365 days
    for daily_km, actual_m in [
        (Decimal("10"), 3_285_000),  # baseline 3,650 km, reduction 365 km = exactly 10 %
        (Decimal("10"), 3_285_001),  # a metre more: just under 10 %
        (Decimal("40"), 13_600_000),  # baseline 14,600 km, reduction exactly 1,000 km
        (Decimal("40"), 13_600_001),
        (Decimal("40"), 14_600_000),  # no reduction: nothing earned
    ]:
        cases.append({"program": "annual", "season_year": None, "s": s, "e": e, "start_m": 1_000_000,
                      "end_m": 1_000_000 + actual_m, "reg": date(2015, 1, 1), "acq": None, "acq_m": None,
                      "override": daily_km, "district": "강남구"})
    for actual_m in (1_800_000, 1_800_001):
        cases.append({"program": "season", "season_year": 2022, "s": date(2022, 12, 1), "e": date(2023, 4, 1),
                      "start_m": 5_000_000, "end_m": 5_000_000 + actual_m, "reg": date(2015, 1, 1), "acq": None,
                      "acq_m": None, "override": None, "district": "강남구"})
    return cases


async def insert_case(conn: asyncpg.Connection, case: dict[str, Any]) -> int:
    car = await make_car(conn, district=case["district"], first_registration=case["reg"],
                         acquired=case["acq"], acquired_m=case["acq_m"])
    sid = await add_reading(conn, car, case["start_m"], case["s"], verified_at=None)
    eid = await add_reading(conn, car, case["end_m"], case["e"], verified_at=None)
    await conn.execute("update readings set verified_at = '2024-04-01T00:00:00+09' where id = any($1::bigint[])", [sid, eid])
    pid: int = await conn.fetchval(
        """insert into participations (vehicle_id, program, season_year, rule_set, enrolled_on,
                                       baseline_daily_km, start_reading_id, end_reading_id)
           values ($1, $2, $3, 'seoul-2022', $4, $5, $6, $7) returning id""",
        car.vehicle_id, case["program"], case["season_year"], case["s"], case["override"], sid, eid,
    )
    return pid


def _f(x: Decimal | None) -> float | None:
    return None if x is None else float(x)


async def test_round_sql_matches_the_python_domain(conn: asyncpg.Connection) -> None:
    rng = random.Random(20220501)
    cases = boundary_cases() + [random_case(rng) for _ in range(220)]
    ids = [await insert_case(conn, c) for c in cases]
    staged = await evaluate_round(conn, ROUND)
    problems = {pid: code for pid, code, _ in staged.problems}
    rows = {
        r["participation_id"]: r
        for r in await conn.fetch("select r.*, cm_baseline_derivation(r)::text as derivation from period_results r")
    }
    computed = 0
    for pid, case in zip(ids, cases, strict=True):
        expected = reference(case)
        if isinstance(expected, str):
            assert problems.get(pid) == expected, (case, expected, problems.get(pid))
            assert pid not in rows
            continue
        computed += 1
        assert pid not in problems, (case, problems.get(pid))
        r = rows[pid]
        got = {
            "days": r["days"],
            "baseline_km": _f(r["baseline_km"]),
            "actual_km": _f(r["actual_km"]),
            "reduction_km": _f(r["reduction_km"]),
            "reduction_rate_pct": _f(r["reduction_rate_pct"]),
            "points": r["points"],
            "tier_by": r["tier_by"],
            "special_points": r["special_points"],
            "season_km": _f(r["season_km"]),
            "baseline_daily_km": _f(r["baseline_daily_km"]),
            "derivation": json.loads(r["derivation"]),
        }
        assert got == expected, case
    # The sample exercises every path: most cases compute, and several kinds of problem occur.
    assert computed > 100
    assert len(set(problems.values())) >= 4
    assert {r["baseline_method"] for r in rows.values()} == {"override", "national", "used_car", "district"}
    boundary = [rows[pid] for pid in ids[:7]]
    assert [(r["points"], r["special_points"]) for r in boundary] == [
        (30_000, 0), (20_000, 0), (30_000, 0), (20_000, 0), (0, 0), (0, 10_000), (0, 0)]
