-- Programme rules of issue 15 (prorate/rules/*.toml, storage/evaluation.py).
--
-- A rule set without day-proration (seoul-2021) compares the readings' distance with the baseline
-- of the scheduled period (12 months after the start; a season's days), not of the days between
-- the readings: the result records the days its baseline covers. Results written before this
-- migration leave it null (their baseline covered `days`).

alter table period_results add column baseline_days integer check (baseline_days > 0);

comment on column period_results.baseline_days is
    'days the baseline covers: days (day-proration) or the scheduled period''s days (no day-proration)';
comment on column period_results.reduction_km is
    'km to 0.1, rounded half up and kept inside the exact value''s tier band (prorate/display.py)';
comment on column period_results.reduction_rate_pct is
    'percent to 0.01, rounded half up and kept inside the exact value''s tier band; null when the baseline is zero';
comment on column period_results.season_km is
    'season program: km for the season to 0.1, rounded half up and kept on the exact value''s side of the limit';

-- The payload names the baseline's days only where they differ from the period's, so the payload
-- of every result computed with day-proration is what it was.
create or replace function cm_result_payload(r period_results, supersedes uuid) returns jsonb
language sql stable parallel safe as $$
    select jsonb_build_object(
        'event_id', r.event_id, 'type', 'period_result', 'supersedes', supersedes,
        'participation_id', r.participation_id, 'version', r.version, 'round', r.round,
        'vehicle_id', r.vehicle_id, 'owner_id', r.owner_id, 'district', r.district,
        'program', r.program, 'rule_set', r.rule_set,
        'start_date', r.start_date, 'end_date', r.end_date, 'days', r.days,
        'baseline_daily_km', r.baseline_daily_km, 'baseline_km', r.baseline_km,
        'actual_km', r.actual_km, 'reduction_km', r.reduction_km,
        'reduction_rate_pct', r.reduction_rate_pct, 'points', r.points, 'tier_by', r.tier_by,
        'season', case when r.program = 'season' then jsonb_build_object(
            'year', r.season_year, 'days', r.season_days, 'km', r.season_km) end,
        'special_points', r.special_points,
        'evidence', jsonb_build_object(
            'start_reading', cm_reading_evidence(r.start_reading_id),
            'end_reading', cm_reading_evidence(r.end_reading_id),
            'baseline', cm_baseline_derivation(r)))
    || case when r.baseline_days is not null and r.baseline_days <> r.days
            then jsonb_build_object('baseline_days', r.baseline_days) else '{}'::jsonb end
$$;
