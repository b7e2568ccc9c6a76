"""The machine's decision on a citizen's photo submission: verified reading, or a dispute.

A reading is verified automatically only when *every* condition holds (DESIGN.md, Readings):
the plate matches the enrolled car, the odometer read confirms the claimed value with auto-accept
confidence, the capture time lies inside the stage's window, neither photo is a reuse of an
earlier upload (exact or perceptual), and the reading passes the telematics order-free checks.
Anything else goes to a reviewer with *every* reason found, so the reviewer sees the whole case.
Photos the machine cannot decode at all ask the citizen for a retake: there is nothing to review.

Pure: the OCR results, window reasons, reuse matches and check reasons are gathered by the caller.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prorate.identifiers import IdentifierError, plate_key

Outcome = Literal["accepted", "in_review", "retake"]


class ImageEvidence(BaseModel):
    """The intake of one photo: whether it could be used at all, and quality remarks."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    reasons: tuple[str, ...] = ()


class OdometerEvidence(BaseModel):
    model_config = ConfigDict(frozen=True)

    value_km: int | None = None
    auto_accept: bool = False
    #: The reader's verdict on the citizen's claim (None when it gave none).
    claim_confirmed: bool | None = None
    reasons: tuple[str, ...] = ()


class PlateEvidence(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str | None = None
    auto_accept: bool = False
    #: The reader's verdict on the enrolled plate, given to it as the claim.
    claim_confirmed: bool | None = None
    reasons: tuple[str, ...] = ()


class ReuseMatch(BaseModel):
    """One of this submission's photos matches a photo of another submission."""

    model_config = ConfigDict(frozen=True)

    photo: Literal["dashboard", "plate"]
    kind: Literal["exact", "similar"]
    other_submission_id: int
    distance: int = Field(0, ge=0, le=64)


class PhotoEvidence(BaseModel):
    model_config = ConfigDict(frozen=True)

    claimed_km: int = Field(ge=0)
    enrolled_plate: str
    dashboard: ImageEvidence
    plate_image: ImageEvidence
    odometer: OdometerEvidence
    plate: PlateEvidence
    same_image: bool = False
    window_reasons: tuple[str, ...] = ()
    reuse: tuple[ReuseMatch, ...] = ()
    #: Reasons from the telematics order-free checks against the car's verified readings.
    check_reasons: tuple[str, ...] = ()


class PhotoDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    #: Empty exactly when accepted.
    reasons: tuple[str, ...]
    #: Remarks that did not decide anything alone (e.g. photo quality), shown to reviewers.
    remarks: tuple[str, ...] = ()
    #: The verified odometer value in metres, when accepted.
    value_m: int | None = None


def _same_plate(text: str | None, enrolled: str) -> bool:
    if not text:
        return False
    try:
        return plate_key(text) == plate_key(enrolled)
    except IdentifierError:
        return False


def plate_reasons(plate: PlateEvidence, enrolled_plate: str) -> list[str]:
    """Empty when the plate photo shows the enrolled car with auto-accept confidence."""
    matches = _same_plate(plate.text, enrolled_plate)
    if plate.auto_accept and plate.text and not matches:
        return ["plate_mismatch"]
    confirmed = plate.claim_confirmed is True or (
        plate.claim_confirmed is None and plate.auto_accept and matches
    )
    if confirmed:
        return []
    return ["plate_unread"] if not plate.text else ["plate_not_confirmed"]


def odometer_reasons(odo: OdometerEvidence, claimed_km: int) -> list[str]:
    """Empty when the odometer read confirms the claimed value with auto-accept confidence."""
    if odo.auto_accept and odo.value_km is not None and odo.value_km != claimed_km:
        return ["odometer_differs_from_claim"]
    confirmed = odo.claim_confirmed is True or (
        odo.claim_confirmed is None and odo.auto_accept and odo.value_km == claimed_km
    )
    if confirmed:
        return []
    return ["odometer_unread"] if odo.value_km is None else ["odometer_not_confirmed"]


def reuse_reasons(reuse: tuple[ReuseMatch, ...]) -> list[str]:
    kinds = {m.kind for m in reuse}
    out = []
    if "exact" in kinds:
        out.append("reused_photo")
    if "similar" in kinds:
        out.append("similar_to_earlier_photo")
    return out


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def decide(e: PhotoEvidence) -> PhotoDecision:
    """Accept only when nothing at all is in doubt; otherwise name everything that is."""
    unusable = [f"dashboard_{r}" for r in e.dashboard.reasons if not e.dashboard.ok] + [
        f"plate_photo_{r}" for r in e.plate_image.reasons if not e.plate_image.ok
    ]
    if not e.dashboard.ok and not unusable:
        unusable.append("dashboard_unusable")
    if not e.plate_image.ok and not any(r.startswith("plate_photo_") for r in unusable):
        unusable.append("plate_photo_unusable")
    if unusable:
        return PhotoDecision(outcome="retake", reasons=_dedupe(unusable))
    reasons: list[str] = []
    reasons += plate_reasons(e.plate, e.enrolled_plate)
    reasons += odometer_reasons(e.odometer, e.claimed_km)
    if e.same_image:
        reasons.append("same_photo_for_dashboard_and_plate")
    reasons += e.window_reasons
    reasons += reuse_reasons(e.reuse)
    reasons += e.check_reasons
    if not reasons:
        return PhotoDecision(outcome="accepted", reasons=(), value_m=e.claimed_km * 1000)
    remarks = [f"dashboard_{r}" for r in e.dashboard.reasons] + [
        f"plate_photo_{r}" for r in e.plate_image.reasons
    ]
    remarks += [f"odometer_{r}" for r in e.odometer.reasons] + [f"plate_{r}" for r in e.plate.reasons]
    return PhotoDecision(outcome="in_review", reasons=_dedupe(reasons), remarks=_dedupe(remarks))


def decide_for_stage(e: PhotoEvidence, *, stage_verified: bool) -> PhotoDecision:
    """`decide`, for a stage that may already have its verified reading (a start or end photo
    sent again, or verified by a reviewer meanwhile): a second reading for the stage is never
    automatic but goes to a reviewer with the reason; photos to retake still ask for a retake."""
    decision = decide(e)
    if not stage_verified or decision.outcome == "retake":
        return decision
    return PhotoDecision(
        outcome="in_review", reasons=(*decision.reasons, "stage_already_verified"), remarks=decision.remarks
    )
