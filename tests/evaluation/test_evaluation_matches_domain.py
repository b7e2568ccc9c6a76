"""The set-based SQL of a round and the period rules (`prorate.evaluate.evaluate_participation`)
agree, participation by participation, and so do the payloads it queues and the reward
calculator's model (`prorate.reward_event`).

The round's SQL re-states the period rules on integers; this test is what keeps the two from
drifting apart. Inputs are random (seeded, and hypothesis-generated over the rule tables) plus
exact tier and season boundaries: every baseline method, every rule set's arithmetic (2021
without day-proration, 2022 on with it), the period and season rules (minimum length, end window,
start window, coverage, enrolment deadline), ended and transferred participations, photo readings
counted on their capture day, and reported figures next to a bound.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prorate.evaluate import (
    CarHistory,
    Participation,
    PeriodReading,
    Refusal,
    evaluate_participation,
    reading_day,
)
from prorate.figures import PeriodFigures
from prorate.period import add_months
from prorate.rounds import Round, parse_round
from prorate.rules import RuleSet, RuleSetError, all_rule_sets, rule_set_for_season, rule_set_named
from prorate.season import season_starting
from storage.evaluation import evaluate_round

from .helpers import make_car, seoul
from .parity import compare_round

ROUND = parse_round("2024-05")
DISTRICTS = ["강남구", "종로구", "노원구", "서초구", "해운대구"]
END_REASONS = ["ownership_transfer", "moved_out_of_seoul", "scrapped", "withdrawn"]


def enrolled_on(case: dict[str, Any]) -> date:
    """The enrolment date: given, else the start (annual) or in time for the season."""
    if "enrolled_on" in case:
        return date.fromisoformat(str(case["enrolled_on"]))
    return case["s"] if case["program"] == "annual" else date(case["season_year"], 11, 20)


def provenance(case: dict[str, Any], stage: str) -> dict[str, Any]:
    """How a case's start or end reading was taken: a connected car's on its day (`s`, `e`), or a
    photo captured on that day and uploaded (and recorded) days later."""
    day = case["s" if stage == "start" else "e"]
    photo = case.get(f"{stage}_photo")
    if photo is None:
        return {"source": "telematics", "recorded_at": seoul(day)}
    return {"source": "photo", "recorded_at": seoul(day + timedelta(days=photo["late_days"])),
            "captured_at": photo["captured_at"], "uploaded_at": seoul(day + timedelta(days=photo["late_days"]))}


def reference(case: dict[str, Any], rnd: Round = ROUND) -> PeriodFigures | Refusal:
    """What the period rules decide for a case (the one function `carmileage calc` calls too)."""
    name = case.get("rule_set", "seoul-2022")
    try:
        basis = rule_set_named(name).readings.photo_date_basis
    except RuleSetError:
        basis = "capture"  # (refused as rules_unknown before any day counts)
    start, end = (
        PeriodReading(
            odometer_m=case[f"{stage}_m"],
            on=reading_day(basis=basis, **provenance(case, stage)),
            vehicle_id=2 if case.get(f"{stage}_of_another_car") else 1,
            superseded=bool(case.get(f"{stage}_superseded")),
        )
        for stage in ("start", "end")
    )
    participation = Participation(
        program=case["program"],
        rule_set=name,
        season_year=case["season_year"],
        enrolled_on=enrolled_on(case),
        status="ended" if case.get("ended_on") else "active",
        ended_on=case.get("ended_on"),
        end_reason=case.get("end_reason"),
        baseline_daily_km=case["override"],
        car=CarHistory(vehicle_id=1, first_registration_date=case["reg"], acquired_date=case["acq"],
                       acquired_odometer_m=case["acq_m"], district=case["district"]),
    )
    return evaluate_participation(participation, start, end, round_first_day=rnd.first_day)


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
    case: dict[str, Any] = {
        "program": program, "season_year": season_year, "s": s, "e": e, "start_m": start_m,
        "end_m": end_m, "reg": reg, "acq": acq, "acq_m": acq_m, "override": override,
        "district": rng.choice(DISTRICTS),
    }
    for stage, day in (("start", s), ("end", e)):
        if rng.random() < 0.2:  # a photo: captured on its day (any minute, in Seoul) or without EXIF
            case[f"{stage}_photo"] = {
                "late_days": rng.randint(0, 10),
                "captured_at": None if rng.random() < 0.2 else seoul(day, 0) + timedelta(minutes=rng.randrange(24 * 60)),
            }
    return case


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


def input_cases() -> list[dict[str, Any]]:
    """Inputs a round cannot compute, whatever else holds: checked first, in order."""
    base = {"program": "annual", "season_year": None, "s": date(2023, 1, 1), "e": date(2024, 1, 1),
            "start_m": 1_000_000, "end_m": 9_000_000, "reg": date(2015, 1, 1), "acq": None, "acq_m": None,
            "override": None, "district": "강남구"}
    return [
        {**base, "rule_set": "seoul-1999", "end_of_another_car": True},  # rules_unknown first
        {**base, "end_of_another_car": True, "start_superseded": True},  # then another car's reading
        {**base, "start_of_another_car": True},
        {**base, "start_superseded": True, "end_superseded": True, "e": date(2022, 12, 1)},
        {**base, "end_superseded": True, "end_m": 0},
        {**base, "e": date(2023, 1, 1), "end_m": 0},  # empty period before a decreased odometer
    ]


async def insert_case(conn: asyncpg.Connection, case: dict[str, Any]) -> int:
    car = await make_car(conn, district=case["district"], first_registration=case["reg"],
                         acquired=case["acq"], acquired_m=case["acq_m"])
    ids = []
    for minute, stage in enumerate(("start", "end")):  # (a minute apart: never the same reading)
        p = provenance(case, stage)
        owner = (await make_car(conn)) if case.get(f"{stage}_of_another_car") else car
        ids.append(await conn.fetchval(
            """insert into readings (vehicle_id, odometer_m, recorded_at, source, captured_at, uploaded_at, verified_at,
                                     status)
               values ($1, $2, $3, $4, $5, $6, '2024-04-01T00:00:00+09', $7) returning id""",
            owner.vehicle_id, case[f"{stage}_m"], p["recorded_at"] + timedelta(minutes=minute), p["source"],
            p.get("captured_at"), p.get("uploaded_at"), "superseded" if case.get(f"{stage}_superseded") else "verified",
        ))
    sid, eid = ids
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


async def round_and_compare(
    conn: asyncpg.Connection, cases: list[dict[str, Any]], rnd: Round = ROUND
) -> tuple[dict[int, str], dict[int, Any]]:
    """Insert the cases, run the round, and check every participation and every payload against
    the rules (`reference`, `tests/evaluation/parity.py`); returns the problems and the written
    results by case index."""
    ids = [await insert_case(conn, c) for c in cases]
    staged = await evaluate_round(conn, rnd)
    problems = {pid: code for pid, code, _ in staged.problems}
    rows = await compare_round(
        conn, problems, {pid: reference(c, rnd) for pid, c in zip(ids, cases, strict=True)},
        dict(zip(ids, cases, strict=True)),
    )
    return {ids.index(p): c for p, c in problems.items()}, {ids.index(p): r for p, r in rows.items()}


async def test_round_sql_matches_the_python_domain(conn: asyncpg.Connection) -> None:
    rng = random.Random(20220501)
    cases = boundary_cases() + [random_case(rng) for _ in range(220)] + input_cases()
    problems, rows = await round_and_compare(conn, cases)
    assert [problems[i] for i in range(len(cases) - 6, len(cases))] == [
        "rules_unknown", "reading_of_another_car", "reading_of_another_car", "start_reading_superseded",
        "end_reading_superseded", "empty_period"]
    # The sample exercises every path: most cases compute, and several kinds of problem occur.
    assert len(rows) > 80
    assert len(set(problems.values())) >= 6
    assert {r["baseline_method"] for r in rows.values()} == {"override", "national", "used_car", "district"}
    boundary = [rows[i] for i in range(7)]
    assert [(r["points"], r["special_points"]) for r in boundary] == [
        (30_000, 0), (20_000, 0), (30_000, 0), (20_000, 0), (0, 0), (0, 10_000), (0, 0)]
    # A metre under 10 % (and under 1,000 km) reads as the tier it pays: 9.99 %, 999.9 km.
    assert (boundary[1]["reduction_rate_pct"], boundary[3]["reduction_km"]) == (Decimal("9.99"), Decimal("999.9"))


# -- hypothesis: every rule set of the tables, and figures next to every bound -----------------

#: A round after every rule set's seasons have closed (their end data is in).
LATE_ROUND = parse_round("2028-05")
RULE_SETS = all_rule_sets()
def _season_rules(year: int) -> RuleSet | None:
    try:
        return rule_set_for_season(year)
    except RuleSetError:
        return None


#: Every season year a rule set with a season covers, closed before the late round.
SEASON_YEARS = [y for y in range(RULE_SETS[0].effective_from.year, LATE_ROUND.year) if _season_rules(y) is not None]


@st.composite
def annual_case(draw: st.DrawFn) -> dict[str, Any]:
    rules = draw(st.sampled_from(RULE_SETS))
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
        st.sampled_from([1 - Fraction(t.rate_from_pct) / 100 for t in rules.tiers]).map(lambda k: baseline_m * k),
        st.sampled_from([t.km_from * 1000 for t in rules.tiers[1:]]).map(lambda a: Fraction(baseline_m - a)),
        st.integers(0, 2 * max(baseline_m, 1)).map(Fraction),
    ))
    actual = max(0, int(target) + draw(st.integers(-60, 60)))
    start_m = draw(st.integers(0, 100_000_000))
    return {
        "rule_set": rules.name, "program": "annual", "season_year": None, "s": s, "e": e,
        "start_m": start_m, "end_m": start_m + actual, "reg": date(2012, 1, 1), "acq": None, "acq_m": None,
        "override": Decimal(daily_m) / 1000, "district": "강남구", "enrolled_on": s,
        **draw(ending(e, LATE_ROUND.first_day)), **draw(photos(s, e)),
    }


@st.composite
def season_case(draw: st.DrawFn) -> dict[str, Any]:
    year = draw(st.sampled_from(SEASON_YEARS))
    rules = rule_set_for_season(year)
    assert rules.season is not None
    season = season_starting(year, rules.season)
    s = draw(st.one_of(
        st.dates(season.start_opens - timedelta(days=10), season.start_closes + timedelta(days=10)),
        st.integers(-3, 3).map(lambda d: season.ends - timedelta(days=12 - d)),  # a partial season
    ))
    e = draw(st.one_of(
        st.dates(season.ends - timedelta(days=20), season.end_data_by + timedelta(days=10)),
        st.integers(1, 12).map(lambda d: s + timedelta(days=d)),
    ))
    if e <= s:
        e = s + timedelta(days=1)
    days = (e - s).days
    # Next to the limit: actual × season_days / days ≈ max_km (or actual ≈ max_km unprorated).
    limit_m = Fraction(rules.season.max_km) * 1000 * (
        Fraction(days, season.days) if rules.periods.proration == "days" else 1
    )
    actual = max(0, int(limit_m) + draw(st.integers(-40, 40)) if draw(st.booleans()) else draw(st.integers(0, 4_000_000)))
    start_m = draw(st.integers(0, 100_000_000))
    return {
        "rule_set": rules.name, "program": "season", "season_year": year, "s": s, "e": e,
        "start_m": start_m, "end_m": start_m + actual, "reg": date(2012, 1, 1), "acq": None, "acq_m": None,
        "override": Decimal(draw(st.integers(5_000, 60_000))) / 1000, "district": "강남구",
        "enrolled_on": season.enrol_by + timedelta(days=draw(st.integers(-20, 2))),
        **draw(ending(e, LATE_ROUND.first_day)), **draw(photos(s, e)),
    }


def photos(s: date, e: date) -> st.SearchStrategy[dict[str, Any]]:
    """Connected readings, or photos captured on their day (the first or last minutes of it in
    Seoul, or any) and uploaded days later, some without a capture time."""
    def photo(day: date) -> st.SearchStrategy[dict[str, Any] | None]:
        minutes = st.one_of(st.sampled_from([0, 1, 24 * 60 - 1]), st.integers(0, 24 * 60 - 1))
        return st.one_of(st.none(), st.fixed_dictionaries({
            "late_days": st.integers(0, 10),
            "captured_at": st.one_of(st.none(), minutes.map(lambda m: seoul(day, 0) + timedelta(minutes=m))),
        }))
    return st.fixed_dictionaries({"start_photo": photo(s), "end_photo": photo(e)})


def ending(e: date, round_day: date) -> st.SearchStrategy[dict[str, Any]]:
    """Active, or ended by any reason around the end reading or the round's first day."""
    return st.one_of(
        st.just({}),
        st.just({}),
        st.fixed_dictionaries({
            "end_reason": st.sampled_from(END_REASONS),
            "ended_on": st.one_of(
                st.integers(-3, 3).map(lambda d: e + timedelta(days=d)),
                st.integers(-3, 3).map(lambda d: round_day + timedelta(days=d)),
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
        await round_and_compare(conn, cases, LATE_ROUND)
    finally:
        await tr.rollback()
