-- The telematics fast path writes one provider event per reading received.
-- provider_events.provider_id's foreign key checked, and share-locked, the provider's row once per
-- event: every concurrent batch of one provider locked the same row, which PostgreSQL records as
-- a multixact. Events are only written by the ingest path, for the provider whose credentials
-- it has just checked, and nothing deletes providers (their `active` flag retires them).
alter table provider_events drop constraint provider_events_provider_id_fkey;
