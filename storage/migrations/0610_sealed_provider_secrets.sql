-- Provider HMAC secrets are kept encrypted (AES-256-GCM) with a key that never enters the
-- database (CARMILEAGE_PROVIDER_SECRET_KEY, or one derived from the service secret under the data
-- dir): `secret_sealed` holds the ciphertext. Rows written before this migration still hold the
-- plain `secret`; `carmileage migrate` and the service's start seal them (the key is not
-- available to SQL) and clear the plain column. Exactly one of the two is set.
alter table provider_secrets alter column secret drop not null;
alter table provider_secrets add column secret_sealed text;
alter table provider_secrets add constraint provider_secrets_one_form
    check ((secret is null) <> (secret_sealed is null));
create index provider_secrets_plain on provider_secrets (id) where secret is not null;
