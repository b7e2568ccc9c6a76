"""From OCR results to an outcome, in one transaction: verified reading, dispute, or retake.

Gathers what the pure decision (`prorate.photo_decision`) needs — the registration window of the
participation's rule set, reuse matches across every earlier upload, the telematics order-free
checks against the car's verified readings — and writes the outcome with its audit entry. The
submission row is locked first, so a job that runs twice (a lease that ran out while the first
run was still deciding) decides once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from ingest.ingestion import limits_from
from ingest.settings import Settings
from prorate.photo_decision import (
    ImageEvidence,
    OdometerEvidence,
    PhotoDecision,
    PhotoEvidence,
    PlateEvidence,
    ReuseMatch,
    decide,
)
from prorate.photo_window import ParticipationDates, capture_moment, window_reasons
from prorate.rules import RuleSetError, rule_set_named
from storage.audit import write_audit
from storage.db import Conn
from storage.disputes import open_dispute
from storage.jobs import OcrJob, complete_job, give_up_job
from storage.photo_readings import check_reasons_for, reading_date, store_photo_reading
from storage.photos import finish_submission, lock_submission, reuse_matches, update_photo_facts

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


def odometer_evidence(read: dict[str, Any]) -> OdometerEvidence:
    return OdometerEvidence(
        value_km=read.get("value_km"),
        auto_accept=bool(read.get("auto_accept")),
        claim_confirmed=read.get("claim_confirmed"),
        reasons=tuple(read.get("reasons") or ()),
    )


def plate_evidence(read: dict[str, Any]) -> PlateEvidence:
    return PlateEvidence(
        text=read.get("text"),
        auto_accept=bool(read.get("auto_accept")),
        claim_confirmed=read.get("claim_confirmed"),
        reasons=tuple(read.get("reasons") or ()),
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
        await conn.execute("select 1 from participations where id = $1 for update", s["participation_id"])
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
        captured = _captured_at(dashboard)
        uploaded: datetime = s["uploaded_at"]
        recorded_at = captured if captured is not None else uploaded
        try:
            rules = rule_set_named(s["rule_set"])
            window = window_reasons(
                s["stage"],
                captured,
                uploaded,
                await participation_dates(conn, s),
                rules,
                timedelta(seconds=settings.photo_clock_skew_s),
            )
        except RuleSetError as e:
            window = [e.code]
        reuse = await reuse_matches(
            conn,
            s["id"],
            {
                "dashboard": (s["dashboard_sha256"], (dashboard.get("intake") or {}).get("phash")),
                "plate": (s["plate_sha256"], (plate.get("intake") or {}).get("phash")),
            },
            settings.photo_reuse_max_distance,
        )
        odometer_m = s["claimed_km"] * 1000
        checks = await check_reasons_for(conn, s["vehicle_id"], odometer_m, recorded_at, limits_from(settings))
        evidence = PhotoEvidence(
            claimed_km=s["claimed_km"],
            enrolled_plate=s["plate"],
            dashboard=_intake(dashboard),
            plate_image=_intake(plate),
            odometer=odometer_evidence(dashboard.get("read") or {}),
            plate=plate_evidence(plate.get("read") or {}),
            same_image=s["dashboard_sha256"] == s["plate_sha256"],
            window_reasons=tuple(window),
            reuse=tuple(ReuseMatch.model_validate(m) for m in reuse),
            check_reasons=tuple(checks),
        )
        decision = decide(evidence)
        if _stage_taken(s) and decision.outcome != "retake":
            decision = PhotoDecision(
                outcome="in_review",
                reasons=(*decision.reasons, "stage_already_verified"),
                remarks=decision.remarks,
            )
        record = {
            "outcome": decision.outcome,
            "reasons": list(decision.reasons),
            "remarks": list(decision.remarks),
            "value_m": decision.value_m,
            "rule_set": s["rule_set"],
            "captured_at": captured.isoformat() if captured else None,
            "recorded_at": recorded_at.isoformat(),
            "evidence": evidence.model_dump(mode="json"),
        }
        reading_id = None
        outcome: str = decision.outcome
        if decision.outcome == "accepted":
            assert decision.value_m is not None
            stored = await store_photo_reading(
                conn,
                vehicle_id=s["vehicle_id"],
                odometer_m=decision.value_m,
                recorded_at=recorded_at,
                source="photo",
                captured_at=captured,
                uploaded_at=uploaded,
                approved_at=None,
                submission_id=s["id"],
                stage=s["stage"],
                participation_id=s["participation_id"],
                limits=limits_from(settings),
            )
            if stored.reading_id is not None:
                reading_id = stored.reading_id
            else:  # the checks refused it at the last moment (a reading arrived meanwhile)
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


