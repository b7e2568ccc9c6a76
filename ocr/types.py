"""Result types returned by ocr.inspect_image, ocr.read_odometer and ocr.read_plate."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Box = tuple[int, int, int, int]  # x, y, w, h in the orientation-corrected image


class ImageIntake(BaseModel):
    """What the intake learned about the bytes.

    ``ok`` is False when the bytes cannot be used at all (not an image, truncated, over the limits,
    animated, unsupported format).  Quality problems (``retake_*`` reasons) leave ``ok`` True but set
    ``quality_ok`` False: the photo can still be read, and the reader's own confidence decides.
    """

    ok: bool
    reasons: list[str] = Field(default_factory=list)
    format: Literal["jpeg", "png", "heif"] | None = None
    width: int | None = None  # after EXIF orientation
    height: int | None = None
    byte_size: int = 0
    sha256: str = ""
    phash: str | None = None
    captured_at: datetime | None = None
    captured_at_has_offset: bool = False
    orientation: int | None = None  # raw EXIF orientation tag (1..8) when present
    quality_ok: bool = True
    quality: dict[str, float] = Field(default_factory=dict)  # the measured quality figures


class EngineInfo(BaseModel):
    name: str
    version: str
    engines: list[str] = Field(default_factory=list)


class OdometerRead(BaseModel):
    value_km: int | None = None
    confidence: float = 0.0
    auto_accept: bool = False
    candidates: list[tuple[int, float]] = Field(default_factory=list)
    box: Box | None = None
    display: Literal["lcd", "tft", "mechanical", "unknown"] = "unknown"
    reasons: list[str] = Field(default_factory=list)
    claim_confirmed: bool | None = None
    claim_score: float | None = None
    #: What the claim rule weighed on the look that decided (see ocr.calibration).
    claim_evidence: dict[str, Any] | None = None
    engine: EngineInfo | None = None
    elapsed_ms: float = 0.0
    intake: ImageIntake | None = None


class PlateRead(BaseModel):
    text: str | None = None
    region: str | None = None
    syllable: str | None = None
    use: str | None = None
    confidence: float = 0.0
    auto_accept: bool = False
    candidates: list[tuple[str, float]] = Field(default_factory=list)
    box: Box | None = None
    plate_colour: Literal["white", "green", "yellow", "blue", "orange", "unknown"] = "unknown"
    reasons: list[str] = Field(default_factory=list)
    claim_confirmed: bool | None = None
    claim_score: float | None = None
    #: What the claim rule weighed on the look that decided (see ocr.calibration).
    claim_evidence: dict[str, Any] | None = None
    engine: EngineInfo | None = None
    elapsed_ms: float = 0.0
    intake: ImageIntake | None = None
