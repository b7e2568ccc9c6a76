"""Synthetic photos for the photo and review tests and the benchmark: a dashboard with an LCD
odometer and a Korean licence plate, with an EXIF capture time. Rendered with Pillow and Debian's
fonts (fonts-dseg, fonts-nanum); `seed` varies the scene so that each photo is distinct."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

DSEG = Path("/usr/share/fonts/truetype/dseg/DSEG7Classic-Bold.ttf")
NANUM = Path("/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@lru_cache(maxsize=32)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size)


#: What a photo shows, for the test readers (tests/photos/oracle.py). A stored photo keeps no
#: descriptive EXIF (docs/photos.md, personal data), so the truth is kept beside the photo, keyed by
#: its decoded pixels (which storing leaves as they are), where every process of the run — the OCR
#: worker processes included — finds it.
TRUTH_DIR = Path(tempfile.gettempdir()) / "carmileage-photo-truths"


def pixel_key(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            pixels = im.tobytes()
            return hashlib.sha256(f"{im.mode}{im.size}".encode() + pixels).hexdigest()
    except Exception:
        return None


def remember_truth(data: bytes, truth: str) -> None:
    key = pixel_key(data)
    assert key is not None
    TRUTH_DIR.mkdir(parents=True, exist_ok=True)
    tmp = TRUTH_DIR / f".{key}.{os.getpid()}"
    tmp.write_text(truth)
    tmp.replace(TRUTH_DIR / key)


def truth_of(data: bytes) -> str:
    key = pixel_key(data)
    try:
        return (TRUTH_DIR / key).read_text() if key else ""
    except OSError:
        return ""


def _exif(captured_at: datetime | None) -> bytes:
    exif = Image.Exif()
    if captured_at is not None:
        ifd = exif.get_ifd(0x8769)
        ifd[36867] = captured_at.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
        off = captured_at.utcoffset()
        if off is not None:
            minutes = int(off.total_seconds() // 60)
            sign = "+" if minutes >= 0 else "-"
            ifd[36881] = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"  # OffsetTimeOriginal
    return exif.tobytes()


def _jpeg(im: Image.Image, captured_at: datetime | None, truth: str | None = None, quality: int = 90) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, exif=_exif(captured_at))
    data = out.getvalue()
    if truth is not None:
        remember_truth(data, truth)
    return data


def _marked(im: Image.Image, truth: str | None) -> Image.Image:
    """A photo given another truth than the default differs in one corner pixel from the photo
    of the same scene, so that the two never share a truth key."""
    if truth is not None:
        im.putpixel((0, 0), tuple(hashlib.sha256(truth.encode()).digest()[:3]))
    return im


def _scene(rng: random.Random, size: tuple[int, int], base: int) -> Image.Image:
    """A background that differs with the seed (gradient blobs), so perceptual hashes differ."""
    w, h = size
    im = Image.new("RGB", size, (base, base, base + 5))
    d = ImageDraw.Draw(im)
    for _ in range(14):
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.randrange(min(w, h) // 8, min(w, h) // 2)
        shade = rng.randrange(0, 160)
        d.ellipse((x - r, y - r, x + r, y + r), fill=(shade, shade, min(255, shade + 10)))
    return im.filter(ImageFilter.GaussianBlur(12))


def dashboard_jpeg(
    km: int,
    captured_at: datetime | None = None,
    seed: int = 0,
    size: tuple[int, int] = (960, 640),
    truth: str | None = None,
) -> bytes:
    """A dark instrument cluster with an LCD panel reading `ODO <km> km`."""
    rng = random.Random(seed)
    im = _scene(rng, size, 20)
    d = ImageDraw.Draw(im)
    w, h = size
    pw, ph = int(w * 0.72), int(h * 0.26)
    x0, y0 = (w - pw) // 2 + rng.randrange(-20, 21), int(h * 0.58) + rng.randrange(-15, 16)
    d.rounded_rectangle((x0, y0, x0 + pw, y0 + ph), radius=12, fill=(12, 16, 14), outline=(90, 90, 90), width=3)
    label = _font(DEJAVU, ph // 5)
    d.text((x0 + 16, y0 + ph // 2), "ODO", font=label, fill=(225, 235, 225), anchor="lm")
    unit = _font(DEJAVU, ph // 6)
    d.text((x0 + pw - 14, y0 + ph // 2 + ph // 8), "km", font=unit, fill=(225, 235, 225), anchor="rm")
    left = x0 + 16 + d.textlength("ODO", font=label) + ph // 4
    right = x0 + pw - 14 - d.textlength("km", font=unit) - ph // 6
    size_px = int(ph * 0.55)
    digits = _font(DSEG, size_px)
    while d.textlength(str(km), font=digits) > right - left and size_px > 10:
        size_px -= 2
        digits = _font(DSEG, size_px)
    d.text((right, y0 + ph // 2), str(km), font=digits, fill=(235, 245, 235), anchor="rm")
    # the speedometer's arc above, as real clusters have
    d.arc((w * 0.2, h * 0.05, w * 0.8, h * 0.95), 200, 340, fill=(150, 150, 150), width=4)
    return _jpeg(_marked(im, truth), captured_at, truth if truth is not None else f"odo={km}")


def plate_jpeg(
    plate: str,
    captured_at: datetime | None = None,
    seed: int = 0,
    size: tuple[int, int] = (960, 640),
    truth: str | None = None,
) -> bytes:
    """A white Korean plate (black characters) on a car-coloured background."""
    rng = random.Random(seed + 7919)
    im = _scene(rng, size, 70)
    d = ImageDraw.Draw(im)
    w, h = size
    pw, ph = int(w * 0.6), int(w * 0.6 / 4.7)
    x0, y0 = (w - pw) // 2 + rng.randrange(-25, 26), (h - ph) // 2 + rng.randrange(-25, 26)
    d.rounded_rectangle((x0, y0, x0 + pw, y0 + ph), radius=10, fill=(246, 246, 242), outline=(20, 20, 20), width=4)
    d.text((x0 + pw // 2, y0 + ph // 2), plate, font=_font(NANUM, int(ph * 0.72)), fill=(15, 15, 15), anchor="mm")
    return _jpeg(_marked(im, truth), captured_at, truth if truth is not None else "plate=" + plate.encode().hex())


def png_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def reencode(data: bytes, quality: int = 70, scale: float = 0.8) -> bytes:
    """The same photo saved again smaller: a perceptual twin with other bytes (keeps EXIF, shows
    the same)."""
    with Image.open(io.BytesIO(data)) as im:
        exif = im.info.get("exif", b"")
        small = im.resize((int(im.width * scale), int(im.height * scale)))
        out = io.BytesIO()
        small.save(out, "JPEG", quality=quality, exif=exif)
    twin = out.getvalue()
    if truth := truth_of(data):
        remember_truth(twin, truth)
    return twin
