"""The photo decision and its registration window: pure domain rules (examples and properties)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from prorate.calendar import SEOUL
from prorate.photo_decision import (
    ImageEvidence,
    OdometerEvidence,
    PhotoEvidence,
    PlateEvidence,
    ReuseMatch,
    decide,
    decide_for_stage,
)
from prorate.photo_window import ParticipationDates, capture_moment, end_window, window_reasons
from prorate.rules import rule_set_named

RULES = rule_set_named("seoul-2022")
OK = ImageEvidence(ok=True)


def evidence(**over: object) -> PhotoEvidence:
    base: dict[str, object] = {
        "claimed_km": 123456,
        "enrolled_plate": "12가3456",
        "dashboard": OK,
        "plate_image": OK,
        "odometer": OdometerEvidence(value_km=123456, auto_accept=True, claim_confirmed=True),
        "plate": PlateEvidence(text="12가3456", auto_accept=True, claim_confirmed=True),
    }
    base.update(over)
    return PhotoEvidence.model_validate(base)


def test_everything_confirmed_is_accepted_in_metres() -> None:
    d = decide(evidence())
    assert d.outcome == "accepted"
    assert d.reasons == ()
    assert d.value_m == 123_456_000


def test_a_regional_plate_matches_its_enrolment_without_region() -> None:
    d = decide(evidence(plate=PlateEvidence(text="서울12가3456", auto_accept=True, claim_confirmed=None)))
    assert d.outcome == "accepted"


def test_every_reason_is_carried_into_the_dispute() -> None:
    d = decide(
        evidence(
            odometer=OdometerEvidence(value_km=123450, auto_accept=True, claim_confirmed=False),
            plate=PlateEvidence(text="34나5678", auto_accept=True, claim_confirmed=False),
            window_reasons=("captured_too_long_before_upload",),
            reuse=(ReuseMatch(photo="dashboard", kind="exact", other_submission_id=7),),
            check_reasons=("odometer_decrease",),
            same_image=True,
        )
    )
    assert d.outcome == "in_review"
    assert d.value_m is None
    assert set(d.reasons) == {
        "plate_mismatch",
        "odometer_differs_from_claim",
        "captured_too_long_before_upload",
        "reused_photo",
        "odometer_decrease",
        "same_photo_for_dashboard_and_plate",
    }


def test_a_confident_read_that_disagrees_with_the_claim_is_never_accepted() -> None:
    # Even if the reader said the claim was supported, a confident different value is a conflict.
    d = decide(evidence(odometer=OdometerEvidence(value_km=123457, auto_accept=True, claim_confirmed=True)))
    assert d.reasons == ("odometer_differs_from_claim",)


def test_unread_and_unconfirmed_are_told_apart() -> None:
    unread = decide(evidence(odometer=OdometerEvidence(), plate=PlateEvidence()))
    assert set(unread.reasons) == {"odometer_unread", "plate_unread"}
    weak = decide(
        evidence(
            odometer=OdometerEvidence(value_km=123456, auto_accept=False, claim_confirmed=False),
            plate=PlateEvidence(text="12가3456", auto_accept=False, claim_confirmed=False),
        )
    )
    assert set(weak.reasons) == {"odometer_not_confirmed", "plate_not_confirmed"}


def test_similar_photo_is_its_own_reason() -> None:
    d = decide(evidence(reuse=(ReuseMatch(photo="plate", kind="similar", other_submission_id=3, distance=4),)))
    assert d.reasons == ("similar_to_earlier_photo",)


def test_undecodable_photo_asks_for_a_retake() -> None:
    d = decide(evidence(dashboard=ImageEvidence(ok=False, reasons=("truncated",))))
    assert d.outcome == "retake"
    assert d.reasons == ("dashboard_truncated",)


def test_quality_remarks_do_not_block_a_confident_read_but_show_in_review() -> None:
    blurry = ImageEvidence(ok=True, reasons=("retake_blurry",))
    assert decide(evidence(dashboard=blurry)).outcome == "accepted"
    d = decide(evidence(dashboard=blurry, plate=PlateEvidence()))
    assert d.outcome == "in_review"
    assert "dashboard_retake_blurry" in d.remarks


def test_a_stage_verified_already_sends_even_a_perfect_photo_to_a_reviewer() -> None:
    d = decide_for_stage(evidence(), stage_verified=True)
    assert (d.outcome, d.reasons, d.value_m) == ("in_review", ("stage_already_verified",), None)
    doubtful = decide_for_stage(evidence(plate=PlateEvidence()), stage_verified=True)
    assert doubtful.reasons == ("plate_unread", "stage_already_verified")


def test_a_stage_verified_already_still_asks_for_a_retake_of_an_unusable_photo() -> None:
    d = decide_for_stage(evidence(dashboard=ImageEvidence(ok=False, reasons=("truncated",))), stage_verified=True)
    assert (d.outcome, d.reasons) == ("retake", ("dashboard_truncated",))


@given(plate_ok=st.booleans(), odo_ok=st.booleans(), usable=st.booleans())
def test_an_open_stage_is_decided_as_any_photo(plate_ok: bool, odo_ok: bool, usable: bool) -> None:
    e = evidence(
        dashboard=ImageEvidence(ok=usable, reasons=() if usable else ("truncated",)),
        odometer=OdometerEvidence(value_km=123456, auto_accept=odo_ok, claim_confirmed=odo_ok),
        plate=PlateEvidence(text="12가3456", auto_accept=plate_ok, claim_confirmed=plate_ok),
    )
    assert decide_for_stage(e, stage_verified=False) == decide(e)


flags = st.booleans()


@given(
    plate_ok=flags,
    odo_ok=flags,
    window_ok=flags,
    reused=flags,
    checks_ok=flags,
    claimed=st.integers(min_value=0, max_value=9_999_999),
)
def test_accepted_exactly_when_every_condition_holds(
    plate_ok: bool, odo_ok: bool, window_ok: bool, reused: bool, checks_ok: bool, claimed: int
) -> None:
    e = evidence(
        claimed_km=claimed,
        odometer=OdometerEvidence(value_km=claimed, auto_accept=odo_ok, claim_confirmed=odo_ok),
        plate=PlateEvidence(text="12가3456", auto_accept=plate_ok, claim_confirmed=plate_ok),
        window_reasons=() if window_ok else ("end_window_not_open",),
        reuse=(ReuseMatch(photo="plate", kind="exact", other_submission_id=1),) if reused else (),
        check_reasons=() if checks_ok else ("implausible_speed",),
    )
    d = decide(e)
    all_ok = plate_ok and odo_ok and window_ok and not reused and checks_ok
    assert (d.outcome == "accepted") == all_ok
    assert (d.reasons == ()) == all_ok
    assert (d.value_m == claimed * 1000) == all_ok
    assert len(d.reasons) == len(set(d.reasons))


# -- the window -------------------------------------------------------------------------------

ANNUAL = ParticipationDates(program="annual", enrolled_on=date(2022, 3, 1))


def seoul(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=SEOUL)


def test_capture_age_counts_seoul_calendar_days() -> None:
    up = seoul(2022, 4, 30, 23)
    assert window_reasons("start", seoul(2022, 3, 31, 0), up, ANNUAL, RULES) == []
    assert window_reasons("start", seoul(2022, 3, 30, 23), up, ANNUAL, RULES) == [
        "captured_too_long_before_upload"
    ]


def test_future_capture_and_missing_capture() -> None:
    up = seoul(2022, 4, 1)
    assert window_reasons("start", up + timedelta(minutes=4), up, ANNUAL, RULES) == []
    assert window_reasons("start", up + timedelta(hours=1), up, ANNUAL, RULES) == ["captured_in_future"]
    assert window_reasons("start", None, up, ANNUAL, RULES) == ["capture_time_missing"]


def test_annual_end_window_opens_a_year_after_the_start_reading() -> None:
    p = ParticipationDates(program="annual", enrolled_on=date(2022, 3, 1), start_on=date(2022, 3, 5))
    assert end_window(p, RULES) == (date(2023, 3, 5), None)
    assert window_reasons("end", seoul(2023, 3, 4), seoul(2023, 3, 6), p, RULES) == ["end_window_not_open"]
    assert window_reasons("end", seoul(2023, 3, 5), seoul(2023, 3, 6), p, RULES) == []
    # Before the start reading is verified the enrolment date stands in for it.
    assert end_window(ANNUAL, RULES) == (date(2023, 3, 1), None)


def test_season_end_window_is_april_until_the_end_data_deadline() -> None:
    p = ParticipationDates(program="season", enrolled_on=date(2022, 11, 20), season_year=2022)
    assert end_window(p, RULES) == (date(2023, 4, 1), date(2023, 4, 30))
    assert window_reasons("end", seoul(2023, 3, 31), seoul(2023, 4, 2), p, RULES) == ["end_window_not_open"]
    assert window_reasons("end", seoul(2023, 4, 28), seoul(2023, 4, 30, 23), p, RULES) == []
    assert window_reasons("end", seoul(2023, 4, 28), seoul(2023, 5, 1, 0), p, RULES) == ["end_window_closed"]


def test_mid_and_end_photos_before_the_start_are_out_of_window() -> None:
    p = ParticipationDates(program="annual", enrolled_on=date(2022, 3, 1), start_on=date(2022, 3, 10))
    assert window_reasons("mid", seoul(2022, 3, 9), seoul(2022, 3, 20), p, RULES) == ["captured_before_start"]
    assert window_reasons("mid", seoul(2022, 3, 10), seoul(2022, 3, 20), p, RULES) == []


def test_exif_time_without_offset_is_seoul_wall_clock() -> None:
    naive = datetime(2022, 3, 1, 23, 30)
    assert capture_moment(naive, False) == datetime(2022, 3, 1, 23, 30, tzinfo=SEOUL)
    utc = datetime(2022, 3, 1, 23, 30, tzinfo=UTC)
    assert capture_moment(utc, True) == utc
    assert capture_moment(None, False) is None


@given(
    age=st.integers(min_value=0, max_value=400),
    upload=st.datetimes(min_value=datetime(2022, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(SEOUL)),
)
def test_capture_age_rule_is_exactly_the_rule_table_figure(age: int, upload: datetime) -> None:
    captured = (upload - timedelta(days=age)).replace(hour=12, minute=0, second=0, microsecond=0)
    if captured > upload:
        captured = upload
    reasons = window_reasons("start", captured, upload, ANNUAL, RULES)
    days = (upload.date() - captured.date()).days
    assert ("captured_too_long_before_upload" in reasons) == (days > RULES.photo_windows.max_capture_age_days)
