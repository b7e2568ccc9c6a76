"""Reading odometers and Korean licence plates from citizens' photos.

    from ocr import inspect_image, read_odometer, read_plate, phash_distance

All three readers are pure (no network, no files written) and never raise on any input bytes: bad
input comes back as a result carrying reason codes.  Models are loaded lazily, once per process,
from the package directory (ours) and from the rapidocr-onnxruntime wheel (PP-OCRv4).
"""

from __future__ import annotations

import cv2

from .intake import inspect_image, phash_distance
from .odometer import read_odometer
from .plate import read_plate
from .types import ImageIntake, OdometerRead, PlateRead

cv2.setNumThreads(1)


def warm_up() -> None:
    """Load every model now (e.g. in a process-pool initializer) instead of on the first photo.
    Never raises; a missing model shows up later as an engine_error / lower confidence."""
    try:
        from . import digits, hangul, ppocr

        ppocr._det()
        ppocr._rec()
        if digits.available():
            digits._session()
        if hangul.available():
            hangul._session()
        if hangul.tesseract_available():
            hangul.warm_up_tesseract()
    except Exception:
        pass


__all__ = [
    "ImageIntake",
    "OdometerRead",
    "PlateRead",
    "inspect_image",
    "phash_distance",
    "read_odometer",
    "read_plate",
    "warm_up",
]
