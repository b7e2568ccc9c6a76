"""The pages in real headless Chromium: a citizen uploads both photos and sees the outcome; a
reviewer claims, corrects and resolves with the keyboard; two browser sessions never get the
same dispute."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from prorate.calendar import SEOUL
from storage.blobs import LocalBlobStore, sha256_of
from tests.browser.conftest import Service, db, enrol, sign_in, token
from tests.photos.synth import dashboard_jpeg, plate_jpeg
from tests.review.conftest import make_photo_case

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FINAL = {"accepted", "in_review", "retake", "rejected"}


def _now() -> Any:
    from datetime import datetime

    return datetime.now(SEOUL).replace(microsecond=0)


async def test_citizen_uploads_both_photos_and_sees_the_outcome(service: Service, browser: Any) -> None:
    who = enrol(service)
    plate_text = who["vehicle"]["plate"]
    at = _now()
    context = await browser.new_context(locale="ko-KR")
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in(page, service, who["token"])
    assert page.url.endswith("/upload")
    await page.goto(service.url + "/upload?lang=ko")
    await page.set_input_files(
        "#dashboard", {"name": "odo.jpg", "mimeType": "image/jpeg", "buffer": dashboard_jpeg(123456, at, seed=11)}
    )
    await page.set_input_files(
        "#plate", {"name": "plate.jpg", "mimeType": "image/jpeg", "buffer": plate_jpeg(plate_text, at, seed=11)}
    )
    await page.wait_for_selector("#dashboard-preview:not([hidden])")
    await page.wait_for_selector("#plate-preview:not([hidden])")
    await page.fill("#claimed_km", "123456")
    await page.click("#upload-submit")
    # The page shows progress, then polls until the machine decided (real OCR in the service).
    await page.wait_for_function(
        "() => ['accepted','in_review','retake','rejected'].includes(document.getElementById('upload-status').dataset.status)",
        timeout=90_000,
    )
    status = await page.get_attribute("#upload-status", "data-status")
    shown = await page.text_content("#upload-status")
    assert status in FINAL
    assert await page.get_attribute("#upload-progress", "value") == "100"
    submission = await page.get_attribute("#upload-status", "data-submission")
    async with db(service) as conn:
        row = await conn.fetchrow("select * from photo_submissions where id = $1", int(submission or 0))
    assert row is not None and row["status"] == status
    assert row["claimed_km"] == 123456 and row["stage"] == "start"
    from ingest.pages.messages import status_text

    assert shown == status_text(status, "ko")
    if status == "in_review":
        assert await page.locator("#upload-reasons li").count() >= 1
    # The outcome page says the same, in English when asked.
    await page.goto(f"{service.url}/submissions/{submission}?lang=en")
    assert (await page.text_content("#outcome") or "").strip() == status_text(status, "en")
    assert errors == []
    await context.close()


async def _put_photos(service: Service, seed: int) -> tuple[str, str]:
    store = LocalBlobStore(service.data_dir / "blobs")
    dash, plate = dashboard_jpeg(88_000 + seed, _now(), seed=seed), plate_jpeg("12가3456", _now(), seed=seed)
    await store.put(sha256_of(dash), dash)
    await store.put(sha256_of(plate), plate)
    return sha256_of(dash), sha256_of(plate)


async def test_reviewer_claims_corrects_and_resolves_with_the_keyboard(service: Service, browser: Any) -> None:
    where = f"br-{uuid.uuid4().hex[:6]}"
    shas = await _put_photos(service, 21)
    async with db(service) as conn:
        case = await make_photo_case(conn, district=where, claimed_km=88_021, ocr_km=88_027, photo_shas=shas)
        await conn.execute(
            "insert into readings (vehicle_id, odometer_m, recorded_at, source)"
            " values ($1, 80000000, now() - interval '40 days', 'telematics')",
            case.vehicle_id,
        )
    reviewer_token, reviewer = token(service, "reviewer")
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await sign_in(page, service, reviewer_token)
    await page.goto(f"{service.url}/review?lang=en&district={where}")
    await page.keyboard.press("n")  # claim next
    await page.wait_for_url(f"**/review/disputes/{case.dispute_id}")
    # both photos load, the OCR box and the timeline are drawn
    for role in ("dashboard", "plate"):
        loaded = await page.eval_on_selector(f"#{role}-photo", "img => img.complete && img.naturalWidth > 0")
        assert loaded, role
    assert await page.locator("rect.ocr-box").count() == 1
    assert await page.locator("svg.timeline circle.reading").count() == 1
    assert await page.locator("svg.timeline rect.mark-claimed").count() == 1
    assert "88,027 km" in (await page.text_content("#ocr-km") or "")
    assert "88,021 km" in (await page.text_content("#claimed-km") or "")
    # Z zooms the dashboard photo, Z again fits it
    await page.keyboard.press("z")
    assert await page.get_attribute("figure.photo[data-role=dashboard]", "data-scale") == "3.00"
    await page.keyboard.press("z")
    assert await page.get_attribute("figure.photo[data-role=dashboard]", "data-scale") == "1.00"
    # C focuses the correction, typed value + Enter resolves
    await page.keyboard.press("c")
    assert await page.evaluate("document.activeElement.id") == "correct-value"
    await page.keyboard.type("88021")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**/review?done={case.dispute_id}")
    assert await page.locator("#done-message").count() == 1
    async with db(service) as conn:
        d = await conn.fetchrow("select * from disputes where id = $1", case.dispute_id)
        label = await conn.fetchrow("select * from ocr_labels where dispute_id = $1 and kind = 'odometer'", case.dispute_id)
        audit = await conn.fetch(
            "select action, actor_id from audit_log where entity = 'dispute' and entity_id = $1 order by id",
            str(case.dispute_id),
        )
    assert (d["status"], d["resolution"], d["resolved_value_m"], d["resolved_by"]) == (
        "resolved", "corrected", 88_021_000, reviewer
    )
    assert (label["true_value"], label["ocr_value"], label["photo_sha256"]) == ("88021", "88027", shas[0])
    assert [(a["action"], a["actor_id"]) for a in audit] == [("dispute.claim", reviewer), ("dispute.resolve", reviewer)]
    assert errors == []
    await context.close()


async def test_two_browser_sessions_never_get_the_same_dispute(service: Service, browser: Any) -> None:
    where = f"br-{uuid.uuid4().hex[:6]}"
    async with db(service) as conn:
        cases = [await make_photo_case(conn, district=where) for _ in range(2)]
    pages = []
    contexts = []
    for _ in range(2):
        t, _subject = token(service, "reviewer")
        ctx = await browser.new_context()
        page = await ctx.new_page()
        await sign_in(page, service, t)
        await page.goto(f"{service.url}/review?lang=en&district={where}")
        contexts.append(ctx)
        pages.append(page)
    # both press "claim next" at the same moment
    await asyncio.gather(*(p.click("#claim-next") for p in pages))
    for p in pages:
        await p.wait_for_url("**/review/disputes/*")
    got = [int(p.url.rsplit("/", 1)[1]) for p in pages]
    assert sorted(got) == sorted(c.dispute_id for c in cases)
    # each sees the other's dispute as held, without the forms to resolve it
    await pages[0].goto(f"{service.url}/review/disputes/{got[1]}?lang=en")
    assert await pages[0].locator("#held-other").count() == 1
    assert await pages[0].locator("#actions").count() == 0
    # and a third claim finds nothing left in this district
    await pages[0].goto(f"{service.url}/review?lang=en&district={where}")
    await pages[0].click("#claim-next")
    await pages[0].wait_for_url(f"**/review/disputes/{got[0]}")  # it still holds its own
    for ctx in contexts:
        await ctx.close()


async def test_citizen_sees_the_result_of_a_round_on_a_phone(service: Service, browser: Any, tmp_path: Any) -> None:
    who = enrol(service)
    pid = who["participation"]["id"]
    async with db(service) as conn:
        await conn.execute(
            """insert into period_results (participation_id, version, round, program, rule_set,
                   start_reading_id, end_reading_id, start_date, end_date, days, baseline_daily_km,
                   baseline_km, actual_km, reduction_km, reduction_rate_pct, points, baseline_derivation)
               values ($1, 1, '2023-05', 'annual', 'seoul-2022', 1, 2, '2022-03-01', '2023-03-02', 366,
                       30.0, 10980.0, 5490.0, 5490.0, 50.0, 70000, '{}')""",
            pid,
        )
    context = await browser.new_context(locale="ko-KR", viewport={"width": 390, "height": 844}, is_mobile=True)
    page = await context.new_page()
    await sign_in(page, service, who["token"])
    await page.goto(service.url + "/upload?lang=ko")
    card = page.locator("#results")
    await card.wait_for()
    text = await card.inner_text()
    assert "평가 결과" in text and who["vehicle"]["plate"] in text
    assert "5490.0 km" in text and "70000" in text and "2022-03-01 – 2023-03-02 (366 일)" in text
    # the card fits the phone's width (no sideways scrolling)
    assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    await page.screenshot(path=str(tmp_path / "results.png"), full_page=True)
    await context.close()
