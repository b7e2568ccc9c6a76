-- Tokens expire and sign-out revokes (issue 18, item 10c). A page session is a token of its own
-- (kind 'session'), made at sign-in from an API token (its parent) and valid only as the session
-- cookie; an API token is valid only as a bearer token (and to sign in). Revoking an API token
-- revokes its sessions. Expired sessions are deleted some days after they expired.
alter table api_tokens
    add column kind text not null default 'api' check (kind in ('api', 'session')),
    add column parent_id bigint references api_tokens (id) on delete cascade,
    add column revoked_reason text;
alter table api_tokens add constraint api_tokens_session_has_parent
    check ((kind = 'session') = (parent_id is not null));
alter table api_tokens add constraint api_tokens_session_expires
    check (kind = 'api' or expires_at is not null);
create index api_tokens_parent on api_tokens (parent_id) where parent_id is not null;
create index api_tokens_session_expiry on api_tokens (expires_at) where kind = 'session';
