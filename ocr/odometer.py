"""Odometer reading, one look at a photo (`_analyse`) in named steps:

1. `_find_lines`: text lines from the PP-OCRv4 DB detector on a contrast-equalised copy;
2. `_read_lines`: every line read by PP-OCR (numbers cut from their labels and units,
   `_split_inline`; cut-off digits taken in, `_extend_cut_digits`), the rows the display's labels
   point at (`_anchor_rows`), and every number line again by our digit model;
3. `_locate_displays`: what each line is shown on (`surface_of`) and which numbers lie inside an
   odometer display (a number outside one is never the odometer);
4. `_candidates`: digit groups of the lines in a display, with their features (`_marks`,
   `_support`, `_likelihoods`) and `score` (weights in `ScoreWeights`), ranked (`_rank`);
5. the reading: `_half_rolled`, `_confidence` (`ConfidenceWeights`), `row_settled`,
   `_dashboard_context`, `_auto_accept`;
6. `_claim`: a citizen's claim confirmed under `calibration.current()`.

`read_odometer` takes the looks (`_looks`: smaller detector inputs first) until one settles.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import calibration, ctc, digits, ppocr
from .intake import Decoded, decode
from .types import EngineInfo, OdometerRead

cv2.setNumThreads(1)

VERSION = "odo-1"
log = logging.getLogger(__name__)
DIGITS = "0123456789"
DET_MAX_SIDE = 960
# both modes look at smaller detector inputs first (a half and a quarter of the full look's
# detector cost): a blind read that is auto-accepted there, or a claim confirmed there, is final.
# Blind reads do not take the smallest look: on synthetic dashboards it auto-accepted a misread.
QUICK_DET_SIDES = (640,)
CLAIM_DET_SIDES = (480, 640)

_ODO_RE = re.compile(r"^(ODO|0D0|OD0|0DO|ODOB|ODOA|ODO[A-Z0-9]?|TOTAL|TOT|ODOMETER|OD|DO)$", re.I)
_TRIP_RE = re.compile(r"TR[I1l]P|TRP|TRIP[AB]?", re.I)
_KM_RE = re.compile(r"^(km|kn|krn|KM|mi|miles|km\.)$", re.I)
_SPEED_RE = re.compile(r"km/h|kmh|mph|r/?min|rpm|x\s*[1il][0o]{2,3}|/min", re.I)


@dataclass
class Line:
    box: ppocr.TextBox
    crop: np.ndarray
    text: str = ""  # PP-OCR unrestricted greedy text
    text_conf: float = 0.0
    pp_digits: np.ndarray | None = None  # PP-OCR probs restricted to blank + 0-9 + '.'
    own: np.ndarray | None = None  # own model probs (blank + 0-9 + '.'), as preprocessed
    own2: np.ndarray | None = None  # own model probs, polarity flipped
    kind: str = "other"  # odo_anchor | trip_anchor | km_anchor | speed_unit | number | other
    cut: bool = False  # digit-high ink right beside the box that the reading could not take in
    surface: str = "unknown"  # what the text is shown on: emissive | backlit | printed | unknown
    in_display: bool = False  # inside a located odometer display (see _locate_displays)
    scale: bool = False  # a dial's scale numbers read as one ("100 120" -> 100120)
    context: str = ""  # the whole detected line's text, when this line is one number cut from it
    inline: tuple[bool, bool, bool] | None = None  # ODO label / km unit / TRIP label read beside it
    bound: tuple[bool, bool] = (False, False)  # other characters right beside it (left, right)


@dataclass
class Cand:
    digits: str
    line: int
    score: float = 0.0
    features: dict[str, float] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)
    char_conf: float = 0.0
    decimal: bool = False
    half_rolled: bool = False


def _digit_alphabet() -> str:
    return DIGITS + "."


def _enhance(img: np.ndarray) -> np.ndarray:
    """Local contrast equalisation for the detector, on the full-resolution photo (faint / unlit
    LCDs, plates in shade).  Doing it at the detector's scale instead is cheaper but changed which
    boxes were found on the development photos, for the worse."""
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)
    lab[..., 0] = cv2.createCLAHE(3.0, (8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def _pp_digit_probs(probs: np.ndarray) -> np.ndarray:
    cols = ppocr.vocab_index(_digit_alphabet())
    return ctc.restrict(probs, cols)


def _classify_text(t: str) -> str:
    s = t.strip().replace(" ", "")
    if not s:
        return "other"
    if _SPEED_RE.search(s):
        return "speed_unit"
    if _TRIP_RE.search(s):
        return "trip_anchor"
    if _ODO_RE.match(s):
        return "odo_anchor"
    if _KM_RE.match(s):
        return "km_anchor"
    nd = sum(c.isdigit() for c in s)
    if nd >= 1 and nd >= len(s) - 3:
        return "number"
    return "other"


def _is_decimal(text: str) -> bool:
    """A trip meter's decimal: a point followed by exactly one or two digits ("513.2").  A point
    followed by three digits is a thousands separator ("12.345 km"; PP-OCR's "," restricted to
    digits often becomes ".")."""
    t = text.strip(".")
    return bool(re.search(r"\.\d{1,2}(?!\d)", t))


def _groups(dec: ctc.Decoded) -> list[tuple[str, bool]]:
    """Split a digit decoding into plausible numbers: whole string, and the groups separated by a
    large gap between characters (a label like ODO read as 000 on the left, a unit on the right).
    Returns (digits, has_decimal)."""
    text = dec.text
    if not text:
        return []
    out: list[tuple[str, bool]] = []
    whole_digits = text.replace(".", "")
    has_dec = _is_decimal(text)
    out.append((whole_digits, has_dec))
    fr = dec.frames
    chars = [(c, f) for c, f in zip(text, fr, strict=True)]
    dchars = [(c, f) for c, f in chars if c != "."]
    if len(dchars) >= 4:
        gaps = np.diff([f for _, f in dchars])
        med = float(np.median(gaps)) if len(gaps) else 0.0
        cuts = [i + 1 for i, g in enumerate(gaps) if med > 0 and g > 1.8 * med and g >= med + 2]
        if cuts:
            bounds = [0, *cuts, len(dchars)]
            for a, b in itertools.pairwise(bounds):
                seg = "".join(c for c, _ in dchars[a:b])
                if len(seg) >= 3:
                    f0, f1 = dchars[a][1], dchars[b - 1][1]
                    sub_dec = _is_decimal("".join(c for c, f in chars if f0 <= f <= f1))
                    out.append((seg, sub_dec))
    # leading label read as zeros: "000653150" -> "653150"
    if len(whole_digits) > 7:
        out.append((whole_digits[-7:], has_dec))
        out.append((whole_digits[-6:], has_dec))
    return out


def _near(a: ppocr.TextBox, b: ppocr.TextBox) -> dict[str, float]:
    ax, ay = a.center
    bx, by = b.center
    h = max(a.height, 1.0)
    dx, dy = (bx - ax) / h, (by - ay) / h
    return {"dx": dx, "dy": dy}


def _display_type(crop: np.ndarray) -> str:
    if crop.size == 0:
        return "unknown"
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    v = hsv[..., 2].astype(np.float32)
    thr = float(np.percentile(v, 85))
    fg = v >= max(thr, 60.0)
    if fg.sum() < 10:
        return "unknown"
    sat = float(hsv[..., 1][fg].mean())
    hue = float(np.median(hsv[..., 0][fg]))
    dark_bg = float(np.percentile(v, 30)) < 90
    if sat > 110 and (hue < 35 or hue > 160) and dark_bg:
        return "lcd"  # red / orange / amber segments
    if sat > 110 and dark_bg:
        return "lcd"
    if not dark_bg:
        return "lcd" if sat > 60 else "unknown"
    # light neutral digits on dark: TFT or drum; drums show vertical separators between digits
    g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    col = g.mean(axis=0)
    if len(col) > 20:
        dips = (col < np.percentile(col, 10)).astype(np.int8)
        runs = int(np.sum(np.diff(dips) == 1))
        if runs >= 5 and float(np.std(g.mean(axis=1))) < 25:
            return "mechanical"
    return "tft"


def surface_of(crop: np.ndarray) -> str:
    """What a text line is shown on, from its tight crop: `emissive` (glyphs lighter than what is
    around them: lit segments, TFT text, drums), `backlit` (dark glyphs on a saturated lit panel:
    amber / orange / green LCDs), `printed` (dark glyphs on a bright, unsaturated surface in high
    contrast: paper stickers and labels; an unlit reflective LCD can look like this too, so it then
    needs an ODO label to count as a display) or `unknown` (too little contrast to tell).

    Measured on the development photos: the displays' lines are emissive or have a saturated
    background (S >= 58 on OpenCV's 0-255 scale), the paper stickers beside them a background of
    S <= 17 and V >= 229 with a contrast of 100 or more."""
    if crop.size == 0 or min(crop.shape[:2]) < 4:
        return "unknown"
    g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if float(np.percentile(g, 95)) - float(np.percentile(g, 5)) < 25:
        return "unknown"
    _thr, m = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = m > 0
    # which tone are the glyphs? the one that forms glyph-sized blobs inside the box, clear of its
    # edges (a loose box around a sticker holds dark dashboard, white paper and black print: the
    # print is the dark blobs inside, the dashboard touches the edges)
    n_bright, n_dark = _glyph_blobs(bright), _glyph_blobs(~bright)
    glyph_bright = n_bright > n_dark if n_bright != n_dark else float(bright.mean()) < 0.5
    if glyph_bright:
        return "emissive"
    glyph = ~bright
    k = max(1, int(0.15 * g.shape[0]))
    ring = cv2.dilate(glyph.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0
    around = ring & bright  # the surface right around the print
    if around.sum() < 8:
        around = bright
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    bg_s = float(np.median(hsv[..., 1][around]))
    bg_v = float(np.median(hsv[..., 2][around]))
    glyph_v = float(np.median(hsv[..., 2][glyph])) if glyph.any() else bg_v
    if bg_s < PRINTED_MAX_SAT and bg_v >= PRINTED_MIN_VALUE and bg_v - glyph_v >= PRINTED_MIN_CONTRAST:
        return "printed"
    if bg_s >= BACKLIT_MIN_SAT and bg_v >= BACKLIT_MIN_VALUE:
        return "backlit"
    return "unknown"  # dark glyphs on a dim or grey surface: an unlit LCD, or paper in the dark


def _glyph_blobs(mask: np.ndarray) -> int:
    """Blobs of a tone that could be (part of) a glyph: clear of the box's edges, at least a
    quarter of its height (a seven-segment digit's vertical segment) and not all of it."""
    h, w = mask.shape
    n, _lab, stats, _c = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    count = 0
    for i in range(1, n):
        x, y, bw, bh, _area = stats[i]
        if x == 0 or y == 0 or x + bw >= w or y + bh >= h:
            continue
        if 0.25 * h <= bh <= 0.95 * h and bw <= 0.5 * w:
            count += 1
    return count


#: Surfaces that are lit: a km unit shown on one marks a display (a service sticker's "km" is
#: printed, or unlit at night, and marks nothing).
LIT = ("emissive", "backlit")
#: A line on a surface less saturated than this, at least this bright, with dark glyphs this much
#: darker, is printed (paper), not a display (see surface_of).
PRINTED_MAX_SAT = 50.0
PRINTED_MIN_VALUE = 140.0
PRINTED_MIN_CONTRAST = 80.0
#: Dark glyphs on a surface at least this saturated and bright are on a backlit panel (the
#: development photos' amber / orange / green LCDs: S 58-252, V 103-251).
BACKLIT_MIN_SAT = 55.0
BACKLIT_MIN_VALUE = 95.0


def scale_like(digits_: str) -> bool:
    """Digits that are two or more neighbouring numbers of a dial's scale read as one: multiples of
    ten rising or falling by one step of 10-50 ("100120", "6080100", "200180"). A real reading of
    that form is only taken with an ODO label or km unit beside it."""
    n = len(digits_)

    def parts(i: int) -> list[list[int]]:
        if i == n:
            return [[]]
        out: list[list[int]] = []
        for k in (1, 2, 3):
            piece = digits_[i : i + k]
            if len(piece) < k or (piece[0] == "0" and piece != "0"):
                continue
            v = int(piece)
            if v % 10:
                continue
            out += [[v, *rest] for rest in parts(i + k)]
        return out

    if n < 3 or not digits_.isdigit():
        return False
    for ps in parts(0):
        if len(ps) < 2:
            continue
        steps = {b - a for a, b in itertools.pairwise(ps)}
        if len(steps) == 1 and abs(next(iter(steps))) in (10, 20, 30, 40, 50):
            return True
    return False


def _inline(ln: Line) -> tuple[bool, bool, bool]:
    return ln.inline if ln.inline is not None else _inline_anchors(ln.text)


def _inline_anchors(text: str) -> tuple[bool, bool, bool]:
    """(ODO/TOTAL label, km unit, TRIP label) read into a number line itself ("ODO 253179 km")."""
    letters = re.sub(r"[\d\s.,:]", " ", text).split()
    odo = any(_ODO_RE.match(w) for w in letters if len(w) >= 2) or bool(re.search(r"ODO|TOTAL", text, re.I))
    km = bool(re.search(r"k\s*m\b|k[mno]$", text, re.I)) and not _SPEED_RE.search(text)
    trip = bool(_TRIP_RE.search(text))
    return odo, km, trip


def _locate_displays(img: np.ndarray, lines: list[Line]) -> tuple[dict[int, Line], bool]:
    """Find the odometer display(s) and mark the number lines inside them (`in_display`).

    A display is located by what every odometer display shows around its number: an ODO / TOTAL
    label (left of the number or above it), a lit `km` unit right of it (not one printed on paper
    or unlit: a service sticker says "85,000 km"), or a TRIP row directly above or below it. When the photo
    shows any of those, only numbers inside such a zone are the odometer: a sticker or a dial's
    scale beside the display is outside it. When it shows none (some displays print no label),
    a number counts as in a display when it is lit (emissive) or on a saturated backlit panel,
    never when it is printed on a pale surface. Scale-like numbers ("100 120") count only with
    a label or unit of their own. Returns the ODO labels' owners and whether the display was
    located by its labels (True) or only by lit panels (False)."""
    for ln in lines:
        if ln.pp_digits is not None or ln.kind in ("km_anchor", "odo_anchor", "trip_anchor"):
            ln.surface = surface_of(ppocr.crop_quad(img, ln.box.quad))
    zones: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1

    def zone_of(b: ppocr.TextBox, left: float, right: float, up: float, down: float) -> None:
        x, y, w, h = b.xywh()
        hh = max(b.height, 1.0)
        zones.append((x - left * hh, y - up * hh, x + w + right * hh, y + h + down * hh))

    trip_rows = [
        ln for ln in lines if ln.kind == "trip_anchor" or (ln.pp_digits is not None and _inline(ln)[2])
    ]
    for ln in lines:
        if ln.kind == "odo_anchor":
            zone_of(ln.box, 0.5, 14.0, 2.5, 2.5)
        elif ln.kind == "km_anchor" and ln.surface in LIT:
            zone_of(ln.box, 14.0, 0.5, 1.2, 1.2)
    for t in trip_rows:  # a TRIP row's display: the row(s) right above and below it
        if t.pp_digits is None and t.box.width < 4 * t.box.height:  # a TRIP label: its row runs right
            zone_of(t.box, 0.5, 10.0, 1.8, 1.8)
        else:
            zone_of(t.box, 1.0, 1.0, 1.8, 1.8)
    for ln in lines:
        if ln.pp_digits is None:
            continue
        odo_in, km_in, _trip_in = _inline(ln)
        if (odo_in and ln.surface != "printed") or (km_in and ln.surface in LIT):
            zone_of(ln.box, 0.0, 0.0, 0.0, 0.0)
    digits_read = {id(ln): re.sub(r"\D", "", ln.text) for ln in lines if ln.pp_digits is not None}
    owner = _label_owners(lines)
    for ln in lines:
        if ln.pp_digits is None:
            continue
        odo_in, km_in, _ = _inline(ln)
        labelled = odo_in or (km_in and ln.surface in LIT)
        ln.scale = scale_like(digits_read[id(ln)]) and not labelled
        cx, cy = ln.box.center
        inside = any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in zones)
        if zones:
            ln.in_display = inside and ln.surface != "printed"
            if inside and ln.surface == "printed":  # an unlit reflective LCD: its own ODO label only
                ln.in_display = odo_in or any(owner.get(id(o)) is ln for o in lines if o.kind == "odo_anchor")
        else:
            ln.in_display = ln.surface in ("emissive", "backlit")
        if ln.scale:
            ln.in_display = False
    # the ODO label names the odometer's row: where one is read, beside a number or into it, no
    # other number of the display (a sticker under it, a trip meter) is the odometer
    named = [
        ln
        for ln in lines
        if ln.in_display
        and (_inline(ln)[0] or any(owner.get(id(o)) is ln for o in lines if o.kind == "odo_anchor"))
    ]
    if named:
        keep = {id(ln) for ln in named}
        for ln in lines:
            ln.in_display = ln.in_display and id(ln) in keep
    return owner, bool(zones)


def _label_cost(label: ppocr.TextBox, number: ppocr.TextBox) -> float | None:
    """How well an ODO label sits with a number: directly left of it on its row (best), or right
    above its left part; None when it does not sit with it at all."""
    rel = _near(number, label)
    dx, dy = rel["dx"], rel["dy"]
    if abs(dy) < 0.5 and -7 < dx < 0.5:
        return -dx + abs(dy)
    if -2.2 < dy < -0.3 and abs(dx) < 4:
        return 3.0 + abs(dx) - dy
    return None


def _label_owners(lines: list[Line]) -> dict[int, Line]:
    """Each ODO / TOTAL label belongs to the one number line it sits best with, on a compatible
    surface (a sticker right under the display never takes the display's label)."""
    owners: dict[int, Line] = {}
    for o in lines:
        if o.kind != "odo_anchor":
            continue
        best: tuple[float, Line] | None = None
        for ln in lines:
            # a label lit on a panel is not the label of a number printed on paper, nor the reverse
            if ln.pp_digits is None or ln is o or {o.surface, ln.surface} == {"printed", "emissive"}:
                continue
            c = _label_cost(o.box, ln.box)
            if c is not None and (best is None or c < best[0]):
                best = (c, ln)
        if best is not None:
            owners[id(o)] = best[1]
    return owners


def _read_line(img: np.ndarray, ln: Line, split: bool = True) -> list[Line]:
    """Read a line with PP-OCR and tell what it is (label, unit, number). A quick read tells
    labels, units and short scale numbers apart; a line with 4+ digits (a reading candidate) is
    read again in full (a wide line is read in full at once). A line holding a number together
    with its label or unit, or with another number ("ODO 253179 km", "683792 km 80"), is cut
    into one line per number (returned; the line itself then stays a label line)."""
    rr = ppocr.recognize(ln.crop, min_width=ppocr.quick_width(ln.crop))
    if not rr.padded_fully and sum(c.isdigit() for c in rr.greedy()[0]) >= 4:
        rr = ppocr.recognize(ln.crop)
    ln.text, confs = rr.greedy()
    ln.text_conf = float(min(confs)) if confs else 0.0
    ln.kind = _classify_text(ln.text)
    if ln.kind == "number" or (ln.kind == "other" and sum(c.isdigit() for c in ln.text) >= 3):
        if split:
            parts = _split_inline(img, ln, rr)
            if parts:
                return parts
        ln.pp_digits = _pp_digit_probs(rr.probs)
        if sum(c.isdigit() for c in ln.text) >= 4:
            _extend_cut_digits(img, ln)
    return []


def _runs(rr: ppocr.RecResult) -> list[tuple[str, int, int]]:
    """The line's characters grouped into runs: digits (with , or . between digits) and others,
    as (text, first frame, last frame); a digit run is also broken at a gap wider than three of
    its digit pitches ("100     120")."""
    idx = rr.probs.argmax(axis=1)
    chars: list[tuple[str, int]] = []
    prev = 0
    for t, i in enumerate(idx):
        i = int(i)
        if i != 0 and i != prev:
            chars.append((rr.vocab[i], t))
        prev = i
    # a space between digits is PP-OCR's reading of a wide digit gap (a seven-segment "1" sits at
    # the right of its cell): it does not part a number
    chars = [
        (c, t)
        for k, (c, t) in enumerate(chars)
        if not (
            c == " " and 0 < k < len(chars) - 1 and chars[k - 1][0].isdigit() and chars[k + 1][0].isdigit()
        )
    ]
    runs: list[list[tuple[str, int]]] = []
    for ch, t in chars:
        isd = ch.isdigit() or (ch in ".," and bool(runs) and runs[-1][-1][0].isdigit())
        if runs and ch != " " and runs[-1][0][0] != " " and (runs[-1][0][0].isdigit()) == isd:
            runs[-1].append((ch, t))
        else:
            runs.append([(ch, t)])
    out: list[tuple[str, int, int]] = []
    for r in runs:
        if r[0][0].isdigit():
            ds = [t for c, t in r if c.isdigit()]
            gaps = np.diff(ds) if len(ds) >= 2 else np.array([])
            med = float(np.median(gaps)) if len(gaps) else 0.0
            start = 0
            for k in range(1, len(r)):
                if r[k][0].isdigit() and med > 0 and r[k][1] - r[k - 1][1] > max(3.0 * med, med + 4):
                    out.append(("".join(c for c, _ in r[start:k]).rstrip(".,"), r[start][1], r[k - 1][1]))
                    start = k
            out.append(("".join(c for c, _ in r[start:]).rstrip(".,"), r[start][1], r[-1][1]))
        elif r[0][0] != " ":
            out.append(("".join(c for c, _ in r), r[0][1], r[-1][1]))
    return out


def _split_inline(img: np.ndarray, ln: Line, rr: ppocr.RecResult) -> list[Line]:
    """One line per number of 3+ digits in a detected line that holds more than that number
    (see _read_line), cut between the number and its neighbours' characters, and knowing which
    label and unit stood beside it."""
    runs = _runs(rr)
    nums = [k for k, (t, _, _) in enumerate(runs) if sum(c.isdigit() for c in t) >= 3]
    if not nums or len(runs) == 1:
        return []
    frame_px = 8.0 * ln.crop.shape[1] / max(rr.width, 1)
    q = ppocr.pad_quad(ln.box.quad, 0.25)  # the crop's quad
    w = max(float(ln.crop.shape[1]), 1.0)
    out: list[Line] = []
    for k in nums:
        text, f0, f1 = runs[k]
        nd = sum(c.isdigit() for c in text)
        pitch = max((f1 - f0) / max(nd - 1, 1), 1.0)
        a = (f0 + 0.5 - 0.75 * pitch) * frame_px
        b = (f1 + 0.5 + 0.75 * pitch) * frame_px
        if k > 0:  # never into the neighbours' characters
            a = max(a, (0.5 * (runs[k - 1][2] + f0) + 0.5) * frame_px)
        if k + 1 < len(runs):
            b = min(b, (0.5 * (runs[k + 1][1] + f1) + 0.5) * frame_px)
        a, b = max(0.0, a) / w, min(w, b) / w
        if b - a <= 0:
            continue
        sub = np.array(
            [
                q[0] + a * (q[1] - q[0]),
                q[0] + b * (q[1] - q[0]),
                q[3] + b * (q[2] - q[3]),
                q[3] + a * (q[2] - q[3]),
            ],
            np.float32,
        )
        before = " ".join(t for t, _, _ in runs[:k] if not t[0].isdigit())
        after = runs[k + 1][0] if k + 1 < len(runs) and not runs[k + 1][0][0].isdigit() else ""
        last_before = next((t for t, _, _ in reversed(runs[:k]) if not t[0].isdigit()), "")
        odo = _ODO_RE.match(last_before) is not None or bool(re.search(r"ODO|TOTAL", last_before, re.I))
        km = bool(re.fullmatch(r"k?[mn]|k[mno]|krn|km\.?", after, re.I))
        trip = bool(_TRIP_RE.search(before))
        part = Line(ppocr.TextBox(sub, ln.box.score), ppocr.crop_quad(img, ppocr.pad_quad(sub, 0.08)))
        part.context = ln.text
        part.inline = (odo, km, trip)
        part.bound = (k > 0, k + 1 < len(runs))
        _read_line(img, part, split=False)
        if part.pp_digits is None:
            continue
        out.append(part)
    return out


def _ink_rows_cols(band: np.ndarray) -> np.ndarray | None:
    """The glyph mask of a band cut from a display (glyphs are the minority tone)."""
    if band.size == 0 or min(band.shape[:2]) < 6:
        return None
    g = band.max(axis=2) if band.ndim == 3 else band
    if float(np.percentile(g, 97)) - float(np.percentile(g, 3)) < 30:
        return None
    _t, m = cv2.threshold(np.ascontiguousarray(g), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = m > 0
    if ink.mean() > 0.5:
        ink = ~ink
    return ink


def _row_box(
    img: np.ndarray, x0: float, x1: float, yc: float, hl: float, from_left: bool
) -> ppocr.TextBox | None:
    """The text row a display label marks: in the band [x0, x1] around height yc, the run of ink
    rows nearest yc, then the ink columns continuing from the label's side (gaps of up to most of
    a digit allowed). None when there is no digit-sized ink."""
    H, W = img.shape[:2]
    xa, xb = int(max(0, x0)), int(min(W, x1))
    ya, yb = int(max(0, yc - 3.2 * hl)), int(min(H, yc + 2.2 * hl))
    if xb - xa < 2 * hl or yb - ya < hl:
        return None
    ink = _ink_rows_cols(img[ya:yb, xa:xb])
    if ink is None:
        return None
    rows = ink.mean(axis=1)
    on = rows > max(0.03, 0.15 * float(rows.max()))
    # seven-segment digits thin out between their upper and lower halves: close short gaps
    k = max(1, int(0.12 * hl))
    on = (
        cv2.morphologyEx(on.astype(np.uint8)[:, None], cv2.MORPH_CLOSE, np.ones((2 * k + 1, 1), np.uint8))[
            :, 0
        ]
        > 0
    )
    c = round(yc - ya)
    c = min(max(c, 0), len(on) - 1)
    idx = np.nonzero(on)[0]
    if not len(idx):
        return None
    c = int(idx[np.argmin(np.abs(idx - c))])
    r0 = c
    while r0 > 0 and on[r0 - 1]:
        r0 -= 1
    r1 = c
    while r1 + 1 < len(on) and on[r1 + 1]:
        r1 += 1
    th = r1 - r0 + 1
    if th < 0.7 * hl or th > 4.5 * hl:
        return None
    cols = ink[r0 : r1 + 1].mean(axis=0) > 0.08
    order = range(len(cols)) if from_left else range(len(cols) - 1, -1, -1)
    first = last = None
    gap = 0
    for x in order:
        if cols[x]:
            if first is None:
                first = x
            last, gap = x, 0
        elif first is not None:
            gap += 1
            if gap > 0.9 * th:
                break
    if first is None or last is None:
        return None
    lo, hi = sorted((first, last))
    if hi - lo < 1.5 * th:  # not even two digits wide
        return None
    pad = 0.15 * th
    q = np.array(
        [
            [xa + lo - pad, ya + r0 - pad],
            [xa + hi + pad, ya + r0 - pad],
            [xa + hi + pad, ya + r1 + pad],
            [xa + lo - pad, ya + r1 + pad],
        ],
        np.float32,
    )
    q[:, 0] = np.clip(q[:, 0], 0, W - 1)
    q[:, 1] = np.clip(q[:, 1], 0, H - 1)
    return ppocr.TextBox(q, 0.0)


def _anchor_rows(img: np.ndarray, lines: list[Line]) -> list[Line]:
    """Rows the display's labels point at when the detector found no number there: right of an
    ODO / TOTAL label (up to the km unit on its row), or left of a km unit. The text detector
    misses some seven-segment fonts (separate segments with unlit ghosts between them) that the
    recognisers read well once given the row."""
    owners = _label_owners(lines)
    out: list[Line] = []

    def has_number_left_of(k: Line) -> bool:
        kx0 = float(k.box.quad[:, 0].min())
        _, ky = k.box.center
        for ln in lines:
            if ln.pp_digits is None:
                continue
            _, y = ln.box.center
            x1 = float(ln.box.quad[:, 0].max())
            if (
                abs(y - ky) < 1.5 * max(k.box.height, 1.0)
                and -0.5 * k.box.height < kx0 - x1 < 3 * k.box.height
            ):
                return True
        return False

    kms = [k for k in lines if k.kind == "km_anchor"]
    done_km: set[int] = set()
    for o in lines:
        if o.kind != "odo_anchor" or id(o) in owners:
            continue
        hl = max(o.box.height, 1.0)
        _, oy = o.box.center
        ox1 = float(o.box.quad[:, 0].max())
        stop = ox1 + 14 * hl
        for k in kms:
            kx0 = float(k.box.quad[:, 0].min())
            _, ky = k.box.center
            if ox1 < kx0 < stop and abs(ky - oy) < 1.5 * hl:
                stop = kx0
                done_km.add(id(k))
        b = _row_box(img, ox1 + 0.1 * hl, stop, oy, hl, from_left=True)
        if b is not None:
            out.append(Line(b, ppocr.crop_quad(img, ppocr.pad_quad(b.quad, 0.1))))
    for k in kms:
        if id(k) in done_km or has_number_left_of(k):
            continue
        hl = max(k.box.height, 1.0)
        _, ky = k.box.center
        kx0 = float(k.box.quad[:, 0].min())
        b = _row_box(img, kx0 - 14 * hl, kx0 - 0.05 * hl, ky, hl, from_left=False)
        if b is not None:
            out.append(Line(b, ppocr.crop_quad(img, ppocr.pad_quad(b.quad, 0.1))))
    return out


def _with_stray(d: ctc.Decoded, digits_: str) -> bool:
    """True when the decoding is `digits_` plus one stray character at an end ("km" read as 1,
    the ODO label read as 0).  Callers only accept this when the OTHER engine reads exactly
    `digits_` and it has 6+ digits, so a number missing a real digit cannot pass this way."""
    t = d.text.strip(".")
    if len(digits_) < 6 or len(t) != len(digits_) + 1:
        return False
    return t[1:] == digits_ or t[:-1] == digits_


def _extend_cut_digits(img: np.ndarray, ln: Line) -> None:
    """Take in digit-high ink beside a number line when the wider crop reads the same digits plus
    one or two more at that end; otherwise mark the line as cut (never auto-accepted)."""
    left, right = ppocr.ink_extent(img, ln.box.quad)
    # ink running to the end of the search band is a textured panel, not a digit; ink on both
    # sides is no evidence of one cut digit either; ink where a label or unit was read beside the
    # number (a line cut from a longer one) is that label
    left = left if 0.15 <= left <= 0.8 and not ln.bound[0] else 0.0
    right = right if 0.15 <= right <= 0.8 and not ln.bound[1] else 0.0
    if (left > 0) == (right > 0) or ln.pp_digits is None:
        return
    h = ln.box.height
    q = ppocr.extend_quad(
        ln.box.quad, (left + 0.25) * h if left else 0.0, (right + 0.25) * h if right else 0.0
    )
    crop = ppocr.crop_quad(img, ppocr.pad_quad(q, 0.1))
    rr = ppocr.recognize(crop)
    alpha = _digit_alphabet()
    wide = _pp_digit_probs(rr.probs)
    old = ctc.greedy(ln.pp_digits, alpha).text.strip(".")
    new = ctc.greedy(wide, alpha).text.strip(".")
    grew = len(new) - len(old)
    if (
        old
        and 1 <= grew <= 2
        and (
            (right >= 0.15 and left < 0.15 and new.startswith(old))
            or (left >= 0.15 and right < 0.15 and new.endswith(old))
        )
    ):
        ln.box = ppocr.TextBox(q, ln.box.score)
        ln.crop = crop
        ln.pp_digits = wide
        ln.text = rr.greedy()[0]
    elif new != old:
        ln.cut = True


def _ctc_score(p: np.ndarray, label: str, alphabet: str) -> float:
    """Relative likelihood of `label` against the best path, in (0, 1]."""
    idx = [alphabet.index(c) + 1 for c in label]
    ll = float(ctc.log_likelihood_batch(p, [idx])[0])
    best = ctc.best_path_log_prob(p)
    return float(min(1.0, math.exp(max(-50.0, ll - best))))


def _engines() -> list[str]:
    e = ["ppocrv4-onnx"]
    if digits.available():
        e.append("digits-own")
    return e


def read_odometer(image_bytes: bytes, claimed_km: int | None = None) -> OdometerRead:
    t0 = time.perf_counter()
    try:
        r = _read(image_bytes, claimed_km)
    except Exception as exc:  # never raise: report an engine failure instead
        r = OdometerRead(reasons=["engine_error", f"engine_error:{type(exc).__name__}"])
        if claimed_km is not None:
            r.claim_confirmed = False
    r.engine = EngineInfo(name="carmileage-ocr", version=VERSION, engines=_engines())
    r.elapsed_ms = round((time.perf_counter() - t0) * 1000, 1)
    return r


def _normalise_claim(claimed_km: object) -> str | None:
    if claimed_km is None:
        return None
    try:
        v = int(claimed_km)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    if v < 0 or v > 9_999_999:
        return None
    return str(v)


def _read(image_bytes: bytes, claimed_km: int | None) -> OdometerRead:
    dec = decode(image_bytes)
    info = dec.intake
    claim = _normalise_claim(claimed_km)
    blind = claimed_km is None
    if (blind or claim is not None) and info.ok and dec.bgr is not None:
        # Quick looks first (smaller detector inputs). What one settles is final: a blind read it
        # auto-accepts (the same agreement and confidence tests as the full reading's; measured
        # on the development photos, every quick auto-accept was also the full reading's value)
        # or a claim it confirms. Anything else gets the next look, and at last the full reading.
        for side in _looks(dec, blind)[:-1]:
            quick = _analyse(dec, claim, claimed_km, side)
            if quick.auto_accept if blind else quick.claim_confirmed:
                return quick
    return _analyse(dec, claim, claimed_km, DET_MAX_SIDE)


def _looks(dec: Decoded, blind: bool) -> list[int]:
    """The detector sizes a read looks at, in order (the last is the full reading)."""
    assert dec.bgr is not None
    side = max(dec.bgr.shape[:2])
    quick: list[int] = []
    for s in QUICK_DET_SIDES if blind else CLAIM_DET_SIDES:
        if side <= s:
            break
        quick.append(s)
    return [*quick, DET_MAX_SIDE]


def claim_looks(image_bytes: bytes, claimed_km: int) -> list[dict[str, object]]:
    """The claim evidence of every look claimed mode can take at the photo, without stopping at
    the first that confirms: what `carmileage ocr calibrate` refits the thresholds on (a claim is
    confirmed exactly when one of them passes the rule)."""
    dec = decode(image_bytes)
    claim = _normalise_claim(claimed_km)
    if claim is None or not dec.intake.ok or dec.bgr is None:
        return []
    out: list[dict[str, object]] = []
    for side in _looks(dec, blind=False):
        try:
            r = _analyse(dec, claim, claimed_km, side)
        except Exception:
            continue
        if r.claim_evidence is not None:
            out.append(dict(r.claim_evidence))
    return out


def _analyse(dec: Decoded, claim: str | None, claimed_km: object, det_side: int) -> OdometerRead:
    """One look at the photo with the text detector at `det_side`: the steps of the module's
    docstring, each a function below."""
    info = dec.intake
    res = OdometerRead(intake=info, reasons=list(info.reasons))
    if claimed_km is not None:
        res.claim_confirmed = False
        if claim is None:
            res.reasons.append("claim_invalid")
    if not info.ok or dec.bgr is None:
        return res
    img = dec.bgr
    lines = _find_lines(img, dec.derived_image("odometer.enhanced", lambda: _enhance(img)), det_side)
    if not lines:
        res.reasons.append("no_odometer_found")
        return res
    lines = _read_lines(img, lines)
    owner, by_label = _locate_displays(img, lines)
    final = det_side >= DET_MAX_SIDE
    cands = _candidates(lines, owner)
    if not cands:
        res.reasons.append("no_odometer_found")
        return res
    ranked = _rank(cands)
    if log.isEnabledFor(logging.DEBUG):
        for c in ranked[:6]:
            log.debug(
                "candidate %s score %.2f %s %s %r",
                c.digits,
                c.score,
                c.features,
                c.engines,
                lines[c.line].text,
            )
    best = ranked[0]
    if best.score < NO_READING_SCORE or len(best.digits) < 3:
        if any(c.decimal and c.features.get("trip", 0) for c in ranked):
            res.reasons.append("trip_meter_only")
        res.reasons.append("no_odometer_found")
        res.candidates = _shown_candidates(ranked)
        _claim(res, claim, lines, ranked, _digit_alphabet(), by_label, final)
        return res
    bl = lines[best.line]
    value = _half_rolled(best, bl)
    if best.half_rolled:
        res.reasons.append("half_rolled_digit")
    res.value_km = int(value)
    x, y, w, h = bl.box.xywh()
    s = 1.0 / dec.scale if dec.scale else 1.0
    res.box = (int(x * s), int(y * s), int(w * s), int(h * s))
    res.display = _display_type(bl.crop)  # type: ignore[assignment]
    margin = best.score - _runner_up_score(ranked)
    res.confidence = round(_confidence(best, value, margin), 3)
    # is this surely the odometer's row? (see row_settled)
    settled = row_settled(best.features, final, _rival_numbers(lines, best))
    if not settled:
        res.reasons.append("odometer_row_ambiguous")
    context = _dashboard_context(lines, best)
    if not context:
        res.reasons.append("no_dashboard_context")
    res.auto_accept = _auto_accept(best, bl, value, margin, res.confidence, context=context, settled=settled)
    if not res.auto_accept:
        res.reasons.append("low_confidence")
    res.candidates = _shown_candidates(ranked)
    _claim(res, claim, lines, ranked, _digit_alphabet(), by_label, final)
    return res


def _find_lines(img: np.ndarray, enhanced: np.ndarray, det_side: int) -> list[Line]:
    """Step 1: the text lines the detector finds on the contrast-equalised photo, cropped from the
    photo itself with a quarter of their height around them; vertical text is no reading."""
    lines: list[Line] = []
    for b in ppocr.detect(enhanced, max_side=det_side):
        if b.height < 8:
            continue
        crop = ppocr.crop_quad(img, ppocr.pad_quad(b.quad, 0.25))
        if crop.shape[0] > crop.shape[1] * 1.5:
            continue  # vertical text: not a reading
        lines.append(Line(b, crop))
    return lines


def _read_lines(img: np.ndarray, lines: list[Line]) -> list[Line]:
    """Steps 2-4: read every line with PP-OCR (numbers cut from their labels and units become lines
    of their own), read the rows the display's labels point at when no number was found there,
    and read every number line again with our digit model (both polarities; the surer view is
    its reading: letting either view vote lets confident misreads through)."""
    for ln in list(lines):
        lines += _read_line(img, ln)
    for ln in _anchor_rows(img, lines):
        _read_line(img, ln, split=False)
        if ln.pp_digits is not None:
            lines.append(ln)
    num_lines = [ln for ln in lines if ln.pp_digits is not None]
    if digits.available() and num_lines:
        for ln, (p1, p2) in zip(
            num_lines, digits.recognize_views([ln.crop for ln in num_lines]), strict=True
        ):
            if np.log(p1.max(axis=1)).sum() >= np.log(p2.max(axis=1)).sum():
                ln.own, ln.own2 = p1, p2
            else:
                ln.own, ln.own2 = p2, p1
    return lines


@dataclass(frozen=True)
class LineShape:
    """What a number line's raw text says about it, beyond its digits."""

    letters: int  # letters read into it (a label, a sticker's text)
    dash: bool  # a dash, underscore, colon, slash or percent sign anywhere in it
    inter: bool  # a letter between digits ("31c301": a temperature and a trip; "1n80-3234")
    joined: bool  # digits joined by a dash, colon or slash: a registration number, clock or date


def _line_shape(text: str) -> LineShape:
    raw = text.replace(" ", "")
    return LineShape(
        letters=sum(c.isalpha() for c in raw),
        dash=any(c in raw for c in "-_:/%"),
        inter=bool(re.search(r"\d[^\d\s.,]+\d", raw)),
        # an odometer has no separator but , or .
        joined=bool(re.search(r"\d\s*[-_:/~]\s*\d", raw)),
    )


def _candidates(lines: list[Line], owner: dict[int, Line]) -> dict[tuple[str, int], Cand]:
    """Step 5: the digit groups each engine reads on each number line inside a located display (a
    number outside a display is never the odometer), each described by `_describe`."""
    alpha = _digit_alphabet()
    cands: dict[tuple[str, int], Cand] = {}
    reads: dict[int, dict[str, ctc.Decoded]] = {}
    for li, ln in enumerate(lines):
        if ln.pp_digits is None or not ln.in_display:
            continue
        decs: dict[str, ctc.Decoded] = {"pp": ctc.greedy(ln.pp_digits, alpha)}
        if ln.own is not None:
            decs["own"] = ctc.greedy(ln.own, alpha)
        shape = _line_shape(ln.text)
        reads[li] = decs
        for eng, d in decs.items():
            for g, has_dec in _groups(d):
                c = cands.get((g, li))
                if c is None:
                    c = cands[(g, li)] = Cand(g, li)
                c.engines[eng] = d.text
                c.decimal = c.decimal or has_dec
                c.features.update(
                    letters=shape.letters,
                    dash=float(shape.dash),
                    inter=float(shape.inter),
                    joined=float(shape.joined),
                )
    heights = [ln.box.height for ln in lines if ln.pp_digits is not None and ln.in_display] or [1.0]
    for c in cands.values():
        _describe(c, lines, owner, reads[c.line], max(heights))
    return cands


def _describe(
    c: Cand, lines: list[Line], owner: dict[int, Line], decs: dict[str, ctc.Decoded], tallest: float
) -> None:
    """A candidate's features: its length and height, the display's marks beside it (`_marks`),
    which engines support it and how likely each finds it; then its `score`."""
    ln = lines[c.line]
    f = c.features
    f["len"] = len(c.digits)
    f["rel_h"] = ln.box.height / tallest
    f.update(_marks(c, lines, owner))
    support = _support(c, decs)
    # the two views of our model count as one engine
    f["n_engines"] = float(("pp" in support) + ("own" in support))
    f["pp"] = float("pp" in support)
    f["ctc_min"], f["ctc_mean"] = _likelihoods(c, ln, decs, support)
    c.score = score(f, c.decimal)


def _marks(c: Cand, lines: list[Line], owner: dict[int, Line]) -> dict[str, float]:
    """The display's marks around a candidate's line: its ODO / TOTAL label (1; 0.7 when read into
    the line itself), a km unit right of it on its row (1; 0.7 read into the line) and whether
    that unit is lit, a TRIP label left of it on its row, a speed unit (km/h, r/min) right by it."""
    ln = lines[c.line]
    odo = km = trip = speed = 0.0
    km_lit = False
    for oj, other in enumerate(lines):
        if oj == c.line:
            continue
        rel = _near(ln.box, other.box)
        dx, dy = rel["dx"], rel["dy"]
        same_row = abs(dy) < 0.5
        if other.kind == "odo_anchor" and owner.get(id(other)) is ln:
            odo = 1.0
        if other.kind == "km_anchor" and same_row and 0 < dx < 7:
            km = 1.0
            km_lit = km_lit or other.surface in LIT
        if other.kind == "trip_anchor" and (same_row and -7 < dx < 0.5):
            trip = 1.0
        if (
            other.kind == "speed_unit"
            and abs(dx) < 3
            and abs(dy) < 1.5
            and other.box.height > 0.5 * ln.box.height
        ):
            speed = 1.0
    odo_in, km_in, trip_in = _inline(ln)
    if (odo_in or _ODO_RE.match(re.sub(r"[\d\s]", "", ln.text) or "-")) and len(c.digits) >= 4:
        odo = max(odo, 0.7)
    if trip_in:
        trip = 1.0
    if km_in:
        km = max(km, 0.7)
        km_lit = km_lit or ln.surface in LIT
    return {"odo": odo, "km": km, "trip": trip, "speed": speed, "km_lit": float(km_lit)}


def _support(c: Cand, decs: dict[str, ctc.Decoded]) -> set[str]:
    """The engines that read the candidate: the ones whose groups hold it, and for candidates of 5+
    digits an engine whose reading of the whole line is the candidate, or (when the other engine
    reads it exactly) the candidate plus one stray character at an end (a "km" read as 1, the ODO
    label read as 0 or 8)."""
    support = set(c.engines)
    texts = {eng: d.text for eng, d in decs.items()}
    for eng, full in texts.items():
        fd = full.strip(".")
        if eng in support or len(c.digits) < 5 or "." in fd:
            continue
        others_exact = any(o != eng and v.strip(".") == c.digits for o, v in texts.items())
        if fd == c.digits or (others_exact and _with_stray(decs[eng], c.digits)):
            support.add(eng)
    return support


def _likelihoods(c: Cand, ln: Line, decs: dict[str, ctc.Decoded], support: set[str]) -> tuple[float, float]:
    """(least, mean) over the engines of the candidate's relative CTC likelihood on its line (our
    model's two views: the better). An engine that supports the candidate is scored on what it
    read (a stray end character, thousands separators: "706.901" for 706,901)."""
    alpha = _digit_alphabet()
    sc: list[float] = []
    own_sc: list[float] = []
    for eng, pr in (("pp", ln.pp_digits), ("own", ln.own)):
        if pr is None:
            continue
        full = decs[eng].text if eng in decs else ""
        sep = full.replace(".", "") == c.digits and not _is_decimal(full)
        lab = full.strip(".") if (eng in support and ("." not in full.strip(".") or sep)) else c.digits
        (sc if eng == "pp" else own_sc).append(_ctc_score(pr, lab, alpha))
    if own_sc:
        sc.append(max(own_sc))
    return (min(sc), float(np.mean(sc))) if sc else (0.0, 0.0)


@dataclass(frozen=True)
class ScoreWeights:
    """The candidate score: a sum of log-odds-like terms that ranks the numbers of one photo (what
    decides is its order and the margin between the first and the rest, see `_auto_accept`).
    Set by hand in issue 3 on synthetic dashboards and kept since by the development photos'
    figures; the gates after it (engine agreement, anchors, the display, the claim margins) are
    what keep wrong values from being accepted, never the score alone."""

    #: by number of digits: odometers show 5-7 digits (6 most often); 3-4 digit numbers are scale
    #: marks, speeds, trip meters without their decimal; 7 is rare (and often a label read in)
    length: tuple[tuple[int, float], ...] = (
        (0, -9.0),
        (1, -9.0),
        (2, -9.0),
        (3, -5.0),
        (4, -1.5),
        (5, 1.0),
        (6, 1.5),
        (7, 0.3),
    )
    length_other: float = -6.0  # 8+ digits: two numbers run together
    odo_label: float = 2.5  # its ODO / TOTAL label: the strongest evidence
    km_unit: float = 1.0
    trip_label: float = -3.0  # a trip meter
    speed_unit: float = -3.0  # a speed next to km/h or r/min (only for 4 digits or fewer)
    pp_reads_it: float = 0.5  # PP-OCR, the better engine on real photos, reads it
    decimal: float = -4.0  # a decimal point: a trip meter
    letters: float = -1.5  # at most, for 3+ letters read into the line (a sticker's text)
    dash: float = -3.0
    letter_between_digits: float = -2.0
    rel_height: float = 1.0  # the odometer is the display's largest number
    both_engines: float = 1.0
    likelihood: float = 1.5  # times the mean relative CTC likelihood (0-1)


WEIGHTS = ScoreWeights()
#: A best candidate scoring less than this is no reading at all (`no_odometer_found`).
NO_READING_SCORE = -2.0


def score(f: dict[str, float], decimal: bool, w: ScoreWeights = WEIGHTS) -> float:
    """A candidate's score from its features (see ScoreWeights)."""
    n = int(f["len"])
    s = dict(w.length).get(n, w.length_other)
    s += w.odo_label * f["odo"] + w.km_unit * f["km"] + w.trip_label * f["trip"]
    s += w.speed_unit * f["speed"] if n <= 4 else 0.0
    s += w.pp_reads_it * f["pp"]
    s += w.decimal if decimal else 0.0
    s += w.letters * min(f["letters"], 3) / 3 + w.dash * f["dash"] + w.letter_between_digits * f["inter"]
    s += w.rel_height * f["rel_h"]
    s += w.both_engines * (f["n_engines"] - 1)
    s += w.likelihood * f["ctc_mean"]
    return s


def _rank(cands: dict[tuple[str, int], Cand]) -> list[Cand]:
    """Best first; a digit string read on several lines keeps its best line."""
    seen: dict[str, Cand] = {}
    for c in sorted(cands.values(), key=lambda c: -c.score):
        seen.setdefault(c.digits, c)
    return list(seen.values())


def _shown_candidates(ranked: list[Cand]) -> list[tuple[int, float]]:
    """The first five readings with their scores as probabilities, for the reviewer."""
    return [(int(c.digits), round(_sig(c.score), 3)) for c in ranked[:5] if c.digits.isdigit()]


def _half_rolled(best: Cand, bl: Line) -> str:
    """Mechanical drums caught between two digits: when PP-OCR's two best classes at the last digit
    are consecutive digits (the second with > 0.25), the lower one is the reading and the
    candidate is marked half-rolled (never auto-accepted)."""
    value = best.digits
    if bl.pp_digits is None:
        return value
    d_pp = ctc.greedy(bl.pp_digits, _digit_alphabet())
    if d_pp.text.replace(".", "").endswith(value) and d_pp.alts:
        alts = d_pp.alts[-1]
        if len(alts) >= 2 and alts[1][1] > 0.25:
            a0, a1 = alts[0][0], alts[1][0]
            if a0.isdigit() and a1.isdigit() and (int(a0) - int(a1)) % 10 in (1, 9):
                lo = a0 if (int(a1) - int(a0)) % 10 == 1 else a1
                value = value[:-1] + lo
                best.half_rolled = True
    return value


def _runner_up_score(ranked: list[Cand]) -> float:
    """The best score of a reading that is not part of the chosen one on its line (a different
    number, or the same digits on another line)."""
    best = ranked[0]
    rivals = [
        c
        for c in ranked[1:]
        if not (best.digits in c.digits or c.digits in best.digits) or c.line != best.line
    ]
    return rivals[0].score if rivals else -10.0


@dataclass(frozen=True)
class ConfidenceWeights:
    """`confidence` (0-1), shown to reviewers and required at AUTO_ACCEPT for an auto-accept: a
    base, plus what makes a reading sure (both engines, their likelihoods, anchors, a margin of
    3 score points over the next reading), less what makes it doubtful. Set by hand in issue 3
    so that a reading with both engines agreeing at full likelihood and an anchor reaches 0.85."""

    base: float = 0.15
    both_engines: float = 0.35
    likelihood: float = 0.25  # times the least relative CTC likelihood of the engines
    anchored: float = 0.1  # an ODO label or km unit
    margin: float = 0.15  # times the margin over the runner-up, up to 3 score points
    margin_full: float = 3.0
    short: float = -0.2  # fewer than 5 digits
    trip: float = -0.4  # a decimal point or a TRIP label
    half_rolled: float = -0.2


CONFIDENCE = ConfidenceWeights()
AUTO_ACCEPT = 0.8


def _confidence(best: Cand, value: str, margin: float, w: ConfidenceWeights = CONFIDENCE) -> float:
    f = best.features
    conf = w.base
    conf += w.both_engines if f["n_engines"] >= 2 else 0.0
    conf += w.likelihood * f["ctc_min"]
    conf += w.anchored * min(1.0, f["odo"] + f["km"])
    conf += w.margin * min(1.0, max(0.0, margin) / w.margin_full)
    if len(value) < 5:
        conf += w.short
    if best.decimal or f["trip"]:
        conf += w.trip
    if best.half_rolled:
        conf += w.half_rolled
    return float(np.clip(conf, 0.0, 1.0))


def _dashboard_context(lines: list[Line], best: Cand) -> bool:
    """Does the photo look like an instrument cluster? An ODO / TRIP / km / speed label, or a
    speedometer or tachometer scale (two or more short round numbers); a licence plate or a
    sticker alone has neither."""
    if best.features["odo"] > 0 or best.features["km"] > 0:
        return True
    scale = [ln for ln in lines if re.fullmatch(r"\d{1,3}0", ln.text.strip()) is not None]
    return len(scale) >= 2 or any(
        ln.kind in ("odo_anchor", "trip_anchor", "km_anchor", "speed_unit") for ln in lines
    )


def _auto_accept(
    best: Cand, bl: Line, value: str, margin: float, confidence: float, *, context: bool, settled: bool
) -> bool:
    """Step 6: a reading is auto-accepted only when both engines read exactly it with a relative
    likelihood of 0.6 or more, it leads every other reading by a score point, it has 6+ digits
    (5 with an ODO label or km unit), no decimal point, no TRIP label, no half-rolled digit, its
    line is not cut or joined, its row is surely the odometer's, the photo is a dashboard, and its
    confidence reaches AUTO_ACCEPT."""
    f = best.features
    anchored = f["odo"] > 0 or f["km"] > 0
    return bool(
        context
        and f["n_engines"] >= 2
        and f["ctc_min"] >= 0.6
        and margin >= 1.0
        and not best.decimal
        and (len(value) >= 6 or (len(value) == 5 and anchored))
        and not f["trip"]
        and not best.half_rolled
        and not bl.cut
        and not f.get("joined")
        and settled
        and confidence >= AUTO_ACCEPT
    )


def row_settled(features: dict[str, float], final: bool, rivals: int) -> bool:
    """See calibration.row_settled."""
    return calibration.row_settled(
        {
            "labelled": features.get("odo", 0) > 0,
            "km_lit": features.get("km_lit", 0) > 0,
            "final": final,
            "rivals": rivals,
        }
    )


def _rival_numbers(lines: list[Line], best: Cand) -> int:
    """Numbers elsewhere in the photo that could be an odometer reading if the chosen one is not:
    5-7 plain digits on another line, in a display or not (a backlit sticker beside an unlit LCD
    is as plausible as the LCD), not a trip meter, a decimal, a dial's scale or a number with
    letters or dashes inside (a registration sticker)."""
    seen: set[str] = set()
    for li, ln in enumerate(lines):
        if li == best.line or ln.pp_digits is None or ln.scale or _inline(ln)[2]:
            continue
        raw = ln.text.replace(" ", "")
        if re.search(r"\d[^\d.,]+\d", raw) or _is_decimal(raw):
            continue
        d = re.sub(r"\D", "", raw)
        if not 5 <= len(d) <= 7 or best.digits in d or d in best.digits:
            continue
        seen.add(d)
    return len(seen)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _claim(
    res: OdometerRead,
    claim: str | None,
    lines: list[Line],
    ranked: list[Cand],
    alpha: str,
    by_label: bool = True,
    final: bool = True,
) -> None:
    """A claim is confirmed only on the line chosen as the odometer (in a display; not a trip
    meter, a decimal, a cut or a joined number), and only when the claimed digits beat every value
    one edit away from them (one digit changed, added or dropped) under PP-OCR's CTC output, and
    under PP-OCR and our digit model together (log-likelihood ratios added, ours weighted), by the
    margins of `calibration.current()` (see calibration.odometer_confirms). A claim one digit away
    from what the image shows has the true value among its neighbours, so it loses unless an
    engine misread that very digit into that very value. The evidence is kept in
    `res.claim_evidence` (what `carmileage ocr calibrate` refits the margins on)."""
    if claim is None:
        return
    res.claim_confirmed = False
    ev: dict[str, object] = {
        "eligible": False,
        "pp_margin": None,
        "own_margin": None,
        "other_auto": False,
        # how surely the chosen number is the odometer's row (see calibration.row_settled)
        "labelled": bool(ranked and ranked[0].features.get("odo", 0) > 0),
        "km_lit": bool(ranked and ranked[0].features.get("km_lit", 0) > 0),
        "by_label": by_label,
        "final": final,
        "rivals": _rival_numbers(lines, ranked[0]) if ranked else 0,
    }
    res.claim_evidence = ev
    if not ranked:
        return
    best = ranked[0]
    ln = lines[best.line]
    if (
        best.decimal
        or best.features.get("trip")
        or best.features.get("joined")
        or len(best.digits) < 3
        or ln.pp_digits is None
        or ln.cut
    ):
        res.claim_score = 0.0
        _claim_reason(res, claim)
        return
    # when the blind reading chose exactly the claimed digits on this line, it has already set
    # apart what the engines read around them (an ODO label read as "000", a "km" read as "1");
    # otherwise only characters beyond a wide gap are set aside
    chosen = claim == best.digits
    m_pp = claim_margins(ln.pp_digits, claim, alpha, segmented=chosen)
    # our model often reads a "km" or the display's edge as one more character: set that aside
    # only when PP-OCR reads exactly the claim, and only for 6+ digit claims (a 5-digit claim
    # plus a stray digit could be a truncated 6-digit reading)
    pp_exact = ctc.greedy(ln.pp_digits, alpha).text.strip(".") == claim
    m_own = claim_margins(ln.own, claim, alpha, stray_ok=pp_exact and len(claim) >= 6, segmented=chosen)
    if m_pp is None:
        res.claim_score = 0.0
        _claim_reason(res, claim)
        return
    th = calibration.current()
    ev.update(
        eligible=True,
        pp_margin=round(m_pp, 4),
        own_margin=None if m_own is None else round(m_own, 4),
        # never both: a confident reading of another value wins
        other_auto=bool(res.auto_accept and res.value_km is not None and str(res.value_km) != claim),
    )
    combined = m_pp + th.odometer_own_weight * (m_own if m_own is not None else 0.0)
    res.claim_score = round(_sig(combined - th.odometer_margin), 4)
    res.claim_confirmed = calibration.odometer_confirms(ev, th)
    _claim_reason(res, claim)


def _claim_reason(res: OdometerRead, claim: str) -> None:
    """Why an unconfirmed claim was not confirmed, as the reviewer should read it: the display
    shows another value (`claim_mismatch`), or the claimed value was read but not surely enough
    (`claim_unconfirmed`)."""
    if res.claim_confirmed or res.value_km is None:
        return
    res.reasons.append("claim_unconfirmed" if str(res.value_km) == claim else "claim_mismatch")


# the default log-likelihood-ratio margins (see calibration.Thresholds, scripts/train_claim_margins.py)
CLAIM_PP_MARGIN = calibration.DEFAULT.odometer_pp_margin
CLAIM_OWN_WEIGHT = calibration.DEFAULT.odometer_own_weight
CLAIM_MARGIN = calibration.DEFAULT.odometer_margin


def _flanked(p: np.ndarray, label: str, alpha: str) -> tuple[str, str]:
    """Characters an engine reads on the line beside `label` but set apart from it by a wide gap
    (an ODO label read as 0, a km read as 1), so the claim is scored in the context the engine
    sees.  Digits right next to the claim are not set aside: a claim that drops a digit the line
    shows ("27438" on a line reading 274384) must lose to the full number."""
    d = ctc.greedy(p, alpha)
    chars = [(c, f) for c, f in zip(d.text, d.frames, strict=True) if c != "."]
    txt = "".join(c for c, _ in chars)
    i = txt.find(label) if label else -1
    if i < 0:
        return "", ""
    j = i + len(label)
    fr = [f for _, f in chars]
    gaps = np.diff(fr[i:j]) if j - i >= 2 else np.array([2.0])
    wide = 1.8 * max(float(np.median(gaps)), 1.0) + 1
    pre = txt[:i] if i == 0 or fr[i] - fr[i - 1] > wide else None
    post = txt[j:] if j == len(txt) or fr[j] - fr[j - 1] > wide else None
    if pre is None or post is None:
        return "", ""
    return pre, post


def claim_margins(
    p: np.ndarray | None, claim: str, alpha: str, stray_ok: bool = False, segmented: bool = False
) -> float | None:
    """log P(claim) minus the best log P of any one-edit neighbour of the claim (one digit changed,
    added or dropped) under one engine's CTC output for the line: > 0 when the engine prefers the
    claim to every value a mistyped or misread digit would give.  With `stray_ok`, one character
    the engine reads right beside the claim at either end is set aside (a "km" read as 1); with
    `segmented`, everything the engine reads around the claimed digits is."""
    if p is None or not claim:
        return None
    pre, post = _flanked(p, claim, alpha)
    if segmented and not pre and not post:
        d = ctc.greedy(p, alpha).text.replace(".", "")
        if claim in d:
            pre, post = d.split(claim, 1)
    if stray_ok and not pre and not post:
        d = ctc.greedy(p, alpha).text.strip(".")
        if len(d) == len(claim) + 1 and d[1:] == claim:
            pre = d[0]
        elif len(d) == len(claim) + 1 and d[:-1] == claim:
            post = d[-1]
    labs = [claim, *ctc.one_edit_neighbours(claim, DIGITS)]
    idx = [[alpha.index(c) + 1 for c in pre + lab + post] for lab in labs]
    ll = ctc.log_likelihood_batch(p, idx)
    return float(ll[0] - ll[1:].max())
