-- Aggregator webhooks (docs/providers.md, "Onboarding an aggregator"): an aggregator such as
-- Smartcar signs its deliveries with a key of its own (Smartcar's Application Management Token),
-- which the operator gives us. It is needed in the clear to verify signatures, so it is sealed
-- like the providers' HMAC secrets (AES-256-GCM under a key never in the database, bound to its
-- provider). One key per provider; setting a new one replaces it.
create table provider_webhook_keys (
    provider_id  bigint primary key references providers (id),
    scheme       text not null check (scheme in ('smartcar')),
    key_sealed   text not null,
    created_at   timestamptz not null default now()
);

-- An aggregator names a car by its own vehicle id, not by VIN: the operator links the id to the
-- VIN of the enrolled car (`carmileage providers link`). A link does not grant consent.
create table provider_vehicle_links (
    provider_id  bigint not null references providers (id),
    external_id  text not null check (length(external_id) between 1 and 200),
    vin          text not null check (vin ~ '^[A-HJ-NPR-Z0-9]{17}$'),
    created_at   timestamptz not null default now(),
    primary key (provider_id, external_id)
);
