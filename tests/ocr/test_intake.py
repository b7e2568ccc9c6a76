"""Intake: formats by content, limits, orientation, capture time, phash, quality; never raises."""

from __future__ import annotations

import io
import struct
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from ocr import inspect_image, phash_distance, read_odometer, read_plate


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _scene(w: int = 640, h: int = 480) -> Image.Image:
    rng = np.random.default_rng(0)
    a = (rng.random((h // 16, w // 16, 3)) * 255).astype(np.uint8)
    return Image.fromarray(a).resize((w, h), Image.Resampling.NEAREST)


BAD_INPUTS = {
    "empty": b"",
    "text": b"hello, this is not an image at all",
    "html": b"<html><body>nope</body></html>" * 10,
    "zeros": bytes(1000),
    "jpeg_magic_only": b"\xff\xd8\xff\xe0",
    "png_magic_only": b"\x89PNG\r\n\x1a\n",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_bytes_give_reasons_not_exceptions(name: str) -> None:
    data = BAD_INPUTS[name]
    info = inspect_image(data)
    assert not info.ok and info.reasons
    r = read_odometer(data)
    assert r.value_km is None and not r.auto_accept and r.reasons
    p = read_plate(data)
    assert p.text is None and not p.auto_accept and p.reasons
    r2 = read_odometer(data, claimed_km=12345)
    assert r2.claim_confirmed is False
    p2 = read_plate(data, claimed_plate="12가3456")
    assert p2.claim_confirmed is False


def test_non_bytes_input_does_not_raise() -> None:
    assert not inspect_image(None).ok  # type: ignore[arg-type]
    assert read_odometer("not bytes").value_km is None  # type: ignore[arg-type]
    assert read_plate(12345).text is None  # type: ignore[arg-type]


def test_truncated_jpeg() -> None:
    data = _jpeg(_scene())
    for cut in (len(data) // 2, 200):
        info = inspect_image(data[:cut])
        assert not info.ok
        assert "truncated" in info.reasons or "not_an_image" in info.reasons
        assert read_odometer(data[:cut]).value_km is None


def test_truncated_png() -> None:
    data = _png(_scene())
    info = inspect_image(data[: len(data) // 2])
    assert not info.ok and ("truncated" in info.reasons or "not_an_image" in info.reasons)


def test_too_large_bytes() -> None:
    data = b"\xff\xd8\xff\xe0" + bytes(16 * 1024 * 1024)
    info = inspect_image(data)
    assert not info.ok and "too_large" in info.reasons


def _png_header_only(w: int, h: int) -> bytes:
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    # a tiny compressed stream that would expand enormously: one row of zeros repeated
    raw = zlib.compress(b"\x00" * (1 + 3 * min(w, 4096)) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_decompression_bomb_100_megapixels() -> None:
    data = _png_header_only(10000, 10000)
    assert len(data) < 1_000_000
    info = inspect_image(data)
    assert not info.ok and "too_many_pixels" in info.reasons
    assert read_odometer(data).reasons and read_plate(data).reasons


def test_jpeg_bomb_header() -> None:
    # a real small JPEG with its SOF dimensions patched to 12000 x 12000
    data = bytearray(_jpeg(_scene(64, 48)))
    i = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, 12000, 12000)
    info = inspect_image(bytes(data))
    assert not info.ok and "too_many_pixels" in info.reasons


def test_animated_gif() -> None:
    frames = [_scene(64, 48), _scene(64, 48).rotate(90)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    info = inspect_image(buf.getvalue())
    assert not info.ok and "animated" in info.reasons


def test_multipage_tiff() -> None:
    buf = io.BytesIO()
    _scene(64, 48).save(buf, "TIFF", save_all=True, append_images=[_scene(64, 48)])
    info = inspect_image(buf.getvalue())
    assert not info.ok and "animated" in info.reasons


def test_animated_png() -> None:
    buf = io.BytesIO()
    _scene(64, 48).save(buf, "PNG", save_all=True, append_images=[_scene(64, 48).rotate(90)])
    info = inspect_image(buf.getvalue())
    assert not info.ok and "animated" in info.reasons


def test_other_formats_unsupported() -> None:
    for fmt in ("BMP", "WEBP"):
        buf = io.BytesIO()
        _scene(64, 48).save(buf, fmt)
        info = inspect_image(buf.getvalue())
        assert not info.ok and "unsupported_format" in info.reasons


def test_heic_roundtrip() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    try:
        _scene().save(buf, "HEIF", quality=80)
    except Exception as exc:  # encoder not available in this build
        pytest.skip(f"HEIF encoder unavailable: {exc}")
    info = inspect_image(buf.getvalue())
    assert info.ok and info.format == "heif" and info.width == 640 and info.height == 480


def test_jpeg_png_basic_fields() -> None:
    im = _scene()
    for data, fmt in ((_jpeg(im), "jpeg"), (_png(im), "png")):
        info = inspect_image(data)
        assert info.ok and info.format == fmt
        assert (info.width, info.height) == (640, 480)
        assert len(info.sha256) == 64 and info.phash and len(info.phash) == 16
        assert info.captured_at is None


def _exif(orientation: int | None = None, dt: str | None = None, offset: str | None = None) -> Image.Exif:
    ex = Image.Exif()
    if orientation:
        ex[274] = orientation
    ifd = ex.get_ifd(0x8769)
    if dt:
        ifd[36867] = dt
    if offset:
        ifd[36881] = offset
    return ex


def test_exif_orientation_and_capture_time_with_offset() -> None:
    im = _scene(640, 480)
    data = _jpeg(im, exif=_exif(6, "2026:03:14 09:26:53", "+09:00"))
    info = inspect_image(data)
    assert info.ok and info.orientation == 6
    assert (info.width, info.height) == (480, 640)  # rotated
    assert info.captured_at == datetime(2026, 3, 14, 9, 26, 53, tzinfo=timezone(timedelta(hours=9)))
    assert info.captured_at_has_offset is True


def test_capture_time_without_offset_is_naive_and_flagged() -> None:
    info = inspect_image(_jpeg(_scene(), exif=_exif(None, "2025:12:01 18:00:00")))
    assert info.captured_at == datetime(2025, 12, 1, 18, 0, 0)
    assert info.captured_at.tzinfo is None and info.captured_at_has_offset is False


def test_phash_is_orientation_corrected_and_reuse_detectable() -> None:
    im = _scene(640, 480)
    a = inspect_image(_jpeg(im))
    # same photo stored rotated with an EXIF tag that rotates it back
    b = inspect_image(_jpeg(im.rotate(90, expand=True), exif=_exif(6)))
    c = inspect_image(_jpeg(im.resize((320, 240)), quality=50) if False else _jpeg(im.resize((320, 240))))
    other = inspect_image(_jpeg(_scene(640, 480).transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    assert phash_distance(a.phash, b.phash) <= 6
    assert phash_distance(a.phash, c.phash) <= 6
    assert phash_distance(a.phash, other.phash) > 10
    assert phash_distance(None, a.phash) == 64


def test_quality_gate() -> None:
    dark = inspect_image(_jpeg(Image.new("RGB", (640, 480), (8, 8, 8))))
    assert dark.ok and "retake_dark" in dark.reasons and not dark.quality_ok
    white = inspect_image(_jpeg(Image.new("RGB", (640, 480), (255, 255, 255))))
    assert "retake_overexposed" in white.reasons
    blurry = inspect_image(_jpeg(_scene().resize((40, 30)).resize((640, 480), Image.Resampling.BILINEAR)))
    assert "retake_blurry" in blurry.reasons
    tiny = inspect_image(_jpeg(_scene(100, 80)))
    assert "retake_low_resolution" in tiny.reasons
    sharp = inspect_image(_jpeg(_scene()))
    assert sharp.quality_ok, sharp.reasons
    # a big blown-out blob on an otherwise normal photo
    a = np.asarray(_scene()).copy()
    a[100:380, 150:500] = 255
    glare = inspect_image(_jpeg(Image.fromarray(a)))
    assert "retake_glare" in glare.reasons or "retake_overexposed" in glare.reasons


def test_grayscale_and_alpha_png_decode() -> None:
    la = Image.new("LA", (300, 200), (128, 200))
    assert inspect_image(_png(la)).ok
    rgba = Image.new("RGBA", (300, 200), (10, 20, 30, 0))
    assert inspect_image(_png(rgba)).ok


def test_mutated_jpegs_never_raise() -> None:
    import random

    rng = random.Random(0)
    base = bytearray(_jpeg(_scene(320, 240)))
    for _ in range(25):
        b = bytearray(base)
        for _ in range(rng.randint(1, 40)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            b = b[: rng.randrange(10, len(b))]
        data = bytes(b)
        inspect_image(data)
        r = read_odometer(data, claimed_km=123456)
        assert r.claim_confirmed in (False, True)
        read_plate(data, claimed_plate="12가3456")


def test_large_photo_is_downscaled_and_read_quickly() -> None:
    import time

    im = _scene(6000, 4500)  # 27 MP, under the 40 MP limit
    data = _jpeg(im)
    t = time.perf_counter()
    info = inspect_image(data)
    assert info.ok and (info.width, info.height) == (6000, 4500)
    r = read_odometer(data)
    assert r.value_km is None or not r.auto_accept
    assert time.perf_counter() - t < 20
