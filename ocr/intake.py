"""Image intake shared by the readers: content-sniffed format, limits, EXIF orientation and capture
time, perceptual hash, and a quality gate.  Never raises on any input bytes."""

from __future__ import annotations

import hashlib
import io
import warnings
import zlib
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


# -- personal metadata -------------------------------------------------------------------------
#
# A phone photo carries where it was taken (EXIF GPS, often XMP too), the phone's serial numbers,
# sometimes the owner's name, and maker notes no one can read. A dashboard photo taken at home
# tells where the car sleeps. What is stored and shown keeps only what the decision and the display
# need: the capture time (DateTimeOriginal, its offset, DateTime as a fallback) and the orientation.
# The image data is not touched: JPEG segments, PNG chunks and the HEIF EXIF item are rewritten in
# place, so the pixels — and the perceptual hash — stay exactly the same.

#: IFD0 tags kept: Orientation, DateTime (the capture time's fallback).
_KEEP_IFD0 = (0x0112, 0x0132)
#: Exif sub-IFD tags kept: DateTimeOriginal, OffsetTime, OffsetTimeOriginal.
_KEEP_EXIF_IFD = (0x9003, 0x9010, 0x9011)
_EXIF_IFD = 0x8769

#: JPEG segments kept besides the image data itself: JFIF (APP0), the ICC colour profile (APP2)
#: and Adobe's colour transform (APP14). Every other APPn (XMP, MPF with its extra images, IPTC,
#: maker segments) and every comment goes; the EXIF APP1 is rebuilt.
_PNG_KEEP = {
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs", b"bKGD", b"hIST", b"sPLT",
    b"cICP", b"mDCV", b"cLLI", b"acTL", b"fcTL", b"fdAT",
}  # fmt: skip
#: An EXIF block without any tag, for a HEIF whose EXIF item keeps nothing.
_EMPTY_TIFF = Image.Exif().tobytes()[6:]


def _kept_value(value: object) -> bool:
    return isinstance(value, int | str | bytes) and len(str(value)) <= 64


def kept_exif(exif: Image.Exif) -> bytes | None:
    """The allow-listed tags of `exif` as a TIFF block (no 'Exif' prefix); None when none is set."""
    out = Image.Exif()
    for tag in _KEEP_IFD0:
        value = exif.get(tag)
        if _kept_value(value):
            out[tag] = value
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        sub = {}
    kept = {tag: sub[tag] for tag in _KEEP_EXIF_IFD if _kept_value(sub.get(tag))}
    if kept:
        out.get_ifd(_EXIF_IFD).update(kept)
    if not len(out) and not kept:
        return None
    return out.tobytes()[6:]


def _exif_from_tiff(tiff: bytes) -> Image.Exif:
    exif = Image.Exif()
    try:
        exif.load(tiff)
    except Exception:
        return Image.Exif()  # unreadable EXIF: nothing of it is kept
    return exif


def strip_metadata(data: bytes) -> bytes | None:
    """The photo without its personal metadata (see above), or None when its structure cannot be
    read and it cannot be decoded either. Deterministic and idempotent, so the same photo sent
    twice is the same stored photo."""
    fmt = sniff_format(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's remarks on damaged EXIF: it is dropped anyway
        try:
            if fmt == "jpeg":
                stripped = _strip_jpeg(data)
            elif fmt == "png":
                stripped = _strip_png(data)
            elif fmt == "heif":
                stripped = _strip_heif(data)
            else:
                return None
        except (ValueError, IndexError, KeyError):
            stripped = None
        return stripped if stripped is not None else _reencoded(data, fmt)


def _jpeg_exif(data: bytes) -> bytes | None:
    """The kept EXIF of a JPEG as Pillow reads it (the same source the capture time comes from)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return kept_exif(im.getexif())
    except Exception:
        return None


def _icc_whole(segments: list[bytes]) -> bool:
    """The ICC profile's chunks add up to the size its header declares (nothing else rides in)."""
    profile = b"".join(seg[18:] for seg in segments)  # marker, length, 'ICC_PROFILE\0', seq, count
    return len(profile) >= 128 and int.from_bytes(profile[:4], "big") == len(profile)


def _strip_jpeg(data: bytes) -> bytes | None:
    out = [b"\xff\xd8"]
    pos = 2
    exif_written = False
    icc: list[bytes] = []
    icc_at: int | None = None  # where the profile goes back: before the first table
    markers: np.ndarray | None = None
    while pos < len(data):
        if data[pos] != 0xFF:
            return None  # bytes between segments: not a structure we rewrite
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos >= len(data):
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI: whatever follows (a second image, a video) is dropped
            out.append(b"\xff\xd9")
            return _with_icc(out, icc, icc_at)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append(bytes((0xFF, marker)))
            continue
        if pos + 2 > len(data):
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            return None
        end = pos + length
        payload = data[pos + 2 : end]
        segment = data[pos - 2 : end]
        pos = end
        if marker == 0xE1:
            if payload.startswith(b"Exif\x00\x00") and not exif_written:
                exif_written = True
                tiff = _jpeg_exif(data)
                if tiff is not None:
                    body = b"Exif\x00\x00" + tiff
                    out.append(b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body)
            continue
        if 0xE0 <= marker <= 0xEF:
            if marker == 0xE0 and payload.startswith(b"JFIF\x00") and len(payload) >= 14:
                # the 14-byte header only (its optional thumbnail is another copy of the photo)
                out.append(b"\xff\xe0\x00\x10" + payload[:12] + b"\x00\x00")
            elif marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
                icc.append(segment)
            elif marker == 0xEE and payload.startswith(b"Adobe") and len(payload) == 12:
                out.append(segment)
            continue
        if marker == 0xFE:  # COM
            continue
        if icc_at is None:
            icc_at = len(out)  # the first table: the APPn segments kept are all before it
        out.append(segment)
        if marker == 0xDA:  # SOS: the entropy-coded data runs to the next real marker
            if markers is None:
                markers = _marker_positions(data, pos)
            i = int(np.searchsorted(markers, pos))
            if i >= len(markers):  # truncated inside the scan: keep what there is
                out.append(data[pos:])
                return _with_icc(out, icc, icc_at)
            nxt = int(markers[i])
            out.append(data[pos:nxt])
            pos = nxt
    return _with_icc(out, icc, icc_at)  # no EOI: a truncated file, kept as such (a retake)


def _marker_positions(data: bytes, start: int) -> np.ndarray:
    """Positions from `start` on of a 0xFF that begins a marker: not a stuffed 0xFF00, not a
    restart marker inside a scan, not a fill byte before another 0xFF (vectorised: a phone photo
    holds tens of thousands of 0xFF)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    ff = np.flatnonzero(arr[start:-1] == 0xFF) + start
    nxt = arr[ff + 1]
    real = (nxt != 0x00) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7))
    return ff[real]


def _with_icc(out: list[bytes], icc: list[bytes], at: int | None) -> bytes:
    if icc and _icc_whole(icc):
        at = len(out) if at is None else at
        out[at:at] = icc
    return b"".join(out)


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + ctype + body + zlib.crc32(ctype + body).to_bytes(4, "big")


def _png_exif(data: bytes) -> bytes | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return kept_exif(im.getexif())
    except Exception:
        return None


def _strip_png(data: bytes) -> bytes | None:
    out = [data[:8]]
    pos = 8
    exif_done = False
    tiff = _png_exif(data)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        critical = ctype[:1].isupper()
        if end > len(data):  # truncated: keep a partial image chunk, nothing else
            if critical:
                out.append(data[pos:])
            break
        if ctype == b"eXIf":
            if tiff is not None and not exif_done:
                out.append(_png_chunk(b"eXIf", tiff))
            exif_done = True
        elif critical or ctype in _PNG_KEEP:
            if ctype == b"IDAT" and tiff is not None and not exif_done:
                # the capture time came from a text chunk (ImageMagick's raw EXIF): keep it as eXIf
                out.append(_png_chunk(b"eXIf", tiff))
                exif_done = True
            out.append(data[pos:end])
        pos = end
        if ctype == b"IEND":
            break
    return b"".join(out)


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """ISO-BMFF boxes between start and end: (type, payload start, box end)."""
    boxes = []
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        btype = data[pos + 4 : pos + 8]
        head = 8
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise ValueError("box overruns its parent")
        boxes.append((btype, pos + head, pos + size))
        pos += size
    return boxes


def _uint(data: bytes, pos: int, n: int) -> tuple[int, int]:
    if pos + n > len(data):
        raise ValueError("short box")
    return int.from_bytes(data[pos : pos + n], "big"), pos + n


def _heif_items(data: bytes) -> tuple[dict[int, tuple[bytes, str]], dict[int, list[tuple[int, int]]]]:
    """(item id -> (type, content type)), (item id -> its extents as file ranges)."""
    top = _boxes(data, 0, len(data))
    metas = [b for b in top if b[0] == b"meta"]
    if len(metas) != 1:
        raise ValueError("not one meta box")
    _, mstart, mend = metas[0]
    children = {t: (s, e) for t, s, e in _boxes(data, mstart + 4, mend)}  # meta is a full box
    types: dict[int, tuple[bytes, str]] = {}
    s, e = children[b"iinf"]
    version = data[s]
    _, p = _uint(data, s + 4, 2 if version == 0 else 4)
    for btype, bs, be in _boxes(data, p, e):
        if btype != b"infe":
            continue
        v = data[bs]
        if v < 2:
            raise ValueError("old item info entries")
        item_id, q = _uint(data, bs + 4, 2 if v == 2 else 4)
        q += 2  # protection index
        item_type = data[q : q + 4]
        q += 4
        ctype = ""
        if item_type == b"mime":
            name_end = data.index(b"\x00", q, be)
            ct_end = data.index(b"\x00", name_end + 1, be)
            ctype = data[name_end + 1 : ct_end].decode("ascii", "replace")
        types[item_id] = (item_type, ctype)
    idat = children.get(b"idat")
    s, e = children[b"iloc"]
    version = data[s]
    p = s + 4
    sizes, p = _uint(data, p, 1)
    offset_size, length_size = sizes >> 4, sizes & 15
    sizes, p = _uint(data, p, 1)
    base_size, index_size = sizes >> 4, (sizes & 15 if version in (1, 2) else 0)
    count, p = _uint(data, p, 4 if version == 2 else 2)
    extents: dict[int, list[tuple[int, int]]] = {}
    for _ in range(count):
        item_id, p = _uint(data, p, 4 if version == 2 else 2)
        method = 0
        if version in (1, 2):
            method, p = _uint(data, p, 2)
            method &= 15
        _, p = _uint(data, p, 2)  # data reference index
        base, p = _uint(data, p, base_size)
        n, p = _uint(data, p, 2)
        ranges = []
        for _ in range(n):
            _, p = _uint(data, p, index_size)
            off, p = _uint(data, p, offset_size)
            length, p = _uint(data, p, length_size)
            ranges.append((off, length))
        if method == 0:
            extents[item_id] = [(base + off, length) for off, length in ranges]
        elif method == 1 and idat is not None:
            extents[item_id] = [(idat[0] + base + off, length) for off, length in ranges]
        else:
            extents[item_id] = []  # stored in another item: not rewritten (refused if metadata)
    return types, extents


def _strip_heif(data: bytes) -> bytes | None:
    """Overwrite the EXIF item with the kept tags and the XMP items with spaces, each padded to
    its length, so that no offset in the file moves and the coded image stays as it was."""
    types, extents = _heif_items(data)
    out = bytearray(data)
    for item_id, (item_type, ctype) in types.items():
        is_exif = item_type == b"Exif"
        is_xmp = item_type == b"mime" and "xml" in ctype.lower()
        if not (is_exif or is_xmp):
            continue
        ranges = extents.get(item_id) or []
        if not ranges or any(length <= 0 or off + length > len(data) for off, length in ranges):
            return None
        body = b"".join(data[off : off + length] for off, length in ranges)
        if is_exif:
            if len(body) < 4:
                return None
            tiff_at = 4 + int.from_bytes(body[:4], "big")
            tiff = kept_exif(_exif_from_tiff(body[tiff_at:])) if tiff_at <= len(body) else None
            new = body[:tiff_at] + (tiff or _EMPTY_TIFF)
            if len(new) > len(body):
                return None
            new += b"\x00" * (len(body) - len(new))
        else:
            new = b" " * len(body)
        at = 0
        for off, length in ranges:
            out[off : off + length] = new[at : at + length]
            at += length
    return bytes(out)


def _reencoded(data: bytes, fmt: str | None) -> bytes | None:
    """Last resort for a file whose structure the rewriters refuse: decode and encode the pixels
    afresh (the kept EXIF and the colour profile only), or None when it cannot be decoded."""
    if fmt not in ("jpeg", "png", "heif") or (fmt == "heif" and not _register_heif()):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_PIXELS:
                    return None
                im.load()
                tiff = kept_exif(im.getexif())
                icc = im.info.get("icc_profile")
                clean = Image.frombytes(im.mode, im.size, im.tobytes())
        params: dict[str, object] = {}
        if tiff is not None:
            params["exif"] = b"Exif\x00\x00" + tiff
        if icc:
            params["icc_profile"] = icc
        out = io.BytesIO()
        if fmt == "jpeg":
            clean = clean if clean.mode in ("RGB", "L", "CMYK") else clean.convert("RGB")
            clean.save(out, "JPEG", quality=95, **params)
        elif fmt == "png":
            clean.save(out, "PNG", **params)
        else:
            clean.save(out, "HEIF", quality=90, **params)
        return out.getvalue()
    except Exception:
        return None
