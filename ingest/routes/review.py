"""The reviewer dispute queue: list, claim (with a lease), renew, release, resolve; and photos.

Doubtful photo readings and the rollback/reset cases raised by telematics share one queue.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ingest.api import ApiError, Reason, path_id, respond
from ingest.auth import Principal
from ingest.ingestion import limits_from
from ingest.pages.messages import reason_text
from ingest.review_actions import (
    DisputeMissing,
    ResolutionInvalid,
    ReviewRefused,
    claim_dispute,
    claim_next_dispute,
    release_dispute,
    renew_dispute,
    resolve_dispute,
)
from ingest.routes import api
from ingest.routes.photos import (
    ReasonOut,
    SubmissionOut,
    submission_out,
    without_personal_metadata,
)
from ingest.state import BLOBS, POOL, REQUEST_ID, SETTINGS
from storage.blobs import BlobError
from storage.corrections import verified_readings_of
from storage.disputes import REJECTION_REASONS, QueueFilter, count_open, get_dispute, list_disputes
from storage.jobs import job_of_submission
from storage.photos import get_photo, get_submission

RejectionReason = Literal[
    "unreadable", "trip_instead_of_odo", "other_car", "reused_photo", "out_of_window", "suspected_tampering"
]
assert set(RejectionReason.__args__) == set(REJECTION_REASONS)  # type: ignore[attr-defined]


class DisputeOut(BaseModel):
    id: int
    kind: Literal["photo", "rollback", "telematics"]
    status: Literal["open", "resolved"]
    reasons: list[ReasonOut]
    district: str | None
    vehicle_id: int | None
    submission_id: int | None
    quarantined_reading_id: int | None
    created_at: datetime
    age_s: int
    claimed_by: str | None
    lease_until: datetime | None
    held: bool
    resolution: Literal["accepted", "corrected", "rejected"] | None
    resolution_reason: str | None
    resolved_value_m: int | None
    resolved_by: str | None
    resolved_at: datetime | None
    details: dict[str, Any] | None


class DisputeList(BaseModel):
    disputes: list[DisputeOut]
    open_total: int
    next_after_id: int | None


class ReadingPoint(BaseModel):
    id: int
    odometer_m: int
    recorded_at: datetime
    source: str


class PhotoView(BaseModel):
    sha256: str
    url: str
    content_type: str | None
    width: int | None
    height: int | None
    captured_at: datetime | None


class DisputeDetail(BaseModel):
    dispute: DisputeOut
    submission: SubmissionOut | None
    enrolled_plate: str | None
    photos: dict[str, PhotoView]
    #: The readers' results (value, confidence, candidates, box, reasons) per photo.
    ocr: dict[str, Any]
    #: The machine's decision record: evidence, window, reuse and check reasons.
    decision: dict[str, Any] | None
    #: The car's verified readings, oldest first (the most recent 200).
    readings: list[ReadingPoint]


class ClaimIn(BaseModel):
    """Optional filters for the next dispute."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=80)
    district: str | None = Field(None, max_length=40)
    kind: Literal["photo", "rollback", "telematics"] | None = None
    min_age_s: int | None = Field(None, ge=0)
    max_age_s: int | None = Field(None, ge=0)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["accept", "correct", "reject"]
    #: For 'correct': the true total distance in km.
    value_km: int | None = Field(None, ge=0, le=9_999_999)
    #: For 'reject'.
    reason: RejectionReason | None = None
    note: str | None = Field(None, max_length=1000)


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


def dispute_out(d: asyncpg.Record) -> DisputeOut:
    keys = d.keys()
    return DisputeOut(
        id=d["id"],
        kind=d["kind"],
        status=d["status"],
        reasons=[ReasonOut(code=c, message=reason_text(c), message_ko=reason_text(c, "ko")) for c in d["reasons"]],
        district=d["district"],
        vehicle_id=d["vehicle_id"],
        submission_id=d["submission_id"],
        quarantined_reading_id=d["quarantined_reading_id"],
        created_at=d["created_at"],
        age_s=d["age_s"] if "age_s" in keys else 0,
        claimed_by=d["claimed_by"],
        lease_until=d["lease_until"],
        held=bool(d["held"]) if "held" in keys else d["claimed_by"] is not None,
        resolution=d["resolution"],
        resolution_reason=d["resolution_reason"],
        resolved_value_m=d["resolved_value_m"],
        resolved_by=d["resolved_by"],
        resolved_at=d["resolved_at"],
        details=d["details"],
    )


def refusal_status(e: ReviewRefused) -> int:
    """The HTTP status of a refused review action (the pages answer with it too)."""
    if isinstance(e, DisputeMissing):
        return 404
    if isinstance(e, ResolutionInvalid):
        return 422
    return 409


def refusal_error(e: ReviewRefused) -> ApiError:
    return ApiError(
        refusal_status(e),
        e.code,
        e.message,
        [Reason(code=r, message=reason_text(r), message_ko=reason_text(r, "ko")) for r in e.reasons],
    )


@asynccontextmanager
async def _refusals_as_errors() -> AsyncIterator[None]:
    """A refused review action answers as an API error with its status, code and reasons."""
    try:
        yield
    except ReviewRefused as e:
        raise refusal_error(e) from None


_INT = re.compile(r"^\d{1,12}$")


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    if not _INT.match(raw):
        raise ApiError(422, "invalid_query", f"{name} must be a whole number.")
    return int(raw)


def queue_filter(request: web.Request) -> QueueFilter:
    kind = request.query.get("kind") or None
    if kind not in (None, "photo", "rollback", "telematics"):
        raise ApiError(422, "invalid_query", "kind is photo, rollback or telematics.")
    return QueueFilter(
        reason=(request.query.get("reason") or None),
        district=(request.query.get("district") or None),
        kind=kind,
        min_age_s=_int_query(request, "min_age_s"),
        max_age_s=_int_query(request, "max_age_s"),
    )


async def dispute_detail(pool: asyncpg.Pool, d: asyncpg.Record, photo_url: str) -> DisputeDetail:
    """Everything the dispute page shows. `photo_url` is a format string taking the sha256."""
    sub = await get_submission(pool, d["submission_id"]) if d["submission_id"] else None
    photos: dict[str, PhotoView] = {}
    ocr: dict[str, Any] = {}
    if sub is not None:
        for role in ("dashboard", "plate"):
            sha = sub[f"{role}_sha256"]
            p = await get_photo(pool, sha)
            photos[role] = PhotoView(
                sha256=sha,
                url=photo_url.format(sha),
                content_type=p["content_type"] if p else None,
                width=p["width"] if p else None,
                height=p["height"] if p else None,
                captured_at=p["captured_at"] if p else None,
            )
        job = await job_of_submission(pool, sub["id"])
        result = (job["result"] if job is not None else None) or {}
        for role in ("dashboard", "plate"):
            r = result.get(role) or {}
            ocr[role] = {"read": r.get("read"), "intake": r.get("intake")}
    readings: list[ReadingPoint] = []
    if d["vehicle_id"] is not None:
        readings = [ReadingPoint(**dict(r)) for r in await verified_readings_of(pool, d["vehicle_id"])]
    return DisputeDetail(
        dispute=dispute_out(d),
        submission=submission_out(sub) if sub is not None else None,
        enrolled_plate=sub["plate"] if sub is not None else None,
        photos=photos,
        ocr=ocr,
        decision=sub["decision"] if sub is not None else None,
        readings=readings,
    )


# -- operations -----------------------------------------------------------------------------

REVIEW_ROLES = {"reviewer"}


@api.operation(
    "GET",
    "/v1/disputes",
    summary="The dispute queue, oldest first (filters: reason, district, kind, min_age_s, max_age_s, status)",
    responses={200: DisputeList},
    roles={"reviewer", "operator"},
    tags=["review"],
)
async def queue(request: web.Request, principal: Principal, body: None) -> web.Response:
    f = queue_filter(request)
    status = request.query.get("status", "open")
    if status not in ("open", "resolved"):
        raise ApiError(422, "invalid_query", "status is open or resolved.")
    limit = min(_int_query(request, "limit") or 50, 500)
    pool = request.app[POOL]
    rows = await list_disputes(pool, f, status=status, limit=limit, after_id=_int_query(request, "after_id"))
    return respond(
        DisputeList(
            disputes=[dispute_out(r) for r in rows],
            open_total=await count_open(pool, f),
            next_after_id=rows[-1]["id"] if len(rows) == limit else None,
        )
    )


@api.operation(
    "POST",
    "/v1/disputes/claim",
    summary="Claim the next dispute (the one you hold, else the oldest free one) with a lease",
    body=ClaimIn,
    responses={200: DisputeOut, 204: None},
    roles=REVIEW_ROLES,
    tags=["review"],
)
async def claim_next_op(request: web.Request, principal: Principal, body: ClaimIn) -> web.Response:
    """The lease lasts `review_lease_s` (10 minutes by default); renew it while working."""
    f = QueueFilter(body.reason, body.district, body.kind, body.min_age_s, body.max_age_s)
    async with request.app[POOL].acquire() as conn:
        d = await claim_next_dispute(
            conn, principal.subject, request.app[SETTINGS].review_lease_s, f, request.get(REQUEST_ID)
        )
    if d is None:
        return web.Response(status=204)
    return respond(dispute_out(d))


@api.operation(
    "GET",
    "/v1/disputes/{id}",
    summary="A dispute with its photos, OCR results, decision record and the car's readings",
    responses={200: DisputeDetail, 404: None},
    roles={"reviewer", "operator"},
    tags=["review"],
)
async def show_dispute(request: web.Request, principal: Principal, body: None) -> web.Response:
    pool = request.app[POOL]
    d = await get_dispute(pool, path_id(request))
    if d is None:
        raise ApiError(404, "dispute_not_found", "No dispute has this id.")
    return respond(await dispute_detail(pool, d, "/v1/photos/{}"))


@api.operation(
    "POST",
    "/v1/disputes/{id}/claim",
    summary="Claim one named dispute (409 when another reviewer holds it)",
    body=Empty,
    responses={200: DisputeOut, 404: None, 409: None},
    roles=REVIEW_ROLES,
    tags=["review"],
)
async def claim_op(request: web.Request, principal: Principal, body: Empty) -> web.Response:
    async with request.app[POOL].acquire() as conn, _refusals_as_errors():
        d = await claim_dispute(
            conn, path_id(request), principal.subject, request.app[SETTINGS].review_lease_s, request.get(REQUEST_ID)
        )
    return respond(dispute_out(d))


@api.operation(
    "POST",
    "/v1/disputes/{id}/renew",
    summary="Extend your lease on a dispute",
    body=Empty,
    responses={200: DisputeOut, 404: None, 409: None},
    roles=REVIEW_ROLES,
    tags=["review"],
)
async def renew_op(request: web.Request, principal: Principal, body: Empty) -> web.Response:
    async with request.app[POOL].acquire() as conn, _refusals_as_errors():
        d = await renew_dispute(conn, path_id(request), principal.subject, request.app[SETTINGS].review_lease_s)
    return respond(dispute_out(d))


@api.operation(
    "POST",
    "/v1/disputes/{id}/release",
    summary="Give a dispute back to the queue",
    body=Empty,
    responses={200: DisputeOut, 404: None, 409: None},
    roles=REVIEW_ROLES,
    tags=["review"],
)
async def release_op(request: web.Request, principal: Principal, body: Empty) -> web.Response:
    async with request.app[POOL].acquire() as conn, _refusals_as_errors():
        d = await release_dispute(conn, path_id(request), principal.subject, request.get(REQUEST_ID))
    return respond(dispute_out(d))


@api.operation(
    "POST",
    "/v1/disputes/{id}/resolve",
    summary="Accept the OCR value, correct it, or reject with a reason",
    body=ResolveIn,
    responses={200: DisputeOut, 404: None, 409: None, 422: None},
    roles=REVIEW_ROLES,
    tags=["review"],
)
async def resolve_op(request: web.Request, principal: Principal, body: ResolveIn) -> web.Response:
    """You must hold the dispute. Accepting and correcting store a verified reading (checked like
    any other) and keep the photo with its true value as labelled data for the OCR."""
    async with request.app[POOL].acquire() as conn, _refusals_as_errors():
        await resolve_dispute(
            conn,
            path_id(request),
            principal.subject,
            action=body.action,
            value_km=body.value_km,
            reason=body.reason,
            note=body.note,
            request_id=request.get(REQUEST_ID),
            limits=limits_from(request.app[SETTINGS]),
        )
    d = await get_dispute(request.app[POOL], path_id(request))
    assert d is not None
    return respond(dispute_out(d))


_SHA = re.compile(r"^[0-9a-f]{64}$")


async def photo_response(request: web.Request, sha256: str) -> web.Response:
    """The photo's bytes; HEIC is converted to JPEG so every browser can show it."""
    if not _SHA.match(sha256):
        raise ApiError(404, "photo_not_found", "No photo has this hash.")
    row = await get_photo(request.app[POOL], sha256)
    if row is None:
        raise ApiError(404, "photo_not_found", "No photo has this hash.")
    try:
        data = await request.app[BLOBS].get(sha256)
    except BlobError as e:
        raise ApiError(500, "photo_unavailable", str(e)) from None
    ctype = row["content_type"]
    if ctype == "image/heic":
        data = await asyncio.to_thread(_heic_to_jpeg, data)
        ctype = "image/jpeg"
    else:  # photos stored before uploads were stripped may still say where they were taken
        clean = await asyncio.to_thread(without_personal_metadata, data)
        if clean is None:
            raise ApiError(404, "photo_unreadable", "The photo cannot be read.")
        data = clean
    return web.Response(
        body=data,
        content_type=ctype,
        headers={
            "Cache-Control": "private, max-age=3600, immutable",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


def _heic_to_jpeg(data: bytes) -> bytes:
    import pillow_heif
    from PIL import Image, ImageOps

    pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        ImageOps.exif_transpose(im).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


@api.operation(
    "GET",
    "/v1/photos/{sha256}",
    summary="A stored photo (HEIC served as JPEG)",
    responses={200: None, 404: None},
    roles={"reviewer", "operator"},
    tags=["review"],
)
async def photo(request: web.Request, principal: Principal, body: None) -> web.Response:
    return await photo_response(request, request.match_info["sha256"])
