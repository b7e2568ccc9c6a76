-- The reward calculator's contract, version 1 (issue 17, item 8): the payload is the document
-- `prorate.reward_event.PeriodResultEvent` describes (JSON Schema: docs/reward-calculator.schema.json).
-- It is still rendered here, from the immutable result row when the outbox sender claims it (a
-- round of a million results writes no JSON); tests/evaluation hold what this renders equal to
-- what the model serialises for the same result.
--
-- Changes to the document:
-- * `schema_version` (1): which version of the contract a payload follows;
-- * the baseline's exact daily average (`evidence.baseline.daily_m`) is sent as JSON integers,
--   as the schema says: an operator's figure was sent with the scale of a numeric division
--   (`25500.000000000000` / `1.00000000000000000000`); the values are unchanged.

create or replace function cm_baseline_derivation(r period_results) returns jsonb
language sql stable parallel safe as $$
    select case when r.baseline_method is null then r.baseline_derivation else jsonb_build_object(
        'method', r.baseline_method,
        'daily_km', cm_round_half_up(r.baseline_num, r.baseline_den * 1000, 1)::text,
        'daily_m', jsonb_build_object('numerator', trunc(r.baseline_num), 'denominator', trunc(r.baseline_den)),
        'history_from', r.history_from, 'history_days', r.history_days,
        'history_km', cm_round_half_up(r.history_m, 1000, 1)::text,
        'district', case when r.baseline_method = 'district' then r.district end,
        'district_table', r.district_table,
        'explanation', case r.baseline_method
            when 'override' then format('operator override: %s km/day',
                                        cm_round_half_up(r.baseline_num, r.baseline_den * 1000, 1))
            when 'district' then format('district average of %s (%s): %s km/day', r.district,
                                        r.district_table, cm_round_half_up(r.baseline_num, r.baseline_den * 1000, 1))
            else format('%s km over %s days since %s %s: %s km/day',
                        cm_round_half_up(r.history_m, 1000, 1), r.history_days,
                        case r.baseline_method when 'national' then 'first registration' else 'acquisition' end,
                        r.history_from, cm_round_half_up(r.baseline_num, r.baseline_den * 1000, 1)) end)
    end
$$;

create or replace function cm_result_payload(r period_results, supersedes uuid) returns jsonb
language sql stable parallel safe as $$
    select jsonb_build_object(
        'schema_version', 1,
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
