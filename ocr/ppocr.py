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

cv2.setNumThreads(1)

_LOCK = threading.Lock()


def _model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or spec.origin is None:
        raise RuntimeError("rapidocr_onnxruntime is not installed")
    return Path(spec.origin).parent / "models"


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 4
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@lru_cache(maxsize=1)
def _det():
    return _session(_model_dir() / "ch_PP-OCRv4_det_infer.onnx")


@lru_cache(maxsize=1)
def _rec():
    sess = _session(_model_dir() / "ch_PP-OCRv4_rec_infer.onnx")
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


def crop_quad(img: np.ndarray, quad: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """Perspective-crop a quad (tl, tr, br, bl); rotate tall crops upright."""
    q = quad.astype(np.float32).copy()
    if pad:
        c = q.mean(axis=0)
        q = c + (q - c) * (1 + pad)
    w = int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2])))
    h = int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
    w, h = max(w, 2), max(h, 2)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class RecResult:
    probs: np.ndarray  # T x V softmax probabilities
    vocab: list[str]

    def greedy(self) -> tuple[str, list[float]]:
        idx = self.probs.argmax(axis=1)
        out, confs, prev = [], [], 0
        for t, i in enumerate(idx):
            if i != 0 and i != prev:
                out.append(self.vocab[i])
                confs.append(float(self.probs[t, i]))
            prev = i
        return "".join(out), confs


def recognize(crop_bgr: np.ndarray) -> RecResult:
    sess, vocab = _rec()
    h, w = crop_bgr.shape[:2]
    th = 48
    tw = math.ceil(th * w / max(h, 1))
    tw = max(16, min(tw, 1280))
    im = cv2.resize(crop_bgr, (tw, th), interpolation=cv2.INTER_AREA if h > th else cv2.INTER_CUBIC)
    x = (im.astype(np.float32) / 255.0 - 0.5) / 0.5
    pad_w = max(tw, 320) if tw < 320 else tw
    buf = np.zeros((1, 3, th, pad_w), np.float32)
    buf[0, :, :, :tw] = x.transpose(2, 0, 1)
    with _LOCK:
        out = sess.run(None, {sess.get_inputs()[0].name: buf})[0][0]
    # keep only the frames that cover the image (plus one), padding frames are blanks anyway
    n = min(out.shape[0], math.ceil(tw / pad_w * out.shape[0]) + 1)
    return RecResult(out[:n].astype(np.float32), vocab)


@lru_cache(maxsize=4)
def vocab_index(chars: str) -> np.ndarray:
    _, vocab = _rec()
    pos = {c: i for i, c in enumerate(vocab)}
    return np.array([0] + [pos[c] for c in chars if c in pos], dtype=np.int64)
