"""Our own small digit-line recogniser (CTC, alphabet "0123456789."), trained on synthetic
seven-segment and sans renders by scripts/train_digits.py and shipped as ocr/models/digits.onnx."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .sessions import cpu_session

ALPHABET = "0123456789."
H, W = 32, 128
MODEL = Path(__file__).parent / "models" / "digits.onnx"
_LOCK = threading.Lock()


def preprocess(rgb_or_bgr: np.ndarray) -> np.ndarray:
    """Gray, resize to 32 high (pad / squeeze to 128 wide), robust min-max, bright-on-dark."""
    a = rgb_or_bgr
    if a.ndim == 3:
        a = a.max(axis=2).astype(np.float32) * 0.5 + a.mean(axis=2).astype(np.float32) * 0.5
    a = a.astype(np.float32)
    h, w = a.shape
    nw = max(8, min(W, round(w * H / max(h, 1))))
    a = cv2.resize(a, (nw, H), interpolation=cv2.INTER_AREA)
    lo, hi = np.percentile(a, 2), np.percentile(a, 98)
    a = np.clip((a - lo) / max(hi - lo, 1e-3), 0, 1)
    if np.median(a) > 0.5:
        a = 1.0 - a
    out = np.zeros((H, W), np.float32)
    out[:, :nw] = a
    return out


@lru_cache(maxsize=1)
def _session():
    return cpu_session(MODEL)


def available() -> bool:
    return MODEL.exists()


def recognize_views(crops: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per crop, T x 12 probability matrices (column 0 blank) for two views: as preprocessed
    (bright digits) and with the polarity flipped.  The median rule in preprocess() misjudges
    crops filled by large digits and dim LCDs; the reader treats the two views as one engine that
    supports a reading when either view reads it."""
    if not crops:
        return []
    xs = [preprocess(c) for c in crops]
    flipped = []
    for a in xs:
        b = a.copy()
        nz = b.any(axis=0)  # the padded right-hand part stays black
        b[:, nz] = 1.0 - b[:, nz]
        flipped.append(b)
    x = np.stack(xs + flipped)[:, None].astype(np.float32)
    s = _session()
    with _LOCK:
        lp = s.run(None, {s.get_inputs()[0].name: x})[0]
    n = len(crops)
    return [(np.exp(lp[i]), np.exp(lp[n + i])) for i in range(n)]


def recognize(crops: list[np.ndarray]) -> list[np.ndarray]:
    """The more confident of the two views per crop."""
    out = []
    for a, b in recognize_views(crops):
        out.append(a if np.log(a.max(axis=1)).sum() >= np.log(b.max(axis=1)).sum() else b)
    return out
