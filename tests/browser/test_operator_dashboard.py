"""The operator dashboard in real headless Chromium against a real service on a database of this
module's own: the figures shown are the seeded ones (and only those: readings out of the window,
superseded results, ended participations and old quarantine rows are left out), the charts are
drawn (checked on screenshots), a retry button moves a dead letter back to pending with an audit
entry, and nobody but an operator gets the page or the button."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from prorate.calendar import SEOUL
from storage.db import Conn
from tests.browser.conftest import Service, db, sign_in, token
from tests.review.conftest import make_photo_case

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The bars' fill in operator.css (svg.bars .bar), as the screenshot's pixels show it.
BAR_BLUE = (0x0F, 0x6F, 0xD1)


async def _car(conn: Conn, district: str, *, ended: bool = False) -> tuple[int, int]:
    """An owner with a car and a participation in `district`: (vehicle id, participation id)."""
    tag = uuid.uuid4().hex
    owner = f"op-{tag[:10]}"
    await conn.execute("insert into owners (id, district) values ($1, $2)", owner, district)
    vin = "KMH" + "".join("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"[int(c, 16) % 33] for c in tag[:14])
    vehicle_id: int = await conn.fetchval(
        """insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
                                 vehicle_type, seats, fuel, first_registration_date)
           values ($1, $2, $2, $3, $4, '서울', 'non_commercial', 'passenger', 5, 'gasoline', '2018-03-01')
           returning id""",
        owner,
        f"{100 + int(tag[:4], 16) % 600}러{int(tag[4:8], 16) % 10000:04d}",
        vin,
        district,
    )
    participation_id: int = await conn.fetchval(
        """insert into participations (vehicle_id, program, rule_set, enrolled_on, status, ended_on, end_reason)
           values ($1, 'annual', 'seoul-2022', current_date - 200, $2, $3, $4) returning id""",
        vehicle_id,
        "ended" if ended else "active",
        datetime.now(SEOUL).date() - timedelta(days=10) if ended else None,
        "withdrawn" if ended else None,
    )
    return vehicle_id, participation_id


async def _reading(conn: Conn, vehicle_id: int, days_ago: float, km: int, status: str = "verified") -> None:
    await conn.execute(
        """insert into readings (vehicle_id, odometer_m, recorded_at, source, status)
           values ($1, $2, now() - make_interval(secs => $3), 'telematics', $4)""",
        vehicle_id,
        km * 1000,
        days_ago * 86400,
        status,
    )


async def _result(
    conn: Conn, participation_id: int, rnd: str, reduction_km: str, points: int, special: int = 0, version: int = 1
) -> int:
    rid: int = await conn.fetchval(
        """insert into period_results (participation_id, version, round, program, rule_set, start_reading_id,
               end_reading_id, start_date, end_date, days, baseline_daily_km, baseline_km, actual_km,
               reduction_km, reduction_rate_pct, points, special_points, baseline_derivation)
           values ($1, $2, $3, 'annual', 'seoul-2022', 1, 2, '2025-01-01', '2025-06-30', 181, 30.0, 5430.0,
                   5430.0 - $4::numeric, $4::numeric, 1.0, $5, $6, '{}') returning id""",
        participation_id,
        version,
        rnd,
        reduction_km,
        points,
        special,
    )
    return rid


async def _photo(conn: Conn, participation_id: int, status: str) -> None:
    shas = [uuid.uuid4().hex * 2 for _ in range(2)]
    for sha in shas:
        await conn.execute(
            "insert into photos (sha256, content_type, size_bytes, width, height) values ($1, 'image/jpeg', 1000, 960, 640)",
            sha,
        )
    await conn.execute(
        """insert into photo_submissions (participation_id, stage, claimed_km, dashboard_sha256, plate_sha256, status)
           values ($1, 'start', 50000, $2, $3, $4)""",
        participation_id,
        shas[0],
        shas[1],
        status,
    )


async def _seed(service: Service) -> dict[str, Any]:
    """Two districts with members, readings, results in two rounds, quarantined readings, counts
    of ingestion, photo submissions, one open dispute waiting two days, and three outbox events
    (one dead, one delivered, one pending and waiting for its backoff)."""
    today = datetime.now(SEOUL).date()
    async with db(service) as conn:
        gangnam = [await _car(conn, "강남구") for _ in range(3)]
        mapo = await _car(conn, "마포구")
        await _car(conn, "서초구", ended=True)  # not a member now, and nothing else: no row
        case = await make_photo_case(conn, district="마포구", created_at=datetime.now(UTC) - timedelta(days=2, hours=1))
        # verified start readings of two 강남구 participations, the end of one
        await conn.execute(
            "update participations set start_reading_id = 1 where id = any($1::bigint[])", [gangnam[0][1], gangnam[1][1]]
        )
        await conn.execute("update participations set end_reading_id = 2 where id = $1", gangnam[0][1])
        # verified readings: 4 in 강남구 and 2 in 마포구 within 7 days; two too old, one superseded
        for days_ago, km in ((1, 10_300), (2, 10_200), (3, 10_100)):
            await _reading(conn, gangnam[0][0], days_ago, km)
        await _reading(conn, gangnam[0][0], 60, 9_000)
        await _reading(conn, gangnam[1][0], 1, 20_000)
        await _reading(conn, gangnam[1][0], 2, 19_990, status="superseded")
        await _reading(conn, mapo[0], 1, 30_100)
        await _reading(conn, mapo[0], 5, 30_000)
        await _reading(conn, mapo[0], 8, 29_900)
        # quarantined: two recent (speed_implausible ×2, clock_skew ×1), one older than the window
        for reasons, days_ago in ((["speed_implausible"], 0), (["speed_implausible", "clock_skew"], 1), (["unit_jump"], 40)):
            await conn.execute(
                """insert into quarantined_readings (source, vehicle_id, odometer_m, recorded_at, received_at, reasons)
                   values ('telematics', $1, 1, now(), now() - make_interval(days => $2), $3)""",
                gangnam[0][0],
                days_ago,
                reasons,
            )
        # ingestion counts (Seoul days): today 10 stored (two shards), 1 duplicate, 2 quarantined;
        # yesterday 5 stored; 20 days ago 99 (outside the 14 days shown)
        for day, shard, accepted, dup, quarantined in (
            (today, 0, 6, 1, 2),
            (today, 1, 4, 0, 0),
            (today - timedelta(days=1), 0, 5, 0, 0),
            (today - timedelta(days=20), 0, 99, 0, 0),
        ):
            await conn.execute(
                """insert into ingest_counts (day, source, provider_id, shard, accepted, duplicates, quarantined)
                   values ($1, 'telematics', 0, $2, $3, $4, $5)""",
                day,
                shard,
                accepted,
                dup,
                quarantined,
            )
        # photos: the case's submission (in review), one accepted by the machine, one being read
        await _photo(conn, gangnam[0][1], "accepted")
        await _photo(conn, gangnam[1][1], "processing")
        # results: 2025-H2 in both districts (a negative reduction counts no km); 2026-H1 once,
        # its superseded first version not at all
        await _result(conn, gangnam[0][1], "2025-H2", "100.5", 20_000)
        await _result(conn, gangnam[1][1], "2025-H2", "50.0", 10_000, special=5_000)
        await _result(conn, mapo[1], "2025-H2", "-5.0", 0)
        newer = await _result(conn, gangnam[0][1], "2026-H1", "30.0", 3_000, version=3)
        older = await _result(conn, gangnam[0][1], "2026-H1", "80.0", 99_999, version=2)
        await conn.execute("update period_results set superseded_by = $1 where id = $2", newer, older)
        # outbox: dead, delivered, pending (waiting an hour for its next attempt)
        dead_id: int = await conn.fetchval(
            """insert into outbox (event_id, kind, payload, status, attempts, last_status, last_error, dead_at)
               values ($1, 'test.event', '{"n": 1}', 'dead', 6, 422, 'refused: schema mismatch', now())
               returning id""",
            uuid.uuid4(),
        )
        await conn.execute(
            """insert into outbox (event_id, kind, payload, status, attempts, delivered_at)
               values ($1, 'test.event', '{"n": 2}', 'delivered', 1, now())""",
            uuid.uuid4(),
        )
        await conn.execute(
            """insert into outbox (event_id, kind, payload, status, attempts, next_attempt_at, created_at)
               values ($1, 'test.event', '{"n": 3}', 'pending', 2, now() + interval '1 hour',
                       now() - interval '3 hours')""",
            uuid.uuid4(),
        )
    return {"dead_id": dead_id, "dispute_id": case.dispute_id}


@pytest.fixture(scope="module")
async def seeded(service: Service) -> dict[str, Any]:
    return await _seed(service)


async def _text(page: Any, selector: str) -> str:
    return ((await page.text_content(selector)) or "").strip()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def _signed_in_page(browser: Any, service: Service, role: str, **context: Any) -> tuple[Any, Any, str]:
    t, subject = token(service, role)
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    await sign_in(page, service, t)
    return ctx, page, subject


async def test_the_dashboard_shows_the_seeded_figures_and_draws_its_charts(
    service: Service, browser: Any, seeded: dict[str, Any], tmp_path: Path
) -> None:
    ctx, page, _ = await _signed_in_page(browser, service, "operator", viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # CSP refusals too
    resp = await page.goto(service.url + "/operator?lang=en")
    assert resp is not None and resp.status == 200
    assert await page.get_attribute("#operator-link", "href") == "/operator"
    # per district: members (active participations) and verified readings in the window
    rows = page.locator("#district-table tbody tr")
    assert await rows.count() == 2  # 서초구 has an ended participation only
    assert [await _text(page, f'#district-table tr[data-district="{d}"] td.members') for d in ("강남구", "마포구")] == ["3", "2"]
    assert [await _text(page, f'#district-table tr[data-district="{d}"] td.readings') for d in ("강남구", "마포구")] == ["4", "2"]
    assert [await _text(page, f'#district-table tr[data-district="강남구"] td.{c}') for c in ("starts", "ends")] == ["2", "1"]
    assert [await _text(page, f'#district-table tr[data-district="마포구"] td.{c}') for c in ("starts", "ends")] == ["0", "0"]
    assert await _text(page, "#total-members") == "5" and await _text(page, "#total-readings") == "6"
    # by round: current results only, positive reductions summed
    def cells(rnd: str, district: str) -> str:
        return f'#round-table tr[data-round="{rnd}"][data-district="{district}"]'

    async def row(rnd: str, district: str) -> list[str]:
        return [await _text(page, f"{cells(rnd, district)} td.{c}") for c in ("results", "reduction", "points", "special")]

    assert await row("2025-H2", "") == ["3", "150.5", "30,000", "5,000"]
    assert await row("2025-H2", "강남구") == ["2", "150.5", "30,000", "5,000"]
    assert await row("2025-H2", "마포구") == ["1", "0.0", "0", "0"]
    assert await row("2026-H1", "") == ["1", "30.0", "3,000", "0"]
    # ingestion: the last 14 Seoul days, and the reasons of the last 30
    assert [await _text(page, f"#ingest-{k}") for k in ("accepted", "duplicates", "quarantined")] == ["15", "1", "2"]
    assert await page.locator("#ingest-chart g.day").count() == 14
    today = datetime.now(SEOUL).strftime("%m-%d")
    assert await page.get_attribute(f'#ingest-chart g.day[data-day="{today}"]', "data-total") == "12.0"
    assert {await li.get_attribute("data-reason"): await li.locator(".n").inner_text()
            for li in await page.locator("#reason-list li").all()} == {"speed_implausible": "2", "clock_skew": "1"}
    # OCR and the review backlog
    assert [await _text(page, f"#ocr-{k}") for k in ("uploaded", "decided", "auto", "processing")] == ["3", "2", "1", "1"]
    assert await _text(page, "#ocr-rate") == "50%"
    assert await _text(page, "#backlog-open") == "1"
    assert await _text(page, "#backlog-oldest") == "2 d"
    assert await page.get_attribute('#backlog-chart rect.bar[data-label="1–3 d"]', "data-value") == "1"
    # outbox
    assert [await _text(page, f"#outbox-{k}") for k in ("pending", "due", "delivered", "dead")] == ["1", "0", "1", "1"]
    assert await _text(page, "#outbox-oldest") == "3 h"
    assert await page.locator(f'#dead-table tr[data-id="{seeded["dead_id"]}"]').count() == 1
    assert "422 refused: schema mismatch" in await _text(page, f'#dead-table tr[data-id="{seeded["dead_id"]}"]')

    # The charts are drawn: every chart has a box on the page, its bars are proportional ...
    charts = ["members-chart", "readings-chart", "reduction-chart", "points-chart", "ingest-chart",
              "reasons-chart", "backlog-chart", "outbox-chart"]
    for chart in charts:
        box = await page.locator(f"svg#{chart}").bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 20, chart
        assert await page.locator(f"svg#{chart}").is_visible(), chart
    gangnam = await page.locator('#members-chart rect.bar[data-label="강남구"]').bounding_box()
    mapo = await page.locator('#members-chart rect.bar[data-label="마포구"]').bounding_box()
    assert gangnam and mapo and mapo["width"] > 0
    assert gangnam["width"] / mapo["width"] == pytest.approx(3 / 2, rel=0.02)
    assert await page.locator("#ingest-chart rect.part-quarantined[height='0.0']").count() == 13
    # ... and the screenshots show them: a full-page PNG of the page's size, and the bar's pixels
    # in the stylesheet's colour (the CSS loaded; nothing was refused by the page's CSP)
    full = await page.screenshot(path=str(tmp_path / "operator.png"), full_page=True)
    assert (tmp_path / "operator.png").stat().st_size == len(full) > 20_000
    height = await page.evaluate("() => document.documentElement.scrollHeight")
    assert _png_size(full) == (1280, height) and height > 900
    chart_png = await page.locator("svg#members-chart").screenshot(path=str(tmp_path / "members-chart.png"))
    box = await page.locator("svg#members-chart").bounding_box()
    assert box is not None
    image = Image.open(io.BytesIO(chart_png)).convert("RGB")
    assert abs(image.size[0] - box["width"]) <= 1 and abs(image.size[1] - box["height"]) <= 1
    centre = (round(gangnam["x"] - box["x"] + gangnam["width"] / 2), round(gangnam["y"] - box["y"] + gangnam["height"] / 2))
    assert image.getpixel(centre) == BAR_BLUE
    assert errors == []
    await ctx.close()


async def test_the_dashboard_fits_a_phone(service: Service, browser: Any, seeded: dict[str, Any], tmp_path: Path) -> None:
    ctx, page, _ = await _signed_in_page(
        browser, service, "operator", viewport={"width": 390, "height": 844}, is_mobile=True, locale="ko-KR"
    )
    await page.goto(service.url + "/operator?lang=ko")
    assert await _text(page, "h1") == "운영 현황"
    assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot = await page.screenshot(path=str(tmp_path / "operator-phone.png"), full_page=True)
    width, height = _png_size(shot)
    assert width == 390 * await page.evaluate("() => window.devicePixelRatio") and height > 844
    box = await page.locator("svg#members-chart").bounding_box()
    assert box is not None and 300 < box["width"] <= 390
    await ctx.close()


async def test_a_retry_button_makes_a_dead_letter_pending_again_with_an_audit_entry(
    service: Service, browser: Any, seeded: dict[str, Any]
) -> None:
    dead_id = seeded["dead_id"]
    ctx, page, operator = await _signed_in_page(browser, service, "operator")
    await page.goto(service.url + "/operator?lang=en")
    # a post with a forged CSRF token is refused and changes nothing
    forged = await page.request.post(f"{service.url}/operator/outbox/{dead_id}/retry", form={"csrf": "0" * 64})
    assert forged.status == 403
    async with db(service) as conn:
        assert await conn.fetchval("select status from outbox where id = $1", dead_id) == "dead"
    await page.click(f"#retry-{dead_id}")
    await page.wait_for_url(f"**/operator?retried={dead_id}#outbox")
    assert f"#{dead_id}" in await _text(page, "#retried-message")
    assert await _text(page, "#outbox-dead") == "0" and await _text(page, "#outbox-due") == "1"
    assert await page.locator("#no-dead").count() == 1
    async with db(service) as conn:
        row = await conn.fetchrow("select status, next_attempt_at <= now() as due, dead_at from outbox where id = $1", dead_id)
        audit = await conn.fetch(
            "select actor_role, actor_id, action, before, after from audit_log where entity = 'outbox' and entity_id = $1",
            str(dead_id),
        )
    assert (row["status"], row["due"], row["dead_at"]) == ("pending", True, None)
    assert [(a["actor_role"], a["actor_id"], a["action"]) for a in audit] == [("operator", operator, "outbox.retry")]
    assert audit[0]["before"]["status"] == "dead" and audit[0]["before"]["attempts"] == 6
    assert audit[0]["after"] == {"status": "pending"}
    # retrying what is no longer dead changes nothing and writes no audit entry
    again = await page.request.post(
        f"{service.url}/operator/outbox/{dead_id}/retry",
        form={"csrf": await page.get_attribute("form[action='/sign-out'] input[name=csrf]", "value") or ""},
    )
    assert again.ok and again.url.endswith("/operator?retried=none#outbox")
    async with db(service) as conn:
        n = await conn.fetchval("select count(*) from audit_log where entity = 'outbox' and entity_id = $1", str(dead_id))
        await conn.execute("update outbox set status = 'dead', dead_at = now() where id = $1", dead_id)  # as it was
    assert n == 1
    await ctx.close()


@pytest.mark.parametrize("role", ["citizen", "reviewer"])
async def test_only_operators_get_the_dashboard_and_its_buttons(
    service: Service, browser: Any, seeded: dict[str, Any], role: str
) -> None:
    ctx, page, _ = await _signed_in_page(browser, service, role)
    resp = await page.goto(service.url + "/operator?lang=en")
    assert resp is not None and resp.status == 403
    assert await page.locator("#summary").count() == 0
    assert await page.locator("#operator-link").count() == 0
    csrf = await page.get_attribute("form[action='/sign-out'] input[name=csrf]", "value")
    refused = await page.request.post(f"{service.url}/operator/outbox/{seeded['dead_id']}/retry", form={"csrf": csrf or ""})
    assert refused.status == 403
    async with db(service) as conn:
        assert await conn.fetchval("select status from outbox where id = $1", seeded["dead_id"]) == "dead"
    await ctx.close()


async def test_anyone_signed_out_is_sent_to_sign_in(service: Service, browser: Any) -> None:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await page.goto(service.url + "/operator")
    assert "/sign-in?next=%2Foperator" in page.url or "/sign-in?next=/operator" in page.url
    assert await page.locator("#token").count() == 1
    await ctx.close()


async def test_retry_every_dead_letter_with_one_audit_entry(service: Service, browser: Any, seeded: dict[str, Any]) -> None:
    async with db(service) as conn:
        await conn.execute("update outbox set status = 'dead', dead_at = now() where id = $1", seeded["dead_id"])
        for n in range(2):
            await conn.execute(
                """insert into outbox (event_id, kind, payload, status, attempts, last_error, dead_at)
                   values ($1, 'test.event', $2, 'dead', 1, 'refused', now())""",
                uuid.uuid4(),
                {"n": 10 + n},
            )
        dead = await conn.fetchval("select count(*) from outbox where status = 'dead'")
    assert dead == 3
    ctx, page, operator = await _signed_in_page(browser, service, "operator")
    await page.goto(service.url + "/operator?lang=en")
    assert await page.locator("#dead-table tbody tr").count() == 3
    await page.click("#retry-all")
    await page.wait_for_url("**/operator?retried=all&n=3#outbox")
    assert await _text(page, "#retried-message") == "Events due again now: 3"
    assert await _text(page, "#outbox-dead") == "0"
    async with db(service) as conn:
        assert await conn.fetchval("select count(*) from outbox where status = 'dead'") == 0
        audit = await conn.fetch(
            "select actor_id, after from audit_log where action = 'outbox.retry_all_dead' and actor_id = $1", operator
        )
    assert [(a["actor_id"], a["after"]) for a in audit] == [(operator, {"status": "pending", "count": 3})]
    await ctx.close()


async def test_an_operator_lands_on_the_dashboard_after_signing_in(service: Service, browser: Any) -> None:
    ctx, page, _ = await _signed_in_page(browser, service, "operator")
    assert page.url.split("?")[0].endswith("/operator")
    await page.goto(service.url + "/")
    assert page.url.split("?")[0].endswith("/operator")
    await ctx.close()
