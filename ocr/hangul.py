"""Hangul syllables on licence plates: our own small classifier (ocr/models/hangul.onnx, trained by
scripts/train_hangul.py on synthetic renders), voted with tesseract's Korean model restricted to
the plate syllables when tesseract is installed."""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from prorate import identifiers

from . import tess
from .sessions import cpu_session

MODELS = Path(__file__).parent / "models"
#: The class order of ocr/models/hangul.onnx, written beside it by scripts/train_hangul.py: it is
#: the model's, so it never moves when the domain's alphabet is edited (a syllable the domain
#: adds that the model lacks is found by tests/ocr/test_alphabet.py: retrain).
CLASSES: str = json.loads((MODELS / "hangul.classes.json").read_text(encoding="utf-8"))["classes"]
#: The syllables a plate can carry and the region names: the domain's (prorate.identifiers, the
#: one source), the syllables in the model's class order.
PLATE_SYLLABLES = "".join(sorted(identifiers.PLATE_SYLLABLES, key=lambda c: (c not in CLASSES, CLASSES.find(c), c)))
REGIONS: tuple[str, ...] = identifiers.PLATE_REGIONS


def domain_classes() -> str:
    """The classes a newly trained model gets (scripts/train_hangul.py): every plate syllable in
    the standard's order, every other syllable of the region names, then "#" (not a syllable)."""
    syllables = identifiers.NON_COMMERCIAL_SYLLABLE_ORDER + "".join(
        "".join(sorted(s))
        for s in (identifiers.COMMERCIAL_SYLLABLES, identifiers.DELIVERY_SYLLABLES, identifiers.RENTAL_SYLLABLES)
    )
    region_chars = "".join(dict.fromkeys(c for r in REGIONS for c in r if c not in syllables))
    return syllables + region_chars + "#"


S = 32
MODEL = MODELS / "hangul.onnx"
_LOCK = threading.Lock()


def preprocess(bgr: np.ndarray) -> np.ndarray:
    """Gray, bright-glyph-on-dark, robust min-max, aspect-preserving fit into S x S."""
    a = bgr
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    a = a.astype(np.float32)
    h, w = a.shape
    if h < 2 or w < 2:
        return np.zeros((S, S), np.float32)
    lo, hi = np.percentile(a, 3), np.percentile(a, 97)
    a = np.clip((a - lo) / max(hi - lo, 1e-3), 0, 1)
    if np.median(a) > 0.5:
        a = 1.0 - a
    sc = S / max(h, w)
    nh, nw = max(1, round(h * sc)), max(1, round(w * sc))
    a = cv2.resize(a, (nw, nh), interpolation=cv2.INTER_AREA if sc < 1 else cv2.INTER_LINEAR)
    out = np.zeros((S, S), np.float32)
    y0, x0 = (S - nh) // 2, (S - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = a
    return out


@lru_cache(maxsize=1)
def _session():
    return cpu_session(MODEL)


def available() -> bool:
    return MODEL.exists()


def _probs(imgs: list[np.ndarray]) -> np.ndarray:
    x = np.stack([preprocess(i) for i in imgs])[:, None].astype(np.float32)
    s = _session()
    with _LOCK:
        lg = s.run(None, {s.get_inputs()[0].name: x})[0]
    lg = lg - lg.max(axis=1, keepdims=True)
    e = np.exp(lg)
    return e / e.sum(axis=1, keepdims=True)


def _variants(img: np.ndarray) -> list[np.ndarray]:
    """The slot crop plus slightly narrower / shifted cuts (test-time augmentation)."""
    _h, w = img.shape[:2]
    out = [img]
    d = max(1, int(w * 0.1))
    if w > 8:
        out += [img[:, d:], img[:, : w - d], img[:, d : w - d]]
    return out


def classify_syllable(img: np.ndarray, wider: np.ndarray | None = None) -> list[tuple[str, float]]:
    """Ranked (syllable, prob) among plate syllables; empty when no model.  `wider` is the same slot
    cut with some margin: the slot comes from CTC frame positions, which are coarse, and a glyph
    cut in half by a late slot edge is read wrong."""
    if not available() or img.size == 0:
        return []
    views = _variants(img)
    if wider is not None and wider.size and wider.shape[1] > img.shape[1]:
        views.append(wider)
    p = _probs(views).mean(axis=0)
    # a slot holds a plate syllable or nothing: renormalise over those (+ "#"), region-only
    # syllables are not candidates here
    keep = np.array([c in PLATE_SYLLABLES or c == "#" for c in CLASSES])
    p = np.where(keep, p, 0.0)
    p = p / max(float(p.sum()), 1e-9)
    order = np.argsort(-p)
    return [(CLASSES[i], float(p[i])) for i in order[:6] if CLASSES[i] in PLATE_SYLLABLES][:5]


def classify_region(img: np.ndarray) -> list[tuple[str, float]]:
    """The head of a plate (left of the front number, or the top row): two syllables, side by side
    or stacked (small yellow / green plates print 인/천 one above the other) -> region name."""
    if not available() or img.size == 0:
        return []
    h, w = img.shape[:2]
    if w < 4 or h < 4:
        return []
    layouts = [[img[:, : w // 2], img[:, w // 2 :]], [img[: h // 2], img[h // 2 :]]]
    idx = {c: i for i, c in enumerate(CLASSES)}
    best: dict[str, float] = {}
    for parts in layouts:
        p = _probs(parts)
        for r in REGIONS:
            sc = float(p[0, idx[r[0]]] * p[1, idx[r[1]]]) ** 0.5
            best[r] = max(best.get(r, 0.0), sc)
    scored = sorted(best.items(), key=lambda t: -t[1])
    return scored[:3]


@lru_cache(maxsize=1)
def tesseract_available() -> bool:
    try:
        return tess.available("kor")
    except Exception:
        return False


_MEMO: dict[tuple[str, bytes], object] = {}


def _memo(kind: str, img: np.ndarray, fn):
    """Per-process memo of slot readings (the same crop is often examined by several splits)."""
    import hashlib

    key = (
        kind,
        hashlib.blake2b(
            np.ascontiguousarray(img).tobytes() + str(img.shape).encode(), digest_size=16
        ).digest(),
    )
    if key in _MEMO:
        return _MEMO[key]
    v = fn(img)
    if len(_MEMO) > 256:
        _MEMO.clear()
    _MEMO[key] = v
    return v


def tesseract_syllable(img: np.ndarray) -> str | None:
    return _memo("tsyl", img, _tesseract_syllable)


def tesseract_region(img: np.ndarray) -> list[tuple[str, float]]:
    return _memo("treg", img, _tesseract_region)


def warm_up_tesseract() -> None:
    """Load tesseract's Korean model for the page-segmentation modes the plate reader uses."""
    tess.recognize(np.full((40, 40), 255, np.uint8), "kor", 10, PLATE_SYLLABLES)
    tess.recognize(np.full((40, 80), 255, np.uint8), "kor", 7, _REGION_CHARS)
    tess.recognize(np.full((80, 40), 255, np.uint8), "kor", 6, _REGION_CHARS)


def _binarise(bgr: np.ndarray) -> np.ndarray:
    """Dark glyph on white (Otsu), the form tesseract reads best: on synthetic plate slots it reads
    more syllables right and fewer wrong than on the colour crop."""
    g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    _, b = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if float(np.mean(b)) < 128:
        b = 255 - b
    return b


def _tesseract_syllable(img: np.ndarray) -> str | None:
    """Tesseract's Korean model on the slot, single-character mode, whitelisted to plate syllables.
    Returns the syllable or None (nothing read / tesseract unavailable)."""
    if img.size == 0 or not tesseract_available():
        return None
    try:
        s = 64.0 / max(img.shape[0], 1)
        big = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(_binarise(big), 10, 10, 10, 10, cv2.BORDER_REPLICATE)
        r = tess.recognize(big, "kor", 10, PLATE_SYLLABLES)
    except Exception:
        return None
    if r is None:
        return None
    chars = [c for c in r[0] if c in PLATE_SYLLABLES]
    return chars[0] if len(chars) == 1 else None


TESS_WEIGHT = 0.4


class Vote(NamedTuple):
    syllable: str
    score: float  # our model's probability mixed with tesseract's answer
    agree: bool  # tesseract read it and it is our model's first choice
    tess: bool  # tesseract read exactly this syllable
    cnn: float  # our model's probability for it
    tess_other: bool  # tesseract read another syllable


def vote_syllable(img: np.ndarray, wider: np.ndarray | None = None) -> list[Vote]:
    """Ranked votes: our model's distribution mixed with tesseract's single answer.  Our model is the better reader (95 % on held-out synthetic
    slots against tesseract's 58 %, and 8 of 9 real slots), so tesseract's answer outweighs it only
    when our model gives no syllable more than about 2/3 (TESS_WEIGHT, from synthetic slots)."""
    cnn = dict(classify_syllable(img, wider))
    tsyl = tesseract_syllable(img)
    out: dict[str, float] = {}
    for s in PLATE_SYLLABLES:
        c = cnn.get(s, 0.0)
        t = 1.0 if s == tsyl else 0.0
        out[s] = TESS_WEIGHT * t + (1 - TESS_WEIGHT) * c if tsyl is not None else 0.6 * c
    ranked = sorted(out.items(), key=lambda kv: -kv[1])[:5]
    top_cnn = max(cnn.items(), key=lambda kv: kv[1])[0] if cnn else None
    return [
        Vote(
            s,
            p,
            tsyl is not None and s == tsyl and s == top_cnn,
            s == tsyl,
            cnn.get(s, 0.0),
            tsyl not in (None, s),
        )
        for s, p in ranked
        if p > 0
    ]


_REGION_CHARS = "".join(dict.fromkeys("".join(REGIONS)))


def _tesseract_region(img: np.ndarray) -> list[tuple[str, float]]:
    """Region name from tesseract (Korean, whitelisted to region syllables): both syllables read ->
    0.9; one syllable that only one region name contains -> 0.6."""
    if img.size == 0 or not tesseract_available():
        return []
    try:
        h, w = img.shape[:2]
        stacked = h > 1.2 * w
        s = (96.0 if stacked else 64.0) / max(h, 1)
        big = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, 12, 12, 12, 12, cv2.BORDER_REPLICATE)
        got = tess.recognize(big, "kor", 6 if stacked else 7, _REGION_CHARS)
    except Exception:
        return []
    if got is None:
        return []
    txt = got[0]
    chars = "".join(c for c in txt if c in _REGION_CHARS)
    if not chars:
        return []
    out: list[tuple[str, float]] = []
    for r in REGIONS:
        if r in chars:
            out.append((r, 0.9))
    if not out:
        for c in set(chars):
            owners = [r for r in REGIONS if c in r]
            if len(owners) == 1:
                out.append((owners[0], 0.45))  # one syllable only: needs our model to agree
    return sorted(set(out), key=lambda t: -t[1])


def vote_region(img: np.ndarray) -> tuple[str | None, float]:
    """Region from tesseract and our model; (None, 0) when neither is convincing."""
    treg = tesseract_region(img)
    cnn = classify_region(img)
    cnn_top = cnn[0] if cnn else (None, 0.0)
    if treg:
        r, p = treg[0]
        if cnn_top[0] == r:
            return r, min(1.0, p + 0.25)
        if p >= 0.9:
            return r, p
    if cnn_top[0] is not None and cnn_top[1] >= 0.7:
        return cnn_top[0], cnn_top[1] * 0.8
    return None, 0.0
