"""What a reviewer does to a dispute — claim, renew, release, resolve — each in one transaction
with its audit entry (reviewer, time, before and after). Shared by the API and the pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg

from ingest.api import ApiError, Reason
from ingest.pages.messages import reason_text
from storage.audit import write_audit
from storage.db import Conn
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
    release,
    renew,
)
from storage.jobs import job_of_submission
from storage.photo_readings import check_reasons_for, store_photo_reading
from storage.photos import finish_submission, lock_submission
from storage.readings import NewReading, store_verified_reading
from telematics.checks import DEFAULT_LIMITS, Limits

Action = Literal["accept", "correct", "reject"]
RESOLUTION_OF = {"accept": "accepted", "correct": "corrected", "reject": "rejected"}


def _snapshot(d: asyncpg.Record) -> dict[str, Any]:
    return {
        "status": d["status"],
        "claimed_by": d["claimed_by"],
        "lease_until": d["lease_until"].isoformat() if d["lease_until"] else None,
        "reasons": list(d["reasons"]),
    }


def _translate(e: Exception) -> ApiError:
    if isinstance(e, DisputeNotFound):
        return ApiError(404, "dispute_not_found", "No dispute has this id.")
    if isinstance(e, AlreadyResolved):
        return ApiError(409, "dispute_resolved", "This dispute has already been resolved.")
    return ApiError(409, "dispute_held_by_another", "Another reviewer holds this dispute; claim the next one.")


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
        try:
            d = await claim(conn, dispute_id, reviewer, lease_s)
        except (DisputeNotFound, AlreadyResolved, NotHolder) as e:
            raise _translate(e) from None
        await _audit(conn, reviewer, "dispute.claim", d, None, _snapshot(d), request_id)
    return d


async def renew_dispute(conn: Conn, dispute_id: int, reviewer: str, lease_s: int) -> asyncpg.Record:
    """Not audited: it only extends a lease the reviewer already holds."""
    try:
        return await renew(conn, dispute_id, reviewer, lease_s)
    except (DisputeNotFound, AlreadyResolved, NotHolder) as e:
        raise _translate(e) from None


async def release_dispute(
    conn: Conn, dispute_id: int, reviewer: str, request_id: str | None
) -> asyncpg.Record:
    async with conn.transaction():
        try:
            d = await release(conn, dispute_id, reviewer)
        except (DisputeNotFound, AlreadyResolved, NotHolder) as e:
            raise _translate(e) from None
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


def _refused(status: int, code: str, message: str, reasons: list[str] = ()) -> ApiError:  # type: ignore[assignment]
    return ApiError(
        status,
        code,
        message,
        [Reason(code=r, message=reason_text(r), message_ko=reason_text(r, "ko")) for r in reasons],
    )


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
    if action == "reject" and reason not in REJECTION_REASONS:
        raise ApiError(422, "rejection_reason_required", f"Reject with one of: {', '.join(REJECTION_REASONS)}.")
    if action == "correct" and value_km is None:
        raise ApiError(422, "value_required", "A correction needs the true value in km.")
    async with conn.transaction():
        try:
            d = await lock_for_resolution(conn, dispute_id, reviewer)
        except (DisputeNotFound, AlreadyResolved, NotHolder) as e:
            raise _translate(e) from None
        before = _snapshot(d)
        if d["kind"] == "photo":
            value_m, effects = await _resolve_photo(conn, d, reviewer, action, value_km, reason, limits)
        else:
            value_m, effects = await _resolve_reading(conn, d, reviewer, action, value_km, limits)
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


async def _resolve_photo(
    conn: Conn,
    d: asyncpg.Record,
    reviewer: str,
    action: Action,
    value_km: int | None,
    reason: str | None,
    limits: Limits,
) -> tuple[int | None, dict[str, Any]]:
    s = await lock_submission(conn, d["submission_id"])
    assert s is not None
    await conn.execute("select 1 from participations where id = $1 for update", s["participation_id"])
    job = await job_of_submission(conn, s["id"])
    result = (job["result"] if job is not None else None) or {}
    ocr_km = ((result.get("dashboard") or {}).get("read") or {}).get("value_km")
    ocr_plate = ((result.get("plate") or {}).get("read") or {}).get("text")
    if action == "reject":
        assert reason is not None
        status = "retake" if reason in RETAKE_REASONS else "rejected"
        await finish_submission(
            conn, s["id"], status=status, reasons=list(s["reasons"]), decision=None, rejection_reason=reason
        )
        return None, {"submission_id": s["id"], "submission_status": status}
    if action == "accept":
        if ocr_km is None:
            raise ApiError(422, "nothing_to_accept", "The OCR read no value: correct it with the true value instead.")
        value_km = int(ocr_km)
    assert value_km is not None
    if value_km < 0 or value_km > 9_999_999:
        raise ApiError(422, "value_out_of_range", "The value must lie between 0 and 9,999,999 km.")
    if (s["stage"] == "start" and s["start_reading_id"] is not None) or (
        s["stage"] == "end" and s["end_reading_id"] is not None
    ):
        raise _refused(409, "stage_already_verified", "This stage already has a verified reading.", ["stage_already_verified"])
    decision = s["decision"] or {}
    recorded_at = datetime.fromisoformat(decision["recorded_at"]) if decision.get("recorded_at") else s["uploaded_at"]
    captured_at = datetime.fromisoformat(decision["captured_at"]) if decision.get("captured_at") else None
    value_m = value_km * 1000
    conflicts = await check_reasons_for(conn, s["vehicle_id"], value_m, recorded_at)
    if conflicts:
        raise _refused(
            409, "reading_conflicts", "The value conflicts with the car's verified readings; correct or reject.", conflicts
        )
    now = await conn.fetchval("select now()")
    stored = await store_photo_reading(
        conn,
        vehicle_id=s["vehicle_id"],
        odometer_m=value_m,
        recorded_at=recorded_at,
        source="reviewer",
        captured_at=captured_at,
        uploaded_at=s["uploaded_at"],
        approved_at=now,
        submission_id=s["id"],
        stage=s["stage"],
        participation_id=s["participation_id"],
        limits=limits,
    )
    if stored.reading_id is None:
        raise _refused(409, "reading_conflicts", "The checks refused the reading.", list(stored.reasons))
    await finish_submission(conn, s["id"], status="accepted", reasons=[], decision=None, reading_id=stored.reading_id)
    source = "accepted" if action == "accept" else "corrected"
    await add_label(
        conn,
        photo_sha256=s["dashboard_sha256"],
        kind="odometer",
        true_value=str(value_km),
        ocr_value=None if ocr_km is None else str(ocr_km),
        source=source,
        dispute_id=d["id"],
        labelled_by=reviewer,
    )
    # Accepting or correcting confirms that the plate photo shows the enrolled car.
    await add_label(
        conn,
        photo_sha256=s["plate_sha256"],
        kind="plate",
        true_value=s["plate"],
        ocr_value=ocr_plate,
        source="accepted" if ocr_plate and ocr_plate == s["plate"] else "corrected",
        dispute_id=d["id"],
        labelled_by=reviewer,
    )
    return value_m, {"submission_id": s["id"], "submission_status": "accepted", "reading_id": stored.reading_id}


async def _resolve_reading(
    conn: Conn, d: asyncpg.Record, reviewer: str, action: Action, value_km: int | None, limits: Limits
) -> tuple[int | None, dict[str, Any]]:
    """Rollback and telematics cases, about a quarantined reading:

    - accept: the reading is genuine (e.g. after an odometer replacement): it is verified, the
      reviewer overruling the checks it failed (no other);
    - correct: the true value at the same moment is verified as a reviewer reading, checked;
    - reject: the reading stays in quarantine, resolved.
    """
    if d["quarantined_reading_id"] is None:
        raise ApiError(409, "nothing_to_resolve", "This case names no quarantined reading.")
    q = await conn.fetchrow("select * from quarantined_readings where id = $1 for update", d["quarantined_reading_id"])
    if q is None or q["vehicle_id"] is None or q["recorded_at"] is None or q["odometer_m"] is None:
        raise ApiError(409, "nothing_to_resolve", "The quarantined reading has no car, time or value to verify.")
    effects: dict[str, Any] = {"quarantined_reading_id": q["id"]}
    value_m: int | None = None
    if action == "correct":
        assert value_km is not None
        value_m = value_km * 1000
        stored = await store_photo_reading(
            conn,
            vehicle_id=q["vehicle_id"],
            odometer_m=value_m,
            recorded_at=q["recorded_at"],
            source="reviewer",
            captured_at=None,
            uploaded_at=None,
            approved_at=await conn.fetchval("select now()"),
            submission_id=None,
            stage=None,
            participation_id=None,
            limits=limits,
        )
        if stored.reading_id is None:
            raise _refused(409, "reading_conflicts", "The value conflicts with the car's verified readings.", list(stored.reasons))
        effects["reading_id"] = stored.reading_id
    elif action == "accept":
        value_m = q["odometer_m"]
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
                approved_at=await conn.fetchval("select now()"),
            ),
            quarantine=False,
            ignore=frozenset(q["reasons"]),
            limits=limits,
        )
        if result.reading_id is None:
            raise _refused(409, "reading_conflicts", "The reading now fails other checks.", list(result.reasons))
        effects["reading_id"] = result.reading_id
        effects["overruled"] = list(q["reasons"])
    await conn.execute("update quarantined_readings set review_status = 'resolved' where id = $1", q["id"])
    return value_m, effects


async def open_next_rollback(conn: Conn, vehicle_id: int) -> int | None:
    """Telematics keeps one open rollback case per car; once it is resolved, the car's next
    decrease waiting in quarantine becomes the next case."""
    return await conn.fetchval(
        """insert into disputes (kind, vehicle_id, quarantined_reading_id, district, reasons, details)
           select 'rollback', q.vehicle_id, q.id, v.district, q.reasons,
                  jsonb_build_object('reading', jsonb_build_object('odometer_m', q.odometer_m,
                                                                   'recorded_at', q.recorded_at))
           from quarantined_readings q join vehicles v on v.id = q.vehicle_id
           where q.vehicle_id = $1 and q.review_status = 'open'
             and not exists (select 1 from disputes where quarantined_reading_id = q.id)
             and not exists (select 1 from disputes where vehicle_id = $1 and kind = 'rollback' and status = 'open')
           order by q.recorded_at, q.id
           limit 1
           returning id""",
        vehicle_id,
    )
