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
        # one whole read of each kind: what loads on first use besides the models (decoders,
        # the perceptual hash, OpenCV's first colour conversion) cost 0.5 s on the first photo
        import numpy as np

        sample = np.full((160, 480, 3), 30, np.uint8)
        cv2.putText(sample, "123456", (20, 110), cv2.FONT_HERSHEY_SIMPLEX, 3, (240, 240, 240), 8)
        ok, jpeg = cv2.imencode(".jpg", sample)
        if ok:
            read_odometer(jpeg.tobytes(), 123456)
            read_plate(jpeg.tobytes(), "12가3456")
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
