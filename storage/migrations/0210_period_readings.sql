-- Start and end readings designated for connected cars (storage/period_readings.py).
--
-- Members whose car streams readings upload no photos, so the service points their participations
-- at a start and an end reading by the rule of prorate/period_bounds.py. Every pointer it sets is
-- recorded here, append-only: which reading, when, as of which instant, and why (the rule, or the
-- correction of a superseded reading). The start's recorded_at is kept so that designating the end
-- needs no look-up of the start reading by id (an id is not a partition key of readings).

create table period_readings (
    id                  bigint generated always as identity primary key,
    -- No foreign key: rows are written in the statement that updates the participation, by the
    -- hundred thousand on a first run, and a per-row check would double the cost.
    participation_id    bigint not null,
    stage               text not null check (stage in ('start', 'end')),
    reading_id          bigint not null,
    recorded_at         timestamptz not null,
    reason              text not null check (reason in ('rule', 'correction')),
    -- The superseded reading a correction replaced.
    replaces_reading_id bigint,
    -- Readings verified after this instant were not considered.
    as_of               timestamptz not null,
    designated_at       timestamptz not null default now(),
    check ((reason = 'correction') = (replaces_reading_id is not null))
);
-- The start's recorded_at, when its end is designated.
create index period_readings_start on period_readings (participation_id, reading_id) where stage = 'start';

create function period_readings_is_append_only() returns trigger
language plpgsql as $$
begin
    raise exception 'period_readings is append-only';
end $$;

create trigger period_readings_no_update before update or delete on period_readings
    for each row execute function period_readings_is_append_only();

-- Superseded readings are few; finding the participations still pointing at one must not scan
-- every reading.
create index readings_superseded on readings (id) where status = 'superseded';
