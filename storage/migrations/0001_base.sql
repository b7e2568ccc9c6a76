-- Base schema: owners, vehicles, participations, readings (partitioned by month) and their
-- quarantine, photos, OCR jobs, disputes, audit log, period results, outbox, providers,
-- credentials and API tokens. Later migrations refine each concern (01NN telematics,
-- 02NN evaluation and delivery, 03NN photos and review).

-- Citizens (car owners). `id` is the subject of the citizen's API tokens.
create table owners (
    id          text primary key check (length(id) between 1 and 200),
    district    text,
    created_at  timestamptz not null default now()
);

create table vehicles (
    id                       bigint generated always as identity primary key,
    owner_id                 text not null references owners (id),
    plate                    text not null,
    -- front digits + syllable + serial: the region prefix is not part of a car's identity.
    plate_key                text not null,
    vin                      text not null check (vin ~ '^[A-HJ-NPR-Z0-9]{17}$'),
    district                 text not null,
    registration_region      text not null,
    use                      text not null check (use in ('non_commercial', 'commercial')),
    vehicle_type             text not null,
    seats                    integer not null check (seats between 1 and 100),
    fuel                     text not null,
    first_registration_date  date not null,
    acquired_date            date,
    acquired_odometer_m      bigint check (acquired_odometer_m >= 0),
    emission_certificate     text,
    low_emission_class       smallint check (low_emission_class between 1 and 3),
    model                    text,
    -- A car is retired when its owner changes, it moves out of Seoul or is scrapped, so the
    -- next owner can enrol the same plate and VIN.
    status                   text not null default 'active' check (status in ('active', 'retired')),
    created_at               timestamptz not null default now(),
    retired_at               timestamptz
);
create unique index vehicles_active_plate on vehicles (plate_key) where status = 'active';
create unique index vehicles_active_vin on vehicles (vin) where status = 'active';
create index vehicles_owner on vehicles (owner_id);

create table participations (
    id               bigint generated always as identity primary key,
    vehicle_id       bigint not null references vehicles (id),
    program          text not null check (program in ('annual', 'season')),
    -- For the winter season: the year in which its December lies.
    season_year      integer,
    rule_set         text not null,
    status           text not null default 'active' check (status in ('active', 'ended')),
    enrolled_at      timestamptz not null default now(),
    enrolled_on      date not null,
    -- Operator-supplied baseline (e.g. from inspection records); overrides the formula.
    baseline_daily_km numeric(12, 4) check (baseline_daily_km >= 0),
    baseline_note    text,
    start_reading_id bigint,
    end_reading_id   bigint,
    ended_at         timestamptz,
    ended_on         date,
    end_reason       text check (end_reason in
                        ('ownership_transfer', 'moved_out_of_seoul', 'scrapped', 'withdrawn')),
    check ((program = 'season') = (season_year is not null)),
    check ((status = 'ended') = (end_reason is not null))
);
create unique index participations_one_active on participations (vehicle_id, program)
    where status = 'active';

-- Providers of connected-car data and their credentials ------------------------------------

create table providers (
    id           bigint generated always as identity primary key,
    name         text not null unique check (name ~ '^[a-z0-9][a-z0-9_-]{1,62}$'),
    display_name text,
    active       boolean not null default true,
    created_at   timestamptz not null default now()
);

-- HMAC secrets for signed HTTP batches; two may be active at once for rotation. The secret
-- itself is needed to verify signatures, so it is stored, not hashed.
create table provider_secrets (
    id           bigint generated always as identity primary key,
    provider_id  bigint not null references providers (id),
    secret       text not null,
    created_at   timestamptz not null default now(),
    revoked_at   timestamptz
);

create table provider_mqtt_credentials (
    provider_id   bigint primary key references providers (id),
    username      text not null unique,
    password_hash text not null,
    created_at    timestamptz not null default now()
);

-- Which provider may send readings for which car (the member's consent).
create table vehicle_consents (
    provider_id   bigint not null references providers (id),
    vehicle_id    bigint not null references vehicles (id),
    granted_at    timestamptz not null default now(),
    withdrawn_at  timestamptz,
    primary key (provider_id, vehicle_id)
);

-- API tokens (operator, provider, citizen, reviewer), stored as SHA-256 of the token.
create table api_tokens (
    id            bigint generated always as identity primary key,
    token_hash    bytea not null unique,
    role          text not null check (role in ('operator', 'provider', 'citizen', 'reviewer')),
    subject       text not null,
    label         text,
    created_at    timestamptz not null default now(),
    expires_at    timestamptz,
    revoked_at    timestamptz
);

-- Readings --------------------------------------------------------------------------------

create sequence readings_id_seq as bigint;

-- Verified (and later superseded) odometer readings. Partitioned by month of recorded_at.
create table readings (
    id                 bigint not null default nextval('readings_id_seq'),
    vehicle_id         bigint not null,
    odometer_m         bigint not null check (odometer_m between 0 and 10000000000),
    recorded_at        timestamptz not null,
    received_at        timestamptz not null default now(),
    source             text not null check (source in ('telematics', 'photo', 'reviewer')),
    provider_id        bigint,
    provider_event_id  text,
    original_value     numeric,
    original_unit      text,
    captured_at        timestamptz,
    uploaded_at        timestamptz,
    approved_at        timestamptz,
    submission_id      bigint,
    status             text not null default 'verified' check (status in ('verified', 'superseded')),
    verified_at        timestamptz not null default now(),
    primary key (id, recorded_at),
    unique (vehicle_id, recorded_at, odometer_m)
) partition by range (recorded_at);
alter sequence readings_id_seq owned by readings.id;

create index readings_vehicle_time on readings (vehicle_id, recorded_at);

create table readings_default partition of readings default;

-- One partition per calendar month (UTC bounds); idempotent.
create function ensure_readings_partition(month date) returns void
language plpgsql as $$
declare
    first date := date_trunc('month', month)::date;
    name text := format('readings_%s', to_char(first, 'YYYY_MM'));
begin
    if to_regclass(name) is null then
        execute format(
            'create table %I partition of readings for values from (%L) to (%L)',
            name, first::timestamptz, (first + interval '1 month')::timestamptz);
    end if;
end $$;

do $$
declare m date;
begin
    for m in select generate_series('2019-01-01'::date, '2030-12-01'::date, interval '1 month')::date loop
        perform ensure_readings_partition(m);
    end loop;
end $$;

-- Idempotency for provider events: one row per (provider, event_id), whatever became of it.
create table provider_events (
    provider_id   bigint not null references providers (id),
    event_id      text not null,
    reading_id    bigint,
    quarantine_id bigint,
    received_at   timestamptz not null default now(),
    primary key (provider_id, event_id)
);

-- Readings that failed a check, kept with their reasons; raw payloads that could not even be
-- parsed are kept as text.
create table quarantined_readings (
    id                 bigint generated always as identity primary key,
    source             text not null check (source in ('telematics', 'photo', 'reviewer')),
    provider_id        bigint references providers (id),
    provider_event_id  text,
    vehicle_id         bigint references vehicles (id),
    vin                text,
    odometer_m         bigint,
    recorded_at        timestamptz,
    received_at        timestamptz not null default now(),
    original_value     numeric,
    original_unit      text,
    reasons            text[] not null check (cardinality(reasons) > 0),
    raw                text,
    review_status      text not null default 'none' check (review_status in ('none', 'open', 'resolved'))
);
create index quarantined_readings_vehicle on quarantined_readings (vehicle_id, recorded_at);

-- Photos, OCR and review ------------------------------------------------------------------

-- Content-addressed photo metadata; the bytes live in the blob store under their sha256.
create table photos (
    sha256       text primary key check (sha256 ~ '^[0-9a-f]{64}$'),
    phash        text,
    content_type text not null,
    size_bytes   integer not null,
    width        integer,
    height       integer,
    captured_at  timestamptz,
    stored_at    timestamptz not null default now()
);

create table photo_submissions (
    id                bigint generated always as identity primary key,
    participation_id  bigint not null references participations (id),
    stage             text not null check (stage in ('start', 'mid', 'end')),
    claimed_km        integer check (claimed_km between 0 and 10000000),
    dashboard_sha256  text not null references photos (sha256),
    plate_sha256      text not null references photos (sha256),
    status            text not null default 'processing'
                      check (status in ('processing', 'accepted', 'in_review', 'rejected', 'retake')),
    reasons           text[] not null default '{}',
    reading_id        bigint,
    uploaded_at       timestamptz not null default now(),
    decided_at        timestamptz
);

create table ocr_jobs (
    id             bigint generated always as identity primary key,
    submission_id  bigint not null unique references photo_submissions (id),
    status         text not null default 'queued' check (status in ('queued', 'running', 'done', 'failed')),
    attempts       integer not null default 0,
    max_attempts   integer not null default 3,
    lease_until    timestamptz,
    worker         text,
    last_error     text,
    result         jsonb,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);
create index ocr_jobs_ready on ocr_jobs (created_at) where status in ('queued', 'running');

-- A case a reviewer must resolve: a doubtful photo, or a rollback/reset raised by telematics.
create table disputes (
    id                      bigint generated always as identity primary key,
    kind                    text not null check (kind in ('photo', 'rollback', 'telematics')),
    vehicle_id              bigint references vehicles (id),
    submission_id           bigint references photo_submissions (id),
    quarantined_reading_id  bigint references quarantined_readings (id),
    district                text,
    reasons                 text[] not null,
    status                  text not null default 'open' check (status in ('open', 'resolved')),
    claimed_by              text,
    lease_until             timestamptz,
    resolution              text check (resolution in ('accepted', 'corrected', 'rejected')),
    resolution_reason       text,
    resolved_value_m        bigint,
    resolved_by             text,
    resolved_at             timestamptz,
    created_at              timestamptz not null default now()
);
create index disputes_open on disputes (created_at) where status = 'open';

-- Append-only record of every action that changes what a citizen is owed.
create table audit_log (
    id          bigint generated always as identity primary key,
    at          timestamptz not null default now(),
    actor_role  text not null,
    actor_id    text not null,
    action      text not null,
    entity      text not null,
    entity_id   text not null,
    before      jsonb,
    after       jsonb,
    request_id  text
);

create function audit_log_is_append_only() returns trigger
language plpgsql as $$
begin
    raise exception 'audit_log is append-only';
end $$;

create trigger audit_log_no_update before update or delete on audit_log
    for each row execute function audit_log_is_append_only();
create trigger audit_log_no_truncate before truncate on audit_log
    for each statement execute function audit_log_is_append_only();

-- Results and their delivery ----------------------------------------------------------------

create table period_results (
    id                 bigint generated always as identity primary key,
    participation_id   bigint not null references participations (id),
    version            integer not null,
    round              text not null,
    program            text not null,
    rule_set           text not null,
    start_reading_id   bigint not null,
    end_reading_id     bigint not null,
    start_date         date not null,
    end_date           date not null,
    days               integer not null check (days > 0),
    baseline_daily_km  numeric not null,
    baseline_km        numeric not null,
    actual_km          numeric not null,
    reduction_km       numeric not null,
    reduction_rate     numeric not null,
    points             integer not null default 0,
    special_points     integer not null default 0,
    baseline_derivation jsonb not null,
    superseded_by      bigint references period_results (id),
    created_at         timestamptz not null default now(),
    unique (participation_id, version)
);

create table outbox (
    id               bigint generated always as identity primary key,
    event_id         uuid not null unique,
    kind             text not null,
    period_result_id bigint references period_results (id),
    payload          jsonb not null,
    status           text not null default 'pending' check (status in ('pending', 'delivered', 'dead')),
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz not null default now(),
    delivered_at     timestamptz
);
create index outbox_due on outbox (next_attempt_at) where status = 'pending';
