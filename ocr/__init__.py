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

__all__ = [
    "ImageIntake",
    "OdometerRead",
    "PlateRead",
    "inspect_image",
    "phash_distance",
    "read_odometer",
    "read_plate",
]
