"""What a reviewer does to a dispute — claim, renew, release, resolve — each in one transaction
with its audit entry (reviewer, time, before and after). Shared by the API and the pages.

An action that cannot be done raises a `ReviewRefused` (not found, a conflict, an invalid
resolution) with a stable code and the reasons found; the API answers it as an error and the
pages show it, each in its own words.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from storage.audit import write_audit
from storage.db import Conn, database_now
from storage.disputes import (
    REJECTION_REASONS,
    RETAKE_REASONS,
    AlreadyResolved,
    DisputeNotFound,
    NotHolder,
    QueueFilter,
    add_label,
    claim,
    claim_next,
    lock_for_resolution,
    mark_resolved,
    open_next_rollback,
    release,
    renew,
)
from storage.jobs import job_of_submission
from storage.photo_readings import check_reasons_for, store_photo_reading
from storage.photos import finish_submission, lock_submission
from storage.quarantine import lock_quarantined, mark_quarantine_resolved
from storage.readings import NewReading, store_verified_reading
from storage.vehicles import lock_participation
from telematics.checks import DEFAULT_LIMITS, Limits

Action = Literal["accept", "correct", "reject"]
RESOLUTION_OF = {"accept": "accepted", "correct": "corrected", "reject": "rejected"}
#: The largest odometer value a reviewer may verify, km (seven digits, as the citizen's claim).
MAX_VALUE_KM = 9_999_999


# -- refusals ---------------------------------------------------------------------------------


class ReviewRefused(Exception):
    """A review action that cannot be done as asked: `code` names why (stable, machine-readable),
    `reasons` are the reason codes behind it (e.g. the checks a value failed)."""

    def __init__(self, code: str, message: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reasons = tuple(reasons)


class DisputeMissing(ReviewRefused):
    """No dispute has this id."""


class ReviewConflict(ReviewRefused):
    """The dispute, or the car it is about, does not allow the action now: resolved already,
    held by another reviewer, its stage verified meanwhile, or the value conflicts."""


class ResolutionInvalid(ReviewRefused):
    """The resolution itself is incomplete or out of range (whatever the dispute's state)."""


@contextmanager
def _queue_refusals() -> Iterator[None]:
    """The queue's own refusals (storage.disputes) as review refusals."""
    try:
        yield
    except DisputeNotFound:
        raise DisputeMissing("dispute_not_found", "No dispute has this id.") from None
    except AlreadyResolved:
        raise ReviewConflict("dispute_resolved", "This dispute has already been resolved.") from None
    except NotHolder:
        raise ReviewConflict(
            "dispute_held_by_another", "Another reviewer holds this dispute; claim the next one."
        ) from None


# -- claim, renew, release --------------------------------------------------------------------


def _snapshot(d: asyncpg.Record) -> dict[str, Any]:
    return {
        "status": d["status"],
        "claimed_by": d["claimed_by"],
        "lease_until": d["lease_until"].isoformat() if d["lease_until"] else None,
        "reasons": list(d["reasons"]),
    }


async def claim_next_dispute(
    conn: Conn, reviewer: str, lease_s: int, f: QueueFilter, request_id: str | None
) -> asyncpg.Record | None:
    async with conn.transaction():
        d = await claim_next(conn, reviewer, lease_s, f)
        if d is not None:
            await _audit(conn, reviewer, "dispute.claim", d, None, _snapshot(d), request_id)
    return d


async def claim_dispute(
    conn: Conn, dispute_id: int, reviewer: str, lease_s: int, request_id: str | None
) -> asyncpg.Record:
    async with conn.transaction():
        with _queue_refusals():
            d = await claim(conn, dispute_id, reviewer, lease_s)
        await _audit(conn, reviewer, "dispute.claim", d, None, _snapshot(d), request_id)
    return d


async def renew_dispute(conn: Conn, dispute_id: int, reviewer: str, lease_s: int) -> asyncpg.Record:
    """Not audited: it only extends a lease the reviewer already holds."""
    with _queue_refusals():
        return await renew(conn, dispute_id, reviewer, lease_s)


async def release_dispute(
    conn: Conn, dispute_id: int, reviewer: str, request_id: str | None
) -> asyncpg.Record:
    async with conn.transaction():
        with _queue_refusals():
            d = await release(conn, dispute_id, reviewer)
        await _audit(conn, reviewer, "dispute.release", d, {"claimed_by": reviewer}, _snapshot(d), request_id)
    return d


async def _audit(
    conn: Conn,
    reviewer: str,
    action: str,
    d: asyncpg.Record,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    request_id: str | None,
) -> None:
    await write_audit(
        conn,
        actor_role="reviewer",
        actor_id=reviewer,
        action=action,
        entity="dispute",
        entity_id=str(d["id"]),
        before=before,
        after=after,
        request_id=request_id,
    )


# -- resolve ----------------------------------------------------------------------------------


async def resolve_dispute(
    conn: Conn,
    dispute_id: int,
    reviewer: str,
    *,
    action: Action,
    value_km: int | None,
    reason: str | None,
    note: str | None,
    request_id: str | None,
    limits: Limits = DEFAULT_LIMITS,
) -> asyncpg.Record:
    """Accept the OCR value, correct it, or reject with a reason; exactly once per dispute."""
    _check_resolution(action, value_km, reason)
    async with conn.transaction():
        with _queue_refusals():
            d = await lock_for_resolution(conn, dispute_id, reviewer)
        before = _snapshot(d)
        if d["kind"] == "photo":
            value_m, effects = await _resolve_photo(conn, d, reviewer, action, value_km, reason, limits)
        else:
            value_m, effects = await _resolve_reading(conn, d, action, value_km, limits)
        resolved = await mark_resolved(
            conn,
            dispute_id,
            reviewer=reviewer,
            resolution=RESOLUTION_OF[action],
            reason=reason if action == "reject" else None,
            value_m=value_m,
            note=note,
        )
        after = {
            "status": "resolved",
            "resolution": resolved["resolution"],
            "reason": resolved["resolution_reason"],
            "value_m": value_m,
            "note": note,
            **effects,
        }
        await _audit(conn, reviewer, "dispute.resolve", resolved, before, after, request_id)
        if d["kind"] == "rollback" and d["vehicle_id"] is not None:
            await open_next_rollback(conn, d["vehicle_id"])
    return resolved


def _check_resolution(action: Action, value_km: int | None, reason: str | None) -> None:
    """What a resolution needs whatever the case: a reason to reject, a value to correct."""
    if action == "reject" and reason not in REJECTION_REASONS:
        raise ResolutionInvalid(
            "rejection_reason_required", f"Reject with one of: {', '.join(REJECTION_REASONS)}."
        )
    if action == "correct" and value_km is None:
        raise ResolutionInvalid("value_required", "A correction needs the true value in km.")


@dataclass(frozen=True)
class _OcrReads:
    """What the readers made of the submission's photos (None where they read nothing)."""

    value_km: int | None
    plate: str | None

    @staticmethod
    def of(job: asyncpg.Record | None) -> _OcrReads:
        result = (job["result"] if job is not None else None) or {}
        km = ((result.get("dashboard") or {}).get("read") or {}).get("value_km")
        plate = ((result.get("plate") or {}).get("read") or {}).get("text")
        return _OcrReads(None if km is None else int(km), plate)


async def _resolve_photo(
    conn: Conn,
    d: asyncpg.Record,
    reviewer: str,
    action: Action,
    value_km: int | None,
    reason: str | None,
    limits: Limits,
) -> tuple[int | None, dict[str, Any]]:
    """A photo case: reject the submission (or ask for a retake), or verify the accepted or
    corrected value as a reviewer reading and keep both photos as labelled data."""
    s = await lock_submission(conn, d["submission_id"])
    assert s is not None
    await lock_participation(conn, s["participation_id"])
    ocr = _OcrReads.of(await job_of_submission(conn, s["id"]))
    if action == "reject":
        assert reason is not None
        status = await _reject_submission(conn, s, reason)
        return None, {"submission_id": s["id"], "submission_status": status}
    true_km = _value_to_verify(action, value_km, ocr)
    reading_id = await _verify_submission(conn, s, true_km * 1000, limits)
    await finish_submission(conn, s["id"], status="accepted", reasons=[], decision=None, reading_id=reading_id)
    await _label_photos(conn, s, d["id"], reviewer, action, true_km, ocr)
    return true_km * 1000, {"submission_id": s["id"], "submission_status": "accepted", "reading_id": reading_id}


async def _reject_submission(conn: Conn, s: asyncpg.Record, reason: str) -> str:
    """A rejection the citizen can put right with a new photo asks for a retake."""
    status = "retake" if reason in RETAKE_REASONS else "rejected"
    await finish_submission(
        conn, s["id"], status=status, reasons=list(s["reasons"]), decision=None, rejection_reason=reason
    )
    return status


def _value_to_verify(action: Action, value_km: int | None, ocr: _OcrReads) -> int:
    """Accepting takes the OCR's value; correcting, the reviewer's."""
    if action == "accept":
        if ocr.value_km is None:
            raise ResolutionInvalid(
                "nothing_to_accept", "The OCR read no value: correct it with the true value instead."
            )
        value_km = ocr.value_km
    assert value_km is not None
    if value_km < 0 or value_km > MAX_VALUE_KM:
        raise ResolutionInvalid("value_out_of_range", "The value must lie between 0 and 9,999,999 km.")
    return value_km


async def _verify_submission(conn: Conn, s: asyncpg.Record, value_m: int, limits: Limits) -> int:
    """Store the value as the stage's verified reviewer reading, checked like any other reading
    at the moment the machine's decision recorded (the capture time, else the upload)."""
    if (s["stage"] == "start" and s["start_reading_id"] is not None) or (
        s["stage"] == "end" and s["end_reading_id"] is not None
    ):
        raise ReviewConflict(
            "stage_already_verified", "This stage already has a verified reading.", ["stage_already_verified"]
        )
    decision = s["decision"] or {}
    recorded_at = datetime.fromisoformat(decision["recorded_at"]) if decision.get("recorded_at") else s["uploaded_at"]
    captured_at = datetime.fromisoformat(decision["captured_at"]) if decision.get("captured_at") else None
    conflicts = await check_reasons_for(conn, s["vehicle_id"], value_m, recorded_at)
    if conflicts:
        raise ReviewConflict(
            "reading_conflicts", "The value conflicts with the car's verified readings; correct or reject.", conflicts
        )
    stored = await store_photo_reading(
        conn,
        vehicle_id=s["vehicle_id"],
        odometer_m=value_m,
        recorded_at=recorded_at,
        source="reviewer",
        captured_at=captured_at,
        uploaded_at=s["uploaded_at"],
        approved_at=await database_now(conn),
        submission_id=s["id"],
        stage=s["stage"],
        participation_id=s["participation_id"],
        limits=limits,
    )
    if stored.reading_id is None:
        raise ReviewConflict("reading_conflicts", "The checks refused the reading.", stored.reasons)
    return stored.reading_id


async def _label_photos(
    conn: Conn, s: asyncpg.Record, dispute_id: int, reviewer: str, action: Action, true_km: int, ocr: _OcrReads
) -> None:
    """Keep what the reviewer established about both photos, for improving the OCR later:
    accepting or correcting also confirms that the plate photo shows the enrolled car."""
    await add_label(
        conn,
        photo_sha256=s["dashboard_sha256"],
        kind="odometer",
        true_value=str(true_km),
        ocr_value=None if ocr.value_km is None else str(ocr.value_km),
        source="accepted" if action == "accept" else "corrected",
        dispute_id=dispute_id,
        labelled_by=reviewer,
    )
    await add_label(
        conn,
        photo_sha256=s["plate_sha256"],
        kind="plate",
        true_value=s["plate"],
        ocr_value=ocr.plate,
        source="accepted" if ocr.plate and ocr.plate == s["plate"] else "corrected",
        dispute_id=dispute_id,
        labelled_by=reviewer,
    )


async def _resolve_reading(
    conn: Conn, d: asyncpg.Record, action: Action, value_km: int | None, limits: Limits
) -> tuple[int | None, dict[str, Any]]:
    """Rollback and telematics cases, about a quarantined reading:

    - accept: the reading is genuine (e.g. after an odometer replacement): it is verified, the
      reviewer overruling the checks it failed (no other);
    - correct: the true value at the same moment is verified as a reviewer reading, checked;
    - reject: the reading stays in quarantine, resolved.
    """
    if d["quarantined_reading_id"] is None:
        raise ReviewConflict("nothing_to_resolve", "This case names no quarantined reading.")
    q = await lock_quarantined(conn, d["quarantined_reading_id"])
    if q is None or q["vehicle_id"] is None or q["recorded_at"] is None or q["odometer_m"] is None:
        raise ReviewConflict("nothing_to_resolve", "The quarantined reading has no car, time or value to verify.")
    effects: dict[str, Any] = {"quarantined_reading_id": q["id"]}
    value_m: int | None = None
    if action == "correct":
        assert value_km is not None
        value_m = value_km * 1000
        effects["reading_id"] = await _verify_correction(conn, q, value_m, limits)
    elif action == "accept":
        value_m = q["odometer_m"]
        effects["reading_id"] = await _verify_overruled(conn, q, limits)
        effects["overruled"] = list(q["reasons"])
    await mark_quarantine_resolved(conn, q["id"])
    return value_m, effects


async def _verify_correction(conn: Conn, q: asyncpg.Record, value_m: int, limits: Limits) -> int:
    """The true value at the quarantined reading's moment, as a checked reviewer reading."""
    stored = await store_photo_reading(
        conn,
        vehicle_id=q["vehicle_id"],
        odometer_m=value_m,
        recorded_at=q["recorded_at"],
        source="reviewer",
        captured_at=None,
        uploaded_at=None,
        approved_at=await database_now(conn),
        submission_id=None,
        stage=None,
        participation_id=None,
        limits=limits,
    )
    if stored.reading_id is None:
        raise ReviewConflict(
            "reading_conflicts", "The value conflicts with the car's verified readings.", stored.reasons
        )
    return stored.reading_id


async def _verify_overruled(conn: Conn, q: asyncpg.Record, limits: Limits) -> int:
    """The quarantined reading itself, verified with the checks it failed overruled (no other)."""
    result = await store_verified_reading(
        conn,
        NewReading(
            vehicle_id=q["vehicle_id"],
            odometer_m=q["odometer_m"],
            recorded_at=q["recorded_at"],
            source=q["source"],
            provider_id=q["provider_id"],
            provider_event_id=q["provider_event_id"],
            original_value=q["original_value"],
            original_unit=q["original_unit"],
            received_at=q["received_at"],
            approved_at=await database_now(conn),
        ),
        quarantine=False,
        ignore=frozenset(q["reasons"]),
        limits=limits,
    )
    if result.reading_id is None:
        raise ReviewConflict("reading_conflicts", "The reading now fails other checks.", result.reasons)
    reading_id: int = result.reading_id
    return reading_id
