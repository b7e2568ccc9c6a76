"""The engine helpers the readers' decisions rest on: CTC scoring of claims, the in-process
tesseract, and the claimed-mode fast path."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocr import ctc, hangul, odometer, read_odometer, tess

ALPHA = "0123456789."


def _probs(seed: int, t: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.random((t, k)) ** 3
    return p / p.sum(axis=1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    t=st.integers(8, 40),
    labels=st.lists(st.lists(st.integers(1, 11), min_size=0, max_size=8), min_size=1, max_size=6),
)
def test_batched_ctc_likelihood_matches_the_reference(seed: int, t: int, labels: list[list[int]]) -> None:
    p = _probs(seed, t, 12)
    batch = ctc.log_likelihood_batch(p, labels)
    for lab, got in zip(labels, batch, strict=True):
        ref = ctc.log_likelihood(p, lab)
        if ref < -1e8:  # too long for the frames: both say impossible
            assert got < -1e8 or not np.isfinite(got)
        else:
            assert got == pytest.approx(ref, rel=1e-9, abs=1e-9)


@given(st.text(alphabet="0123456789", min_size=1, max_size=7))
def test_one_edit_neighbours_are_exactly_one_edit_away(label: str) -> None:
    nb = ctc.one_edit_neighbours(label, "0123456789")
    assert label not in nb and len(nb) == len(set(nb))
    for n in nb:
        assert abs(len(n) - len(label)) <= 1
        if len(n) == len(label):
            assert sum(a != b for a, b in zip(n, label, strict=True)) == 1
    # every single-digit substitution is there (the mistake a citizen makes most)
    for i in range(len(label)):
        for d in "0123456789":
            if d != label[i]:
                assert label[:i] + d + label[i + 1 :] in nb


def _peaked(text: str, strength: float = 0.97) -> np.ndarray:
    """CTC frames that clearly spell `text` (blank between characters)."""
    frames = []
    for c in text:
        for col in (ALPHA.index(c) + 1, 0):
            row = np.full(len(ALPHA) + 1, (1 - strength) / len(ALPHA))
            row[col] = strength
            frames.append(row)
    return np.array(frames)


def test_claim_margin_prefers_what_the_line_shows() -> None:
    p = _peaked("274384")
    assert (odometer.claim_margins(p, "274384", ALPHA) or 0) > 3
    for wrong in ("274385", "214384", "27438", "2743841", "774384"):
        assert (odometer.claim_margins(p, wrong, ALPHA) or 0) < -3
    assert odometer.claim_margins(None, "274384", ALPHA) is None


def test_claim_margin_is_low_when_a_digit_is_doubtful() -> None:
    p = _peaked("274384")
    # the fourth digit: 3 and 8 nearly tied (a dim seven-segment 3 with ghost segments)
    k = 2 * 3
    p[k] = 0.0
    p[k, ALPHA.index("3") + 1] = 0.52
    p[k, ALPHA.index("8") + 1] = 0.48
    m_true = odometer.claim_margins(p, "274384", ALPHA) or 0.0
    m_other = odometer.claim_margins(p, "274884", ALPHA) or 0.0
    assert abs(m_true) < odometer.CLAIM_MARGIN and abs(m_other) < odometer.CLAIM_MARGIN


def test_tesseract_in_process_reads_a_rendered_syllable() -> None:
    if not hangul.tesseract_available():
        pytest.skip("tesseract with the Korean model is not installed")
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype("/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf", 64)
    except OSError:
        pytest.skip("fonts-nanum is not installed")
    im = Image.new("L", (110, 100), 255)
    ImageDraw.Draw(im).text((18, 10), "가", font=font, fill=0)
    got = tess.recognize(np.asarray(im), "kor", 10, hangul.PLATE_SYLLABLES)
    assert got is not None and got[0].strip() == "가"
    # the same handle serves many calls (the model stays loaded)
    assert tess.recognize(np.asarray(im), "kor", 10, hangul.PLATE_SYLLABLES) == got


def test_tesseract_runs_on_one_thread() -> None:
    """OpenMP's default (a spinning thread per core) made a syllable cost 90-120 ms of CPU instead
    of 10 ms, and a reader is meant to use one core of the process pool."""
    if not hangul.tesseract_available():
        pytest.skip("tesseract with the Korean model is not installed")
    import subprocess
    import sys

    code = (
        "import ctypes, os; os.environ.pop('OMP_THREAD_LIMIT', None)\n"
        "from ocr import tess; assert tess._lib() is not None\n"
        "print(ctypes.CDLL('libgomp.so.1').omp_get_thread_limit())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_claimed_mode_quick_look_and_full_reading_agree(gen) -> None:
    """A claim confirmed by the quick look (small detector input) is the value a full reading
    confirms; a wrong claim falls through to the full reading and is still refused."""
    rng = random.Random(11)
    odo = 356021
    data = gen.to_jpeg(gen.render_dashboard(odo, rng, trip=88.4, style="lcd", effects=0.3))
    ok = read_odometer(data, claimed_km=odo)
    assert ok.claim_confirmed is True
    assert ok.claim_score is not None and ok.claim_score > 0.5
    wrong = read_odometer(data, claimed_km=356027)
    assert wrong.claim_confirmed is False and "claim_mismatch" in wrong.reasons


def test_a_digit_the_detector_leaves_out_is_taken_in(gen) -> None:
    """A seven-segment "1" after a wide gap falls outside the detector's box; the reading must
    take it in, or at least never auto-accept (or confirm) the number without it."""
    rng = random.Random(11)
    odo = 356021
    data = gen.to_jpeg(gen.render_dashboard(odo, rng, trip=88.4, style="lcd", effects=0.3))
    r = read_odometer(data)
    assert r.value_km == odo or not r.auto_accept
    assert read_odometer(data, claimed_km=35602).claim_confirmed is False


def test_quick_reads_see_digits_and_full_reads_match_ppocr() -> None:
    """The unpadded quick read is only used to tell lines apart; the padded read is PP-OCR's own."""
    from ocr import ppocr

    rng = np.random.default_rng(3)
    im = (rng.random((40, 90, 3)) * 255).astype(np.uint8)
    full = ppocr.recognize(im)
    quick = ppocr.recognize(im, min_width=0)
    assert full.padded_fully and full.padded == ppocr.REC_MIN_WIDTH
    assert not quick.padded_fully and quick.padded == quick.width


def test_plate_claim_with_and_without_the_region(gen) -> None:
    """Re-issued plates drop the region, so the enrolled plate may or may not carry it: both
    forms are confirmed on a regional plate, a contradicting region or syllable is not."""
    from ocr import read_plate

    rng = random.Random(100)
    text = gen.plate_text_for("yellow", rng)
    assert text[:2] in hangul.REGIONS
    data = gen.to_jpeg(gen.render_plate_photo(text, "yellow", rng, scene=True, effects=0.4))
    assert read_plate(data, text).claim_confirmed is True
    without = read_plate(data, text[2:])
    assert without.claim_confirmed is True
    # when the quick look (which does not read region names) settled it, nothing is auto-accepted
    assert not without.auto_accept or without.text == text
    other_region = next(r for r in hangul.REGIONS if r != text[:2])
    assert read_plate(data, other_region + text[2:]).claim_confirmed is False
    syl = text[4]
    other_syl = next(s for s in "가나다라마" if s != syl)
    assert read_plate(data, text.replace(syl, other_syl)).claim_confirmed is False
