"""Photo registration over the API: what a citizen sends, what is stored, what is decided."""

from __future__ import annotations

import struct
import zlib
from datetime import timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from ingest.ocr_worker import OcrWorkers
from ingest.settings import Settings
from storage.blobs import LocalBlobStore, sha256_of
from tests.conftest import TokenFactory
from tests.photos.conftest import Citizen, enrol, form, now_seoul, upload, wait_decided
from tests.photos.synth import dashboard_jpeg, plate_jpeg, png_bytes, reencode


def photos(c: Citizen, km: int = 123456, seed: int = 0, captured=None) -> tuple[bytes, bytes]:
    at = captured if captured is not None else now_seoul() - timedelta(minutes=5)
    return dashboard_jpeg(km, at, seed=seed), plate_jpeg(c.plate, at, seed=seed)


async def test_confirmed_photos_become_a_verified_start_reading(
    photo_client: TestClient,
    citizen: Citizen,
    workers: OcrWorkers,
    pool: asyncpg.Pool,
    photo_settings: Settings,
) -> None:
    seed = citizen.vehicle_id * 100
    dash, plate = photos(citizen, 123456, seed)
    r = await upload(photo_client, citizen, form(dash, plate, "start", 123456))
    assert r.status == 202, await r.text()
    body = await r.json()
    assert body["status"] == "processing" and body["repeated"] is False
    assert r.headers["Location"] == body["status_url"] == f"/v1/submissions/{body['id']}"
    # Durable before the answer: both photos are in the blob store under their hashes.
    store = LocalBlobStore(photo_settings.data_dir / "blobs")
    assert await store.get(sha256_of(dash)) == dash
    assert await store.get(sha256_of(plate)) == plate

    done = await wait_decided(photo_client, citizen.headers, body["id"])
    assert done["status"] == "accepted", done
    assert done["reasons"] == []
    assert done["status_message_ko"]
    reading = await pool.fetchrow("select * from readings where id = $1", done["reading_id"])
    assert reading is not None
    assert reading["odometer_m"] == 123_456_000
    assert reading["source"] == "photo"
    assert reading["submission_id"] == body["id"]
    assert reading["captured_at"] is not None and reading["uploaded_at"] is not None
    start = await pool.fetchval(
        "select start_reading_id from participations where id = $1", citizen.participation_id
    )
    assert start == done["reading_id"]
    audit = await pool.fetch(
        "select action from audit_log where entity = 'photo_submission' and entity_id = $1 order by id",
        str(body["id"]),
    )
    assert [a["action"] for a in audit] == ["submission.create", "submission.decide"]


async def test_the_same_photos_twice_are_one_submission(
    photo_client: TestClient, citizen: Citizen, pool: asyncpg.Pool
) -> None:
    dash, plate = photos(citizen, 100, citizen.vehicle_id * 100 + 1)
    first = await (await upload(photo_client, citizen, form(dash, plate, "mid", 100))).json()
    r = await upload(photo_client, citizen, form(dash, plate, "mid", 100))
    assert r.status == 202
    again = await r.json()
    assert again["id"] == first["id"] and again["repeated"] is True
    n = await pool.fetchval("select count(*) from ocr_jobs where submission_id = $1", first["id"])
    assert n == 1


async def test_a_photo_reused_by_anyone_goes_to_review(
    photo_client: TestClient,
    citizen: Citizen,
    make_token: TokenFactory,
    workers: OcrWorkers,
    pool: asyncpg.Pool,
) -> None:
    seed = citizen.vehicle_id * 100 + 2
    dash, plate = photos(citizen, 5000, seed)
    first = await (await upload(photo_client, citizen, form(dash, plate, "start", 5000))).json()
    assert (await wait_decided(photo_client, citizen.headers, first["id"]))["status"] == "accepted"

    other = await enrol(photo_client, make_token)
    other_plate = plate_jpeg(other.plate, now_seoul(), seed=seed + 5)
    r = await upload(photo_client, other, form(dash, other_plate, "start", 5000))
    exact = await wait_decided(photo_client, other.headers, (await r.json())["id"])
    assert exact["status"] == "in_review"
    assert "reused_photo" in [x["code"] for x in exact["reasons"]]

    # The same photo saved again smaller has other bytes but the same perceptual hash.
    third = await enrol(photo_client, make_token)
    r = await upload(
        photo_client,
        third,
        form(reencode(dash), plate_jpeg(third.plate, now_seoul(), seed=seed + 6), "start", 5000),
    )
    similar = await wait_decided(photo_client, third.headers, (await r.json())["id"])
    codes = [x["code"] for x in similar["reasons"]]
    assert (
        similar["status"] == "in_review"
        and "similar_to_earlier_photo" in codes
        and "reused_photo" not in codes
    )
    dispute = await pool.fetchrow("select * from disputes where submission_id = $1", similar["id"])
    assert dispute is not None
    assert dispute["kind"] == "photo" and dispute["status"] == "open"
    assert "similar_to_earlier_photo" in dispute["reasons"]


async def test_every_reason_reaches_the_dispute(
    photo_client: TestClient, citizen: Citizen, workers: OcrWorkers, pool: asyncpg.Pool
) -> None:
    old = now_seoul() - timedelta(days=45)
    dash = dashboard_jpeg(777, old, seed=citizen.vehicle_id * 100 + 3)
    wrong_plate = plate_jpeg("34나5678", old, seed=citizen.vehicle_id * 100 + 3)
    r = await upload(photo_client, citizen, form(dash, wrong_plate, "start", 778))
    done = await wait_decided(photo_client, citizen.headers, (await r.json())["id"])
    codes = {x["code"] for x in done["reasons"]}
    assert done["status"] == "in_review"
    assert codes == {"plate_mismatch", "odometer_differs_from_claim", "captured_too_long_before_upload"}
    dispute = await pool.fetchrow("select * from disputes where submission_id = $1", done["id"])
    assert dispute is not None
    assert set(dispute["reasons"]) == codes
    assert dispute["district"] == "강남구"


async def test_a_photo_without_capture_time_is_reviewed(
    photo_client: TestClient, citizen: Citizen, workers: OcrWorkers
) -> None:
    dash = dashboard_jpeg(4242, None, seed=citizen.vehicle_id * 100 + 4)
    plate = plate_jpeg(citizen.plate, None, seed=citizen.vehicle_id * 100 + 4)
    r = await upload(photo_client, citizen, form(dash, plate, "start", 4242))
    done = await wait_decided(photo_client, citizen.headers, (await r.json())["id"])
    assert [x["code"] for x in done["reasons"]] == ["capture_time_missing"]


async def test_end_photos_before_the_end_window_are_reviewed(
    photo_client: TestClient, citizen: Citizen, workers: OcrWorkers
) -> None:
    dash, plate = photos(citizen, 9000, citizen.vehicle_id * 100 + 5)
    r = await upload(photo_client, citizen, form(dash, plate, "end", 9000))
    done = await wait_decided(photo_client, citizen.headers, (await r.json())["id"])
    assert "end_window_not_open" in [x["code"] for x in done["reasons"]]


async def test_a_poison_photo_ends_in_review_not_in_a_loop(
    photo_client: TestClient, citizen: Citizen, workers: OcrWorkers, pool: asyncpg.Pool
) -> None:
    at = now_seoul()
    dash = dashboard_jpeg(1, at, seed=citizen.vehicle_id * 100 + 6, truth="crash")
    plate = plate_jpeg(citizen.plate, at, seed=citizen.vehicle_id * 100 + 6)
    r = await upload(photo_client, citizen, form(dash, plate, "start", 1))
    done = await wait_decided(photo_client, citizen.headers, (await r.json())["id"], within=90)
    assert done["status"] == "in_review"
    assert [x["code"] for x in done["reasons"]] == ["ocr_failed"]
    job = await pool.fetchrow("select * from ocr_jobs where submission_id = $1", done["id"])
    assert job is not None
    assert job["status"] == "failed" and job["attempts"] == job["max_attempts"] == 3
    assert "worker_died" in job["last_error"]


# -- refusals -----------------------------------------------------------------------------------


async def test_someone_elses_participation_is_forbidden(
    photo_client: TestClient, citizen: Citizen, make_token: TokenFactory
) -> None:
    dash, plate = photos(citizen, 1, 99)
    intruder = await enrol(photo_client, make_token)
    r = await upload(photo_client, intruder, form(dash, plate), participation_id=citizen.participation_id)
    assert r.status == 403
    assert (await r.json())["error"]["code"] == "not_your_vehicle"
    r = await upload(photo_client, citizen, form(dash, plate), participation_id=999_999_999)
    assert r.status == 404
    r = await photo_client.post(
        f"/v1/participations/{citizen.participation_id}/photos", data=form(dash, plate)
    )
    assert r.status == 401
    # and its status is not anyone's to read
    sid = (await (await upload(photo_client, citizen, form(dash, plate, "mid", 5))).json())["id"]
    assert (await photo_client.get(f"/v1/submissions/{sid}", headers=intruder.headers)).status == 403


async def test_missing_parts_are_each_named(photo_client: TestClient, citizen: Citizen) -> None:
    dash, _ = photos(citizen)
    r = await upload(photo_client, citizen, form(dash, None, None, None))
    assert r.status == 422
    err = (await r.json())["error"]
    assert err["code"] == "missing_part"
    assert {x["field"] for x in err["reasons"]} == {"plate", "stage", "claimed_km"}


async def test_wrong_content_types_are_refused(photo_client: TestClient, citizen: Citizen) -> None:
    dash, plate = photos(citizen)
    r = await photo_client.post(
        f"/v1/participations/{citizen.participation_id}/photos",
        json={"stage": "start"},
        headers=citizen.headers,
    )
    assert r.status == 415
    r = await upload(photo_client, citizen, form(dash, plate, plate_type="text/plain"))
    assert r.status == 415
    assert (await r.json())["error"]["reasons"][0]["field"] == "plate"


async def test_a_non_image_renamed_jpg_is_refused(photo_client: TestClient, citizen: Citizen) -> None:
    dash, _ = photos(citizen)
    r = await upload(photo_client, citizen, form(dash, b"%PDF-1.4 not a photo at all"))
    assert r.status == 422
    err = (await r.json())["error"]
    assert err["code"] == "not_an_image" and err["reasons"][0]["field"] == "plate"
    assert err["reasons"][0]["message_ko"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


async def test_oversize_photos_are_refused(photo_client: TestClient, citizen: Citizen) -> None:
    dash, plate = photos(citizen)
    big = dash + b"\0" * (15 * 1024 * 1024)
    r = await upload(photo_client, citizen, form(big, plate))
    assert r.status == 413
    assert (await r.json())["error"]["code"] == "photo_too_large"
    for w, h in ((8000, 6000), (10000, 10000), (60000, 60000)):
        r = await upload(photo_client, citizen, form(dash, _png_header(w, h)))
        assert r.status == 422
        assert (await r.json())["error"]["code"] == "too_many_pixels"
    # a small PNG is a photo like any other
    r = await upload(photo_client, citizen, form(png_bytes((320, 240)), plate, "mid", 3))
    assert r.status == 202


async def test_text_fields_are_checked_and_never_echoed_raw(
    photo_client: TestClient, citizen: Citizen
) -> None:
    dash, plate = photos(citizen)
    for stage, km, code in (
        ("<script>alert(1)</script>", 1, "invalid_stage"),
        ("start", "<img src=x onerror=alert(1)>", "invalid_claimed_km"),
        ("start", "12.5", "invalid_claimed_km"),
        ("start", "-1", "invalid_claimed_km"),
        ("start", "99999999", "invalid_claimed_km"),
    ):
        r = await upload(photo_client, citizen, form(dash, plate, stage, km))
        assert r.status == 422, (stage, km)
        text = await r.text()
        assert (await r.json())["error"]["code"] == code
        assert "<script>" not in text and "<img" not in text


async def test_a_verified_stage_cannot_be_sent_again(
    photo_client: TestClient, citizen: Citizen, workers: OcrWorkers
) -> None:
    dash, plate = photos(citizen, 321, citizen.vehicle_id * 100 + 7)
    sid = (await (await upload(photo_client, citizen, form(dash, plate, "start", 321))).json())["id"]
    assert (await wait_decided(photo_client, citizen.headers, sid))["status"] == "accepted"
    dash2, plate2 = photos(citizen, 322, citizen.vehicle_id * 100 + 8)
    r = await upload(photo_client, citizen, form(dash2, plate2, "start", 322))
    assert r.status == 409
    assert (await r.json())["error"]["code"] == "stage_already_verified"


async def test_a_reading_below_the_cars_history_goes_to_review(
    photo_client: TestClient, citizen: Citizen, workers: OcrWorkers, pool: asyncpg.Pool
) -> None:
    # a verified telematics reading from a week ago already shows more than the photo claims
    await pool.execute(
        """insert into readings (vehicle_id, odometer_m, recorded_at, source)
           values ($1, 60000000, now() - interval '7 days', 'telematics')""",
        citizen.vehicle_id,
    )
    dash, plate = photos(citizen, 59_000, citizen.vehicle_id * 100 + 11)
    r = await upload(photo_client, citizen, form(dash, plate, "start", 59_000))
    done = await wait_decided(photo_client, citizen.headers, (await r.json())["id"])
    assert done["status"] == "in_review"
    assert [x["code"] for x in done["reasons"]] == ["odometer_decreased"]
    assert done["reasons"][0]["message_ko"]


def _heic(size: tuple[int, int] = (640, 480)) -> bytes:
    import io

    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.new("RGB", size, (30, 30, 35)).save(out, format="HEIF", quality=80)
    return out.getvalue()


async def test_heic_photos_from_phones_are_accepted_and_shown_to_reviewers_as_jpeg(
    photo_client: TestClient, citizen: Citizen, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    heic = _heic()
    _, plate = photos(citizen, 1, citizen.vehicle_id * 100 + 12)
    r = await upload(photo_client, citizen, form(heic, plate, "mid", 1, dashboard_type="image/heic"))
    assert r.status == 202, await r.text()
    sha = sha256_of(heic)
    assert await pool.fetchval("select content_type from photos where sha256 = $1", sha) == "image/heic"
    reviewer = await make_token("reviewer")
    shown = await photo_client.get(f"/v1/photos/{sha}", headers=reviewer)
    assert shown.status == 200 and shown.headers["Content-Type"] == "image/jpeg"
    assert (await shown.read())[:3] == b"\xff\xd8\xff"
    assert (await photo_client.get(f"/v1/photos/{sha}", headers=citizen.headers)).status == 403
