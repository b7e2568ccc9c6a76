"""From OCR results to an outcome, in one transaction: verified reading, dispute, or retake.

Three steps: `gather_evidence` collects what the pure decision (`prorate.photo_decision`) needs —
the registration window of the participation's rule set, reuse matches across every earlier
upload, the telematics order-free checks against the car's verified readings; the decision is
made on that alone; `apply_decision` writes the outcome with its audit entry. The submission row
is locked first, so a job that runs twice (a lease that ran out while the first run was still
deciding) decides once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from ingest.ingestion import limits_from
from ingest.settings import Settings
from prorate.identifiers import IdentifierError, plate_key
from prorate.photo_decision import (
    ImageEvidence,
    OdometerEvidence,
    PhotoDecision,
    PhotoEvidence,
    PlateEvidence,
    ReuseMatch,
    decide_for_stage,
)
from prorate.photo_window import ParticipationDates, capture_moment, window_reasons
from prorate.rules import RuleSetError, rule_set_named
from storage.audit import write_audit
from storage.db import Conn
from storage.disputes import open_dispute
from storage.jobs import OcrJob, complete_job, give_up_job
from storage.photo_readings import StoredReading, check_reasons_for, reading_date, store_photo_reading
from storage.photos import finish_submission, lock_submission, reuse_matches, update_photo_facts
from storage.vehicles import lock_participation

log = logging.getLogger("carmileage.photos")

SYSTEM_ACTOR = ("system", "ocr-worker")


def _intake(result: dict[str, Any]) -> ImageEvidence:
    intake = result.get("intake") or {}
    return ImageEvidence(ok=bool(intake.get("ok")), reasons=tuple(intake.get("reasons") or ()))


def _captured_at(result: dict[str, Any]) -> datetime | None:
    intake = result.get("intake") or {}
    raw = intake.get("captured_at")
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return capture_moment(moment, bool(intake.get("captured_at_has_offset")))


def _claim_reasons(reasons: list[str], read_equals_claim: bool) -> tuple[str, ...]:
    """The reader's reasons as the reviewer should read them: a read equal to the claim is never
    a `claim_mismatch` (readers before plate-3 said so when they only lacked certainty); it is
    `claim_unconfirmed`."""
    if read_equals_claim:
        reasons = ["claim_unconfirmed" if r == "claim_mismatch" else r for r in reasons]
    return tuple(dict.fromkeys(reasons))


def odometer_evidence(read: dict[str, Any], claimed_km: int | None = None) -> OdometerEvidence:
    value = read.get("value_km")
    return OdometerEvidence(
        value_km=value,
        auto_accept=bool(read.get("auto_accept")),
        claim_confirmed=read.get("claim_confirmed"),
        reasons=_claim_reasons(list(read.get("reasons") or ()), value is not None and value == claimed_km),
    )


def _same_plate(text: str | None, enrolled: str | None) -> bool:
    if not text or not enrolled:
        return False
    try:
        return plate_key(text) == plate_key(enrolled)
    except IdentifierError:
        return False


def plate_evidence(read: dict[str, Any], enrolled_plate: str | None = None) -> PlateEvidence:
    text = read.get("text")
    return PlateEvidence(
        text=text,
        auto_accept=bool(read.get("auto_accept")),
        claim_confirmed=read.get("claim_confirmed"),
        reasons=_claim_reasons(list(read.get("reasons") or ()), _same_plate(text, enrolled_plate)),
    )


async def participation_dates(conn: Conn, s: asyncpg.Record) -> ParticipationDates:
    start_on = None
    if s["start_reading_id"] is not None:
        start_on = await reading_date(conn, s["start_reading_id"])
    return ParticipationDates(
        program=s["program"], enrolled_on=s["enrolled_on"], season_year=s["season_year"], start_on=start_on
    )


def _stage_taken(s: asyncpg.Record) -> bool:
    return (s["stage"] == "start" and s["start_reading_id"] is not None) or (
        s["stage"] == "end" and s["end_reading_id"] is not None
    )


@dataclass(frozen=True)
class Gathered:
    """What the decision is made on: the evidence, and the moments the reading would carry."""

    evidence: PhotoEvidence
    #: The dashboard photo's capture time (EXIF), when it has one.
    captured_at: datetime | None
    #: When the reading counts as taken: the capture time, else the upload.
    recorded_at: datetime


async def decide_submission(
    pool: asyncpg.Pool, settings: Settings, job: OcrJob, dashboard: dict[str, Any], plate: dict[str, Any]
) -> str:
    """Decide a submission from its OCR results; returns the outcome written."""
    async with pool.acquire() as conn, conn.transaction():
        s = await lock_submission(conn, job.submission_id)
        assert s is not None
        if s["status"] != "processing":  # decided by an earlier run of the same job
            await complete_job(conn, job.id, None)
            return str(s["status"])
        # Serialise decisions per participation: start/end pointers and stage checks.
        await lock_participation(conn, s["participation_id"])
        await _record_photo_facts(conn, s, dashboard, plate)
        gathered = await gather_evidence(conn, settings, s, dashboard, plate)
        decision = decide_for_stage(gathered.evidence, stage_verified=_stage_taken(s))
        return await apply_decision(conn, settings, job, s, gathered, decision, (dashboard, plate))


async def _record_photo_facts(
    conn: Conn, s: asyncpg.Record, dashboard: dict[str, Any], plate: dict[str, Any]
) -> None:
    """Keep what the intake learned about each photo (perceptual hash, size, capture time): the
    reuse look-ups of later uploads compare against it."""
    for role, result in (("dashboard", dashboard), ("plate", plate)):
        intake = result.get("intake") or {}
        await update_photo_facts(
            conn,
            s[f"{role}_sha256"],
            phash=intake.get("phash"),
            width=intake.get("width"),
            height=intake.get("height"),
            captured_at=_captured_at(result),
        )


async def gather_evidence(
    conn: Conn, settings: Settings, s: asyncpg.Record, dashboard: dict[str, Any], plate: dict[str, Any]
) -> Gathered:
    """Everything the pure decision needs that only the database and the rule tables know: the
    registration window, reuse of earlier uploads, and the checks against the car's readings."""
    captured = _captured_at(dashboard)
    uploaded: datetime = s["uploaded_at"]
    recorded_at = captured if captured is not None else uploaded
    reuse = await reuse_matches(
        conn,
        s["id"],
        {
            "dashboard": (s["dashboard_sha256"], (dashboard.get("intake") or {}).get("phash")),
            "plate": (s["plate_sha256"], (plate.get("intake") or {}).get("phash")),
        },
        settings.photo_reuse_max_distance,
    )
    checks = await check_reasons_for(conn, s["vehicle_id"], s["claimed_km"] * 1000, recorded_at, limits_from(settings))
    evidence = PhotoEvidence(
        claimed_km=s["claimed_km"],
        enrolled_plate=s["plate"],
        dashboard=_intake(dashboard),
        plate_image=_intake(plate),
        odometer=odometer_evidence(dashboard.get("read") or {}, s["claimed_km"]),
        plate=plate_evidence(plate.get("read") or {}, s["plate"]),
        same_image=s["dashboard_sha256"] == s["plate_sha256"],
        window_reasons=tuple(await _window_reasons(conn, settings, s, captured)),
        reuse=tuple(ReuseMatch.model_validate(m) for m in reuse),
        check_reasons=tuple(checks),
    )
    return Gathered(evidence, captured, recorded_at)


async def _window_reasons(conn: Conn, settings: Settings, s: asyncpg.Record, captured: datetime | None) -> list[str]:
    """The registration window of the participation's rule set (an unknown rule set is a reason
    of its own)."""
    try:
        rules = rule_set_named(s["rule_set"])
        return window_reasons(
            s["stage"],
            captured,
            s["uploaded_at"],
            await participation_dates(conn, s),
            rules,
            timedelta(seconds=settings.photo_clock_skew_s),
        )
    except RuleSetError as e:
        return [e.code]


def decision_record(decision: PhotoDecision, gathered: Gathered, rule_set: str) -> dict[str, Any]:
    """The decision as the submission keeps it, for the citizen's status and the reviewer's page."""
    return {
        "outcome": decision.outcome,
        "reasons": list(decision.reasons),
        "remarks": list(decision.remarks),
        "value_m": decision.value_m,
        "rule_set": rule_set,
        "captured_at": gathered.captured_at.isoformat() if gathered.captured_at else None,
        "recorded_at": gathered.recorded_at.isoformat(),
        "evidence": gathered.evidence.model_dump(mode="json"),
    }


async def apply_decision(
    conn: Conn,
    settings: Settings,
    job: OcrJob,
    s: asyncpg.Record,
    gathered: Gathered,
    decision: PhotoDecision,
    results: tuple[dict[str, Any], dict[str, Any]],
) -> str:
    """Write the outcome with the submission's decision record, the job's result and the audit
    entry: the verified reading, or a dispute for a reviewer, or a retake. An accepted reading
    that the checks refuse at the last moment (a reading arrived meanwhile) goes to a reviewer."""
    dashboard, plate = results
    record = decision_record(decision, gathered, s["rule_set"])
    outcome: str = decision.outcome
    reading_id = None
    if decision.outcome == "accepted":
        stored = await _store_accepted(conn, settings, s, gathered, decision)
        reading_id = stored.reading_id
        if reading_id is None:
            outcome = "in_review"
            record["reasons"] = list(stored.reasons)
            record["outcome"] = outcome
    if outcome == "in_review":
        await open_dispute(
            conn,
            kind="photo",
            reasons=list(record["reasons"]),
            vehicle_id=s["vehicle_id"],
            district=s["district"],
            submission_id=s["id"],
            details=_dispute_details(s, dashboard, plate),
        )
    await finish_submission(
        conn, s["id"], status=outcome, reasons=list(record["reasons"]), decision=record, reading_id=reading_id
    )
    await complete_job(conn, job.id, {"dashboard": dashboard, "plate": plate})
    await write_audit(
        conn,
        actor_role=SYSTEM_ACTOR[0],
        actor_id=SYSTEM_ACTOR[1],
        action="submission.decide",
        entity="photo_submission",
        entity_id=str(s["id"]),
        before={"status": "processing"},
        after={"status": outcome, "reasons": record["reasons"], "reading_id": reading_id},
        request_id=s["request_id"],
    )
    return outcome


async def _store_accepted(
    conn: Conn, settings: Settings, s: asyncpg.Record, gathered: Gathered, decision: PhotoDecision
) -> StoredReading:
    """The accepted value as the stage's verified photo reading, checked again under the car's lock."""
    assert decision.value_m is not None
    return await store_photo_reading(
        conn,
        vehicle_id=s["vehicle_id"],
        odometer_m=decision.value_m,
        recorded_at=gathered.recorded_at,
        source="photo",
        captured_at=gathered.captured_at,
        uploaded_at=s["uploaded_at"],
        approved_at=None,
        submission_id=s["id"],
        stage=s["stage"],
        participation_id=s["participation_id"],
        limits=limits_from(settings),
    )


def _dispute_details(s: asyncpg.Record, dashboard: dict[str, Any], plate: dict[str, Any]) -> dict[str, Any]:
    """A summary for the queue list; the dispute page reads the full OCR results."""
    return {
        "stage": s["stage"],
        "claimed_km": s["claimed_km"],
        "odometer_value_km": (dashboard.get("read") or {}).get("value_km"),
        "plate_text": (plate.get("read") or {}).get("text"),
        "enrolled_plate": s["plate"],
    }


async def send_to_review_failed(pool: asyncpg.Pool, job: OcrJob, error: str) -> None:
    """The photos could not be read after every attempt: a person looks at them instead."""
    async with pool.acquire() as conn, conn.transaction():
        s = await lock_submission(conn, job.submission_id)
        assert s is not None
        await give_up_job(conn, job.id, error)
        if s["status"] != "processing":
            return
        reasons = ["ocr_failed"]
        await open_dispute(
            conn,
            kind="photo",
            reasons=reasons,
            vehicle_id=s["vehicle_id"],
            district=s["district"],
            submission_id=s["id"],
            details={"stage": s["stage"], "claimed_km": s["claimed_km"], "enrolled_plate": s["plate"], "error": error[:500]},
        )
        await finish_submission(
            conn, s["id"], status="in_review", reasons=reasons, decision={"outcome": "in_review", "reasons": reasons, "error": error[:500]}
        )
        await write_audit(
            conn,
            actor_role=SYSTEM_ACTOR[0],
            actor_id=SYSTEM_ACTOR[1],
            action="submission.ocr_failed",
            entity="photo_submission",
            entity_id=str(s["id"]),
            before={"status": "processing"},
            after={"status": "in_review", "reasons": reasons, "attempts": job.attempts},
            request_id=s["request_id"],
        )
    log.warning("submission %d sent to review after %d OCR attempts: %s", job.submission_id, job.attempts, error)


