"""The claim rules and their refit (ocr.calibration): pure, on hand-made evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocr import calibration
from ocr.calibration import DEFAULT, Example, Thresholds, fit, odometer_confirms, plate_confirms, rates


def odo(pp: float, own: float | None = None, **kw: object) -> dict[str, object]:
    return {"eligible": True, "pp_margin": pp, "own_margin": own, "other_auto": False, "labelled": True,
            "final": True, "rivals": 0, **kw}


def plate(**kw: object) -> dict[str, object]:
    return {"match": True, "region_ok": True, "multiple": False, "digit_min": 0.99, "agree": False,
            "tess": False, "tess_other": False, "cnn": 0.95, **kw}


def test_odometer_rule() -> None:
    assert odometer_confirms(odo(3.0, 2.0), DEFAULT)
    assert not odometer_confirms(odo(0.4, 10.0), DEFAULT)  # PP-OCR alone must prefer the claim
    assert not odometer_confirms(odo(1.0, 1.0), DEFAULT)  # 1 + 0.5 < 2
    assert not odometer_confirms(odo(9.0, 9.0, eligible=False), DEFAULT)
    assert not odometer_confirms(odo(9.0, 9.0, other_auto=True), DEFAULT)


def test_a_row_without_its_label_is_settled_on_the_full_look_without_rivals() -> None:
    """A sticker "13,000 km" beside an unlit LCD whose ODO label was not read: the small look
    must not confirm it, and neither may the full look while another reading is in the photo."""
    quick = {"final": False}
    assert odometer_confirms(odo(9.0, 9.0, **quick), DEFAULT)  # labelled, nothing rivals it
    assert not odometer_confirms(odo(9.0, 9.0, rivals=1, **quick), DEFAULT)
    assert odometer_confirms(odo(9.0, 9.0, rivals=1), DEFAULT)  # the ODO label names the row
    bare = {"labelled": False, "km_lit": False}
    assert not odometer_confirms(odo(9.0, 9.0, **bare, **quick), DEFAULT)
    assert odometer_confirms(odo(9.0, 9.0, **bare), DEFAULT)
    assert not odometer_confirms(odo(9.0, 9.0, rivals=1, **bare), DEFAULT)
    km = {"labelled": False, "km_lit": True}
    assert odometer_confirms(odo(9.0, 9.0, **km, **quick), DEFAULT)
    assert not odometer_confirms(odo(9.0, 9.0, rivals=2, **km), DEFAULT)


def test_plate_rule() -> None:
    assert plate_confirms(plate(), DEFAULT)
    assert not plate_confirms(plate(match=False), DEFAULT)
    assert not plate_confirms(plate(region_ok=False), DEFAULT)
    assert plate_confirms(plate(multiple=True), DEFAULT)  # other cars in a street scene
    assert not plate_confirms(plate(digit_min=0.5), DEFAULT)
    assert not plate_confirms(plate(cnn=0.5), DEFAULT)
    assert plate_confirms(plate(cnn=0.5, tess=True), DEFAULT)  # tesseract read it, our model allows it
    assert not plate_confirms(plate(cnn=0.17, tess=True), DEFAULT)  # ... not when our model rules it out
    assert not plate_confirms(plate(tess_other=True), DEFAULT)
    assert plate_confirms(plate(cnn=0.1, agree=True), DEFAULT)


def test_a_claim_is_confirmed_when_any_look_passes() -> None:
    assert calibration.confirms("odometer", [odo(-5.0), odo(4.0)], DEFAULT)
    assert not calibration.confirms("odometer", [odo(-5.0), odo(0.1)], DEFAULT)
    assert not calibration.confirms("plate", [], DEFAULT)


def _ex(kind: calibration.Kind, true: list[dict[str, object]], wrong: list[list[dict[str, object]]],
        source: str = "labels") -> Example:
    return Example(kind, source, "x", true, wrong)


def test_the_refit_loosens_only_as_far_as_no_wrong_claim_and_a_step_of_safety() -> None:
    """True claims at PP margin 0.8 are refused by a strict rule; wrong ones top out at -1: the
    refit takes the loosest grid point that confirms no wrong claim, with one step of safety."""
    strict = DEFAULT.model_copy(update={"odometer_pp_margin": 3.0, "odometer_margin": 5.0})
    exs = [_ex("odometer", [odo(2.2, 2.0)], [[odo(-1.0, -3.0)], [odo(-8.0, -9.0)]]) for _ in range(25)]
    r = fit("odometer", exs, strict, min_examples=20)
    assert r.refused is None and r.changed
    assert r.rates_before["all/odometer"].true_accepted == 0
    assert r.rates_after["all/odometer"].true_accepted == 25
    assert r.rates_after["all/odometer"].false_accepted == 0


def test_the_refit_never_goes_below_the_floor_of_its_grid() -> None:
    exs = [_ex("odometer", [odo(0.3, 0.3)], [[odo(-20.0, -20.0)]]) for _ in range(30)]
    r = fit("odometer", exs, DEFAULT, min_examples=20)
    assert r.after.odometer_pp_margin >= min(calibration.GRID["odometer_pp_margin"])
    assert r.rates_after["all/odometer"].true_accepted == 0  # 0.3 stays below every allowed margin


def test_a_wrong_claim_near_the_boundary_keeps_a_step_of_safety() -> None:
    """A wrong claim at combined margin 2.4 (just under 2.5): 2.5 would confirm none of them,
    but 2.0 (one step looser) would, so the refit stops at 3.0."""
    exs = [_ex("odometer", [odo(4.0, 4.0)], [[odo(1.9, 1.0)]]) for _ in range(25)]
    r = fit("odometer", exs, DEFAULT, min_examples=20)
    assert r.after.odometer_margin >= 3.0 or r.after.odometer_pp_margin >= 2.0
    assert r.rates_after["all/odometer"].false_accepted == 0


def test_the_development_set_is_a_floor() -> None:
    """A refit that would confirm fewer of the development photos' true claims is not taken."""
    labels = [_ex("odometer", [odo(5.0, 5.0)], [[odo(0.6, 3.2)]]) for _ in range(25)]
    dev = [_ex("odometer", [odo(0.6, 3.2)], [[odo(-9.0, -9.0)]], source="development") for _ in range(5)]
    r = fit("odometer", labels + dev, DEFAULT, min_examples=20)
    # the labels' wrong claims sit where the development photos' true claims are: no grid point
    # refuses the one and keeps the other
    assert r.refused is not None and not r.changed
    assert r.after == DEFAULT


def test_a_refit_that_would_raise_false_accepts_is_refused() -> None:
    """A labelled photo whose wrong claim passes every allowed threshold (a mislabelled photo, or
    a reading the engines are sure of and wrong): nothing confirms no wrong claim, so nothing is
    changed, and the report says so."""
    exs = [_ex("plate", [plate()], [[plate(cnn=0.99, agree=True)]]) for _ in range(25)]
    r = fit("plate", exs, DEFAULT, min_examples=20)
    assert r.refused is not None and r.refused.startswith("no thresholds")
    assert r.after == DEFAULT and not r.changed


def test_too_few_photos_keep_the_thresholds() -> None:
    r = fit("plate", [_ex("plate", [plate()], [])], DEFAULT, min_examples=20)
    assert r.refused is not None and "only 1" in r.refused and r.after == DEFAULT


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-10, 10), st.floats(-10, 10), st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10)),
                                                                      max_size=3)),
        min_size=20,
        max_size=40,
    )
)
def test_a_refit_never_confirms_a_wrong_claim(data: list[tuple[float, float, list[tuple[float, float]]]]) -> None:
    exs = [_ex("odometer", [odo(a, b)], [[odo(c, d)] for c, d in w]) for a, b, w in data]
    r = fit("odometer", exs, DEFAULT, min_examples=20)
    before = rates(exs, DEFAULT)["all/odometer"].false_accepted
    after = r.rates_after["all/odometer"].false_accepted
    assert after <= before
    if r.changed:
        assert after == 0


def test_thresholds_load_from_the_named_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    monkeypatch.setenv(calibration.ENV, str(path))
    assert calibration.current() == DEFAULT  # no file: the defaults
    calibration.save(DEFAULT.model_copy(update={"plate_digit_min": 0.95, "source": "test"}))
    assert calibration.current().plate_digit_min == 0.95
    path.write_text(json.dumps({"plate_digit_min": 0.85, "nonsense": 1}), encoding="utf-8")
    import os

    os.utime(path, (1, 1))
    with pytest.raises(ValueError):  # a broken file is an error, never a silent fallback
        calibration.current()


def test_the_shipped_thresholds_parse() -> None:
    if calibration.THRESHOLDS_FILE.exists():
        th = Thresholds.model_validate_json(calibration.THRESHOLDS_FILE.read_text(encoding="utf-8"))
        for k, grid in calibration.GRID.items():
            assert getattr(th, k) >= min(grid), k
