"""Connected-car providers: their HTTP secrets, MQTT credentials and the members' consents.

HMAC secrets are needed in the clear to verify signatures, so they cannot be hashed: they are
sealed (AES-256-GCM, `storage.secret_box`) under a key kept outside the database and bound to
their provider. At most two are active per provider, so a provider can switch to a new secret
without a moment in which its requests fail. MQTT passwords are stored only as salted
hashes in the broker's own format (RabbitMQ's SHA-256), which `carmileage providers` hands to it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.db import Conn
from storage.disputes import drop_open_cases_about
from storage.readings import lock_vehicles
from storage.secret_box import SecretBox
from storage.vehicles import active_vehicles_by_vin

MAX_ACTIVE_SECRETS = 2


class ProviderExists(Exception):
    pass


class ProviderNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ProviderAuth:
    """What authenticating a provider's request needs."""

    id: int
    name: str
    active: bool
    secrets: tuple[str, ...]


def new_secret() -> str:
    return "cmhs_" + secrets.token_urlsafe(32)


def _context(provider_id: int) -> str:
    """What a sealed secret is bound to: it opens for this provider only."""
    return f"provider-secret:{provider_id}"


async def create_provider(
    conn: Conn, name: str, *, display_name: str | None, mqtt_password_hash: str, box: SecretBox
) -> tuple[int, str]:
    """Create a provider with one HTTP secret and its MQTT credentials; returns (id, secret)."""
    async with conn.transaction():
        try:
            provider_id: int = await conn.fetchval(
                "insert into providers (name, display_name) values ($1, $2) returning id", name, display_name
            )
        except asyncpg.UniqueViolationError:
            raise ProviderExists(name) from None
        secret = await add_secret(conn, provider_id, box=box)
        await set_mqtt_password(conn, provider_id, name, mqtt_password_hash)
    return provider_id, secret


async def provider_id(conn: Conn, name: str) -> int:
    pid: int | None = await conn.fetchval("select id from providers where name = $1", name)
    if pid is None:
        raise ProviderNotFound(name)
    return pid


async def add_secret(conn: Conn, provider_id: int, *, box: SecretBox) -> str:
    """A new active HMAC secret (stored sealed; returned in the clear, to be shown once); the
    oldest active ones beyond two are revoked."""
    secret = new_secret()
    async with conn.transaction():
        await conn.execute("select 1 from providers where id = $1 for update", provider_id)
        await conn.execute(
            "insert into provider_secrets (provider_id, secret_sealed) values ($1, $2)",
            provider_id,
            box.seal(secret, _context(provider_id)),
        )
        await conn.execute(
            """update provider_secrets set revoked_at = now()
               where provider_id = $1 and revoked_at is null and id not in (
                   select id from provider_secrets where provider_id = $1 and revoked_at is null
                   order by id desc limit $2)""",
            provider_id,
            MAX_ACTIVE_SECRETS,
        )
    return secret


async def revoke_older_secrets(conn: Conn, provider_id: int) -> int:
    """Finish a rotation: only the newest secret stays active. Returns how many were revoked."""
    status: str = await conn.execute(
        """update provider_secrets set revoked_at = now()
           where provider_id = $1 and revoked_at is null and id <> (
               select max(id) from provider_secrets where provider_id = $1 and revoked_at is null)""",
        provider_id,
    )
    return int(status.split()[-1])


async def set_mqtt_password(conn: Conn, provider_id: int, username: str, password_hash: str) -> None:
    await conn.execute(
        """insert into provider_mqtt_credentials (provider_id, username, password_hash) values ($1, $2, $3)
           on conflict (provider_id) do update set password_hash = excluded.password_hash, created_at = now()""",
        provider_id,
        username,
        password_hash,
    )


async def mqtt_credentials(conn: Conn) -> list[tuple[str, str]]:
    """(username, password hash) of every active provider, for the broker's password file."""
    rows = await conn.fetch(
        """select c.username, c.password_hash from provider_mqtt_credentials c
           join providers p on p.id = c.provider_id where p.active order by c.username"""
    )
    return [(r["username"], r["password_hash"]) for r in rows]


async def auth_for(conn: Conn | asyncpg.Pool, name: str, *, box: SecretBox) -> ProviderAuth | None:
    """The provider and its active secrets, opened (raises SealedSecretUnreadable when a secret
    does not open with this key). A row not sealed yet (written before migration 0610 and not
    yet sealed by `seal_plain_secrets`) is read as it is."""
    rows = await conn.fetch(
        """select p.id, p.active, s.secret, s.secret_sealed from providers p
           left join provider_secrets s on s.provider_id = p.id and s.revoked_at is null
           where p.name = $1 order by s.id desc""",
        name,
    )
    if not rows:
        return None
    provider_id: int = rows[0]["id"]
    opened = []
    for r in rows:
        if r["secret_sealed"] is not None:
            opened.append(box.open(r["secret_sealed"], _context(provider_id)))
        elif r["secret"] is not None:
            opened.append(r["secret"])
    return ProviderAuth(id=provider_id, name=name, active=rows[0]["active"], secrets=tuple(opened))


async def seal_plain_secrets(conn: Conn, box: SecretBox) -> int:
    """Seal every secret still stored in the clear (rows from before migration 0610) and clear the
    plain column; returns how many. Idempotent; run by `carmileage migrate` and at the service's
    start (the key is not available to SQL migrations)."""
    async with conn.transaction():
        rows = await conn.fetch(
            "select id, provider_id, secret from provider_secrets where secret is not null order by id for update"
        )
        for r in rows:
            await conn.execute(
                "update provider_secrets set secret_sealed = $2, secret = null where id = $1",
                r["id"],
                box.seal(r["secret"], _context(r["provider_id"])),
            )
    return len(rows)


async def ids_by_name(conn: Conn, names: Sequence[str]) -> dict[str, tuple[int, bool]]:
    rows = await conn.fetch("select name, id, active from providers where name = any($1::text[])", list(names))
    return {r["name"]: (r["id"], r["active"]) for r in rows}


async def list_providers(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        """select p.id, p.name, p.display_name, p.active, p.created_at,
                  (select count(*) from provider_secrets s
                   where s.provider_id = p.id and s.revoked_at is null) as active_secrets,
                  (select count(*) from vehicle_consents c
                   where c.provider_id = p.id and c.withdrawn_at is null) as consenting_vehicles
           from providers p order by p.name"""
    )


async def remember_request(conn: Conn, provider_id: int, digest: bytes) -> bool:
    """Record a signed request's signature; False when it was seen before (a replay).

    Called inside the transaction that stores the batch: a request that fails leaves no trace and
    may be retried as is.
    """
    row = await conn.fetchval(
        """insert into provider_request_signatures (provider_id, digest) values ($1, $2)
           on conflict do nothing returning 1""",
        provider_id,
        digest,
    )
    return row is not None


async def forget_old_requests(conn: Conn, older_than_s: int = 900) -> None:
    await conn.execute(
        "delete from provider_request_signatures where seen_at < now() - make_interval(secs => $1)",
        older_than_s,
    )


# -- consent ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Withdrawal:
    withdrawn_vehicle_ids: tuple[int, ...]
    deleted_quarantined: int
    unknown_vins: tuple[str, ...]


async def grant_consent(conn: Conn, provider_id: int, vehicle_id: int) -> datetime:
    granted_at: datetime = await conn.fetchval(
        """insert into vehicle_consents (provider_id, vehicle_id) values ($1, $2)
           on conflict (provider_id, vehicle_id) do update
           set granted_at = case when vehicle_consents.withdrawn_at is null
                                 then vehicle_consents.granted_at else now() end,
               withdrawn_at = null
           returning granted_at""",
        provider_id,
        vehicle_id,
    )
    return granted_at


async def consents_of(conn: Conn | asyncpg.Pool, vehicle_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """select p.name as provider, c.granted_at, c.withdrawn_at from vehicle_consents c
           join providers p on p.id = c.provider_id where c.vehicle_id = $1 order by p.name""",
        vehicle_id,
    )


async def withdraw_consents(conn: Conn, provider_id: int, vins: Sequence[str]) -> Withdrawal:
    """Stop a provider's ingestion for these cars and delete its unverified data about them.

    The cars' consents become withdrawn (later readings are quarantined as `consent_withdrawn`);
    the provider's quarantined readings of these VINs are deleted with their open rollback cases,
    except those a reviewer has resolved (they are part of a decision). Verified readings stay:
    they may already underlie a period result. Runs in one transaction, under the cars' locks.
    """
    vins = sorted(set(vins))
    async with conn.transaction():
        vehicles = await active_vehicles_by_vin(conn, vins)
        ids = [r["id"] for r in vehicles]
        await lock_vehicles(conn, ids)
        await conn.execute(
            """insert into vehicle_consents (provider_id, vehicle_id, withdrawn_at)
               select $1, id, now() from unnest($2::int8[]) as id
               on conflict (provider_id, vehicle_id) do update set withdrawn_at = now()
               where vehicle_consents.withdrawn_at is null""",
            provider_id,
            ids,
        )
        doomed = [
            r["id"]
            for r in await conn.fetch(
                """select q.id from quarantined_readings q
                   where q.provider_id = $1 and q.vin = any($2::text[]) and q.review_status <> 'resolved'
                     and not exists (select 1 from disputes d
                                     where d.quarantined_reading_id = q.id and d.status <> 'open')""",
                provider_id,
                vins,
            )
        ]
        if doomed:
            await drop_open_cases_about(conn, doomed)
            await conn.execute(
                "update provider_events set quarantine_id = null where provider_id = $1 and quarantine_id = any($2::int8[])",
                provider_id,
                doomed,
            )
            await conn.execute("delete from quarantined_readings where id = any($1::int8[])", doomed)
    known = {r["vin"] for r in vehicles}
    return Withdrawal(tuple(ids), len(doomed), tuple(v for v in vins if v not in known))


# -- aggregator webhooks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookAuth:
    """What verifying an aggregator's webhook delivery needs: the provider and its key."""

    id: int
    name: str
    active: bool
    scheme: str | None
    key: str | None


def _webhook_context(provider_id: int) -> str:
    return f"provider-webhook-key:{provider_id}"


async def set_webhook_key(conn: Conn, provider_id: int, scheme: str, key: str, *, box: SecretBox) -> None:
    """Store (sealed) the key the aggregator signs its deliveries with; replaces any earlier one."""
    await conn.execute(
        """insert into provider_webhook_keys (provider_id, scheme, key_sealed) values ($1, $2, $3)
           on conflict (provider_id) do update
           set scheme = excluded.scheme, key_sealed = excluded.key_sealed, created_at = now()""",
        provider_id,
        scheme,
        box.seal(key, _webhook_context(provider_id)),
    )


async def webhook_auth_for(conn: Conn | asyncpg.Pool, name: str, *, box: SecretBox) -> WebhookAuth | None:
    """The provider named `name` and its webhook key, opened (raises SealedSecretUnreadable when
    it does not open with this key); None when no provider has the name."""
    row = await conn.fetchrow(
        """select p.id, p.active, k.scheme, k.key_sealed from providers p
           left join provider_webhook_keys k on k.provider_id = p.id where p.name = $1""",
        name,
    )
    if row is None:
        return None
    key = box.open(row["key_sealed"], _webhook_context(row["id"])) if row["key_sealed"] is not None else None
    return WebhookAuth(id=row["id"], name=name, active=row["active"], scheme=row["scheme"], key=key)


async def link_vehicle(conn: Conn, provider_id: int, external_id: str, vin: str) -> None:
    """Name the car the aggregator calls `external_id` (its own vehicle id) by its VIN."""
    await conn.execute(
        """insert into provider_vehicle_links (provider_id, external_id, vin) values ($1, $2, $3)
           on conflict (provider_id, external_id) do update set vin = excluded.vin, created_at = now()""",
        provider_id,
        external_id,
        vin,
    )


async def linked_vin(conn: Conn | asyncpg.Pool, provider_id: int, external_id: str) -> str | None:
    vin: str | None = await conn.fetchval(
        "select vin from provider_vehicle_links where provider_id = $1 and external_id = $2",
        provider_id,
        external_id,
    )
    return vin
