"""A body stops being read at its declared limit, whatever the transfer encoding (issue 18, item 7).

Real chunked (and Content-Length) requests on a socket against the live service: the answer must
arrive once the limit is crossed, and the connection must close shortly after however much the
client goes on sending (aiohttp drops an unread rest for at most `http_lingering_s`, 2 s). The
client's send buffer is small; the slack allowed is the kernel's receive buffer on the server side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import requests

from ingest.routes.pages.sessions import SIGN_IN_FORM_LIMIT
from ingest.routes.photos import upload_limit
from ocr.intake import MAX_BYTES as MAX_PHOTO_BYTES
from tests.conftest import LiveService
from tests.security.conftest import LiveCitizen, page_session
from tests.security.rawhttp import Answer, junk, stream

MB = 1024 * 1024
#: What may sit in socket buffers between the client and the server's reads (loopback autotuning).
SLACK = 8 * MB
#: A body that never ends: the client sends until the server closes the connection.
ENDLESS = 1 << 40
BOUNDARY = "----carmileage-test-boundary"
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def _part_head(name: str, filename: str | None = None, ctype: str | None = None) -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    lines = [f"--{BOUNDARY}", f"Content-Disposition: {disp}"] + ([f"Content-Type: {ctype}"] if ctype else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _multipart(total: int, *, part: str, filename: str | None = "dashboard.jpg", prefix: bytes = b"") -> Iterator[bytes]:
    """Small text parts, then one part that goes on for `total` bytes (and never ends)."""
    head = prefix + _part_head("stage") + b"start\r\n" + _part_head("claimed_km") + b"1234\r\n"
    head += _part_head(part, filename, "image/jpeg" if filename else None) + JPEG_START
    return junk(total, first=head)


def _multipart_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Accept": "application/json", **(extra or {})}


def _error_code(a: Answer) -> str:
    return str(json.loads(a.body)["error"]["code"])


def _assert_stopped_early(a: Answer, limit: int) -> None:
    assert a.status is not None, "no answer before the client gave up"
    assert a.sent_before_answer <= limit + SLACK, f"answered only after {a.sent_before_answer / MB:.1f} MB"
    assert a.closed_after_s is not None and a.closed_after_s < 6, f"still reading {a.closed_after_s} s after answering"


def test_a_chunked_photo_part_stops_at_15_mb(live_service: LiveService, citizen_on_live: LiveCitizen) -> None:
    c = citizen_on_live
    a = stream(
        live_service.url,
        "POST",
        f"/v1/participations/{c.participation_id}/photos",
        {**c.headers, **_multipart_headers()},
        _multipart(ENDLESS, part="dashboard"),
        chunked=True,
    )
    assert a.status == 413, a
    assert _error_code(a) == "photo_too_large"
    _assert_stopped_early(a, MAX_PHOTO_BYTES)


def test_a_chunked_unknown_part_stops_at_the_forms_limit(live_service: LiveService, citizen_on_live: LiveCitizen) -> None:
    """The attack run's case: a part the form does not have, streamed until the server gives up."""
    c = citizen_on_live
    a = stream(
        live_service.url,
        "POST",
        f"/v1/participations/{c.participation_id}/photos",
        {**c.headers, **_multipart_headers()},
        _multipart(ENDLESS, part="padding", filename=None),
        chunked=True,
    )
    assert a.status == 413, a
    _assert_stopped_early(a, upload_limit())


def test_a_chunked_preamble_counts_too(live_service: LiveService, citizen_on_live: LiveCitizen) -> None:
    c = citizen_on_live
    a = stream(
        live_service.url,
        "POST",
        f"/v1/participations/{c.participation_id}/photos",
        {**c.headers, **_multipart_headers()},
        junk(ENDLESS, first=b"preamble line\r\n"),
        chunked=True,
    )
    assert a.status in (400, 413), a
    _assert_stopped_early(a, upload_limit())


def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    live_service: LiveService, citizen_on_live: LiveCitizen
) -> None:
    c = citizen_on_live
    a = stream(
        live_service.url,
        "POST",
        f"/v1/participations/{c.participation_id}/photos",
        {**c.headers, **_multipart_headers({"Content-Length": str(40 * MB)})},
        _multipart(40 * MB, part="dashboard"),
        chunked=False,
    )
    assert a.status == 413, a
    _assert_stopped_early(a, SLACK)


def test_the_upload_page_stops_at_15_mb(live_service: LiveService, citizen_on_live: LiveCitizen) -> None:
    c = citizen_on_live
    session = page_session(live_service.url, c.token)
    html = session.get(f"{live_service.url}/upload", timeout=30).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    fields = _part_head("csrf") + csrf.group(1).encode() + b"\r\n"
    fields += _part_head("participation_id") + str(c.participation_id).encode() + b"\r\n"
    a = stream(
        live_service.url,
        "POST",
        "/upload",
        {"Cookie": cookie, **_multipart_headers()},
        _multipart(ENDLESS, part="dashboard", prefix=fields),
        chunked=True,
    )
    assert a.status == 413, a
    assert _error_code(a) == "photo_too_large"
    _assert_stopped_early(a, MAX_PHOTO_BYTES)


def test_the_sign_in_form_takes_a_few_kilobytes(live_service: LiveService) -> None:
    """Anyone may post it: 12 MB used to be read before the 403."""
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    a = stream(live_service.url, "POST", "/sign-in", form_headers, junk(ENDLESS, first=b"token=" + b"a" * 100), chunked=True)
    assert a.status == 413, a
    assert _error_code(a) == "body_too_large"
    _assert_stopped_early(a, SIGN_IN_FORM_LIMIT)
    # a declared length is refused before anything is read
    a = stream(
        live_service.url, "POST", "/sign-in", {**form_headers, "Content-Length": str(12 * MB)}, junk(12 * MB), chunked=False
    )
    assert a.status == 413, a
    _assert_stopped_early(a, SLACK)
    # the form itself still works
    r = requests.get(f"{live_service.url}/sign-in", timeout=30)
    assert r.status_code == 200


def test_a_chunked_json_body_stops_at_1_mb(live_service: LiveService, citizen_on_live: LiveCitizen) -> None:
    c = citizen_on_live
    a = stream(
        live_service.url,
        "POST",
        "/v1/vehicles",
        {**c.headers, "Content-Type": "application/json"},
        junk(ENDLESS, first=b'{"plate": "'),
        chunked=True,
    )
    assert a.status == 413, a
    assert _error_code(a) == "body_too_large"
    _assert_stopped_early(a, 1 * MB)


def test_hostile_small_forms_are_refused_not_crashed(live_service: LiveService) -> None:
    """Malformed sign-in bodies: a 4xx each (the CSRF check refuses what parses), never a 500."""
    cases: list[tuple[str, bytes]] = [
        ("multipart/form-data", b"--x\r\n"),  # no boundary parameter
        (f"multipart/form-data; boundary={BOUNDARY}", b"x" * 6000),  # no boundary line at all
        (f"multipart/form-data; boundary={BOUNDARY}", _part_head("token") + b"a" * 7000),  # never ends
        ("application/x-www-form-urlencoded", b"token=%ff%fe%zz&csrf=\xff\xfe"),
        ("application/x-www-form-urlencoded", b"&" * 5000),
    ]
    for ctype, body in cases:
        r = requests.post(
            f"{live_service.url}/sign-in", data=body, headers={"Content-Type": ctype, "Accept": "application/json"}, timeout=30
        )
        assert 400 <= r.status_code < 500, (ctype, body[:40], r.status_code, r.text[:200])
