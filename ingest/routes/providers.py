"""Connected-car providers over HTTP: signed reading batches and consent withdrawals; and the
members' own consent to a provider.

Provider operations carry no bearer token: each request is signed with the provider's HMAC
secret (`telematics.signatures`). A request is answered 2xx only after its batch is committed.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ingest.api import ApiError, Reason, path_id, read_body, respond
from ingest.auth import Principal, check_owner, require_principal
from ingest.ingestion import limits_from, record
from ingest.routes import api
from ingest.state import POOL, REQUEST_ID, SETTINGS
from storage.audit import write_audit
from storage.db import Conn
from storage.providers import (
    ProviderAuth,
    WebhookAuth,
    auth_for,
    consents_of,
    forget_old_requests,
    grant_consent,
    ids_by_name,
    linked_vin,
    remember_request,
    webhook_auth_for,
    withdraw_consents,
)
from storage.readings import BatchItem, store_batch
from storage.secret_box import SealedSecretUnreadable
from storage.vehicles import get_vehicle
from telematics import signatures
from telematics.adapters import smartcar
from telematics.payload import HTTP_MAX_BYTES, HTTP_MAX_READINGS, PayloadError, decode_json, parse_http_batch
from telematics.reading import ItemError, Rejected

SIGNED: list[dict[str, list[str]]] = [{"providerSignature": []}]
SMARTCAR_SIGNED: list[dict[str, list[str]]] = [{"smartcarSignature": []}]
#: Smartcar's deliveries are at most 50 KB (its delivery-behavior page); room to spare.
SMARTCAR_MAX_BYTES = 256 * 1024
WITHDRAWAL_MAX_BYTES = 1024 * 1024
WITHDRAWAL_MAX_VINS = 10_000
#: Reasons listed in one 422 answer at most (the rest are counted in the message).
MAX_LISTED_REASONS = 1000

# -- models -----------------------------------------------------------------------------------


class QuarantinedItem(BaseModel):
    index: int = Field(description="Position of the reading in the batch")
    reasons: list[str]


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    quarantined: list[QuarantinedItem]


class WithdrawalResult(BaseModel):
    withdrawn: int = Field(description="Enrolled cars whose consent is now withdrawn")
    deleted_quarantined: int = Field(description="Unverified readings of these cars deleted")
    unknown_vins: list[str] = Field(description="VINs of no enrolled car (their unverified data is deleted too)")


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=2, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]{1,62}$")


class ConsentOut(BaseModel):
    provider: str
    granted_at: datetime
    withdrawn_at: datetime | None


class ConsentList(BaseModel):
    consents: list[ConsentOut]


_READING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Canonical: {event_id, vin, odometer: {value, unit: km|mi|m}, recorded_at (ISO 8601 "
    "with offset)}; maker platform: {vin, odometer, timestamp}; webhook envelope: {eventId, "
    "vehicle: {vin}, signals: [{code: odometer-traveleddistance, body: {value, unit}, meta: "
    "{oemUpdatedAt}}]}. See docs/providers.md.",
}
_BATCH_CONTENT = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["readings"],
            "properties": {
                "readings": {"type": "array", "minItems": 1, "maxItems": HTTP_MAX_READINGS, "items": _READING_SCHEMA}
            },
        }
    }
}
_WITHDRAWAL_CONTENT = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["vins"],
            "properties": {"vins": {"type": "array", "maxItems": WITHDRAWAL_MAX_VINS, "items": {"type": "string"}}},
        }
    }
}

# -- provider authentication --------------------------------------------------------------------


def _unauthenticated(code: str, message: str) -> ApiError:
    return ApiError(
        401,
        "unauthenticated",
        "The request is not signed by an active provider.",
        [Reason(code=code, message=message)],
        headers={"WWW-Authenticate": 'HMAC-SHA256 header="X-Carmileage-Signature"'},
    )


async def _signed_body(request: web.Request, limit: int) -> tuple[ProviderAuth, bytes, bytes]:
    """Authenticate the provider named in the path; return it, the raw body and its signature."""
    name = request.match_info["provider"]
    try:
        box = request.app[SETTINGS].provider_box()
        auth = await auth_for(request.app[POOL], name, box=box) if len(name) <= 63 else None
    except SealedSecretUnreadable:
        logging.getLogger("carmileage.providers").error(
            "provider %s: its HTTP secrets do not open with this service's provider secret key", name
        )
        raise ApiError(
            503,
            "provider_credentials_unavailable",
            "The service cannot read this provider's credentials now; nothing was stored.",
            headers={"Retry-After": "60"},
        ) from None
    if auth is None:
        raise _unauthenticated("unknown_provider", "No provider has this name.")
    if not auth.active or not auth.secrets:
        raise _unauthenticated("provider_inactive", "This provider is deactivated or has no active secret.")
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await read_body(request, limit)
    verdict = signatures.verify(
        auth.secrets,
        request.headers.get(signatures.TIMESTAMP_HEADER),
        request.headers.get(signatures.SIGNATURE_HEADER),
        raw,
        time.time(),
    )
    if not verdict.ok:
        raise _unauthenticated(verdict.code, verdict.message)
    return auth, raw, verdict.digest


def _replayed() -> ApiError:
    return ApiError(
        409,
        "replayed_request",
        "This signed request was already received. Readings are idempotent: to retry, sign the "
        "request again with a fresh timestamp.",
        [Reason(code="replayed_request", message="The same signature was seen within the timestamp window.")],
    )


async def _remember(conn: Conn, auth: ProviderAuth, digest: bytes) -> None:
    if not await remember_request(conn, auth.id, digest):
        raise _replayed()


#: A body that is not JSON at all is malformed (400) and one over the size limit too large (413);
#: JSON that does not hold readable readings is refused (422).
_PAYLOAD_STATUS = {"malformed_json": 400, "non_finite_number": 400, "too_deeply_nested": 400, "payload_too_large": 413}

_TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)


def _unavailable() -> ApiError:
    return ApiError(
        503, "database_unavailable", "Nothing was stored; try again shortly.", headers={"Retry-After": "1"}
    )


# -- operations ---------------------------------------------------------------------------------


@api.operation(
    "POST",
    "/v1/providers/{provider}/readings",
    summary="A signed batch of odometer readings from a connected-car provider",
    responses={200: IngestResult, 400: None, 401: None, 408: None, 409: None, 413: None, 415: None, 422: None, 503: None},
    tags=["providers"],
    body_limit=HTTP_MAX_BYTES,
    request_content=_BATCH_CONTENT,
    extra_security=SIGNED,
)
async def ingest_readings(request: web.Request, principal: Principal | None, body: None) -> web.Response:
    """Answered only after the batch is committed. Readings that fail a check are quarantined
    (listed by index); a batch with an unreadable reading is refused whole (422) and nothing of it
    is stored. A reading already stored (same provider event id, or same car, instant and
    odometer) counts as a duplicate."""
    auth, raw, digest = await _signed_body(request, HTTP_MAX_BYTES)
    try:
        adapted = parse_http_batch(raw)
    except PayloadError as e:
        p = e.problem
        raise ApiError(
            _PAYLOAD_STATUS.get(p.code, 422), p.code, str(e), [Reason(code=p.code, message=p.message, field=p.field)]
        ) from None
    refused = [(i, a) for i, a in enumerate(adapted) if isinstance(a, Rejected)]
    if refused:
        reasons = [
            Reason(code=p.code, message=p.message, field=p.field)
            for _, a in refused[:MAX_LISTED_REASONS]
            for p in a.problems
        ]
        raise ApiError(
            422,
            "invalid_readings",
            f"{len(refused)} of {len(adapted)} readings cannot be read; nothing was stored. "
            "Correct or leave them out and send the batch again.",
            reasons,
        )
    received_at = datetime.now(UTC)
    items = [BatchItem(auth.id, received_at, a) for a in adapted if not isinstance(a, Rejected)]
    settings = request.app[SETTINGS]
    started = time.perf_counter()
    try:
        async with request.app[POOL].acquire() as conn:
            outcome = await store_batch(
                conn, items, limits=limits_from(settings), before_write=lambda c: _remember(c, auth, digest)
            )
            if random.random() < 0.01:
                await forget_old_requests(conn)
    except _TRANSIENT:
        await request.app[POOL].expire_connections()  # the server went away: all of them are dead
        raise _unavailable() from None
    record("http", items, outcome, {auth.id: auth.name}, time.perf_counter() - started)
    return respond(
        IngestResult(
            accepted=sum(o.status == "accepted" for o in outcome.items),
            duplicates=sum(o.status == "duplicate" for o in outcome.items),
            quarantined=[
                QuarantinedItem(index=i, reasons=list(o.reasons))
                for i, o in enumerate(outcome.items)
                if o.status == "quarantined"
            ],
        )
    )


@api.operation(
    "POST",
    "/v1/providers/{provider}/consent-withdrawals",
    summary="A provider reports members who withdrew consent: stop ingesting, delete unverified data",
    responses={200: WithdrawalResult, 400: None, 401: None, 408: None, 409: None, 413: None, 415: None, 422: None},
    tags=["providers"],
    body_limit=WITHDRAWAL_MAX_BYTES,
    request_content=_WITHDRAWAL_CONTENT,
    extra_security=SIGNED,
)
async def withdraw_consent(request: web.Request, principal: Principal | None, body: None) -> web.Response:
    """Signed like reading batches. Later readings of these cars from this provider are
    quarantined; its quarantined readings of them are deleted. Verified readings stay."""
    auth, raw, digest = await _signed_body(request, WITHDRAWAL_MAX_BYTES)
    try:
        data = decode_json(raw)
    except PayloadError as e:
        p = e.problem
        raise ApiError(_PAYLOAD_STATUS.get(p.code, 400), p.code, str(e), [Reason(code=p.code, message=p.message)]) from None
    vins = data.get("vins") if isinstance(data, dict) else None
    if not isinstance(vins, list) or not all(isinstance(v, str) and 0 < len(v) <= 20 for v in vins):
        raise ApiError(
            422,
            "invalid_request",
            'The body must be {"vins": ["...", ...]}.',
            [Reason(code="wrong_type", message="vins must be an array of VINs", field="vins")],
        )
    if len(vins) > WITHDRAWAL_MAX_VINS:
        raise ApiError(422, "too_many_vins", f"At most {WITHDRAWAL_MAX_VINS} VINs per request.")
    vins = [v.strip().upper() for v in vins]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await _remember(conn, auth, digest)
        result = await withdraw_consents(conn, auth.id, vins)
        for vehicle_id in result.withdrawn_vehicle_ids:
            await write_audit(
                conn,
                actor_role="provider",
                actor_id=auth.name,
                action="consent.withdraw",
                entity="vehicle",
                entity_id=str(vehicle_id),
                before=None,
                after={"provider": auth.name, "deleted_quarantined": result.deleted_quarantined},
                request_id=request.get(REQUEST_ID),
            )
    return respond(
        WithdrawalResult(
            withdrawn=len(result.withdrawn_vehicle_ids),
            deleted_quarantined=result.deleted_quarantined,
            unknown_vins=list(result.unknown_vins),
        )
    )


# -- aggregator webhooks: Smartcar ----------------------------------------------------------------


class WebhookResult(BaseModel):
    event_id: str | None = Field(description="The event's id (the same on every retry of the event)")
    accepted: int
    duplicates: int
    quarantined: list[str] = Field(description="Reasons, when the reading was kept in quarantine")
    ignored: Reason | None = Field(None, description="Why the event was acknowledged without storing anything")


class ChallengeAnswer(BaseModel):
    challenge: str = Field(description="hex HMAC-SHA256 of the challenge under the provider's webhook key")


_SMARTCAR_CONTENT = {
    "application/json": {
        "schema": {
            "type": "object",
            "description": "A Smartcar webhook delivery, exactly as Smartcar sends it: VERIFY (payload "
            "versions 4.0 and 2.0), VEHICLE_STATE, VEHICLE_ERROR (4.0). See docs/providers.md.",
        }
    }
}


def _webhook_unauthenticated(code: str, message: str) -> ApiError:
    return ApiError(
        401,
        "unauthenticated",
        "The delivery is not signed by an active provider's webhook key.",
        [Reason(code=code, message=message)],
        headers={"WWW-Authenticate": 'HMAC-SHA256 header="SC-Signature"'},
    )


async def _smartcar_auth(request: web.Request) -> WebhookAuth:
    name = request.match_info["provider"]
    try:
        box = request.app[SETTINGS].provider_box()
        auth = await webhook_auth_for(request.app[POOL], name, box=box) if len(name) <= 63 else None
    except SealedSecretUnreadable:
        logging.getLogger("carmileage.providers").error(
            "provider %s: its webhook key does not open with this service's provider secret key", name
        )
        raise ApiError(
            503,
            "provider_credentials_unavailable",
            "The service cannot read this provider's credentials now; nothing was stored.",
            headers={"Retry-After": "60"},
        ) from None
    except _TRANSIENT:
        raise _unavailable() from None
    if auth is None:
        raise _webhook_unauthenticated("unknown_provider", "No provider has this name.")
    if not auth.active:
        raise _webhook_unauthenticated("provider_inactive", "This provider is deactivated.")
    if auth.scheme != "smartcar" or auth.key is None:
        raise _webhook_unauthenticated(
            "webhook_not_configured",
            "This provider has no Smartcar webhook key (carmileage providers webhook-key NAME --scheme smartcar).",
        )
    return auth


def _unreadable(e: ItemError | PayloadError) -> ApiError:
    p = e.problem
    return ApiError(
        _PAYLOAD_STATUS.get(p.code, 422),
        p.code,
        str(e) + " Nothing was stored.",
        [Reason(code=p.code, message=p.message, field=p.field)],
    )


@api.operation(
    "POST",
    "/v1/providers/{provider}/webhooks/smartcar",
    summary="A Smartcar webhook delivery, as Smartcar sends it (SC-Signature, VERIFY challenge)",
    responses={200: WebhookResult, 400: None, 401: None, 408: None, 413: None, 415: None, 422: None, 503: None},
    tags=["providers"],
    body_limit=SMARTCAR_MAX_BYTES,
    request_content=_SMARTCAR_CONTENT,
    extra_security=SMARTCAR_SIGNED,
)
async def smartcar_webhook(request: web.Request, principal: Principal | None, body: None) -> web.Response:
    """`SC-Signature` (hex HMAC-SHA256 of the raw body under the provider's Application Management
    Token) is checked before anything is read. A VERIFY event is answered `{"challenge": HMAC}`
    (unsigned, only for a plain-token challenge); a VEHICLE_STATE event's odometer is stored like
    any provider reading and the 200 comes after the commit (a retry of the event is a
    duplicate); an event without an odometer value is acknowledged with the reason, storing
    nothing."""
    auth = await _smartcar_auth(request)
    assert auth.key is not None
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await read_body(request, SMARTCAR_MAX_BYTES)
    sent = request.headers.get(signatures.SMARTCAR_SIGNATURE_HEADER)
    verdict = signatures.verify_smartcar([auth.key], sent, raw)
    if not verdict.ok and not (verdict.code == "signature_missing"):
        raise _webhook_unauthenticated(verdict.code, verdict.message)
    try:
        event = smartcar.parse(decode_json(raw), request.headers.get("SC-Unit-System"))
    except (PayloadError, ItemError) as e:
        if not verdict.ok:
            raise _webhook_unauthenticated(verdict.code, verdict.message) from None
        raise _unreadable(e) from None
    if isinstance(event, smartcar.Challenge):
        # Unsigned challenges are answered only when they are plain tokens: see signatures._CHALLENGE.
        if not verdict.ok and not signatures.challenge_is_token(event.challenge):
            raise _webhook_unauthenticated(verdict.code, verdict.message)
        return respond(ChallengeAnswer(challenge=signatures.smartcar_challenge_answer(auth.key, event.challenge)))
    if not verdict.ok:
        raise _webhook_unauthenticated(verdict.code, verdict.message)
    if isinstance(event, smartcar.Ignored):
        return respond(
            WebhookResult(
                event_id=event.event_id,
                accepted=0,
                duplicates=0,
                quarantined=[],
                ignored=Reason(code=event.reason, message=event.message),
            )
        )
    try:
        vin = event.vin or await linked_vin(request.app[POOL], auth.id, event.vehicle_id)
    except _TRANSIENT:
        raise _unavailable() from None
    if vin is None:
        raise ApiError(
            422,
            "vehicle_not_linked",
            "The event names a Smartcar vehicle id linked to no VIN and carries no VIN signal; nothing was stored.",
            [
                Reason(
                    code="vehicle_not_linked",
                    message=f"Link it: carmileage providers link {auth.name} {event.vehicle_id} VIN "
                    "(or subscribe the webhook to VehicleIdentification.VIN).",
                    field="data.vehicle.id",
                )
            ],
        )
    try:
        item = BatchItem(auth.id, datetime.now(UTC), event.reading(vin))
    except ItemError as e:
        raise _unreadable(e) from None
    started = time.perf_counter()
    try:
        async with request.app[POOL].acquire() as conn:
            outcome = await store_batch(conn, [item], limits=limits_from(request.app[SETTINGS]))
    except _TRANSIENT:
        await request.app[POOL].expire_connections()
        raise _unavailable() from None
    record("http", [item], outcome, {auth.id: auth.name}, time.perf_counter() - started)
    (o,) = outcome.items
    return respond(
        WebhookResult(
            event_id=event.event_id,
            accepted=int(o.status == "accepted"),
            duplicates=int(o.status == "duplicate"),
            quarantined=list(o.reasons) if o.status == "quarantined" else [],
        )
    )


# -- the member's consent -------------------------------------------------------------------------


async def _own_vehicle(request: web.Request, principal: Principal) -> asyncpg.Record:
    not_found = ApiError(404, "vehicle_not_found", "No car is enrolled under this id.")
    v = await get_vehicle(request.app[POOL], path_id(request, missing=not_found))
    if v is None:
        raise not_found
    check_owner(principal, v["owner_id"])
    return v


async def _provider_named(conn: Conn, name: str) -> int:
    found = (await ids_by_name(conn, [name])).get(name)
    if found is None or not found[1]:
        raise ApiError(404, "provider_not_found", "No active provider has this name.")
    return found[0]


@api.operation(
    "POST",
    "/v1/vehicles/{id}/consents",
    summary="Let a connected-car provider send this car's odometer readings",
    body=ConsentIn,
    responses={201: ConsentOut, 404: None, 409: None},
    roles={"citizen", "operator"},
    tags=["providers"],
)
async def create_consent(request: web.Request, principal: Principal, body: ConsentIn) -> web.Response:
    """The member's consent: without it a provider's readings of the car are quarantined. Only
    for a car whose ownership an operator has verified (409 `ownership_not_verified` before)."""
    principal = require_principal(principal)
    v = await _own_vehicle(request, principal)
    if v["status"] == "pending":
        raise ApiError(
            409,
            "ownership_not_verified",
            "An operator checks the car's registration certificate before any provider may send its readings.",
        )
    if v["status"] == "refused":
        raise ApiError(409, "ownership_refused", "The ownership check of this car was refused.")
    if v["status"] != "active":
        raise ApiError(409, "vehicle_retired", "The car left the programme.")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        provider_id = await _provider_named(conn, body.provider)
        granted_at = await grant_consent(conn, provider_id, v["id"])
        await write_audit(
            conn,
            actor_role=principal.role,
            actor_id=principal.subject,
            action="consent.grant",
            entity="vehicle",
            entity_id=str(v["id"]),
            before=None,
            after={"provider": body.provider},
            request_id=request.get(REQUEST_ID),
        )
    return respond(ConsentOut(provider=body.provider, granted_at=granted_at, withdrawn_at=None), 201)


@api.operation(
    "GET",
    "/v1/vehicles/{id}/consents",
    summary="The providers this car's member has consented to",
    responses={200: ConsentList, 404: None},
    roles={"citizen", "operator", "reviewer"},
    tags=["providers"],
)
async def list_consents(request: web.Request, principal: Principal, body: None) -> web.Response:
    v = await _own_vehicle(request, require_principal(principal))
    rows = await consents_of(request.app[POOL], v["id"])
    return respond(ConsentList(consents=[ConsentOut(**dict(r)) for r in rows]))


@api.operation(
    "DELETE",
    "/v1/vehicles/{id}/consents/{provider}",
    summary="Withdraw consent: the provider's readings stop, its unverified data is deleted",
    responses={200: WithdrawalResult, 404: None},
    roles={"citizen", "operator"},
    tags=["providers"],
)
async def delete_consent(request: web.Request, principal: Principal, body: None) -> web.Response:
    principal = require_principal(principal)
    v = await _own_vehicle(request, principal)
    name = request.match_info["provider"]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        provider_id = await _provider_named(conn, name)
        result = await withdraw_consents(conn, provider_id, [v["vin"]])
        await write_audit(
            conn,
            actor_role=principal.role,
            actor_id=principal.subject,
            action="consent.withdraw",
            entity="vehicle",
            entity_id=str(v["id"]),
            before=None,
            after={"provider": name, "deleted_quarantined": result.deleted_quarantined},
            request_id=request.get(REQUEST_ID),
        )
    return respond(
        WithdrawalResult(
            withdrawn=len(result.withdrawn_vehicle_ids),
            deleted_quarantined=result.deleted_quarantined,
            unknown_vins=[],
        )
    )
