-- Evaluation rounds and delivery: refines the base schema's period_results and outbox.
--
-- A period result is immutable once written: a changed input (e.g. a corrected reading) adds a new
-- version and marks the old one superseded; its stored inputs (readings, odometers, dates, rule
-- set, baseline) are what "the same inputs" means.

alter table period_results rename column reduction_rate to reduction_rate_pct;
alter table period_results alter column reduction_rate_pct drop not null;

alter table period_results
    add column event_id      uuid,
    -- The event of the version this one supersedes (null for a first version).
    add column supersedes_event_id uuid,
    add column vehicle_id    bigint,
    add column owner_id      text,
    -- The odometers the result was computed from (with the reading ids, dates, rule set and
    -- baseline, the inputs a later round compares to decide "unchanged").
    add column start_odometer_m bigint,
    add column end_odometer_m   bigint,
    add column district      text,
    add column tier_by       text check (tier_by in ('rate', 'amount', 'rate_and_amount', 'none')),
    add column season_year   integer,
    add column season_days   integer,
    add column season_km     numeric,
    -- How the baseline was derived, as data: daily average = baseline_num / baseline_den metres
    -- per day (exact). cm_baseline_derivation() renders it as JSON.
    add column baseline_method text check (baseline_method in ('override', 'national', 'used_car', 'district')),
    add column baseline_num  numeric,
    add column baseline_den  numeric check (baseline_den > 0),
    add column history_from  date,
    add column history_days  integer,
    add column history_m     bigint,
    add column district_table text;

-- Rounds write the derivation as columns (rendering JSON for a million rows per round is the
-- slowest part of a round); the JSON column stays for results written by other means.
alter table period_results alter column baseline_derivation drop not null;
alter table period_results add constraint period_results_derivation_present
    check (baseline_derivation is not null or baseline_method is not null);

comment on column period_results.baseline_daily_km is 'km/day, rounded half up to 0.0001; exact ratio in baseline_derivation.daily_m';
comment on column period_results.baseline_km is 'km, rounded half up to 0.1 (decisions were taken on the exact value)';
comment on column period_results.actual_km is 'km, rounded half up to 0.1';
comment on column period_results.reduction_km is 'km, rounded half up to 0.1';
comment on column period_results.reduction_rate_pct is 'percent, rounded half up to 0.01; null when the baseline is zero';
comment on column period_results.season_km is 'season program: km prorated to the season, rounded half up to 0.1';

create index period_results_superseded on period_results (superseded_by) where superseded_by is not null;

-- One row per round actually run (dry runs write nothing).
create table evaluation_runs (
    id            bigint generated always as identity primary key,
    round         text not null,
    cutoff        timestamptz not null,
    started_at    timestamptz not null default now(),
    finished_at   timestamptz,
    candidates    integer not null default 0,
    new_results   integer not null default 0,
    superseding   integer not null default 0,
    unchanged     integer not null default 0,
    problems      integer not null default 0,
    waiting       integer not null default 0,
    operator      text
);
create index evaluation_runs_round on evaluation_runs (round, started_at);

-- Participations a run could not evaluate, with the reason (nothing else was written for them).
create table evaluation_problems (
    run_id            bigint not null references evaluation_runs (id),
    participation_id  bigint not null references participations (id),
    code              text not null,
    message           text not null,
    primary key (run_id, participation_id)
);

-- A period result's outbox row carries no payload of its own: the payload is rendered from the
-- immutable result row by cm_result_payload() when it is sent (same bytes on every attempt), so a
-- round renders no JSON: a million payloads are rendered as they are delivered.
alter table outbox alter column payload drop not null;
alter table outbox add constraint outbox_payload_or_result
    check (payload is not null or period_result_id is not null);
alter table outbox
    add column claimed_by           text,
    add column last_status          integer,
    add column dead_at              timestamptz,
    add column supersedes_event_id  uuid;
create index outbox_dead on outbox (dead_at) where status = 'dead';

-- p / q (q > 0) rounded to `places` decimals, ties away from zero (= Python's
-- decimal.ROUND_HALF_UP), computed on integers so no intermediate rounding can move a value
-- across a tie.
create function cm_round_half_up(p numeric, q numeric, places integer) returns numeric
language sql immutable parallel safe as $$
    select round(sign(p) * div(2 * abs(p) * (10::numeric ^ places) + q, 2 * q) / (10::numeric ^ places), places)
$$;

-- The baseline's derivation as JSON (for the payload and for people).
create function cm_baseline_derivation(r period_results) returns jsonb
language sql stable parallel safe as $$
    select case when r.baseline_method is null then r.baseline_derivation else jsonb_build_object(
        'method', r.baseline_method,
        'daily_km', cm_round_half_up(r.baseline_num, r.baseline_den * 1000, 1)::text,
        'daily_m', jsonb_build_object('numerator', r.baseline_num, 'denominator', r.baseline_den),
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

-- A reading as evidence: where it came from and when.
create function cm_reading_evidence(reading_id bigint) returns jsonb
language sql stable parallel safe as $$
    select jsonb_build_object(
        'id', x.id, 'source', x.source, 'odometer_m', x.odometer_m, 'status', x.status,
        'recorded_at', x.recorded_at, 'captured_at', x.captured_at, 'uploaded_at', x.uploaded_at,
        'approved_at', x.approved_at, 'verified_at', x.verified_at, 'provider_id', x.provider_id,
        'provider_event_id', x.provider_event_id, 'submission_id', x.submission_id)
    from readings x where x.id = reading_id
$$;

-- The JSON delivered to the reward calculator for a period result.
create function cm_result_payload(r period_results, supersedes uuid) returns jsonb
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
$$;
