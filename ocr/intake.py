"""Image intake shared by the readers: content-sniffed format, limits, EXIF orientation and capture
time, perceptual hash, and a quality gate.  Never raises on any input bytes."""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
from PIL import Image, ImageFile

from .types import ImageIntake

cv2.setNumThreads(1)

MAX_BYTES = 15 * 1024 * 1024
MAX_PIXELS = 40_000_000
#: the readers work on at most this many pixels on the long side
WORK_MAX_SIDE = 2048

ImageFile.LOAD_TRUNCATED_IMAGES = False
# We check the pixel count ourselves before decoding; keep Pillow's bomb guard as a second net.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_HEIF_REGISTERED = False


def _register_heif() -> bool:
    global _HEIF_REGISTERED
    if not _HEIF_REGISTERED:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _HEIF_REGISTERED = True
        except Exception:  # pragma: no cover - pillow-heif missing
            return False
    return True


_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"mif2"}


def sniff_format(data: bytes) -> str | None:
    """'jpeg' | 'png' | 'heif' | 'gif' | 'tiff' | 'webp' | 'bmp' | 'avif' | None, by content."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        major = data[8:12]
        brands = {major} | {data[i : i + 4] for i in range(16, min(len(data), 64), 4)}
        if major in (b"avif", b"avis"):
            return "avif"
        if brands & _HEIF_BRANDS:
            return "heif"
        return None
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    return None


@dataclass
class Decoded:
    intake: ImageIntake
    bgr: np.ndarray | None  # orientation-corrected, long side <= WORK_MAX_SIDE
    scale: float = 1.0  # bgr pixels per oriented-image pixel
    derived: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def derived_image(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """An image made from this photo once per read: a reader's looks at several detector
        sizes share it instead of making it again each time."""
        if key not in self.derived:
            self.derived[key] = make()
        return self.derived[key]


def _captured_at(exif: Image.Exif) -> tuple[datetime | None, bool]:
    try:
        ifd = exif.get_ifd(0x8769)
    except Exception:
        ifd = {}
    raw = ifd.get(36867) or exif.get(306)  # DateTimeOriginal, else DateTime
    if not raw:
        return None, False
    try:
        s = raw.decode() if isinstance(raw, bytes) else str(raw)
        dt = datetime.strptime(s.strip().rstrip("\x00")[:19], "%Y:%m:%d %H:%M:%S")
    except Exception:
        return None, False
    off = ifd.get(36881) if ifd.get(36867) else ifd.get(36880)  # OffsetTimeOriginal / OffsetTime
    if off:
        try:
            o = (off.decode() if isinstance(off, bytes) else str(off)).strip().rstrip("\x00")
            sign = -1 if o.startswith("-") else 1
            hh, mm = o.lstrip("+-").split(":")
            return dt.replace(tzinfo=timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))), True
        except Exception:
            pass
    return dt, False


def phash_distance(a: str | None, b: str | None) -> int:
    """Hamming distance between two phash hex strings (64 when either is missing)."""
    if not a or not b or len(a) != len(b):
        return 64
    try:
        return int(bin(int(a, 16) ^ int(b, 16)).count("1"))
    except ValueError:
        return 64


def _quality(gray: np.ndarray, orig_wh: tuple[int, int]) -> tuple[list[str], dict[str, float]]:
    """Conservative quality gate: dashboards are dark with a bright display, so 'dark' means that
    almost nothing in the frame is bright, not that the mean is low."""
    reasons: list[str] = []
    g = gray
    h, w = g.shape
    s = 512 / max(h, w)
    if s < 1:
        g = cv2.resize(g, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    p50, p99 = float(np.percentile(g, 50)), float(np.percentile(g, 99.5))
    sat = float((g >= 250).mean())
    lap = cv2.Laplacian(g, cv2.CV_64F)
    # sharpness: the strongest edges (90th percentile of |laplacian|) rather than the variance,
    # so a sharp display in a dark, featureless frame still counts as sharp
    sharp = float(np.percentile(np.abs(lap), 99))
    q = {
        "p50": p50,
        "p99": p99,
        "saturated": sat,
        "sharpness": sharp,
        "megapixels": orig_wh[0] * orig_wh[1] / 1e6,
    }
    if p99 < 45:
        reasons.append("retake_dark")
    if p50 > 240 or sat > 0.6:
        reasons.append("retake_overexposed")
    elif sat > 0.12:
        # a large blown-out blob rather than scattered highlights
        blob = (g >= 250).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(blob)
        if n > 1 and stats[1:, cv2.CC_STAT_AREA].max() > 0.08 * g.size:
            reasons.append("retake_glare")
    if sharp < 12 and p99 >= 45:
        reasons.append("retake_blurry")
    if min(orig_wh) < 120 or orig_wh[0] * orig_wh[1] < 40_000:
        reasons.append("retake_low_resolution")
    return reasons, q


#: EXIF orientation (2-8) -> the transposition that shows the photo upright.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def decode(data: bytes | bytearray | memoryview | None, *, want_pixels: bool = True) -> Decoded:
    """Decode and check `data`; never raises."""
    try:
        return _decode(data, want_pixels)
    except Exception:  # last-resort guard: anything unexpected is 'not an image'
        b = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else b""
        return Decoded(
            ImageIntake(
                ok=False, reasons=["not_an_image"], byte_size=len(b), sha256=hashlib.sha256(b).hexdigest()
            ),
            None,
        )


def _decode(data: bytes | bytearray | memoryview | None, want_pixels: bool) -> Decoded:
    if not isinstance(data, bytes | bytearray | memoryview):
        return Decoded(
            ImageIntake(ok=False, reasons=["not_an_image"], sha256=hashlib.sha256(b"").hexdigest()), None
        )
    data = bytes(data)
    info = ImageIntake(ok=False, byte_size=len(data), sha256=hashlib.sha256(data).hexdigest())
    if not data:
        info.reasons.append("empty")
        info.reasons.append("not_an_image")
        return Decoded(info, None)
    if len(data) > MAX_BYTES:
        info.reasons.append("too_large")
        return Decoded(info, None)
    fmt = sniff_format(data)
    if fmt is None:
        info.reasons.append("not_an_image")
        return Decoded(info, None)
    if fmt == "heif" and not _register_heif():
        info.reasons.append("unsupported_format")
        return Decoded(info, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data))
            w0, h0 = im.size
    except Image.DecompressionBombError:
        info.reasons.append("too_many_pixels")
        return Decoded(info, None)
    except (Image.DecompressionBombWarning, Warning):
        info.reasons.append("too_many_pixels")
        return Decoded(info, None)
    except Exception:
        info.reasons.append(
            "truncated" if fmt in ("jpeg", "png", "heif") and len(data) < 64 else "not_an_image"
        )
        return Decoded(info, None)
    if fmt not in ("jpeg", "png", "heif"):
        n_frames = getattr(im, "n_frames", 1) or 1
        if getattr(im, "is_animated", False) or n_frames > 1:
            info.reasons.append("animated")
        info.reasons.append("unsupported_format")
        return Decoded(info, None)
    info.format = fmt  # type: ignore[assignment]
    if w0 <= 0 or h0 <= 0:
        info.reasons.append("not_an_image")
        return Decoded(info, None)
    if w0 * h0 > MAX_PIXELS:
        info.reasons.append("too_many_pixels")
        return Decoded(info, None)
    if fmt == "png" and (getattr(im, "is_animated", False) or (getattr(im, "n_frames", 1) or 1) > 1):
        info.reasons.append("animated")
        return Decoded(info, None)
    try:
        exif = im.getexif()
    except Exception:
        exif = Image.Exif()
    orient = exif.get(274) if exif else None
    info.orientation = int(orient) if isinstance(orient, int) and 1 <= orient <= 8 else None
    try:
        info.captured_at, info.captured_at_has_offset = _captured_at(exif)
    except Exception:
        info.captured_at, info.captured_at_has_offset = None, False
    # Decode, then shrink to the working size before anything else touches the pixels: a phone's
    # 12-megapixel photo otherwise pays for transposing, hashing and resizing at full size
    # (~0.2 CPU-s a photo). JPEG: libjpeg decodes at 1/2, 1/4 or 1/8 scale directly when the
    # result keeps at least 90 % of the working size.
    try:
        if fmt == "jpeg":
            k = 1
            while max(w0, h0) / (2 * k) >= 0.9 * WORK_MAX_SIDE and k < 8:
                k *= 2
            if k > 1:
                im.draft("RGB", (-(-w0 // k), -(-h0 // k)))
        im.load()
    except Image.DecompressionBombError:
        info.reasons.append("too_many_pixels")
        return Decoded(info, None)
    except (OSError, SyntaxError, ValueError, EOFError):
        info.reasons.append("truncated")
        return Decoded(info, None)
    if im.mode not in ("RGB", "L"):
        if "A" in im.getbands() or im.mode == "P":
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        im = im.convert("RGB")
    elif im.mode == "L":
        im = im.convert("RGB")
    wd, hd = im.size
    if max(wd, hd) > WORK_MAX_SIDE:
        s = WORK_MAX_SIDE / max(wd, hd)
        im = im.resize((max(1, int(wd * s)), max(1, int(hd * s))), Image.Resampling.BILINEAR)
    turn = _ORIENTATION_TRANSPOSE.get(info.orientation or 1)
    if turn is not None:  # (the shrunk copy no longer carries the EXIF tag exif_transpose reads)
        im = im.transpose(turn)
    rot = info.orientation in (5, 6, 7, 8)
    info.width, info.height = (h0, w0) if rot else (w0, h0)
    try:
        import imagehash

        info.phash = str(imagehash.phash(im))
    except Exception:
        info.phash = None
    scale = im.size[0] / float(info.width)
    rgb = np.asarray(im, dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    qr, q = _quality(gray, (info.width, info.height))
    info.quality = {k: round(v, 3) for k, v in q.items()}
    info.reasons.extend(qr)
    info.quality_ok = not qr
    info.ok = True
    return Decoded(info, bgr if want_pixels else None, scale)


def inspect_image(image_bytes: bytes) -> ImageIntake:
    """Check photo bytes: format, limits, orientation, capture time, phash, quality. Never raises."""
    return decode(image_bytes, want_pixels=False).intake
