"""Test readers for the OCR worker: they report what a synthetic photo shows (its truth, kept
beside it by tests/photos/synth.py) as a confident read, so the pipeline's decisions can be tested
independently of how well the OCR reads today. The image intake (format, capture time, perceptual
hash) is the real one. The real readers run in the live-service, browser and benchmark tests.

Truth tags: `odo=<km>`, `plate=<utf-8 hex>`, `unsure` (a read without confidence), `crash` (the
worker process dies), `hang` (it never returns).
"""

from __future__ import annotations

import os
import time
from typing import Any

from ocr import inspect_image
from tests.photos.synth import truth_of


def _truth(data: bytes) -> str:
    return truth_of(data)


def _misbehave(truth: str) -> None:
    if truth == "crash":
        os._exit(3)
    if truth == "hang":
        time.sleep(3600)


def oracle_dashboard(data: bytes, claimed_km: int) -> dict[str, Any]:
    truth = _truth(data)
    _misbehave(truth)
    value = int(truth[4:]) if truth.startswith("odo=") else None
    sure = value is not None
    read = {
        "value_km": value,
        "confidence": 0.99 if sure else 0.2,
        "auto_accept": sure,
        "candidates": [[value, 0.99]] if sure else [],
        "box": [200, 380, 560, 120] if sure else None,
        "display": "lcd",
        "reasons": [] if sure else ["low_confidence"],
        "claim_confirmed": value == claimed_km,
    }
    return {"read": read, "intake": inspect_image(data).model_dump(mode="json"), "seconds": 0.0}


def oracle_plate(data: bytes, enrolled_plate: str) -> dict[str, Any]:
    truth = _truth(data)
    _misbehave(truth)
    text = bytes.fromhex(truth[6:]).decode() if truth.startswith("plate=") else None
    sure = text is not None
    read = {
        "text": text,
        "confidence": 0.99 if sure else 0.1,
        "auto_accept": sure,
        "candidates": [[text, 0.99]] if sure else [],
        "box": [190, 250, 580, 125] if sure else None,
        "reasons": [] if sure else ["no_plate_found"],
        "claim_confirmed": text == enrolled_plate,
    }
    return {"read": read, "intake": inspect_image(data).model_dump(mode="json"), "seconds": 0.0}
