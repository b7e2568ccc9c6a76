"""What a reviewer is told about an unconfirmed claim (issue 16): a plate read exactly as the
enrolled plate, but not surely enough, was sent to review as `claim_mismatch` + `low_confidence`:
the reviewer was told the opposite of what the OCR saw."""

from __future__ import annotations

from ingest.photo_decisions import odometer_evidence, plate_evidence
from prorate.photo_decision import ImageEvidence, PhotoEvidence, decide


def test_a_plate_read_as_enrolled_is_never_a_mismatch() -> None:
    # as an older reader reported it
    read = {"text": "06로2396", "confidence": 0.67, "auto_accept": False, "claim_confirmed": False,
            "reasons": ["low_confidence", "claim_mismatch"]}
    ev = plate_evidence(read, "06로2396")
    assert "claim_mismatch" not in ev.reasons and "claim_unconfirmed" in ev.reasons
    assert "low_confidence" in ev.reasons
    # the enrolled plate may carry the region the photo does not show, or the other way round
    assert "claim_mismatch" not in plate_evidence({**read, "text": "서울06로2396"}, "06로2396").reasons
    # a different plate read is a mismatch
    assert "claim_mismatch" in plate_evidence({**read, "text": "06로2398"}, "06로2396").reasons
    assert "claim_mismatch" in plate_evidence(read, "not a plate").reasons


def test_an_odometer_read_as_claimed_is_never_a_mismatch() -> None:
    read = {"value_km": 253179, "auto_accept": False, "claim_confirmed": False,
            "reasons": ["low_confidence", "claim_mismatch"]}
    assert odometer_evidence(read, 253179).reasons == ("low_confidence", "claim_unconfirmed")
    assert "claim_mismatch" in odometer_evidence(read, 253170).reasons
    assert "claim_mismatch" in odometer_evidence({**read, "value_km": None}, 253179).reasons


def test_the_reviewer_sees_unconfirmed_not_mismatch() -> None:
    ok = ImageEvidence(ok=True)
    plate_read = {"text": "06로2396", "auto_accept": False, "claim_confirmed": False,
                  "reasons": ["low_confidence", "claim_mismatch"]}
    odo_read = {"value_km": 123456, "auto_accept": True, "claim_confirmed": True, "reasons": []}
    d = decide(
        PhotoEvidence(
            claimed_km=123456,
            enrolled_plate="06로2396",
            dashboard=ok,
            plate_image=ok,
            odometer=odometer_evidence(odo_read, 123456),
            plate=plate_evidence(plate_read, "06로2396"),
        )
    )
    assert d.outcome == "in_review"
    assert d.reasons == ("plate_not_confirmed",)
    assert "plate_claim_unconfirmed" in d.remarks and "plate_claim_mismatch" not in d.remarks
