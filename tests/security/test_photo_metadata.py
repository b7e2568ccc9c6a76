"""Photos are stored and shown without where they were taken (issue 18, item 8).

A phone photo of the dashboard, taken in the car park at home, carries the place (EXIF GPS, XMP),
the phone's serial numbers and sometimes the owner's name. What is stored and served keeps the
capture time and orientation only; the pixels, and so the perceptual hash, stay exactly the same.
Pure tests of `ocr.intake.strip_metadata` for JPEG, PNG and HEIF, then the real service.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import numpy as np
import pillow_heif
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from ocr.intake import inspect_image, strip_metadata
from storage.blobs import LocalBlobStore
from tests.conftest import LiveService, cli_token
from tests.photos.synth import dashboard_jpeg, plate_jpeg
from tests.security.conftest import LiveCitizen, live_citizen

pillow_heif.register_heif_opener()

HOME = (37.5665, 126.978)  # what must never leave the upload
#: Strings planted in the metadata of the test photos; none may survive.
PLANTED = [
    b"GPS",
    b"37.5665",
    b"126.978",
    b"SN-PHONE-0042",
    b"Kim Minsu",
    "우리집 주차장".encode(),
    b"ns.adobe.com/xap",
    b"Photoshop 3.0",
    b"MPF\x00",
    b"ftypmp42",
    b"home-garage-comment",
]
KEPT_IFD0 = {0x0112, 0x0132, 0x8769}
KEPT_EXIF = {0x9003, 0x9010, 0x9011}


def _scene(w: int = 320, h: int = 240, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w * h * 3, dtype=np.float64).reshape(h, w, 3)
    noise = rng.integers(0, 40, size=(h, w, 3))
    return Image.fromarray(((base + noise) % 256).astype(np.uint8), "RGB")


def phone_exif(captured: str = "2026:03:14 09:26:53", offset: str | None = "+09:00", gps: tuple[float, float] = HOME) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Samsung"  # Make
    exif[0x0110] = "SM-S918N"  # Model
    exif[0x0112] = 6  # Orientation
    exif[0x0132] = "2026:03:14 09:26:54"  # DateTime
    exif[0x010E] = "우리집 주차장".encode()  # ImageDescription (phones write UTF-8)
    exif[0x013B] = "Kim Minsu"  # Artist
    exif[0x8298] = "Kim Minsu"  # Copyright
    ifd = exif.get_ifd(0x8769)
    ifd[0x9003] = captured  # DateTimeOriginal
    if offset:
        ifd[0x9011] = offset  # OffsetTimeOriginal
        ifd[0x9010] = offset  # OffsetTime
    ifd[0xA430] = "Kim Minsu"  # CameraOwnerName
    ifd[0xA431] = "SN-PHONE-0042"  # BodySerialNumber
    ifd[0xA420] = "SN-PHONE-0042-IMG"  # ImageUniqueID
    ifd[0x927C] = b"MakerNote GPS " + _where(gps)  # MakerNote
    gps_ifd = exif.get_ifd(0x8825)
    gps_ifd[1] = "N"
    gps_ifd[2] = _dms(gps[0])
    gps_ifd[3] = "E"
    gps_ifd[4] = _dms(gps[1])
    gps_ifd[0x1B] = b"ASCII\x00\x00\x00GPS " + _where(gps)  # GPSProcessingMethod
    return exif


def _dms(deg: float) -> tuple[float, float, float]:
    minutes = (deg - int(deg)) * 60
    return (float(int(deg)), float(int(minutes)), round((minutes - int(minutes)) * 60, 2))


def _where(gps: tuple[float, float]) -> bytes:
    return f"{gps[0]:.4f} {gps[1]:.3f}".encode()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


XMP = (
    b'http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
    b'exif:GPSLatitude="37,33.99N" exif:GPSLongitude="126,58.68E"/></rdf:RDF></x:xmpmeta>'
)


def _trailer(gps: tuple[float, float]) -> bytes:
    """A motion photo's video after the end of the image, with its own place."""
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\xa9xyz+" + _where(gps) + b"/\xff\xd9"


def phone_jpeg(seed: int = 1, gps: tuple[float, float] = HOME, **exif_args: str) -> bytes:
    """What a phone writes: EXIF with GPS and serials, XMP, IPTC, MPF, a comment, and a motion
    photo's video after the end of the image."""
    out = io.BytesIO()
    _scene(seed=seed).save(out, "JPEG", quality=90, exif=phone_exif(gps=gps, **exif_args).tobytes())
    data = out.getvalue()
    extra = (
        _segment(0xE1, XMP)
        + _segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x10\x1c\x02\x5a\x00\x0bSeoul home")
        + _segment(0xE2, b"MPF\x00" + b"\x00" * 32)
        + _segment(0xFE, b"home-garage-comment")
    )
    at = data.index(b"\xff\xdb")  # before the first quantisation table
    return data[:at] + extra + data[at:] + _trailer(gps)


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def assert_clean(stripped: bytes) -> None:
    for planted in PLANTED:
        assert planted not in stripped, planted
    with Image.open(io.BytesIO(stripped)) as im:
        exif = im.getexif()
        assert set(exif) <= KEPT_IFD0, set(exif)
        assert set(exif.get_ifd(0x8769)) <= KEPT_EXIF
        assert not exif.get_ifd(0x8825)
        assert not im.info.get("xmp", b"").strip()
        assert "comment" not in im.info


def assert_same_photo(original: bytes, stripped: bytes) -> None:
    """Same pixels, so the same perceptual hash; the same capture time and orientation."""
    assert np.array_equal(pixels(original), pixels(stripped))
    a, b = inspect_image(original), inspect_image(stripped)
    assert b.ok and a.ok
    assert (b.captured_at, b.captured_at_has_offset, b.orientation) == (a.captured_at, a.captured_at_has_offset, a.orientation)
    assert (b.phash, b.width, b.height, b.format) == (a.phash, a.width, a.height, a.format)


# -- JPEG, PNG, HEIF ------------------------------------------------------------------------------


def test_a_phone_jpeg_loses_place_and_person_and_keeps_time_and_pixels() -> None:
    original = phone_jpeg()
    assert all(p in original for p in PLANTED)
    stripped = strip_metadata(original)
    assert stripped is not None
    assert_clean(stripped)
    assert_same_photo(original, stripped)
    info = inspect_image(stripped)
    assert info.captured_at == datetime(2026, 3, 14, 9, 26, 53, tzinfo=timezone(timedelta(hours=9)))
    assert info.orientation == 6
    assert strip_metadata(stripped) == stripped  # idempotent: the same photo is the same stored photo
    # only segments were dropped: the coded image is byte for byte the one sent
    sos = original.index(b"\xff\xda")
    assert original[sos : original.index(b"\xff\xd9", sos) + 2] in stripped


def test_a_jpeg_without_metadata_is_stored_as_sent() -> None:
    out = io.BytesIO()
    _scene().save(out, "JPEG", quality=85)
    assert strip_metadata(out.getvalue()) == out.getvalue()


def test_a_truncated_jpeg_is_kept_truncated_but_clean() -> None:
    original = phone_jpeg()
    cut = original[: original.index(b"\xff\xda") + 2000]
    stripped = strip_metadata(cut)
    assert stripped is not None
    for planted in PLANTED:
        assert planted not in stripped
    assert inspect_image(stripped).reasons == inspect_image(cut).reasons


def test_a_png_loses_its_exif_gps_and_text_chunks() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("XML:com.adobe.xmp", XMP.decode("latin-1"))
    info.add_text("Comment", "home-garage-comment Kim Minsu")
    info.add_itxt("Description", "우리집 주차장")
    out = io.BytesIO()
    _scene().save(out, "PNG", exif=phone_exif().tobytes(), pnginfo=info)
    original = out.getvalue() + b"GPS 37.5665 126.978 after IEND"
    stripped = strip_metadata(original)
    assert stripped is not None
    assert_clean(stripped)
    assert_same_photo(original, stripped)
    assert inspect_image(stripped).captured_at is not None
    assert strip_metadata(stripped) == stripped


def test_a_heic_loses_its_exif_gps_and_xmp_in_place() -> None:
    out = io.BytesIO()
    _scene().save(out, "HEIF", quality=80, exif=phone_exif().tobytes(), xmp=XMP.split(b"\x00", 1)[1])
    original = out.getvalue()
    stripped = strip_metadata(original)
    assert stripped is not None
    assert len(stripped) == len(original)  # rewritten in place: no offset moved, nothing re-encoded
    assert_clean(stripped)
    assert_same_photo(original, stripped)
    assert inspect_image(stripped).captured_at == inspect_image(original).captured_at is not None
    assert strip_metadata(stripped) == stripped


_TAGS_IFD0 = {0x010F: "Maker", 0x0110: "Model", 0x0112: 3, 0x0132: "2025:12:01 10:00:00", 0x010E: "desc",
              0x013B: "Artist", 0x0131: "Software 1.0"}  # fmt: skip
_TAGS_EXIF = {0x9003: "2025:12:01 09:59:00", 0x9011: "+09:00", 0x9010: "+09:00", 0xA431: "SN-1", 0xA430: "Owner",
              0x9286: b"ASCII\x00\x00\x00comment", 0x927C: b"maker"}  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ifd0=st.sets(st.sampled_from(sorted(_TAGS_IFD0))),
    sub=st.sets(st.sampled_from(sorted(_TAGS_EXIF))),
    gps=st.booleans(),
    fmt=st.sampled_from(["JPEG", "PNG"]),
)
def test_any_tag_set_keeps_only_the_allowed_tags(ifd0: set[int], sub: set[int], gps: bool, fmt: str) -> None:
    exif = Image.Exif()
    for tag in ifd0:
        exif[tag] = _TAGS_IFD0[tag]
    if sub:
        exif.get_ifd(0x8769).update({tag: _TAGS_EXIF[tag] for tag in sub})
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (37.0, 33.0, 59.4)})
    out = io.BytesIO()
    _scene(64, 48).save(out, fmt, exif=exif.tobytes())
    original = out.getvalue()
    stripped = strip_metadata(original)
    assert stripped is not None
    with Image.open(io.BytesIO(stripped)) as im:
        kept = im.getexif()
        assert set(kept) - {0x8769} == ifd0 & KEPT_IFD0
        assert set(kept.get_ifd(0x8769)) == sub & KEPT_EXIF
        assert not kept.get_ifd(0x8825)
    assert_same_photo(original, stripped)
    assert strip_metadata(stripped) == stripped


_MANGLE_SOURCES = [phone_jpeg(), phone_jpeg(seed=2)[:5000]]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mangled_photos_never_raise_and_never_show_gps(data: st.DataObject) -> None:
    """Bytes flipped anywhere, lengths included: never an exception, and nothing a reader takes
    for EXIF carries a place. (A length field corrupted on purpose can hide bytes inside a kept
    segment where no reader looks; the citizen, who sends their own photo, has no reason to.)"""
    original = bytearray(data.draw(st.sampled_from(_MANGLE_SOURCES)))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    stripped = strip_metadata(bytes(original))
    if stripped is None:
        return
    try:
        with Image.open(io.BytesIO(stripped)) as im:
            exif = im.getexif()
    except Exception:
        return  # not an image any more
    assert not exif.get_ifd(0x8825)
    assert set(exif) <= KEPT_IFD0


# -- the service ------------------------------------------------------------------------------


def _upload(service: LiveService, c: LiveCitizen, dashboard: bytes, plate: bytes, stage: str = "start") -> requests.Response:
    return requests.post(
        f"{service.url}/v1/participations/{c.participation_id}/photos",
        files={
            "dashboard": ("dashboard.jpg", dashboard, "image/jpeg"),
            "plate": ("plate.jpg", plate, "image/jpeg"),
        },
        data={"stage": stage, "claimed_km": "1234"},
        headers=c.headers,
        timeout=60,
    )


async def _captured_at(url: str, sha: str, within: float = 90) -> object:
    """Wait until the OCR worker recorded the photo's capture time (or give up)."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + within
        while (found := await conn.fetchval("select captured_at from photos where sha256 = $1", sha)) is None:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # (polling the condition, not waiting a fixed time)
        return found
    finally:
        await conn.close()


async def _fetchval(url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def test_uploaded_photos_are_stored_and_shown_without_their_place(live_service: LiveService) -> None:
    c = live_citizen(live_service)
    now = datetime.now(UTC).astimezone(timezone(timedelta(hours=9)))
    taken = now.strftime("%Y:%m:%d %H:%M:%S")
    seed = uuid.uuid4().int % 10_000
    dash = phone_jpeg(seed=seed, captured=taken)
    plate = plate_jpeg(c.plate, now, seed=uuid.uuid4().int % 10_000)
    r = _upload(live_service, c, dash, plate)
    assert r.status_code == 202, r.text
    submission = requests.get(f"{live_service.url}/v1/submissions/{r.json()['id']}", headers=c.headers, timeout=30).json()
    stored_sha = submission["dashboard_sha256"]
    # the stored bytes are the stripped photo, addressed by their own hash
    expected = strip_metadata(dash)
    assert expected is not None and stored_sha == hashlib.sha256(expected).hexdigest()
    blob = asyncio.run(LocalBlobStore(Path(live_service.env["CARMILEAGE_DATA_DIR"]) / "blobs").get(stored_sha))
    assert blob == expected
    assert_clean(blob)
    # what a reviewer is shown
    operator = cli_token(live_service.database_url, "operator", f"op-{uuid.uuid4().hex[:6]}")
    shown = requests.get(f"{live_service.url}/v1/photos/{stored_sha}", headers={"Authorization": f"Bearer {operator}"}, timeout=30)
    assert shown.status_code == 200
    assert_clean(shown.content)
    # the decision still gets the capture time (the OCR worker reads it from the stored photo)
    captured = asyncio.run(_captured_at(live_service.database_url, stored_sha))
    assert captured == datetime.strptime(taken, "%Y:%m:%d %H:%M:%S").replace(tzinfo=timezone(timedelta(hours=9)))
    # the same photo with its place edited is still the same stored photo: a repeat, not a new one
    moved = phone_jpeg(seed=seed, captured=taken, gps=(35.1796, 129.0756))
    assert moved != dash and strip_metadata(moved) == expected
    again = _upload(live_service, c, moved, plate)
    assert again.status_code == 202 and again.json()["repeated"] is True, again.text


def test_photos_stored_before_stripping_are_shown_without_their_place(live_service: LiveService) -> None:
    legacy = phone_jpeg(seed=uuid.uuid4().int % 10_000)
    sha = hashlib.sha256(legacy).hexdigest()
    asyncio.run(LocalBlobStore(Path(live_service.env["CARMILEAGE_DATA_DIR"]) / "blobs").put(sha, legacy))
    asyncio.run(
        _fetchval(
            live_service.database_url,
            "insert into photos (sha256, content_type, size_bytes) values ($1, 'image/jpeg', $2) returning 1",
            sha,
            len(legacy),
        )
    )
    operator = cli_token(live_service.database_url, "operator", f"op-{uuid.uuid4().hex[:6]}")
    shown = requests.get(f"{live_service.url}/v1/photos/{sha}", headers={"Authorization": f"Bearer {operator}"}, timeout=30)
    assert shown.status_code == 200
    assert_clean(shown.content)
    assert np.array_equal(pixels(shown.content), pixels(legacy))


def test_a_heic_upload_is_stored_and_shown_without_its_place(live_service: LiveService) -> None:
    c = live_citizen(live_service)
    out = io.BytesIO()
    _scene(seed=uuid.uuid4().int % 10_000).save(out, "HEIF", quality=80, exif=phone_exif().tobytes(), xmp=XMP.split(b"\x00", 1)[1])
    heic = out.getvalue()
    r = requests.post(
        f"{live_service.url}/v1/participations/{c.participation_id}/photos",
        files={"dashboard": ("d.heic", heic, "image/heic"), "plate": ("p.jpg", dashboard_jpeg(1, None, seed=99), "image/jpeg")},
        data={"stage": "mid", "claimed_km": "1"},
        headers=c.headers,
        timeout=60,
    )
    assert r.status_code == 202, r.text
    sha = requests.get(f"{live_service.url}/v1/submissions/{r.json()['id']}", headers=c.headers, timeout=30).json()["dashboard_sha256"]
    blob = asyncio.run(LocalBlobStore(Path(live_service.env["CARMILEAGE_DATA_DIR"]) / "blobs").get(sha))
    assert_clean(blob)
    operator = cli_token(live_service.database_url, "operator", f"op-{uuid.uuid4().hex[:6]}")
    shown = requests.get(f"{live_service.url}/v1/photos/{sha}", headers={"Authorization": f"Bearer {operator}"}, timeout=30)
    assert shown.status_code == 200 and shown.headers["Content-Type"] == "image/jpeg"
    assert_clean(shown.content)
