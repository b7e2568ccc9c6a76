"""Odometer reading: find text lines (PP-OCRv4 DB detector), read each with two engines (PP-OCRv4
CTC recogniser restricted to digits, and our own seven-segment-aware digit model), pick the total
distance field by its anchors (ODO / TOTAL / km to its side, not TRIP, not a decimal, not a km/h
scale number), then decide how sure we are."""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import ctc, digits, ppocr
from .intake import Decoded, decode
from .types import EngineInfo, OdometerRead

cv2.setNumThreads(1)

VERSION = "odo-1"
_DEBUG = bool(os.environ.get("OCR_DEBUG"))
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
    # sides is no evidence of one cut digit either
    left = left if 0.15 <= left <= 0.8 else 0.0
    right = right if 0.15 <= right <= 0.8 else 0.0
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
        for side in QUICK_DET_SIDES if blind else CLAIM_DET_SIDES:
            if max(dec.bgr.shape[:2]) <= side:
                break
            quick = _analyse(dec, claim, claimed_km, side)
            if quick.auto_accept if blind else quick.claim_confirmed:
                return quick
    return _analyse(dec, claim, claimed_km, DET_MAX_SIDE)


def _analyse(dec: Decoded, claim: str | None, claimed_km: object, det_side: int) -> OdometerRead:
    info = dec.intake
    res = OdometerRead(intake=info, reasons=list(info.reasons))
    if claimed_km is not None:
        res.claim_confirmed = False
        if claim is None:
            res.reasons.append("claim_invalid")
    if not info.ok or dec.bgr is None:
        return res
    img = dec.bgr
    boxes = ppocr.detect(dec.derived_image("odometer.enhanced", lambda: _enhance(img)), max_side=det_side)
    lines: list[Line] = []
    for b in boxes:
        if b.height < 8:
            continue
        crop = ppocr.crop_quad(img, ppocr.pad_quad(b.quad, 0.25))
        if crop.shape[0] > crop.shape[1] * 1.5:
            continue  # vertical text: not a reading
        lines.append(Line(b, crop))
    if not lines:
        res.reasons.append("no_odometer_found")
        return res
    for ln in lines:
        # a quick read tells labels, units and short scale numbers apart; a line with 4+ digits
        # (a reading candidate) is read again in full (a wide line was read in full at once)
        rr = ppocr.recognize(ln.crop, min_width=ppocr.quick_width(ln.crop))
        if not rr.padded_fully and sum(c.isdigit() for c in rr.greedy()[0]) >= 4:
            rr = ppocr.recognize(ln.crop)
        ln.text, confs = rr.greedy()
        ln.text_conf = float(min(confs)) if confs else 0.0
        ln.kind = _classify_text(ln.text)
        if ln.kind == "number" or (ln.kind == "other" and sum(c.isdigit() for c in ln.text) >= 3):
            ln.pp_digits = _pp_digit_probs(rr.probs)
            if sum(c.isdigit() for c in ln.text) >= 4:
                _extend_cut_digits(img, ln)
    num_lines = [ln for ln in lines if ln.pp_digits is not None]
    if digits.available() and num_lines:
        for ln, (p1, p2) in zip(
            num_lines, digits.recognize_views([ln.crop for ln in num_lines]), strict=True
        ):
            # the more confident polarity view is our engine's reading; the other view is kept for
            # debugging only (letting either view vote lets confident misreads through)
            if np.log(p1.max(axis=1)).sum() >= np.log(p2.max(axis=1)).sum():
                ln.own, ln.own2 = p1, p2
            else:
                ln.own, ln.own2 = p2, p1
    alpha = _digit_alphabet()
    cands: dict[tuple[str, int], Cand] = {}
    line_reads: dict[int, dict[str, str]] = {}
    line_decs: dict[int, dict[str, ctc.Decoded]] = {}
    heights = [ln.box.height for ln in num_lines] or [1.0]
    for li, ln in enumerate(lines):
        if ln.pp_digits is None:
            continue
        reads: dict[str, ctc.Decoded] = {"pp": ctc.greedy(ln.pp_digits, alpha)}
        if ln.own is not None:
            reads["own"] = ctc.greedy(ln.own, alpha)
        # does the raw text look like a label/sticker (letters mixed into the number, dashes)?
        raw = ln.text.replace(" ", "")
        letters = sum(c.isalpha() for c in raw)
        dash = "-" in raw or "_" in raw or ":" in raw or "/" in raw or "%" in raw
        # a letter between digits ("31c301": temperature and a trip; "1n80-3234": a sticker)
        inter = bool(re.search(r"\d[^\d\s.,]+\d", raw))
        line_reads[li] = {eng: d.text for eng, d in reads.items()}
        line_decs[li] = reads
        for eng, d in reads.items():
            for g, has_dec in _groups(d):
                key = (g, li)
                c = cands.get(key)
                if c is None:
                    c = cands[key] = Cand(g, li)
                c.engines[eng] = d.text
                c.decimal = c.decimal or has_dec
                c.features["letters"] = letters
                c.features["dash"] = float(dash)
                c.features["inter"] = float(inter)
    if not cands:
        res.reasons.append("no_odometer_found")
        return res
    # features per candidate
    for c in cands.values():
        ln = lines[c.line]
        f = c.features
        n = len(c.digits)
        f["len"] = n
        f["rel_h"] = ln.box.height / max(heights)
        # anchors
        odo = km = trip = speed = 0.0
        for oj, other in enumerate(lines):
            if oj == c.line:
                continue
            rel = _near(ln.box, other.box)
            dx, dy = rel["dx"], rel["dy"]
            same_row = abs(dy) < 0.5
            if other.kind == "odo_anchor" and (
                (same_row and -7 < dx < 0.5) or (-2.2 < dy < -0.3 and abs(dx) < 4)
            ):
                odo = 1.0
            if other.kind == "km_anchor" and same_row and 0 < dx < 7:
                km = 1.0
            if other.kind == "trip_anchor" and (same_row and -7 < dx < 0.5):
                trip = 1.0
            if (
                other.kind == "speed_unit"
                and abs(dx) < 3
                and abs(dy) < 1.5
                and other.box.height > 0.5 * ln.box.height
            ):
                speed = 1.0
        if (
            _ODO_RE.match(re.sub(r"[\d\s]", "", ln.text) or "-") or re.search(r"ODO|TOTAL", ln.text, re.I)
        ) and len(c.digits) >= 4:
            odo = max(odo, 0.7)  # the ODO label was read into the same line
        if _TRIP_RE.search(ln.text):
            trip = 1.0
        if re.search(r"k\s*m\b|km$|ko$|kn$", ln.text, re.I) and not _SPEED_RE.search(ln.text):
            km = max(km, 0.7)
        f.update(odo=odo, km=km, trip=trip, speed=speed)
        # engine agreement on this exact digit string
        # engine support: an engine supports the candidate when its own reading of the line is the
        # candidate, or the candidate plus one stray character at an end (a "km" read as 1, the
        # ODO label read as 0/8) -- only for candidates of 5+ digits
        support = set(c.engines)
        for eng, full in line_reads[c.line].items():
            fd = full.strip(".")
            if eng in support or n < 5 or "." in fd:
                continue
            others_exact = any(o != eng and v.strip(".") == c.digits for o, v in line_reads[c.line].items())
            if fd == c.digits or (others_exact and _with_stray(line_decs[c.line][eng], c.digits)):
                support.add(eng)
        # the two views of our model count as one engine
        f["n_engines"] = float(("pp" in support) + ("own" in support))
        f["pp"] = float("pp" in support)
        # confidence of each engine for this string (relative CTC likelihood on the line)
        sc: list[float] = []
        own_sc: list[float] = []
        for eng, pr in (("pp", ln.pp_digits), ("own", ln.own)):
            if pr is None:
                continue
            full = line_reads[c.line].get(eng, "")
            # score what the engine saw when it supports the candidate with a stray end character
            lab = full if (eng in support and "." not in full.strip(".")) else c.digits
            (sc if eng == "pp" else own_sc).append(_ctc_score(pr, lab, alpha))
        if own_sc:
            sc.append(max(own_sc))
        f["ctc_min"] = min(sc) if sc else 0.0
        f["ctc_mean"] = float(np.mean(sc)) if sc else 0.0
        s = 0.0
        s += {0: -9, 1: -9, 2: -9, 3: -5, 4: -1.5, 5: 1.0, 6: 1.5, 7: 0.3}.get(n, -6)
        s += 2.5 * odo + 1.0 * km - 3.0 * trip - (3.0 * speed if n <= 4 else 0.0)
        s += 0.5 * f["pp"]
        s -= 4.0 if c.decimal else 0.0
        s -= 1.5 * min(letters, 3) / 3 + 3.0 * f["dash"] + 2.0 * f["inter"]
        s += 1.0 * f["rel_h"]
        s += 1.0 * (f["n_engines"] - 1)
        s += 1.5 * f["ctc_mean"]
        c.score = s
    ranked = sorted(cands.values(), key=lambda c: -c.score)
    # merge identical digit strings from different lines (keep best)
    seen: dict[str, Cand] = {}
    for c in ranked:
        if c.digits not in seen:
            seen[c.digits] = c
    ranked = list(seen.values())
    if _DEBUG:
        for c in ranked[:6]:
            print(
                "cand",
                c.digits,
                round(c.score, 2),
                {k: round(v, 2) for k, v in c.features.items()},
                c.engines,
                lines[c.line].text,
                file=sys.stderr,
            )
    best = ranked[0]
    bl = lines[best.line]
    if best.score < -2 or len(best.digits) < 3:
        if any(c.decimal and c.features.get("trip", 0) for c in ranked):
            res.reasons.append("trip_meter_only")
        res.reasons.append("no_odometer_found")
        res.candidates = [(int(c.digits), round(_sig(c.score), 3)) for c in ranked[:5] if c.digits.isdigit()]
        _claim(res, claim, lines, ranked, alpha)
        return res
    # half-rolled last digit (mechanical drums): the two best classes at the last digit are
    # consecutive digits -> read the lower one and flag
    value = best.digits
    d_pp = ctc.greedy(bl.pp_digits, alpha) if bl.pp_digits is not None else None
    if d_pp is not None and d_pp.text.replace(".", "").endswith(value) and d_pp.alts:
        alts = d_pp.alts[-1]
        if len(alts) >= 2 and alts[1][1] > 0.25:
            a0, a1 = alts[0][0], alts[1][0]
            if a0.isdigit() and a1.isdigit() and (int(a0) - int(a1)) % 10 in (1, 9):
                lo = a0 if (int(a1) - int(a0)) % 10 == 1 else a1
                value = value[:-1] + lo
                best.half_rolled = True
                res.reasons.append("half_rolled_digit")
    res.value_km = int(value)
    x, y, w, h = bl.box.xywh()
    s = 1.0 / dec.scale if dec.scale else 1.0
    res.box = (int(x * s), int(y * s), int(w * s), int(h * s))
    res.display = _display_type(bl.crop)  # type: ignore[assignment]
    # confidence: engines agree, strong CTC on both, anchored, no close competitor
    f = best.features
    rivals = [
        c
        for c in ranked[1:]
        if not (best.digits in c.digits or c.digits in best.digits) or c.line != best.line
    ]
    second = rivals[0].score if rivals else -10.0
    margin = best.score - second
    both = f["n_engines"] >= 2
    conf = 0.15
    conf += 0.35 if both else 0.0
    conf += 0.25 * f["ctc_min"]
    conf += 0.1 * min(1.0, f["odo"] + f["km"])
    conf += 0.15 * min(1.0, max(0.0, margin) / 3.0)
    if len(value) < 5:
        conf -= 0.2
    if best.decimal or f["trip"]:
        conf -= 0.4
    if best.half_rolled:
        conf -= 0.2
    conf = float(np.clip(conf, 0.0, 1.0))
    res.confidence = round(conf, 3)
    anchored = f["odo"] > 0 or f["km"] > 0
    # the photo must look like an instrument cluster: an ODO/TRIP/km/speed label, or a speedometer /
    # tachometer scale (several short round numbers); a licence plate or a sticker has neither
    scale = [ln for ln in lines if re.fullmatch(r"\d{1,3}0", ln.text.strip()) is not None]
    context = (
        anchored
        or len(scale) >= 2
        or any(ln.kind in ("odo_anchor", "trip_anchor", "km_anchor", "speed_unit") for ln in lines)
    )
    if not context:
        res.reasons.append("no_dashboard_context")
    res.auto_accept = bool(
        context
        and both
        and f["ctc_min"] >= 0.6
        and margin >= 1.0
        and not best.decimal
        and (len(value) >= 6 or (len(value) == 5 and anchored))
        and not f["trip"]
        and not best.half_rolled
        and not bl.cut
        and conf >= AUTO_ACCEPT
    )
    if not res.auto_accept:
        res.reasons.append("low_confidence")
    res.candidates = [(int(c.digits), round(_sig(c.score), 3)) for c in ranked[:5] if c.digits.isdigit()]
    _claim(res, claim, lines, ranked, alpha)
    return res


AUTO_ACCEPT = 0.8


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _claim(res: OdometerRead, claim: str | None, lines: list[Line], ranked: list[Cand], alpha: str) -> None:
    """A claim is confirmed only on the line chosen as the odometer (not a trip meter, not a
    decimal), and only when the claimed digits beat every value one edit away from them (one digit
    changed, added or dropped) under PP-OCR's CTC output by CLAIM_PP_MARGIN, and under PP-OCR and
    our digit model together (log-likelihood ratios added, ours weighted CLAIM_OWN_WEIGHT) by
    CLAIM_MARGIN.  A claim one digit away from what the image shows has the true value among its
    neighbours, so it loses unless an engine misread that very digit into that very value.
    Thresholds: scripts/train_claim_margins.py (synthetic lines)."""
    if claim is None:
        return
    res.claim_confirmed = False
    if not ranked:
        return
    best = ranked[0]
    ln = lines[best.line]
    if best.decimal or best.features.get("trip") or len(best.digits) < 3 or ln.pp_digits is None or ln.cut:
        res.claim_score = 0.0
        if res.value_km is not None:
            res.reasons.append("claim_mismatch")
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
        return
    combined = m_pp + CLAIM_OWN_WEIGHT * (m_own if m_own is not None else 0.0)
    res.claim_score = round(_sig(combined - CLAIM_MARGIN), 4)
    res.claim_confirmed = bool(m_pp >= CLAIM_PP_MARGIN and combined >= CLAIM_MARGIN)
    if res.auto_accept and res.value_km is not None and str(res.value_km) != claim:
        res.claim_confirmed = False  # never both: a confident reading of another value wins
    if not res.claim_confirmed and res.value_km is not None:
        res.reasons.append("claim_mismatch")


# log-likelihood-ratio margins for confirming a claim (see _claim and scripts/train_claim_margins.py)
CLAIM_PP_MARGIN = 0.5
CLAIM_OWN_WEIGHT = 0.5
CLAIM_MARGIN = 2.0


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
