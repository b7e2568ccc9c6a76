-- OpenID Connect sign-in for the pages (issue 19, item 1). A page session made by signing in at
-- the identity provider has no API token as its parent: it records the provider's issuer in
-- `idp` instead. Every other session still has its parent token.
alter table api_tokens add column idp text;
alter table api_tokens drop constraint api_tokens_session_has_parent;
alter table api_tokens add constraint api_tokens_session_has_parent
    check (case when kind = 'session' then (parent_id is not null) <> (idp is not null)
                else parent_id is null and idp is null end);

-- A sign-in on its way through the provider: the state (only its SHA-256 is kept), the nonce the
-- ID token must carry and the PKCE verifier. Taken exactly once (used_at), within its lifetime.
create table oidc_logins (
    state_hash bytea primary key,
    nonce text not null,
    code_verifier text not null,
    redirect_uri text not null,
    next_path text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at timestamptz
);
create index oidc_logins_expiry on oidc_logins (expires_at);
