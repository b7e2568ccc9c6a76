"""The set-based SQL of a round and the Python domain (prorate) agree, participation by participation.

The round's SQL re-states the domain arithmetic on integers; this test is what keeps the two from
drifting apart. Inputs are random (seeded, and hypothesis-generated) plus exact tier and season
boundaries: every baseline method, both rule sets' arithmetic (2021 without day-proration, 2022
with it), the period and season rules (minimum length, end window, start window, coverage,
enrolment deadline), ended and transferred participations, and reported figures next to a bound.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prorate.baseline import BaselineFacts, derive_baseline
from prorate.calc import ParticipationFacts, compute
from prorate.errors import ProrateError
from prorate.period import Period, add_months, round_half_up
from prorate.rounds import parse_round
from prorate.rules import rule_set_named
from storage.evaluation import evaluate_round

from .helpers import add_reading, make_car

ROUND = parse_round("2024-05")
DISTRICTS = ["강남구", "종로구", "노원구", "서초구", "해운대구"]
END_REASONS = ["ownership_transfer", "moved_out_of_seoul", "scrapped", "withdrawn"]


def enrolled_on(case: dict[str, Any]) -> date:
    """The enrolment date: given, else the start (annual) or in time for the season."""
    if "enrolled_on" in case:
        return date.fromisoformat(str(case["enrolled_on"]))
    return case["s"] if case["program"] == "annual" else date(case["season_year"], 11, 20)


def reference(case: dict[str, Any]) -> dict[str, Any] | str:
    """What prorate computes for a case, or the problem code (checks in the round's order)."""
    rules = rule_set_named(case.get("rule_set", "seoul-2022"))
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
            rules.baseline,
        )
        f = compute(
            program=case["program"],
            rules=rules,
            period=period,
            start_odometer_m=case["start_m"],
            end_odometer_m=case["end_m"],
            baseline=baseline,
            season_year=case["season_year"],
            participation=ParticipationFacts(
                enrolled_on=enrolled_on(case),
                status="ended" if case.get("ended_on") else "active",
                ended_on=case.get("ended_on"),
                end_reason=case.get("end_reason"),
            ),
            round_first_day=ROUND.first_day,
        )
    except ProrateError as e:
        return {"baseline_needs_district": "district_unknown"}.get(e.code, e.code)
    r = f.report()
    assert f.baseline is not None
    return {
        "days": f.days,
        "baseline_days": f.baseline_days,
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
        e = s + timedelta(days=rng.choice([rng.randint(-3, 420), rng.randint(330, 420)]))
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
    ended_on = case.get("ended_on")
    pid: int = await conn.fetchval(
        """insert into participations (vehicle_id, program, season_year, rule_set, enrolled_on,
                                       baseline_daily_km, start_reading_id, end_reading_id,
                                       status, ended_on, end_reason)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id""",
        car.vehicle_id, case["program"], case["season_year"], case.get("rule_set", "seoul-2022"),
        enrolled_on(case), case["override"], sid, eid,
        "ended" if ended_on else "active", ended_on, case.get("end_reason") if ended_on else None,
    )
    return pid


def _f(x: Decimal | None) -> float | None:
    return None if x is None else float(x)


async def round_and_compare(conn: asyncpg.Connection, cases: list[dict[str, Any]]) -> tuple[dict[int, str], dict[int, Any]]:
    """Insert the cases, run the round, and check every participation against `reference`;
    returns the problems and the written results by participation."""
    ids = [await insert_case(conn, c) for c in cases]
    staged = await evaluate_round(conn, ROUND)
    problems = {pid: code for pid, code, _ in staged.problems}
    rows = {
        r["participation_id"]: r
        for r in await conn.fetch("select r.*, cm_baseline_derivation(r)::text as derivation from period_results r")
    }
    for pid, case in zip(ids, cases, strict=True):
        expected = reference(case)
        if isinstance(expected, str):
            assert problems.get(pid) == expected, (case, expected, problems.get(pid))
            assert pid not in rows
            continue
        assert pid not in problems, (case, problems.get(pid))
        r = rows[pid]
        got = {
            "days": r["days"],
            "baseline_days": r["baseline_days"],
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
    return {ids.index(p): c for p, c in problems.items()}, {ids.index(p): r for p, r in rows.items()}


async def test_round_sql_matches_the_python_domain(conn: asyncpg.Connection) -> None:
    rng = random.Random(20220501)
    cases = boundary_cases() + [random_case(rng) for _ in range(220)]
    problems, rows = await round_and_compare(conn, cases)
    # The sample exercises every path: most cases compute, and several kinds of problem occur.
    assert len(rows) > 80
    assert len(set(problems.values())) >= 6
    assert {r["baseline_method"] for r in rows.values()} == {"override", "national", "used_car", "district"}
    boundary = [rows[i] for i in range(7)]
    assert [(r["points"], r["special_points"]) for r in boundary] == [
        (30_000, 0), (20_000, 0), (30_000, 0), (20_000, 0), (0, 0), (0, 10_000), (0, 0)]
    # A metre under 10 % (and under 1,000 km) reads as the tier it pays: 9.99 %, 999.9 km.
    assert (boundary[1]["reduction_rate_pct"], boundary[3]["reduction_km"]) == (Decimal("9.99"), Decimal("999.9"))


# -- hypothesis: the rules of issue 15, and figures next to every bound ------------------------

ROUND_DAY = ROUND.first_day


@st.composite
def annual_case(draw: st.DrawFn) -> dict[str, Any]:
    rule_set = draw(st.sampled_from(["seoul-2021", "seoul-2022", "seoul-2022", "seoul-2025-07"]))
    rules = rule_set_named(rule_set)
    lo = rules.effective_from
    s = lo + timedelta(days=draw(st.integers(0, 300)))
    scheduled = add_months(s, rules.periods.annual_months)
    e = draw(st.one_of(
        st.integers(-5, 20).map(lambda d: scheduled + timedelta(days=d)),  # around the scheduled end
        st.integers(-3, 3).map(lambda d: s + timedelta(days=rules.periods.min_annual_days + d)),  # the minimum
        st.integers(1, 40).map(lambda d: s + timedelta(days=d)),  # far too short
    ))
    daily_m = draw(st.integers(1_000, 80_000))  # whole metres per day: the override's exact figure
    days = (e - s).days if rules.periods.proration == "days" else (scheduled - s).days
    baseline_m = daily_m * days
    # The actual distance next to a bound: a tier's rate or amount, zero reduction, or anywhere.
    target = draw(st.one_of(
        st.sampled_from([Fraction(9, 10), Fraction(8, 10), Fraction(7, 10), Fraction(1)]).map(lambda k: baseline_m * k),
        st.sampled_from([1_000_000, 2_000_000, 3_000_000]).map(lambda a: Fraction(baseline_m - a)),
        st.integers(0, 2 * max(baseline_m, 1)).map(Fraction),
    ))
    actual = max(0, int(target) + draw(st.integers(-60, 60)))
    start_m = draw(st.integers(0, 100_000_000))
    return {
        "rule_set": rule_set, "program": "annual", "season_year": None, "s": s, "e": e,
        "start_m": start_m, "end_m": start_m + actual, "reg": date(2012, 1, 1), "acq": None, "acq_m": None,
        "override": Decimal(daily_m) / 1000, "district": "강남구", "enrolled_on": s,
        **draw(ending(e)),
    }


@st.composite
def season_case(draw: st.DrawFn) -> dict[str, Any]:
    year = draw(st.sampled_from([2021, 2022, 2023]))
    rule_set = "seoul-2021" if year == 2021 else "seoul-2022"
    rules = rule_set_named(rule_set)
    assert rules.season is not None
    s = draw(st.one_of(
        st.integers(-10, 40).map(lambda d: date(year, 11, 1) + timedelta(days=d)),
        st.integers(-3, 3).map(lambda d: date(year + 1, 3, 20) + timedelta(days=d)),  # a partial season
    ))
    e = draw(st.one_of(
        st.integers(-20, 30).map(lambda d: date(year + 1, 4, 1) + timedelta(days=d)),
        st.integers(1, 12).map(lambda d: s + timedelta(days=d)),
    ))
    if e <= s:
        e = s + timedelta(days=1)
    season_days = (date(year + 1, 4, 1) - date(year, 12, 1)).days
    days = (e - s).days
    # Next to the limit: actual × season_days / days ≈ 1,800 km (or actual ≈ 1,800 km unprorated).
    limit_m = Fraction(1_800_000) * (Fraction(days, season_days) if rules.periods.proration == "days" else 1)
    actual = max(0, int(limit_m) + draw(st.integers(-40, 40)) if draw(st.booleans()) else draw(st.integers(0, 4_000_000)))
    start_m = draw(st.integers(0, 100_000_000))
    return {
        "rule_set": rule_set, "program": "season", "season_year": year, "s": s, "e": e,
        "start_m": start_m, "end_m": start_m + actual, "reg": date(2012, 1, 1), "acq": None, "acq_m": None,
        "override": Decimal(draw(st.integers(5_000, 60_000))) / 1000, "district": "강남구",
        "enrolled_on": date(year, 11, 30) + timedelta(days=draw(st.integers(-20, 2))),
        **draw(ending(e)),
    }


def ending(e: date) -> st.SearchStrategy[dict[str, Any]]:
    """Active, or ended by any reason around the end reading or the round's first day."""
    return st.one_of(
        st.just({}),
        st.just({}),
        st.fixed_dictionaries({
            "end_reason": st.sampled_from(END_REASONS),
            "ended_on": st.one_of(
                st.integers(-3, 3).map(lambda d: e + timedelta(days=d)),
                st.integers(-3, 3).map(lambda d: ROUND_DAY + timedelta(days=d)),
            ),
        }),
    )


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(annual_case(), season_case()), min_size=30, max_size=40))
async def test_round_sql_matches_the_domain_on_the_programme_rules(
    conn: asyncpg.Connection, cases: list[dict[str, Any]]
) -> None:
    tr = conn.transaction()
    await tr.start()
    try:
        await round_and_compare(conn, cases)
    finally:
        await tr.rollback()
