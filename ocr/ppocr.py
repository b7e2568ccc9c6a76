"""PP-OCRv4 text detection (DB) and recognition (CTC) run directly through onnxruntime.

The ONNX files are the ones shipped inside the ``rapidocr-onnxruntime`` wheel (nothing is downloaded
at run time).  We call them ourselves instead of going through RapidOCR's pipeline because we need
(a) single-threaded sessions, (b) no angle classifier (it flips seven-segment digits upside down)
and (c) the per-frame CTC probabilities, which we use for digit-constrained decoding, for
character confidences and for scoring a citizen's claimed value against the image.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .sessions import cpu_session

cv2.setNumThreads(1)

_LOCK = threading.Lock()


def _model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or spec.origin is None:
        raise RuntimeError("rapidocr_onnxruntime is not installed")
    return Path(spec.origin).parent / "models"


@lru_cache(maxsize=1)
def _det():
    return cpu_session(_model_dir() / "ch_PP-OCRv4_det_infer.onnx")


@lru_cache(maxsize=1)
def _rec():
    sess = cpu_session(_model_dir() / "ch_PP-OCRv4_rec_infer.onnx")
    chars = sess.get_modelmeta().custom_metadata_map["character"].splitlines()
    vocab = ["<blank>", *chars, " "]
    return sess, vocab


def available() -> bool:
    try:
        _model_dir()
        return True
    except Exception:
        return False


@dataclass
class TextBox:
    quad: np.ndarray  # 4x2 float32, tl tr br bl, in the coordinates of the image passed to detect()
    score: float

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.quad[0] - self.quad[1]))

    @property
    def height(self) -> float:
        return float(np.linalg.norm(self.quad[0] - self.quad[3]))

    @property
    def center(self) -> tuple[float, float]:
        c = self.quad.mean(axis=0)
        return float(c[0]), float(c[1])

    def xywh(self) -> tuple[int, int, int, int]:
        x0, y0 = self.quad.min(axis=0)
        x1, y1 = self.quad.max(axis=0)
        return int(x0), int(y0), math.ceil(x1 - x0), math.ceil(y1 - y0)


def _order_quad(pts: np.ndarray) -> np.ndarray:
    xs = pts[np.argsort(pts[:, 0])]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def detect(
    img_bgr: np.ndarray,
    max_side: int = 960,
    thresh: float = 0.3,
    box_thresh: float = 0.5,
    unclip_ratio: float = 1.6,
    clahe: float = 0.0,
) -> list[TextBox]:
    """Run the DB text detector; returns boxes in img_bgr coordinates."""
    h, w = img_bgr.shape[:2]
    ratio = min(1.0, max_side / max(h, w))
    rh = max(32, int(round(h * ratio / 32) * 32))
    rw = max(32, int(round(w * ratio / 32) * 32))
    im = cv2.resize(img_bgr, (rw, rh), interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
    if clahe > 0:  # local contrast equalisation (faint LCDs, plates in shade), at detector scale
        lab = cv2.cvtColor(im, cv2.COLOR_BGR2LAB)
        lab[..., 0] = cv2.createCLAHE(clahe, (8, 8)).apply(lab[..., 0])
        im = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    x = (im.astype(np.float32) / 255.0 - 0.5) / 0.5
    x = x.transpose(2, 0, 1)[None]
    with _LOCK:
        prob = _det().run(None, {_det().get_inputs()[0].name: x})[0][0, 0]
    mask = (prob > thresh).astype(np.uint8)
    mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    sx, sy = w / rw, h / rh
    out: list[TextBox] = []
    for c in contours[:1000]:
        if len(c) < 4:
            continue
        rect = cv2.minAreaRect(c)
        (cx, cy), (bw, bh), ang = rect
        if min(bw, bh) < 3:
            continue
        # "fast" box score: mean probability inside the contour's bounding rectangle mask
        x0, y0, cw, ch = cv2.boundingRect(c)
        sub = prob[y0 : y0 + ch, x0 : x0 + cw]
        m = np.zeros_like(sub, dtype=np.uint8)
        cv2.fillPoly(m, [c - [x0, y0]], 1)
        score = float(sub[m > 0].mean()) if m.any() else 0.0
        if score < box_thresh:
            continue
        area, perim = bw * bh, 2 * (bw + bh)
        d = area * unclip_ratio / max(perim, 1e-6)
        rect2 = ((cx, cy), (bw + 2 * d, bh + 2 * d), ang)
        pts = cv2.boxPoints(rect2)
        pts[:, 0] = np.clip(pts[:, 0] * sx, 0, w - 1)
        pts[:, 1] = np.clip(pts[:, 1] * sy, 0, h - 1)
        q = _order_quad(pts)
        tb = TextBox(q, score)
        if tb.width <= 3 or tb.height <= 3:
            continue
        out.append(tb)
    return out


def crop_quad(
    img: np.ndarray, quad: np.ndarray, pad: float = 0.0, border: int = cv2.BORDER_REPLICATE
) -> np.ndarray:
    """Perspective-crop a quad (tl, tr, br, bl)."""
    q = quad.astype(np.float32).copy()
    if pad:
        c = q.mean(axis=0)
        q = c + (q - c) * (1 + pad)
    w = int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2])))
    h = int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
    w, h = max(w, 2), max(h, 2)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=border)


def pad_quad(q: np.ndarray, k: float) -> np.ndarray:
    """Widen a text quad along its baseline by k x its height on each side (faded edge digits)."""
    q = q.astype(np.float32).copy()
    u = q[1] - q[0]
    n = float(np.linalg.norm(u))
    if n < 1e-6:
        return q
    u /= n
    h = float(np.linalg.norm(q[3] - q[0]))
    d = u * h * k
    q[0] -= d
    q[3] -= d
    q[1] += d
    q[2] += d
    return q


def extend_quad(q: np.ndarray, left: float, right: float) -> np.ndarray:
    """Move a quad's left / right edges outwards along its baseline by the given pixels."""
    q = q.astype(np.float32).copy()
    u = q[1] - q[0]
    u /= max(float(np.linalg.norm(u)), 1e-6)
    q[0] -= u * left
    q[3] -= u * left
    q[1] += u * right
    q[2] += u * right
    return q


def ink_extent(img: np.ndarray, quad: np.ndarray) -> tuple[float, float]:
    """How far text-high ink continues beyond a text box on its row, left and right, in units of
    the box height (0 when there is none; about 1 when it runs to the end of the search band, as a
    textured panel does).  The detector often leaves out a seven-segment "1" (two thin segments
    after a wide gap), a faded first digit, or a digit at the edge of the photo; a reading without
    it is a different number.  Outside the photo counts as background."""
    k = 1.0
    h = float(np.linalg.norm(quad[3] - quad[0]))
    w = float(np.linalg.norm(quad[1] - quad[0]))
    if h < 4 or w < 4:
        return 0.0, 0.0
    band = crop_quad(img, pad_quad(quad, k), border=cv2.BORDER_CONSTANT)
    if band.size == 0:
        return 0.0, 0.0
    inside = crop_quad(np.full(img.shape[:2], 255, np.uint8), pad_quad(quad, k), border=cv2.BORDER_CONSTANT)
    g = band.max(axis=2) if band.ndim == 3 else band
    known = inside > 127
    if known.sum() < 16:
        return 0.0, 0.0
    thr, _ = cv2.threshold(
        np.ascontiguousarray(g[known]).reshape(-1, 1), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU
    )
    m = (g > thr) & known
    if m.sum() > 0.5 * known.sum():
        m = ~(g > thr) & known  # the text is the minority of the band
    bh, bw = m.shape
    col = m.sum(axis=0) / max(bh, 1)
    scale = bw / (w + 2 * k * h)
    x0, x1 = int(k * h * scale), int((k * h + w) * scale)
    if x1 - x0 < 4:
        return 0.0, 0.0
    ref = float(np.percentile(col[x0:x1], 90))
    if ref <= 0.05:
        return 0.0, 0.0
    strong = col >= 0.55 * ref
    max_gap = int(0.7 * h * scale)

    def walk(start: int, step: int) -> int:
        last, gap, x = start, 0, start
        while 0 <= x < bw:
            if strong[x]:
                last, gap = x, 0
            else:
                gap += 1
                if gap > max_gap:
                    break
            x += step
        return last

    right = (walk(x1, 1) - x1) / (h * scale)
    left = (x0 - walk(x0, -1)) / (h * scale)
    return max(0.0, left), max(0.0, right)


# PP-OCR's own inference pads every line to at least 320 px (at height 48); short lines ("km",
# "120") then cost as much as a whole number.
REC_MIN_WIDTH = 320
#: Lines at least this wide (model pixels) are read padded at once: a quick unpadded read would
#: cost most of a padded one, and a line this long is usually the number read padded after it.
REC_QUICK_MAX_WIDTH = 192


@dataclass
class RecResult:
    probs: np.ndarray  # T x V softmax probabilities
    vocab: list[str]
    width: int = 0  # the line's width in model pixels (height 48)
    padded: int = 0  # the width the model ran on (zero padding after `width`)

    @property
    def padded_fully(self) -> bool:
        """Read as PP-OCR reads lines (padded to its 320 px minimum)."""
        return self.padded >= REC_MIN_WIDTH

    def greedy(self) -> tuple[str, list[float]]:
        idx = self.probs.argmax(axis=1)
        out, confs, prev = [], [], 0
        for t, i in enumerate(idx):
            if i != 0 and i != prev:
                out.append(self.vocab[i])
                confs.append(float(self.probs[t, i]))
            prev = i
        return "".join(out), confs


def line_width(crop_bgr: np.ndarray) -> int:
    """The width the recogniser gives a line (at its height of 48 px), before any padding."""
    h, w = crop_bgr.shape[:2]
    return max(16, min(math.ceil(48 * w / max(h, 1)), 1280))


def quick_width(crop_bgr: np.ndarray) -> int | None:
    """`min_width` for a first read of a line: unpadded when that is much cheaper, else padded."""
    return 0 if line_width(crop_bgr) < REC_QUICK_MAX_WIDTH else None


def recognize(crop_bgr: np.ndarray, min_width: int | None = None) -> RecResult:
    """CTC probabilities of one text line.  `min_width=0` skips PP-OCR's padding to 320 px: about
    a quarter of the cost for short lines, good enough to tell what a line is (a label, a unit, a
    number), while lines whose digits matter are read again padded, as PP-OCR was trained."""
    sess, vocab = _rec()
    h = crop_bgr.shape[0]
    th = 48
    tw = line_width(crop_bgr)
    im = cv2.resize(crop_bgr, (tw, th), interpolation=cv2.INTER_AREA if h > th else cv2.INTER_CUBIC)
    x = (im.astype(np.float32) / 255.0 - 0.5) / 0.5
    pad_w = max(tw, REC_MIN_WIDTH if min_width is None else min_width)
    buf = np.zeros((1, 3, th, pad_w), np.float32)
    buf[0, :, :, :tw] = x.transpose(2, 0, 1)
    with _LOCK:
        out = sess.run(None, {sess.get_inputs()[0].name: buf})[0][0]
    # keep only the frames that cover the image (plus one), padding frames are blanks anyway
    n = min(out.shape[0], math.ceil(tw / pad_w * out.shape[0]) + 1)
    return RecResult(out[:n].astype(np.float32), vocab, tw, pad_w)


@lru_cache(maxsize=4)
def vocab_index(chars: str) -> np.ndarray:
    _, vocab = _rec()
    pos = {c: i for i, c in enumerate(vocab)}
    return np.array([0] + [pos[c] for c in chars if c in pos], dtype=np.int64)
