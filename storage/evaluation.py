"""Evaluation rounds, set-based: every participation of a round is computed by a few SQL statements.

The rule tables (prorate/rules/*.toml) are loaded into temporary tables, and the period rules of
`prorate.evaluate.evaluate_participation` (the reading's day, the refusals in their order, the
baseline, the exact arithmetic of `prorate.figures.compute`, the reported figures of
`prorate.display`) are stated in SQL on integers (numeric), deciding tiers and special points by
cross-multiplication, so no value is ever rounded before a decision. The SQL-parity tests
(tests/evaluation/test_evaluation_matches_domain.py) hold every participation of a round equal to
`evaluate_participation`'s result or refusal; a million participations take ~40 s here, which
Python per participation could not approach.

Steps, all in one transaction (`evaluate_round`):
0. `storage.period_readings.designate_periods`: connected cars' participations get their start and
   end readings (photo participations have theirs from the photo flow);
1. `stage_round`: the candidates (end reading verified before the round's cutoff; season
   participations only once their end-data window has closed) with their inputs, problems and
   figures, in temporary tables; those whose current result was computed from the same inputs
   (readings, odometers, dates, rule set, baseline) are unchanged and drop out. Problems are the
   inputs that cannot be computed, then (for the others) what the rule set refuses to pay: a
   period too short, a partial season, an ended or transferred participation. Reported figures
   are kept inside their tier by the rule of `prorate.display`.
2. `write_chunk`: results, their outbox rows and superseded marks for a range of participation
   ids (so a progress bar can move), two statements whatever the range's size.
3. `record_run`: the run and the participations it could not evaluate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg

from prorate.districts import district_tables
from prorate.evaluate import REFUSALS
from prorate.figures import DAILY_KM_PLACES
from prorate.period import KM_PLACES, PCT_PLACES
from prorate.rounds import Round
from prorate.rules import RuleSet, all_rule_sets
from prorate.season import season_starting
from storage.db import Conn
from storage.period_readings import Designation, designate_periods

#: Serialises rounds: two operators running one at once would otherwise write the same versions.
_ROUND_LOCK_KEY = 0x63_6D_65_76  # "cmev"

_RULE_TABLES = """
create temp table ev_rules (
    rule_set text primary key, date_basis text not null, min_history_months integer not null,
    district_table text not null, has_season boolean not null,
    s_max_m numeric, s_points integer
) on commit drop;
create temp table ev_seasons (
    rule_set text not null, season_year integer not null, starts date not null, ends date not null,
    previous_ends date not null, end_by date not null, enrol_by date not null,
    start_opens date not null, start_closes date not null, primary key (rule_set, season_year)
) on commit drop;
create temp table ev_districts (
    rule_set text not null, district text not null, num numeric not null, den numeric not null,
    primary key (rule_set, district)
) on commit drop;
"""


def _rule_rows(sets: tuple[RuleSet, ...]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rules: list[tuple[Any, ...]] = []
    districts: list[tuple[Any, ...]] = []
    tables = district_tables()
    for r in sets:
        s = r.season
        rules.append(
            (
                r.name,
                r.readings.photo_date_basis,
                r.baseline.min_history_months,
                r.baseline.district_table,
                s is not None,
                s.max_km * 1000 if s else None,
                s.special_points if s else None,
            )
        )
        for district, km in tables[r.baseline.district_table].items():
            f = Fraction(km) * 1000
            districts.append((r.name, district, f.numerator, f.denominator))
    return rules, districts


async def load_rule_tables(conn: Conn, sets: tuple[RuleSet, ...] | None = None) -> None:
    """The rule sets as temporary tables for the round's SQL (dropped at commit).

    Season dates come from `prorate.season` for every (rule set, season year) in use, so the
    calendar logic (29 February and all) lives in one place.
    """
    sets = sets if sets is not None else all_rule_sets()
    rules, districts = _rule_rows(sets)
    by_name = {r.name: r for r in sets}
    seasons = []
    for row in await conn.fetch(
        "select distinct rule_set, season_year from participations where program = 'season'"
    ):
        rs = by_name.get(row["rule_set"])
        if rs is None or rs.season is None or row["season_year"] is None:
            continue
        se = season_starting(row["season_year"], rs.season)
        seasons.append(
            (rs.name, row["season_year"], se.starts, se.ends, se.previous_ends, se.end_data_by, se.enrol_by,
             se.start_opens, se.start_closes)
        )
    await conn.execute(_RULE_TABLES)
    await conn.copy_records_to_table("ev_rules", records=rules)
    await conn.copy_records_to_table("ev_seasons", records=seasons)
    await conn.copy_records_to_table("ev_districts", records=districts)
    await conn.execute("analyze ev_rules; analyze ev_seasons; analyze ev_districts")


def _reading_date(alias: str) -> str:
    """SQL for the Seoul calendar date a reading counts on, under the rule set's date basis
    (`prorate.evaluate.reading_day`)."""
    return f"""((case when {alias}.source = 'telematics' then {alias}.recorded_at
                     else coalesce(case r.date_basis when 'capture' then {alias}.captured_at
                                                     when 'upload' then {alias}.uploaded_at
                                                     when 'approval' then {alias}.approved_at end,
                                   {alias}.recorded_at) end)
               at time zone 'Asia/Seoul')::date"""


# Inputs of every candidate ($1: the round's cutoff), with the season's own dates.
_INPUTS = f"""
select p.id as participation_id, p.program, p.season_year, p.rule_set, p.vehicle_id,
       p.enrolled_on, p.ended_on, p.end_reason,
       v.owner_id, v.district, p.baseline_daily_km as override_km,
       v.first_registration_date as reg_date, v.acquired_date as acq_date,
       v.acquired_odometer_m as acq_m,
       rs.vehicle_id = p.vehicle_id and re.vehicle_id = p.vehicle_id as readings_of_the_car,
       rs.id as start_id, rs.odometer_m as start_m, rs.status as start_status,
       {_reading_date("rs")} as s_date,
       re.id as end_id, re.odometer_m as end_m, re.status as end_status,
       {_reading_date("re")} as e_date,
       r.rule_set is not null as rules_known, r.min_history_months, r.district_table,
       r.has_season, r.s_max_m, r.s_points,
       se.starts as season_starts, se.ends as season_ends,
       se.previous_ends as season_previous_ends, se.end_by as season_end_by,
       se.enrol_by as season_enrol_by, se.start_opens as season_start_opens,
       se.start_closes as season_start_closes
from participations p
join vehicles v on v.id = p.vehicle_id
join readings re on re.id = p.end_reading_id
join readings rs on rs.id = p.start_reading_id
left join ev_rules r on r.rule_set = p.rule_set
left join ev_seasons se on se.rule_set = p.rule_set and se.season_year = p.season_year
where re.verified_at < $1
"""

# Problems (in the order prorate raises them) and the baseline's derivation. `problem`: inputs
# that cannot be computed; `rule_problem`: inputs the rule set refuses to pay (checked only where
# the current result was not computed from the same inputs, so a result paid before a rule came
# in is not listed again by every round).
_BASELINE = """
select i.*, b.method, b.num, b.den, b.hist_from, b.hist_days, b.hist_m, pr.problem, rp.rule_problem,
       {proration}
from i
left join ev_districts d on d.rule_set = i.rule_set and d.district = i.district
cross join lateral (select coalesce(i.acq_date, i.reg_date) as hist_from) h
cross join lateral (
    select i.override_km is null and (
               h.hist_from >= i.s_date
               or h.hist_from > (i.s_date - make_interval(months => i.min_history_months))::date
           ) as short
) s
cross join lateral (
    select case
        when not i.rules_known then 'rules_unknown'
        when not i.readings_of_the_car then 'reading_of_another_car'
        when i.start_status <> 'verified' then 'start_reading_superseded'
        when i.end_status <> 'verified' then 'end_reading_superseded'
        when i.e_date < i.s_date then 'end_before_start'
        when i.e_date = i.s_date then 'empty_period'
        when i.end_m < i.start_m then 'odometer_decreased'
        when i.override_km is not null then null
        when (i.acq_date is null) <> (i.acq_m is null) then 'baseline_contradictory'
        when i.reg_date > i.s_date then 'baseline_contradictory'
        when i.acq_date is not null and (i.acq_date < i.reg_date or i.acq_date > i.s_date
                                         or i.acq_m > i.start_m) then 'baseline_contradictory'
        when s.short and d.district is null then 'district_unknown'
    end as problem0
) p0
cross join lateral (
    select coalesce(p0.problem0, case
        when i.program <> 'season' then null
        when not i.has_season or i.season_starts is null then 'season_not_in_rules'
        when i.e_date <= i.season_starts or i.s_date >= i.season_ends then 'season_no_overlap'
        when i.s_date < i.season_previous_ends then 'season_several'
        when i.e_date > i.season_end_by then 'season_end_too_late'
    end) as problem
) pr
cross join lateral (select {scheduled_end} as scheduled_end) n
cross join lateral (select {rule_problem} as rule_problem) rp
cross join lateral (
    select case when i.override_km is not null then 'override'
                when s.short then 'district'
                when i.acq_date is not null then 'used_car'
                else 'national' end as method
) m
cross join lateral (
    select m.method,
           case m.method
               when 'override' then trunc(i.override_km * 10000) / gcd(trunc(i.override_km * 10000), 10)
               when 'district' then d.num
               else (i.start_m - coalesce(i.acq_m, 0))::numeric end as num,
           case m.method
               when 'override' then 10 / gcd(trunc(i.override_km * 10000), 10)
               when 'district' then d.den
               else (i.s_date - h.hist_from)::numeric end as den,
           case when m.method in ('national', 'used_car') then h.hist_from end as hist_from,
           case when m.method in ('national', 'used_car') then i.s_date - h.hist_from end as hist_days,
           case when m.method in ('national', 'used_car') then i.start_m - coalesce(i.acq_m, 0) end as hist_m
) b
"""


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _num(d: Decimal | int) -> str:
    return format(Decimal(d), "f")


def _tier_sql(sets: tuple[RuleSet, ...]) -> tuple[str, str, str]:
    """SQL for the tier reached by rate, by amount, and the points of a tier, from the rule data.

    Generated from the rule tables (literals of exact decimals), so tiers need no join per row.
    B = baseline × den and R = reduction × den are integers: rate ≥ x %  ⇔  100·R ≥ x·B;
    amount ≥ k km  ⇔  R ≥ 1000·k·den.
    """
    by_rate, by_amount, points = [], [], []
    for r in sets:
        tiers = list(enumerate(r.tiers))[1:][::-1]
        rate = " ".join(f"when 100 * f.rnum >= {_num(t.rate_from_pct)} * f.bnum then {i}" for i, t in tiers)
        amount = " ".join(f"when f.rnum >= {_num(t.km_from * 1000)} * f.den then {i}" for i, t in tiers)
        by_rate.append(f"when {_lit(r.name)} then case {rate} else 0 end")
        by_amount.append(f"when {_lit(r.name)} then case {amount} else 0 end")
        arr = ", ".join(str(t.points) for t in r.tiers)
        points.append(f"when {_lit(r.name)} then (array[{arr}])[greatest(h.i_rate, h.i_amount) + 1]")
    return (
        f"case f.rule_set {' '.join(by_rate)} end",
        f"case f.rule_set {' '.join(by_amount)} end",
        f"case h.rule_set {' '.join(points)} end",
    )


def _scheduled_sql(sets: tuple[RuleSet, ...]) -> str:
    """SQL for an annual period's scheduled end (`s` + `annual_months`), only for the rule sets
    that use it (no day-proration, or an end-data window): null elsewhere, at no cost."""
    arms = [
        f"when {_lit(r.name)} then (i.s_date + interval '{r.periods.annual_months} months')::date"
        for r in sets
        if r.periods.proration == "none" or r.periods.annual_end_within_days is not None
    ]
    return f"case i.rule_set {' '.join(arms)} end" if arms else "null::date"


def _proration_sql(sets: tuple[RuleSet, ...]) -> str:
    """SQL for the days the baseline covers (`bdays`) and the season factor (sf_num / sf_den),
    computed once per row where the baseline is materialised: under day-proration the days
    between the readings and season_days / days; without it the scheduled period's days (an
    annual period's months, a season's days) and 1."""
    unprorated = [_lit(r.name) for r in sets if r.periods.proration == "none"]
    days = "i.e_date - i.s_date"
    if not unprorated:
        return f"{days} as bdays, i.season_ends - i.season_starts as sf_num, {days} as sf_den"
    none = f"i.rule_set in ({', '.join(unprorated)})"
    return f"""case when not {none} then {days}
                when i.program = 'season' then i.season_ends - i.season_starts
                else n.scheduled_end - i.s_date end as bdays,
           case when {none} then 1 else i.season_ends - i.season_starts end as sf_num,
           case when {none} then 1 else {days} end as sf_den"""


def _rule_problem_sql(sets: tuple[RuleSet, ...]) -> str:
    """SQL for what a rule set refuses to pay (after the inputs' problems), in prorate's order:
    `check_annual_period` / `check_season_rules`, then `check_participation` (prorate.figures).

    Generated per rule set with its figures as literals, so the round carries no rule columns;
    an active participation (no end reason) skips the participation checks at once.
    """
    arms = []
    for r in sorted(sets, key=lambda x: x.effective_from, reverse=True):  # (most rows: the newest)
        annual = [f"when i.e_date - i.s_date < {r.periods.min_annual_days} then 'period_too_short'"]
        within = r.periods.annual_end_within_days
        if within is not None:
            annual.append(
                f"when i.e_date < n.scheduled_end or i.e_date > n.scheduled_end + {within} "
                "then 'period_end_outside_window'"
            )
        season = ["when true then null"]
        if r.season is not None:
            season = [
                "when i.enrolled_on > i.season_enrol_by then 'season_enrolled_late'",
                "when i.s_date < i.season_start_opens or i.s_date > i.season_start_closes"
                " then 'season_start_outside_window'",
                "when 100 * greatest(0, least(i.e_date, i.season_ends) - greatest(i.s_date, i.season_starts)) "
                f"< {_num(r.season.min_coverage_pct)} * (i.season_ends - i.season_starts) then 'season_coverage_too_low'",
            ]
        ended = [
            "when i.end_reason = 'ownership_refused' then 'participation_ownership_refused'",
            "when i.ended_on < i.e_date then 'participation_ended_early'",
        ]
        if not r.participations.pay_transferred:
            ended.append("when i.end_reason = 'ownership_transfer' and i.ended_on < $2 then 'participation_transferred'")
        arms.append(
            f"when {_lit(r.name)} then coalesce("
            f"case when i.program = 'annual' then case {' '.join(annual)} end else case {' '.join(season)} end end, "
            f"case when i.end_reason is not null then case {' '.join(ended)} end end)"
        )
    return f"case i.rule_set {' '.join(arms)} end"


def _shown_sql(sets: tuple[RuleSet, ...]) -> tuple[str, str, str]:
    """SQL for the reported reduction (km), rate (%) and season km of a staged row `o`, by the
    rule of `prorate.display`: rounded half up once per row (`d`), then kept inside the exact
    value's band.

    Tier bounds are reported figures, so rounding crosses a bound only by landing on it from
    below: a positive reduction whose rounded figure is a tier bound it has not reached reads one
    step less (the exact comparison on the staged integers is made only then), and one that
    rounds to 0 reads one step. Rounding never takes a reduction ≤ 0 above 0, nor a value below
    its own tier's bound. A season distance over the limit reads at least the limit plus one
    step; one within it never rounds above it.
    """
    km_step, pct_step = _num(Decimal(1).scaleb(-KM_PLACES)), _num(Decimal(1).scaleb(-PCT_PLACES))

    def bound_of(column: str, bounds: Callable[[RuleSet], list[Decimal]]) -> str:
        """`column` equals one of the row's rule set's bounds (one IN list when all sets agree)."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for r in sets:
            groups.setdefault(tuple(_num(b) for b in bounds(r)), []).append(_lit(r.name))
        tests = {k: (f"{column} in ({', '.join(k)})" if k else "false") for k in groups}
        if len(groups) == 1:
            return next(iter(tests.values()))
        arms = " ".join(f"when o.rule_set in ({', '.join(names)}) then {tests[k]}" for k, names in groups.items())
        return f"(case {arms} else false end)"

    on_km = bound_of("d.km", lambda r: [t.km_from for t in r.tiers[1:]])
    on_pct = bound_of("d.pct", lambda r: [t.rate_from_pct for t in r.tiers[1:]])
    s_max = " ".join(f"when {_lit(r.name)} then {_num(r.season.max_km)}" for r in sets if r.season is not None)
    season_max = f"case o.rule_set {s_max} end" if s_max else "null::numeric"
    reduction = f"""case when o.rnum <= 0 then d.km
                         when d.km <= 0 then {km_step}
                         when {on_km} and o.rnum < d.km * 1000 * o.den then d.km - {km_step}
                         else d.km end"""
    rate = f"""case when o.rnum <= 0 then d.pct
                    when d.pct <= 0 then {pct_step}
                    when {on_pct} and 100 * o.rnum < d.pct * o.bnum then d.pct - {pct_step}
                    else d.pct end"""
    season = f"case when o.special_points = 0 then greatest(d.season_km, {season_max} + {km_step}) else d.season_km end"
    return reduction, rate, season


def _stage_sql(sets: tuple[RuleSet, ...]) -> str:
    """One statement stages the round: inputs, problems, baseline, exact figures and a state.

    The inputs and the baseline are materialised once: inlined, every reference to a derived
    column (a date, the daily average) would recompute its whole expression.

    Figures are integers: B = baseline × den, R = reduction × den. The baseline covers `bdays`:
    the days between the readings under day-proration, else the scheduled period's (an annual
    period's months, a season's days). A season's distance is actual × sf_num / sf_den
    (season_days / days under day-proration, else 1). The state is 'waiting' (a season whose
    end-data window is still open on $2, the round's first day), 'problem', 'unchanged' (the
    current result was computed from the same inputs) or 'write'.
    """
    i_rate, i_amount, points = _tier_sql(sets)
    baseline = (
        _BASELINE.replace("{scheduled_end}", _scheduled_sql(sets))
        .replace("{rule_problem}", _rule_problem_sql(sets))
        .replace("{proration}", _proration_sql(sets))
    )
    return f"""
create temp table ev_out on commit drop as
with i as materialized ({_INPUTS}), c as materialized ({baseline}), f as (
    select c.*, c.e_date - c.s_date as days, c.end_m - c.start_m as actual_m,
           c.num * c.bdays as bnum,
           c.num * c.bdays - (c.end_m - c.start_m) * c.den as rnum,
           c.season_ends - c.season_starts as season_days,
           coalesce(c.program = 'season' and c.season_end_by >= $2, false) as waiting
    from c
), h as (
    select f.*, {i_rate} as i_rate, {i_amount} as i_amount,
           (f.program = 'annual' and f.rnum > 0 and f.bnum > 0) as earns
    from f
)
-- (only what the writes and the counts read: a narrow row halves the temporary table)
select h.participation_id, h.program, h.rule_set, h.season_year, h.vehicle_id, h.owner_id,
       h.district, h.start_id, h.end_id, h.start_m, h.end_m, h.s_date, h.e_date,
       coalesce(h.problem, h.rule_problem) as problem,
       h.method, h.num, h.den, h.hist_from, h.hist_days, h.hist_m, h.district_table, h.days, h.bdays,
       h.actual_m, h.bnum, h.rnum, h.season_days, h.sf_num, h.sf_den,
       cur.id as prev_result_id, cur.event_id as prev_event_id,
       coalesce(cur.version, 0) + 1 as version,
       case when h.earns then {points} else 0 end as points,
       case when h.program <> 'annual' then null
            when not h.earns then 'none'
            when h.i_rate = h.i_amount then 'rate_and_amount'
            when h.i_rate > h.i_amount then 'rate' else 'amount' end as tier_by,
       case when h.program = 'season' and h.actual_m * h.sf_num <= h.s_max_m * h.sf_den
            then h.s_points else 0 end as special_points,
       case when h.waiting then 'waiting'
            when h.problem is not null then 'problem'
            when cur.id is not null
                 and (cur.rule_set, cur.program, cur.season_year, cur.start_reading_id,
                      cur.start_odometer_m, cur.start_date, cur.end_reading_id, cur.end_odometer_m,
                      cur.end_date, cur.baseline_method, cur.baseline_num, cur.baseline_den)
                     is not distinct from
                     (h.rule_set, h.program, h.season_year, h.start_id, h.start_m, h.s_date,
                      h.end_id, h.end_m, h.e_date, h.method, h.num, h.den)
                 then 'unchanged'
            when h.rule_problem is not null then 'problem'
            else 'write' end as state
from h
-- The current result: a new version and the mark on the old one are written together.
left join period_results cur on cur.participation_id = h.participation_id and cur.superseded_by is null
"""


def _write_sql(sets: tuple[RuleSet, ...]) -> str:
    """Results and their outbox rows in one statement; the outbox payload is rendered from the
    immutable result when it is sent (cm_result_payload), so the round writes no JSON. Reported
    figures are computed once (`d`) and kept inside their tier (`_shown_sql`)."""
    reduction, rate, season = _shown_sql(sets)
    return f"""
with written as (
    insert into period_results (
        participation_id, version, round, program, rule_set, start_reading_id, end_reading_id,
        start_date, end_date, days, baseline_daily_km, baseline_km, actual_km, reduction_km,
        reduction_rate_pct, points, special_points, event_id, supersedes_event_id,
        start_odometer_m, end_odometer_m,
        vehicle_id, owner_id, district, tier_by, season_year, season_days, season_km,
        baseline_method, baseline_num, baseline_den, history_from, history_days, history_m, district_table,
        baseline_days)
    select o.participation_id, o.version, $3, o.program, o.rule_set, o.start_id, o.end_id,
           o.s_date, o.e_date, o.days,
           cm_round_half_up(o.num, o.den * 1000, {DAILY_KM_PLACES}),
           cm_round_half_up(o.bnum, o.den * 1000, 1),
           cm_round_half_up(o.actual_m, 1000, 1),
           {reduction},
           case when o.bnum <> 0 then {rate} end,
           o.points, o.special_points, gen_random_uuid(), o.prev_event_id, o.start_m, o.end_m,
           o.vehicle_id, o.owner_id, o.district, o.tier_by,
           o.season_year,
           case when o.program = 'season' then o.season_days end,
           case when o.program = 'season' then {season} end,
           o.method, o.num, o.den, o.hist_from, o.hist_days, o.hist_m,
           case when o.method = 'district' then o.district_table end,
           o.bdays
    from ev_out o
    cross join lateral (
        select cm_round_half_up(o.rnum, o.den * 1000, {KM_PLACES}) as km,
               case when o.bnum <> 0 then cm_round_half_up(100 * o.rnum, o.bnum, {PCT_PLACES}) end as pct,
               case when o.program = 'season'
                    then cm_round_half_up(o.actual_m * o.sf_num, o.sf_den * 1000, {KM_PLACES}) end as season_km
        offset 0  -- (not pulled up: each figure is rounded once, however often it is read)
    ) d
    where o.state = 'write' and o.participation_id between $1 and $2
    returning id, event_id, supersedes_event_id
)
insert into outbox (event_id, kind, period_result_id, supersedes_event_id)
select event_id, 'period_result', id, supersedes_event_id from written
"""


_INDEX_OUT = "create unique index on ev_out (participation_id) where state = 'write'"

_MARK_SUPERSEDED = """
update period_results old set superseded_by = new.id
from ev_out o join period_results new on new.participation_id = o.participation_id and new.version = o.version
where o.state = 'write' and o.participation_id between $1 and $2 and o.prev_result_id is not null
  and old.id = o.prev_result_id
"""


@dataclass
class StagedRound:
    """What a round would do: counts of the staged rows (before anything is written)."""

    round: Round
    candidates: int
    to_write: int
    superseding: int
    unchanged: int
    problems: list[tuple[int, str, str]]
    waiting: int
    points: int
    special_points: int
    #: Range of the participation ids to write (empty when last_id < first_id).
    first_id: int
    last_id: int
    #: The designation of connected cars' readings that ran first (None when it was skipped).
    designation: Designation | None = None


def problem_message(code: str) -> str:
    return REFUSALS.get(code, code)


async def stage_round(conn: Conn, rnd: Round, sets: tuple[RuleSet, ...] | None = None) -> StagedRound:
    """Stage a round's candidates in temporary tables; must run inside a transaction."""
    await conn.execute("select pg_advisory_xact_lock($1)", _ROUND_LOCK_KEY)
    # JIT compiles the per-partition expressions of the big staging join (hundreds of functions,
    # tens of seconds) for a plan whose work is a few hash joins: never worth it here.
    await conn.execute("set local jit = off")
    await load_rule_tables(conn, sets)
    await conn.execute(_stage_sql(sets if sets is not None else all_rule_sets()), rnd.cutoff, rnd.first_day)
    await conn.execute(_INDEX_OUT)
    row = await conn.fetchrow(
        """select count(*) filter (where state <> 'waiting') as candidates,
                  count(*) filter (where state = 'write') as to_write,
                  count(*) filter (where state = 'write' and prev_result_id is not null) as superseding,
                  count(*) filter (where state = 'unchanged') as unchanged,
                  count(*) filter (where state = 'waiting') as waiting,
                  coalesce(min(participation_id) filter (where state = 'write'), 0) as first_id,
                  coalesce(max(participation_id) filter (where state = 'write'), -1) as last_id,
                  coalesce(sum(points) filter (where state = 'write'), 0) as points,
                  coalesce(sum(special_points) filter (where state = 'write'), 0) as special_points
           from ev_out"""
    )
    problems = [
        (r["participation_id"], r["problem"], problem_message(r["problem"]))
        for r in await conn.fetch(
            "select participation_id, problem from ev_out where state = 'problem' order by participation_id"
        )
    ]
    assert row is not None
    candidates = int(row["candidates"])
    return StagedRound(
        round=rnd,
        candidates=candidates,
        to_write=int(row["to_write"]),
        superseding=int(row["superseding"]),
        unchanged=int(row["unchanged"]),
        problems=problems,
        waiting=int(row["waiting"]),
        points=int(row["points"]),
        special_points=int(row["special_points"]),
        first_id=int(row["first_id"]),
        last_id=int(row["last_id"]),
    )


async def write_chunk(
    conn: Conn, rnd: Round, first_id: int, last_id: int, sets: tuple[RuleSet, ...] | None = None
) -> int:
    """Write the staged participations with ids in [first_id, last_id]: results, outbox rows and
    superseded marks; returns how many results were written."""
    status = await conn.execute(_write_sql(sets if sets is not None else all_rule_sets()), first_id, last_id, rnd.name)
    await conn.execute(_MARK_SUPERSEDED, first_id, last_id)
    return int(status.split()[-1])


async def record_run(conn: Conn, staged: StagedRound, started_at: datetime, operator: str | None) -> int:
    """The run and its problems, in the same transaction as the results."""
    run_id: int = await conn.fetchval(
        """insert into evaluation_runs (round, cutoff, started_at, finished_at, candidates, new_results,
                                        superseding, unchanged, problems, waiting, operator)
           values ($1, $2, $3, now(), $4, $5, $6, $7, $8, $9, $10) returning id""",
        staged.round.name,
        staged.round.cutoff,
        started_at,
        staged.candidates,
        staged.to_write - staged.superseding,
        staged.superseding,
        staged.unchanged,
        len(staged.problems),
        staged.waiting,
        operator,
    )
    if staged.problems:
        await conn.copy_records_to_table(
            "evaluation_problems",
            records=[(run_id, pid, code, msg) for pid, code, msg in staged.problems],
            columns=["run_id", "participation_id", "code", "message"],
        )
    return run_id


async def results_with_delivery(conn: Conn | asyncpg.Pool, participation_id: int) -> list[asyncpg.Record]:
    """Every version of a participation's result, newest first, with its baseline derivation (as
    the reward calculator receives it) and the delivery state of its outbox event."""
    return await conn.fetch(
        """select r.*, cm_baseline_derivation(r) as derivation, o.status as delivery,
                  o.delivered_at
           from period_results r
           left join outbox o on o.event_id = r.event_id  -- (the unique index; a result's event)
           where r.participation_id = $1
           order by r.version desc""",
        participation_id,
    )


async def current_results_of_owner(conn: Conn | asyncpg.Pool, owner_id: str, limit: int = 20) -> list[asyncpg.Record]:
    """The current version of each result of an owner's participations, latest period first."""
    return await conn.fetch(
        """select r.*, v.plate
           from period_results r
           join participations p on p.id = r.participation_id
           join vehicles v on v.id = p.vehicle_id
           where v.owner_id = $1 and r.superseded_by is null
           order by r.end_date desc, r.id desc
           limit $2""",
        owner_id,
        limit,
    )


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


async def evaluate_round(
    conn: Conn,
    rnd: Round,
    *,
    dry_run: bool = False,
    chunk_size: int = 100_000,
    on_staged: Callable[[StagedRound], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    operator: str | None = None,
    sets: tuple[RuleSet, ...] | None = None,
    designate: bool = True,
    designation_as_of: datetime | None = None,
) -> StagedRound:
    """Run a round in one transaction: designation of connected cars' readings, then results,
    superseded marks, outbox rows and the run record.

    A dry run designates, stages and counts the same way and then rolls back: nothing is written.
    """
    started_at: datetime = await conn.fetchval("select now()")
    staged: StagedRound | None = None
    try:
        async with conn.transaction():
            designation = None
            if designate:
                # The round's lock first, then designation's: the order a standalone designation
                # (designation's lock only) cannot deadlock with.
                await conn.execute("select pg_advisory_xact_lock($1)", _ROUND_LOCK_KEY)
                designation = await designate_periods(conn, as_of=designation_as_of, sets=sets)
            staged = await stage_round(conn, rnd, sets)
            staged.designation = designation
            if on_staged:
                on_staged(staged)
            if dry_run:
                raise _DryRun
            # Equal-width ranges of participation ids (dense identities: roughly equal chunks).
            chunks = max(1, -(-staged.to_write // chunk_size))
            lo, hi = staged.first_id, staged.last_id
            width = max(1, -(-(hi - lo + 1) // chunks))
            for first in range(lo, hi + 1, width):
                written = await write_chunk(conn, rnd, first, min(first + width - 1, hi), sets)
                if on_progress:
                    on_progress(written)
            await record_run(conn, staged, started_at, operator)
    except _DryRun:
        pass
    assert staged is not None
    return staged
