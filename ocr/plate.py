"""Korean licence-plate reading.

Text lines are found with the PP-OCRv4 DB detector (whole frame, contrast-equalised), digits read
with the PP-OCRv4 CTC recogniser (its vocabulary has no Hangul, so the syllable comes out as a low
confidence symbol, a digit or nothing); the slot between the front number and the 4-digit serial is
located from the CTC frame positions and the Hangul syllable / region in it is classified by our own
small syllable model (ocr/models/hangul.onnx) and by tesseract's Korean model restricted to the plate
syllables.  Every assembled candidate must parse with prorate.identifiers.parse_plate.
"""

from __future__ import annotations

import contextvars
import math
import re
import time
import unicodedata
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import cv2
import numpy as np

from . import calibration, hangul, ppocr
from .intake import Decoded, decode
from .types import EngineInfo, PlateRead

cv2.setNumThreads(1)

VERSION = "plate-3"
DIGITS = "0123456789"
# False while a claim without a region is checked by the quick look: region names are not read
_READ_REGIONS: contextvars.ContextVar[bool] = contextvars.ContextVar("read_regions", default=True)
DET_MAX_SIDE = 1280
# claimed mode looks at a smaller detector input first (about half the detector's cost)
CLAIM_FAST_DET_SIDE = 960
CLAIM_FIRST_DET_SIDE = 480
AUTO_ACCEPT = 0.85
#: The default claim thresholds (calibration.Thresholds; the ones in force: calibration.current()).
#: Real claims backed by tesseract alone had our model at 0.35 and 0.38; a wrong one (더 read 도,
#: synthetic two-row plate) 0.17.
CLAIM_CNN_MIN = calibration.DEFAULT.plate_cnn_min
CLAIM_TESS_CNN_FLOOR = calibration.DEFAULT.plate_tess_cnn_floor
#: The widest a syllable's slot is, in digit pitches (Hangul syllables run 1.2 to 1.6).
SYLLABLE_MAX_PITCH = 2.0


def _parse(text: str):
    try:
        from prorate.identifiers import IdentifierError, parse_plate
    except Exception:  # pragma: no cover - grammar module missing
        return None
    try:
        return parse_plate(text)
    except IdentifierError:
        return None
    except Exception:
        return None


@dataclass
class Char:
    ch: str
    frame: int
    conf: float
    x: float  # centre x in crop pixels
    dconf: float = 0.0  # for a digit: its probability among the digits alone (letters set aside)


@dataclass
class Line:
    box: ppocr.TextBox
    crop: np.ndarray
    chars: list[Char] = field(default_factory=list)
    text: str = ""
    pitch: float = 0.0  # px per frame in the crop
    padded_fully: bool = False  # read as PP-OCR reads lines (not a quick read)


@dataclass
class Cand:
    text: str
    front: str
    syllable: str
    serial: str
    region: str | None
    digit_conf: float
    syl_conf: float
    region_conf: float
    box: ppocr.TextBox
    colour: str = "unknown"
    parts: dict[str, object] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.digit_conf * self.syl_conf * (self.region_conf if self.region else 1.0)


def _read_line(img: np.ndarray, b: ppocr.TextBox, quick: bool = False) -> Line:
    """Read a text line; `quick` skips PP-OCR's padding where that is much cheaper (enough to see
    whether a line holds digits at all; lines that do are read again in full)."""
    crop = ppocr.crop_quad(img, b.quad)
    rr = ppocr.recognize(crop, min_width=ppocr.quick_width(crop) if quick else None)
    p = rr.probs
    T = p.shape[0]
    idx = p.argmax(axis=1)
    # a frame is 8 model pixels (the recogniser's horizontal stride)
    frame_px = (rr.padded / max(round(rr.padded / 8), 1)) * (crop.shape[1] / max(rr.width, 1))
    dcols = ppocr.vocab_index(DIGITS)[1:]
    dsum = p[:, dcols].sum(axis=1) + 1e-12
    chars: list[Char] = []
    prev = 0
    for t in range(T):
        i = int(idx[t])
        dc = float(p[t, i] / dsum[t]) if rr.vocab[i].isdigit() else 0.0
        if i != 0 and i != prev:
            chars.append(Char(rr.vocab[i], t, float(p[t, i]), (t + 0.5) * frame_px, dc))
        elif i != 0 and i == prev and chars:
            chars[-1].conf = max(chars[-1].conf, float(p[t, i]))
            chars[-1].dconf = max(chars[-1].dconf, dc)
        prev = i
    return Line(b, crop, chars, "".join(c.ch for c in chars), frame_px, rr.padded_fully)


def _complete_serial(img: np.ndarray, ln: Line) -> Line:
    """A line ending in two or three digits with digit-high ink right after its box (the detector
    stopped short of a narrow "1" or of a digit at the photo's edge): read the wider box, and keep
    it when it reads the same digits plus the missing ones.  Lines with a whole serial are left
    alone, so a plate's border is never read into a number."""
    k = len(ln.chars)
    while k > 0 and ln.chars[k - 1].ch.isdigit():
        k -= 1
    tail = "".join(c.ch for c in ln.chars[k:])
    if not 2 <= len(tail) <= 3:
        return ln
    _left, right = ppocr.ink_extent(img, ln.box.quad)
    if not 0.15 <= right <= 0.8:
        return ln
    # stay inside the photo: the warp would smear its last column into a glyph
    room = img.shape[1] - 1 - float(ln.box.quad[1:3, 0].max()) - 0.05 * ln.box.height
    q = ppocr.extend_quad(ln.box.quad, 0.0, min((right + 0.2) * ln.box.height, max(room, 0.0)))
    wide = _read_line(img, ppocr.TextBox(q, ln.box.score))
    j = len(wide.chars)
    while j > 0 and wide.chars[j - 1].ch.isdigit():
        j -= 1
    tail2 = "".join(c.ch for c in wide.chars[j:])
    if len(tail2) >= 4 and tail2[-4:].startswith(tail) and len(tail2) - len(tail) <= 2:
        return wide
    return ln


def _plate_colour(img: np.ndarray, b: ppocr.TextBox) -> str:
    crop = ppocr.crop_quad(img, b.quad, pad=0.3)
    if crop.size == 0:
        return "unknown"
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    v = hsv[..., 2]
    g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    # background = the majority tone: pixels on the brighter side unless the plate is dark-on-light
    thr = np.percentile(g, 50)
    bg = g >= thr
    if bg.sum() < 10:
        return "unknown"
    h = hsv[..., 0][bg].astype(np.float32)
    s = hsv[..., 1][bg].astype(np.float32)
    val = v[bg].astype(np.float32)
    sm, vm = float(np.median(s)), float(np.median(val))
    if sm < 60:
        return "white" if vm > 90 else "unknown"
    hm = float(np.median(h))
    if hm < 8 or hm >= 170:
        return "orange" if sm > 120 else "unknown"
    if hm < 20:
        return "orange"
    if hm < 38:
        return "yellow"
    if hm < 88:
        return "green"
    if hm < 130:
        return "blue"
    return "unknown"


def _split(ln: Line) -> list[dict[str, object]]:
    """Possible (front digits, syllable slot x-range, serial digits, head x-range) splits of a line.
    Each split carries a prior (< 1 when digits had to be dropped to fit the grammar)."""
    # PP-OCR writes a space for a wide gap (around the syllable it cannot read): the slot is
    # found from the digits' positions, so spaces carry nothing here
    cs = [c for c in ln.chars if not c.ch.isspace()]
    out: list[dict[str, object]] = []
    # serial: the last run of >= 4 digits
    j = len(cs)
    while j > 0 and not cs[j - 1].ch.isdigit():
        j -= 1
    k = j
    while k > 0 and cs[k - 1].ch.isdigit():
        k -= 1
    run = cs[k:j]
    if len(run) < 4:
        return out
    serial = run[-4:]
    before = cs[: j - 4]
    pitch = float(np.median(np.diff([c.x for c in serial]))) if len(serial) >= 2 else ln.crop.shape[0] * 0.5
    pitch = max(pitch, 2.0)
    first_x = serial[0].x

    def add(front: list[Char], sylc: Char | None, prior: float) -> None:
        if len(front) not in (2, 3):
            return
        hx = front[0].x - 0.5 * pitch
        head = (0.0, hx) if hx > pitch * 0.5 else None
        out.append(
            {
                "front": "".join(c.ch for c in front),
                "front_conf": [c.conf for c in front],
                "serial": "".join(c.ch for c in serial),
                "serial_conf": [c.conf for c in serial],
                "front_chars": list(front),
                "serial_chars": list(serial),
                "slot": (front[-1].x + 0.5 * pitch, first_x - 0.5 * pitch),
                "head": head,
                "sylc": sylc.ch if sylc else None,
                "pitch": pitch,
                "prior": prior,
            }
        )

    def fronts(digs: list[Char], sylc: Char | None, prior: float) -> None:
        if len(digs) in (2, 3):
            add(digs, sylc, prior)
        elif len(digs) > 3:  # extra digits in front: something else was read into the line
            add(digs[-3:], sylc, prior * 0.5)
            add(digs[-2:], sylc, prior * 0.4)

    if before and not before[-1].ch.isdigit():
        # one to three non-digits (the syllable misread, spaces, a hyphen) between front and serial
        e = len(before)
        while e > 0 and not before[e - 1].ch.isdigit() and len(before) - e < 3:
            e -= 1
        if e > 0 and before[e - 1].ch.isdigit():
            x_char = before[e]
            m = e
            while m > 0 and before[m - 1].ch.isdigit():
                m -= 1
            fronts(before[m:e], x_char, 1.0)
            if e - m >= 3:  # the syllable read as a digit (PP-OCR has no Hangul): the slot model
                # tells a syllable from a digit ("#"), so try it, surer when the digit was doubtful
                fronts(before[m : e - 1], before[e - 1], 0.9 if before[e - 1].conf < 0.6 else 0.6)
        return out
    m = len(before)
    while m > 0 and before[m - 1].ch.isdigit():
        m -= 1
    digs = before[m:]
    if digs and first_x - digs[-1].x > 1.5 * pitch:  # syllable dropped: a gap before the serial
        fronts(digs, None, 1.0)
    if len(digs) >= 3:  # syllable read as a digit: the digit just before the serial is the slot
        fronts(digs[:-1], digs[-1], 0.9)
    if len(digs) >= 4:
        # syllable read as two glyphs (가 as "71": its vertical stroke a "1"): the two digits before
        # the serial are the slot, when together they are about one syllable wide (a digit and a
        # syllable would be two and a half digits wide)
        width = (first_x - 0.5 * pitch) - (digs[-3].x + 0.5 * pitch)
        if 0.8 * pitch <= width <= SYLLABLE_MAX_PITCH * pitch:
            fronts(digs[:-2], digs[-2], 0.8)
    return out


def _slice(crop: np.ndarray, x0: float, x1: float) -> np.ndarray:
    w = crop.shape[1]
    a, b = int(max(0, math.floor(x0))), int(min(w, math.ceil(x1)))
    if b - a < 3:
        return crop[:, 0:0]
    return crop[:, a:b]


def _engines() -> list[str]:
    e = ["ppocrv4-onnx"]
    if hangul.available():
        e.append("hangul-own")
    e.append("tesseract-kor")
    return e


def read_plate(image_bytes: bytes, claimed_plate: str | None = None) -> PlateRead:
    t0 = time.perf_counter()
    try:
        r = _read(image_bytes, claimed_plate)
    except Exception as exc:
        r = PlateRead(reasons=["engine_error", f"engine_error:{type(exc).__name__}"])
        if claimed_plate is not None:
            r.claim_confirmed = False
    r.engine = EngineInfo(name="carmileage-ocr", version=VERSION, engines=_engines())
    r.elapsed_ms = round((time.perf_counter() - t0) * 1000, 1)
    return r


def _enhance(img: np.ndarray) -> np.ndarray:
    """Local contrast equalisation for the detector, on the full-resolution photo (faint / unlit
    LCDs, plates in shade).  Doing it at the detector's scale instead is cheaper but changed which
    boxes were found on the development photos, for the worse."""
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)
    lab[..., 0] = cv2.createCLAHE(2.5, (8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


# Photos larger than this are looked at twice: the whole frame small, then around each plate-like
# row again with more pixels ("detect small, then zoom").
ZOOM_FROM_SIDE = 1024
COARSE_DET_SIDE = 800
#: The height a text row is given in the second look (never more than the photo's own pixels).
ZOOM_ROW_PX = 64
#: Second looks costing more detector pixels than this share of one whole-frame look: take that.
ZOOM_MAX_COST = 0.6


def _detect(
    img: np.ndarray, det_side: int, zoom: bool = True, enhanced: np.ndarray | None = None
) -> list[ppocr.TextBox]:
    """Text boxes for the plate reader, in `img` coordinates.

    A plate in a street scene is a few percent of the frame: running the detector over the whole
    frame at `det_side` costs most of a read and still sees the plate shrunk. So a large photo is
    first looked at with a small detector input; around every row that could be a plate (or part
    of one: the detector splits plates at the syllable) a window is cut and the detector runs
    again on it, with the row ZOOM_ROW_PX high or at the photo's own resolution. When nothing
    plate-like is found, or the windows would cost about as much, the whole frame is read at
    `det_side` as before. `enhanced` is `_enhance(img)` when the caller has it already."""
    if enhanced is None:
        enhanced = _enhance(img)
    h, w = img.shape[:2]
    if not zoom or max(h, w) <= ZOOM_FROM_SIDE or det_side <= COARSE_DET_SIDE:
        return ppocr.detect(enhanced, max_side=det_side)
    windows: list[tuple[int, int, int, int, float]] = []  # x0, y0, x1, y1, scale
    for b in ppocr.detect(enhanced, max_side=COARSE_DET_SIDE):
        bh, bw = b.height, b.width
        if bh * COARSE_DET_SIDE / max(h, w) < 4 or not (0.8 * bh <= bw <= 14 * bh):
            continue
        x, y, ww, hh = b.xywh()
        dx, dy = 1.2 * bw + 2 * bh, 2.5 * bh
        windows.append(
            (int(max(0, x - dx)), int(max(0, y - dy)), int(min(w, x + ww + dx)), int(min(h, y + hh + dy)),
             min(1.0, ZOOM_ROW_PX / bh))
        )
    merged: list[tuple[int, int, int, int, float]] = []
    for win in sorted(windows):  # overlapping windows become one, with the finer scale
        while True:
            hit = next((m for m in merged if win[0] < m[2] and m[0] < win[2] and win[1] < m[3] and m[1] < win[3]), None)
            if hit is None:
                break
            merged.remove(hit)
            win = (min(hit[0], win[0]), min(hit[1], win[1]), max(hit[2], win[2]), max(hit[3], win[3]),
                   max(hit[4], win[4]))
        merged.append(win)
    whole = (det_side / max(h, w)) ** 2 * h * w
    cost = sum((x1 - x0) * (y1 - y0) * sc * sc for x0, y0, x1, y1, sc in merged)
    if not merged or cost > ZOOM_MAX_COST * whole:
        return ppocr.detect(enhanced, max_side=det_side)
    boxes: list[ppocr.TextBox] = []
    for x0, y0, x1, y1, sc in merged:
        sub = enhanced[y0:y1, x0:x1]
        if min(sub.shape[:2]) * sc < 16:
            continue
        for b in ppocr.detect(sub, max_side=max(32, round(max(sub.shape[:2]) * sc))):
            boxes.append(ppocr.TextBox(b.quad + np.array([x0, y0], np.float32), b.score))
    return boxes


def _norm_claim(s: object) -> str | None:
    if not isinstance(s, str):
        return None
    t = re.sub(r"[\s\-·.]", "", unicodedata.normalize("NFKC", s))
    return t or None


def _read(image_bytes: bytes, claimed: str | None) -> PlateRead:
    dec = decode(image_bytes)
    info = dec.intake
    claim = _norm_claim(claimed)
    side = max(dec.bgr.shape[:2]) if dec.bgr is not None else 0
    cp = _parse(claim) if claim is not None else None
    if cp is None or not info.ok:
        res = _analyse(dec, claim, claimed, DET_MAX_SIDE)
        if res.text is None and info.ok and side > ZOOM_FROM_SIDE:
            # zooming in looked at the wrong rows (a car's window or lamps found as "text" at the
            # small size): look at the whole frame as a whole
            whole = _analyse(dec, claim, claimed, DET_MAX_SIDE, zoom=False)
            if whole.text is not None:
                return whole
        return res
    seen: list[PlateRead] = []
    for look in _claim_plan(side, cp):
        seen.append(_quick_look(dec, claim, claimed, cp, *look))
        if seen[-1].claim_confirmed:
            return seen[-1]
    # nothing confirmed: report the full reading (for a large photo, the zoomed-in first look;
    # the second look at the whole frame at a smaller size is only a second chance)
    return seen[0] if side > ZOOM_FROM_SIDE else seen[-1]


def _claim_plan(side: int, cp: Any) -> list[tuple[int, bool, bool]]:
    """The looks claimed mode takes, in order, as (detector size, zoom in, quick look): a claim
    confirmed by one is final.

    A large photo is read by zooming in (_detect), which is cheap; a claim it does not confirm
    gets a second look at the whole frame at 960 px (the slot of a small syllable is cut
    differently from boxes found at another scale), then one at the full size. Smaller photos are looked at with the
    detector at CLAIM_FIRST_DET_SIDE (a plate photo's plate is large) and at 3/4 of the full
    reading's size (at most 960, at least 640: close-ups are read at 640 anyway), then in full."""
    if side > ZOOM_FROM_SIDE:
        # last, the whole frame in full: zooming in can look at the wrong rows (a car's window or
        # lamps found as text at the small size; night scenes)
        return [(DET_MAX_SIDE, True, False), (CLAIM_FAST_DET_SIDE, False, True), (DET_MAX_SIDE, False, False)]
    quick_side = min(CLAIM_FAST_DET_SIDE, int(0.75 * min(side, DET_MAX_SIDE)))
    looks = [(CLAIM_FIRST_DET_SIDE, True, True)] if side >= 640 else []
    if quick_side >= 640:
        looks.append((quick_side, True, True))
    return [*looks, (DET_MAX_SIDE, True, False)]


def claim_looks(image_bytes: bytes, claimed_plate: str) -> list[dict[str, object]]:
    """The claim evidence of every look claimed mode can take at the photo, without stopping at
    the first that confirms: what `carmileage ocr calibrate` refits the thresholds on."""
    dec = decode(image_bytes)
    claim = _norm_claim(claimed_plate)
    cp = _parse(claim) if claim is not None else None
    if cp is None or not dec.intake.ok or dec.bgr is None:
        return []
    out: list[dict[str, object]] = []
    for look in _claim_plan(max(dec.bgr.shape[:2]), cp):
        try:
            r = _quick_look(dec, claim, claimed_plate, cp, *look)
        except Exception:
            continue
        if r.claim_evidence is not None:
            out.append(dict(r.claim_evidence))
    return out


def _quick_look(
    dec: Decoded, claim: str | None, claimed: object, cp: Any, det_side: int, zoom: bool = True, quick: bool = True
) -> PlateRead:
    """A claimed-mode look; a quick one reads region names only when the claim has one, and a
    claim it confirms without one is not auto-accepted (the region was not looked at)."""
    if not quick:
        return _analyse(dec, claim, claimed, det_side, zoom)
    token = _READ_REGIONS.set(cp.region is not None)
    try:
        res = _analyse(dec, claim, claimed, det_side, zoom)
    finally:
        _READ_REGIONS.reset(token)
    if res.claim_confirmed and cp.region is None:
        res.auto_accept = False
    return res


def _analyse(dec: Decoded, claim: str | None, claimed: object, det_side: int, zoom: bool = True) -> PlateRead:
    info = dec.intake
    res = PlateRead(intake=info, reasons=list(info.reasons))
    if claimed is not None:
        res.claim_confirmed = False
    if not info.ok or dec.bgr is None:
        return res
    img = dec.bgr
    up = 1.0
    if max(img.shape[:2]) < 640:  # close-up crops: give the detector some pixels
        up = 640 / max(img.shape[:2])
        img = dec.derived_image(
            "plate.upscaled", partial(cv2.resize, img, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
        )
    boxes = _detect(img, det_side, zoom, dec.derived_image("plate.enhanced", lambda: _enhance(img)))
    boxes = [b for b in boxes if b.height >= 8 and b.height * 0.8 <= b.width <= b.height * 14]
    boxes += _merged_rows(boxes)
    boxes += _row_splits(img, boxes)
    lines: list[Line] = []
    all_lines: list[Line] = []
    for b in boxes:
        ln = _read_line(img, b, quick=True)
        if any(c.ch.isdigit() for c in ln.chars):  # a number line: read it in full
            ln = _complete_serial(img, ln if ln.padded_fully else _read_line(img, b))
        all_lines.append(ln)
        if sum(c.ch.isdigit() for c in ln.chars) >= 2:
            lines.append(ln)
    cands: list[Cand] = []
    for li, ln in enumerate(lines):
        for sp in _split(ln):
            cands.extend(_assemble(img, ln, sp, lines, li))
        cands.extend(_two_row(img, ln, all_lines))
    # dedupe, best score first
    best: dict[str, Cand] = {}
    for c in cands:
        if c.text not in best or c.score > best[c.text].score:
            best[c.text] = c
    ranked = sorted(best.values(), key=lambda c: -c.score)
    res.candidates = [(c.text, round(c.score, 4)) for c in ranked[:5]]
    if not ranked:
        res.reasons.append("no_plate_found")
        _claim(res, claim, ranked)
        return res
    top = ranked[0]
    # the same plate with its region read (above or left of the number) is the fuller reading
    for c in ranked[1:4]:
        if (
            c.region
            and not top.region
            and (c.front, c.syllable, c.serial) == (top.front, top.syllable, top.serial)
            and c.region_conf >= 0.6
        ):
            top = c
            break
    if top.region is None and _READ_REGIONS.get():
        top = _region_left(img, top, all_lines, res)
    parsed = _parse(top.text)
    res.text = top.text
    res.syllable = top.syllable
    res.region = top.region
    res.use = parsed.use if parsed is not None else None
    x, y, w, h = top.box.xywh()
    s = 1.0 / (dec.scale * up)
    res.box = (int(x * s), int(y * s), int(w * s), int(h * s))
    res.plate_colour = top.colour  # type: ignore[assignment]
    key = (top.front, top.syllable, top.serial)
    rivals = [c.score for c in ranked if (c.front, c.syllable, c.serial) != key]
    second = max(rivals, default=0.0)
    conf = top.score * (1.0 - 0.5 * min(1.0, second / max(top.score, 1e-6)))
    # other plates in the frame with a different number: ambiguity
    distinct = {c.serial for c in ranked if c.score > 0.5 * top.score}
    if len(distinct) > 1:
        res.reasons.append("multiple_plates")
        conf *= 0.5
    res.confidence = round(float(np.clip(conf, 0, 1)), 4)
    if top.parts.get("head_unread"):
        res.reasons.append("region_unread")  # something is printed left of the number
    res.auto_accept = bool(
        res.confidence >= AUTO_ACCEPT and top.parts.get("agree", False) and not top.parts.get("head_unread")
    )
    if not res.auto_accept:
        res.reasons.append("low_confidence")
    _claim(res, claim, ranked, top)
    return res


def _claim(res: PlateRead, claim: str | None, ranked: list[Cand], top: Cand | None = None) -> None:
    """Confirmed only when a plate read from the image is the claim, under the thresholds of
    `calibration.current()` (see calibration.plate_confirms): every digit sure enough, the
    claimed syllable the one read and backed by evidence, no claimed region contradicting a
    region read. The plate may be any plate in the frame (a street scene shows other cars), but
    the claim must be the best reading of that plate: a better, different reading of the same
    plate refuses it. The evidence is kept in `res.claim_evidence`. An unconfirmed claim is a
    `claim_mismatch` only when no plate in the frame reads as the claim; the claimed plate read
    without enough certainty is `claim_unconfirmed`."""
    if claim is None:
        return
    res.claim_confirmed = False
    cp = _parse(claim)
    if cp is None:
        res.reasons.append("claim_invalid")
        return
    if top is None:
        res.claim_score = 0.0
        res.claim_evidence = {"match": False}
        return
    key = (cp.front, cp.syllable, cp.serial)
    cc: Cand | None = top if (top.front, top.syllable, top.serial) == key else None
    if cc is None:
        cc = next((c for c in ranked if (c.front, c.syllable, c.serial) == key), None)
        if cc is not None and any(
            (c.front, c.syllable, c.serial) != key and c.score > cc.score and _same_plate(c.box, cc.box)
            for c in ranked
        ):
            cc = None  # the claim is not this plate's best reading
    src = cc if cc is not None else top
    p = src.parts
    ev = {
        "match": cc is not None,
        "region_ok": cp.region is None or src.region in (None, cp.region),
        "multiple": "multiple_plates" in res.reasons,  # informational: other cars in the frame
        "other_plate": cc is not None and cc is not top,
        "digit_min": round(float(p.get("ddmin", 0.0)), 4),  # type: ignore[arg-type]
        "agree": bool(p.get("agree")),
        "tess": bool(p.get("tess")),
        "tess_other": bool(p.get("tess_other")),
        "cnn": round(float(p.get("cnn", 0.0)), 4),  # type: ignore[arg-type]
    }
    res.claim_evidence = ev
    ok = calibration.plate_confirms(ev, calibration.current())
    res.claim_score = round(src.score if ok else 0.0, 4)
    res.claim_confirmed = ok
    if ok and cc is not None and cc is not top:
        # confirmed on another plate of the frame than the one read first: report that plate
        # (never auto-accepted: the first reading was of another car)
        res.text, res.syllable, res.region = cc.text, cc.syllable, cc.region
        parsed = _parse(cc.text)
        res.use = parsed.use if parsed is not None else None
        res.auto_accept = False
    if not ok and res.text is not None:
        # the reviewer is told what the machine saw: a different plate, or the claimed plate read
        # without enough certainty to confirm it
        res.reasons.append("claim_unconfirmed" if cc is not None else "claim_mismatch")


def _same_plate(a: ppocr.TextBox, b: ppocr.TextBox) -> bool:
    """Two text boxes on the same plate: either's centre inside the other (a little grown)."""

    def inside(p: tuple[float, float], q: ppocr.TextBox) -> bool:
        x, y, w, h = q.xywh()
        m = 0.3 * max(q.height, 1.0)
        return x - m <= p[0] <= x + w + m and y - m <= p[1] <= y + h + m

    return inside(a.center, b) or inside(b.center, a)


def _syllable_backed(c: Cand) -> bool:
    """The claimed syllable has evidence under the current thresholds (calibration.syllable_backed)."""
    return calibration.syllable_backed(dict(c.parts), calibration.current())


def _assemble(img: np.ndarray, ln: Line, sp: dict[str, object], lines: list[Line], li: int) -> list[Cand]:
    front = str(sp["front"])
    serial = str(sp["serial"])
    slot = sp["slot"]
    assert isinstance(slot, tuple)
    out: list[Cand] = []
    fconf = cast(list[float], sp["front_conf"])
    sconfs = cast(list[float], sp["serial_conf"])
    dconf = float(np.prod(fconf)) * float(np.prod(sconfs))
    dconf *= float(cast(float, sp.get("prior", 1.0)))
    if slot[1] - slot[0] < 0.8 * float(sp.get("pitch", 0.0)):  # type: ignore[arg-type]
        return out  # no room for a syllable between the numbers
    syl_img = _slice(ln.crop, slot[0], slot[1])
    pitch = float(sp.get("pitch", 0.0))  # type: ignore[arg-type]
    syl_wide = _slice(ln.crop, slot[0] - 0.25 * pitch, slot[1] + 0.25 * pitch)
    syls = hangul.vote_syllable(syl_img, syl_wide) if syl_img.size and dconf >= 0.3 else []
    region: str | None = None
    rconf = 1.0
    head_text = False
    head = sp.get("head")
    if isinstance(head, tuple) and len(front) == 2 and _READ_REGIONS.get():  # 3-digit: no region
        himg = _slice(ln.crop, head[0], head[1])
        if himg.size and dconf >= 0.3:
            r, p = hangul.vote_region(himg)
            if r is not None and p >= 0.5:
                region, rconf = r, p
            else:  # something printed there: an emblem, or a region we could not read?
                cr = hangul.classify_region(himg)
                head_text = bool(hangul.tesseract_region(himg)) or bool(cr and cr[0][1] >= 0.3)
    colour = _plate_colour(img, ln.box)
    for syl, sconf, agree, tess_ok, cnn_p, tess_other in syls[:3]:
        if sconf < 0.05:
            continue
        for reg in [region, None] if region else [None]:
            text = f"{reg or ''}{front}{syl}{serial}"
            if _parse(text) is None:
                continue
            c = Cand(text, front, syl, serial, reg, dconf, sconf, rconf if reg else 1.0, ln.box, colour)
            c.parts = {
                "agree": bool(agree and sconf >= 0.8),
                "tess": tess_ok,
                "cnn": cnn_p,
                "tess_other": tess_other,
                "head_unread": head_text and reg is None,
                "dmin": min([*fconf, *sconfs]),
                "ddmin": min(c.dconf for c in [*cast(list[Char], sp["front_chars"]), *cast(list[Char], sp["serial_chars"])]),
            }
            if reg is None and region is not None:
                c.region_conf = 1.0
                c.digit_conf *= 0.5  # dropping a region we saw is less likely
            out.append(c)
    return out


def _above(lower: Line, lines: list[Line]) -> list[Line]:
    """Lines sitting right above `lower` and overlapping it horizontally (two-row plates)."""
    out = []
    _lx, ly = lower.box.center
    lx0, _, lw, _ = lower.box.xywh()
    for u in lines:
        if u is lower:
            continue
        _ux, uy = u.box.center
        ux0, _, uw, _ = u.box.xywh()
        dy = ly - uy
        overlap = min(lx0 + lw, ux0 + uw) - max(lx0, ux0)
        if 0.3 * lower.box.height < dy < 1.8 * lower.box.height and overlap > 0.3 * min(lw, uw):
            if u.box.height < 1.2 * lower.box.height:
                out.append(u)
    return out


def _two_row(img: np.ndarray, ln: Line, lines: list[Line]) -> list[Cand]:
    """Two-row plates: top row [region] front [syllable], bottom row [syllable] serial;
    or top row = region only above a one-row body."""
    cs = ln.chars
    digs = [c for c in cs if c.ch.isdigit()]
    if len(digs) < 4:
        return []
    serial = digs[-4:]
    # characters before the serial in the bottom row are the syllable; confident digits there make
    # it a one-row body with its region above, unless they are one or two glyphs (a syllable read
    # as digits: 어 as "0", 러 as "21"): then both are tried, and the syllable model tells
    first = cs.index(serial[0])
    pre = cs[:first]
    out: list[Cand] = []
    if any(c.ch.isdigit() and c.conf >= 0.6 for c in pre):  # a doubtful "digit" is the syllable
        out = _region_above(img, ln, lines)
        if len(pre) > 2:
            return out
    pitch = float(np.median(np.diff([c.x for c in serial])))
    sconf = float(np.prod([c.conf for c in serial]))
    colour = _plate_colour(img, ln.box)
    tops = _above(ln, lines)
    if len(pre) <= 2 and not any(sum(c.ch.isdigit() for c in u.chars) == 2 for u in tops):
        band = _top_band(img, ln)
        if band is not None:
            tops.append(band)
    for u in tops:
        ud = [c for c in u.chars if c.ch.isdigit()]
        if len(ud) == 3 and ud[0].conf < 0.9:  # a region glyph read as a digit before the front number
            ud = ud[1:]
        if len(ud) != 2:
            continue
        front = "".join(c.ch for c in ud)
        fconf = float(np.prod([c.conf for c in ud]))
        upitch = max(float(ud[1].x - ud[0].x), 2.0)
        slots: list[np.ndarray] = []
        # syllable after the front number on the top row
        tail = _slice(u.crop, ud[-1].x + 0.55 * upitch, u.crop.shape[1])
        if tail.size and tail.shape[1] > 0.5 * upitch:
            slots.append(tail)
        # syllable before the serial on the bottom row
        headb = _slice(ln.crop, 0, serial[0].x - 0.55 * pitch)
        if headb.size and headb.shape[1] > 0.5 * pitch:
            slots.append(headb)
        region, rconf = None, 1.0
        rimg = _slice(u.crop, 0, ud[0].x - 0.55 * upitch)
        if rimg.size and rimg.shape[1] > 1.0 * upitch and _READ_REGIONS.get():
            r, p = hangul.vote_region(rimg)
            if r is not None and p >= 0.5:
                region, rconf = r, p
        for sl in slots:
            for syl, sp, agree, tess_ok, cnn_p, tess_other in hangul.vote_syllable(sl)[:3]:
                if sp < 0.05:
                    continue
                text = f"{region or ''}{front}{syl}{serial and ''.join(c.ch for c in serial)}"
                if _parse(text) is None:
                    continue
                c = Cand(
                    text,
                    front,
                    syl,
                    "".join(ch.ch for ch in serial),
                    region,
                    fconf * sconf,
                    sp,
                    rconf,
                    ln.box,
                    colour,
                )
                c.parts = {
                    "agree": bool(agree and sp >= 0.8),
                    "two_row": True,
                    "tess": tess_ok,
                    "cnn": cnn_p,
                    "tess_other": tess_other,
                    "dmin": min(c.conf for c in [*ud, *serial]),
                    "ddmin": min(c.dconf for c in [*ud, *serial]),
                }
                out.append(c)
    return out


def _region_above(img: np.ndarray, ln: Line, lines: list[Line]) -> list[Cand]:
    """A one-row body with the region name printed above it (orange / some yellow plates)."""
    out: list[Cand] = []
    if not _READ_REGIONS.get():
        return out
    for u in _above(ln, lines):
        if sum(c.ch.isdigit() and c.conf > 0.9 for c in u.chars) >= 2:
            continue
        region, rconf = hangul.vote_region(u.crop)
        if region is None or rconf < 0.5:
            continue
        for sp in _split(ln):
            for c in _assemble(img, ln, sp, lines, -1):
                if c.region is None:
                    text = f"{region}{c.text}"
                    if _parse(text) is not None:
                        c2 = Cand(
                            text,
                            c.front,
                            c.syllable,
                            c.serial,
                            region,
                            c.digit_conf,
                            c.syl_conf,
                            rconf,
                            c.box,
                            c.colour,
                        )
                        c2.parts = dict(c.parts)
                        out.append(c2)
    return out


def _row_splits(img: np.ndarray, boxes: list[ppocr.TextBox]) -> list[ppocr.TextBox]:
    """A two-row plate (old green, yellow and orange plates: 335 x 170 mm) found as one box: its
    two rows as boxes of their own, cut at the emptiest ink row between a third and two thirds
    of its height. Read as one line, the rows run into each other and neither is read."""
    out: list[ppocr.TextBox] = []
    for b in boxes:
        if not (1.3 <= b.width / max(b.height, 1.0) <= 2.9) or b.height < 24:
            continue
        crop = ppocr.crop_quad(img, b.quad)
        g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
        _t, m = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        ink = m > 0
        if ink.mean() > 0.5:
            ink = ~ink
        rows = ink[:, int(0.08 * ink.shape[1]) : int(0.92 * ink.shape[1])].mean(axis=1)
        h = len(rows)
        a, z = int(0.3 * h), int(0.62 * h)
        if z - a < 3:
            continue
        cut = a + int(np.argmin(rows[a:z]))
        if rows[cut] > 0.5 * float(np.median(rows)):
            continue  # no gap between two rows there
        f = cut / h
        q = b.quad
        left = q[0] + f * (q[3] - q[0])
        right = q[1] + f * (q[2] - q[1])
        out.append(ppocr.TextBox(np.array([q[0], q[1], right, left], np.float32), b.score))
        out.append(ppocr.TextBox(np.array([left, right, q[2], q[3]], np.float32), b.score))
    return out


def _top_band(img: np.ndarray, bottom: Line) -> Line | None:
    """The top row of a two-row plate, where its bottom row says it is (the detector often finds
    only part of it, "경남 85" read as "5"): the band right above the bottom row, as wide."""
    q = bottom.box.quad.astype(np.float32)
    up = q[0] - q[3]  # from the bottom row's lower edge to its upper edge
    top = np.array([q[0] + 0.85 * up, q[1] + 0.85 * up, q[1] - 0.05 * up, q[0] - 0.05 * up], np.float32)
    h, w = img.shape[:2]
    if top[:, 1].min() < -0.2 * bottom.box.height:
        return None
    top[:, 0] = np.clip(top[:, 0], 0, w - 1)
    top[:, 1] = np.clip(top[:, 1], 0, h - 1)
    return _read_line(img, ppocr.TextBox(top, bottom.box.score))


def _merged_rows(boxes: list[ppocr.TextBox]) -> list[ppocr.TextBox]:
    """The detector sometimes splits a plate row at the syllable: add the union of neighbouring
    boxes of the same height on the same row as an extra line."""
    out: list[ppocr.TextBox] = []
    for a in boxes:
        ax, ay = a.center
        for b in boxes:
            if b is a:
                continue
            bx, by = b.center
            if bx <= ax:
                continue
            h = max(a.height, b.height)
            if abs(ay - by) > 0.35 * h or not (0.7 < a.height / max(b.height, 1e-6) < 1.45):
                continue
            gap = (b.quad[:, 0].min()) - (a.quad[:, 0].max())
            if -1.2 * h < gap < 1.6 * h:
                q = np.array([a.quad[0], b.quad[1], b.quad[2], a.quad[3]], dtype=np.float32)
                out.append(ppocr.TextBox(q, min(a.score, b.score)))
    return out[:20]


def _region_left(img: np.ndarray, top: Cand, lines: list[Line], res: PlateRead) -> Cand:
    """Text right next to the plate number on its left (small region names are often detected as a
    box of their own): read it as a region, or flag that something there was not read."""
    tx0 = float(top.box.quad[:, 0].min())
    _, ty = top.box.center
    h = top.box.height
    for u in lines:
        ux1 = float(u.box.quad[:, 0].max())
        _, uy = u.box.center
        ux, _ = u.box.center
        if u.box is top.box or abs(uy - ty) > 0.4 * h or not (-0.3 * h < tx0 - ux1 < 0.8 * h) or ux >= tx0:
            continue
        if u.box.height > 1.3 * h or u.box.width > 2.5 * h:
            continue
        region, p = hangul.vote_region(u.crop)
        if region is not None and p >= 0.5 and _parse(f"{region}{top.text}") is not None:
            c = Cand(
                f"{region}{top.text}",
                top.front,
                top.syllable,
                top.serial,
                region,
                top.digit_conf,
                top.syl_conf,
                p,
                top.box,
                top.colour,
            )
            c.parts = dict(top.parts)
            c.parts["head_unread"] = False
            return c
        top.parts["head_unread"] = True
    return top
