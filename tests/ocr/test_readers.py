"""Readers on synthetic photos (fixtures/ocr/generate.py) and their contracts."""

from __future__ import annotations

import random

import pytest

from ocr import read_odometer, read_plate
from ocr.types import OdometerRead, PlateRead


def _jpeg(gen, im) -> bytes:
    return gen.to_jpeg(im)


@pytest.mark.parametrize("style", ["lcd", "amber", "tft"])
def test_odometer_synthetic_dashboard(gen, style: str) -> None:
    rng = random.Random(sum(map(ord, style)))
    hits = 0
    for _i in range(4):
        odo = rng.randint(10000, 999999)
        data = _jpeg(gen, gen.render_dashboard(odo, rng, trip=rng.uniform(1, 999), style=style, effects=0.6))
        r = read_odometer(data)
        assert isinstance(r, OdometerRead)
        assert 0.0 <= r.confidence <= 1.0
        if r.auto_accept:  # never a confident wrong answer
            assert r.value_km == odo, (odo, r)
        # when the engines disagree the value may be PP-OCR's; the truth must then be a candidate
        hits += r.value_km == odo or (not r.auto_accept and odo in [v for v, _ in r.candidates[:2]])
        # the trip value (with its decimal) and the km/h scale are never chosen
        assert r.value_km is None or r.value_km >= 1000
    assert hits >= 3


def test_odometer_claims(gen) -> None:
    rng = random.Random(5)
    odo = 274384
    data = _jpeg(gen, gen.render_dashboard(odo, rng, trip=210.3, style="lcd", effects=0.4))
    r = read_odometer(data, claimed_km=odo)
    assert r.claim_confirmed is True
    for wrong in (274385, 214384, 774384, 27438):
        assert read_odometer(data, claimed_km=wrong).claim_confirmed is False
    assert read_odometer(data).claim_confirmed is None
    bad = read_odometer(data, claimed_km=-5)
    assert bad.claim_confirmed is False and "claim_invalid" in bad.reasons


def test_no_odometer_in_frame(gen) -> None:
    rng = random.Random(9)
    data = _jpeg(gen, gen.render_plate_photo("12가3456", "white", rng, scene=True, effects=0.3))
    r = read_odometer(data)
    assert not r.auto_accept
    data2 = _jpeg(
        gen,
        gen._photo_effects(
            __import__("PIL.Image", fromlist=["Image"]).new("RGB", (800, 600), (90, 120, 90)), rng
        ),
    )
    r2 = read_odometer(data2)
    assert r2.value_km is None and "no_odometer_found" in r2.reasons and not r2.auto_accept


@pytest.mark.parametrize("style", ["white", "white3", "ev", "yellow"])
def test_plate_synthetic_closeup(gen, style: str) -> None:
    rng = random.Random(len(style))
    hits = 0
    n = 3
    for _ in range(n):
        text = gen.plate_text_for(style, rng)
        data = _jpeg(gen, gen.render_plate_photo(text, style, rng, scene=False, effects=0.5))
        p = read_plate(data)
        assert isinstance(p, PlateRead)
        if p.auto_accept:
            assert p.text == text, (text, p)
        hits += p.text == text or (p.text is not None and text.endswith(p.text))
    assert hits >= 2


def test_plate_claims(gen) -> None:
    rng = random.Random(3)
    data = _jpeg(gen, gen.render_plate_photo("34나5678", "white", rng, scene=False, effects=0.3))
    assert read_plate(data, "34나5678").claim_confirmed is True
    assert read_plate(data, "34나 5678").claim_confirmed is True  # spacing is folded
    for wrong in ("34나5679", "34다5678", "35나5678", "134나5678"):
        assert read_plate(data, wrong).claim_confirmed is False
    bad = read_plate(data, "not a plate")
    assert bad.claim_confirmed is False and "claim_invalid" in bad.reasons


def test_no_plate_in_frame(gen) -> None:
    rng = random.Random(2)
    data = _jpeg(gen, gen.render_dashboard(123456, rng, trip=12.5, style="lcd"))
    p = read_plate(data)
    assert not p.auto_accept


def test_results_serialise(gen) -> None:
    rng = random.Random(4)
    data = _jpeg(gen, gen.render_dashboard(65432, rng, style="tft"))
    r = read_odometer(data)
    assert r.model_dump_json()
    assert r.engine is not None and r.elapsed_ms > 0


def test_odometer_thousands_separator_is_not_a_trip_decimal(gen) -> None:
    rng = random.Random(21)
    ok = 0
    for _ in range(3):
        odo = rng.randint(10000, 999999)
        data = _jpeg(
            gen,
            gen.render_dashboard(
                odo, rng, trip=rng.uniform(1, 999), style="tft", effects=0.4, thousands=True
            ),
        )
        r = read_odometer(data)
        if r.auto_accept:
            assert r.value_km == odo
        ok += r.value_km == odo
    assert ok >= 2


def test_street_scene_is_read_by_zooming_in(gen, monkeypatch) -> None:
    """A large street scene: the detector looks at the whole frame small, then at the plate with
    more pixels; it never runs over the whole frame at the full reading's size."""
    from PIL import Image

    from ocr import plate, ppocr

    rng = random.Random(5)
    scene = gen.render_plate_photo("52구3108", "white", rng, scene=True, effects=0.3)
    big = scene.resize((2048, 1536), Image.Resampling.LANCZOS)
    seen: list[tuple[tuple[int, int], int]] = []
    detect = ppocr.detect

    def spy(img, max_side=960, **kw):
        seen.append((img.shape[:2], max_side))
        return detect(img, max_side=max_side, **kw)

    monkeypatch.setattr(ppocr, "detect", spy)
    p = read_plate(gen.to_jpeg(big))
    assert p.text == "52구3108", p
    whole = [s for shape, s in seen if shape == (1536, 2048)]
    assert whole == [plate.COARSE_DET_SIDE]  # one small look at the whole frame
    assert len(seen) >= 2 and all(max(shape) < 2048 for shape, _ in seen[1:])
    assert read_plate(gen.to_jpeg(big), "52구3108").claim_confirmed is True


def test_nothing_plate_like_falls_back_to_the_whole_frame(monkeypatch) -> None:
    import numpy as np

    from ocr import plate, ppocr

    calls: list[int] = []

    def spy(img, max_side=960, **kw):
        calls.append(max_side)
        return []

    monkeypatch.setattr(ppocr, "detect", spy)
    plate._detect(np.zeros((1200, 1600, 3), np.uint8), plate.DET_MAX_SIDE)
    assert calls == [plate.COARSE_DET_SIDE, plate.DET_MAX_SIDE]
    calls.clear()
    plate._detect(np.zeros((600, 800, 3), np.uint8), plate.DET_MAX_SIDE)  # small photo: one look
    assert calls == [plate.DET_MAX_SIDE]


def _line(chars: list[tuple[str, float]]):
    import numpy as np

    from ocr import plate, ppocr

    box = ppocr.TextBox(np.array([[0, 0], [400, 0], [400, 80], [0, 80]], np.float32), 1.0)
    return plate.Line(
        box, np.zeros((80, 400, 3), np.uint8), [plate.Char(c, i, 1.0, x) for i, (c, x) in enumerate(chars)]
    )


def test_a_syllable_read_as_two_glyphs_is_one_slot() -> None:
    """PP-OCR has no Hangul: 가 often comes out as "7" and its vertical stroke as "1". The two
    glyphs together are one syllable wide, so they are tried as the syllable's slot."""
    from ocr import plate

    ln = _line([("1", 21), ("2", 76), ("7", 117), ("1", 159), ("3", 200), ("4", 255), ("5", 310), ("6", 366)])
    splits = {(s["front"], s["serial"]) for s in plate._split(ln)}
    assert ("12", "3456") in splits
    assert ("127", "3456") in splits  # the one-glyph reading is still tried
    # a digit and a syllable side by side (two and a half digits wide) are not one slot
    ln = _line(
        [
            ("1", 20),
            ("2", 75),
            ("3", 130),
            ("7", 200),
            ("1", 235),
            ("4", 290),
            ("5", 345),
            ("6", 400),
            ("8", 455),
        ]
    )
    assert ("12", "4568") not in {(s["front"], s["serial"]) for s in plate._split(ln)}


def test_claims_are_looked_at_small_first(gen, monkeypatch) -> None:
    """A claimed close-up is confirmed by the first, cheapest look; the contrast-enhanced image
    is made once per photo, not once per look."""
    from ocr import odometer, plate, ppocr

    rng = random.Random(11)
    photo = gen.render_plate_photo("34나5678", "white", rng, scene=False, effects=0.1)
    jpeg = gen.to_jpeg(photo.resize((960, round(960 * photo.height / photo.width))))
    sides: list[int] = []
    detect = ppocr.detect

    def spy(img, max_side=960, **kw):
        sides.append(max_side)
        return detect(img, max_side=max_side, **kw)

    monkeypatch.setattr(ppocr, "detect", spy)
    assert read_plate(jpeg, "34나5678").claim_confirmed is True
    assert sides == [plate.CLAIM_FIRST_DET_SIDE]

    made: list[int] = []
    enhance = odometer._enhance

    def counted(img):
        made.append(1)
        return enhance(img)

    monkeypatch.setattr(odometer, "_enhance", counted)
    sides.clear()
    read_odometer(gen.to_jpeg(gen.render_dashboard(123456, rng, effects=0.1)), 999_999)  # a wrong claim
    assert sides == [*odometer.CLAIM_DET_SIDES, odometer.DET_MAX_SIDE] and made == [1]


def test_two_row_plates_whose_syllable_reads_as_digits(gen) -> None:
    """Old green two-row plates: the bottom row's syllable often comes out of PP-OCR as one or two
    digit-like glyphs (어 as "0", 러 as "21", 거 as "7H"); the reader still tries it as the
    syllable, and the syllable model tells. Before, such plates were not found at all."""
    read = wrong_auto = 0
    for text in ("울산23어3150", "경남16러6309", "광주54거3727", "서울12너3456"):
        for k in range(4):
            r = read_plate(gen.to_jpeg(gen.render_plate_photo(text, "green2", random.Random(k), effects=0.3)))
            read += r.text == text
            wrong_auto += r.auto_accept and r.text != text
    assert read >= 11 and wrong_auto == 0, read


def test_tesseract_alone_does_not_back_a_syllable_our_model_rules_out() -> None:
    """A synthetic two-row plate 광주40더0291: tesseract read 도 and our model gave 도 0.17; the
    one-syllable-off claim 광주40도0291 was confirmed on tesseract's word alone."""
    import numpy as np

    from ocr import plate, ppocr

    box = ppocr.TextBox(np.zeros((4, 2), np.float32), 1.0)

    def cand(**parts: object) -> plate.Cand:
        c = plate.Cand("광주40도0291", "40", "도", "0291", "광주", 0.95, 0.5, 1.0, box)
        c.parts = {"agree": False, "tess": False, "cnn": 0.0, "tess_other": False, **parts}
        return c

    assert not plate._syllable_backed(cand(tess=True, cnn=0.17))
    assert plate._syllable_backed(cand(tess=True, cnn=0.35))  # as real plates confirmed this way
    assert plate._syllable_backed(cand(agree=True, cnn=0.1))
    assert plate._syllable_backed(cand(cnn=0.95)) and not plate._syllable_backed(
        cand(cnn=0.95, tess_other=True)
    )
