"""One parser for the ids in paths and forms: whatever is not a row id is a 404 (or the not-found
page), never a 500 and never a value the database would refuse."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from ingest.api import parse_id
from tests.conftest import TokenFactory
from tests.photos.pagekit import sign_in

#: Not ids: empty, zero, signs, spaces, too many digits for a bigint, other scripts' digits
#: (which str.isdigit accepts and int() may or may not).
NOT_IDS = ["", "0", "00", "-1", "+1", " 1", "1 ", "1.0", "1e3", "9" * 19, "²", "١٢", "１"]


@pytest.mark.parametrize("raw", NOT_IDS)
def test_what_is_not_an_id(raw: str) -> None:
    assert parse_id(raw) is None


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("007", 7), ("9" * 18, 10**18 - 1)])
def test_ids(raw: str, value: int) -> None:
    assert parse_id(raw) == value


@pytest.mark.parametrize("raw", ["0", "9" * 19, "%C2%B2", "%D9%A1%D9%A2", "abc"])
async def test_the_api_and_the_pages_answer_not_found(client: TestClient, make_token: TokenFactory, raw: str) -> None:
    reviewer = await make_token("reviewer")
    for path in (f"/v1/disputes/{raw}", f"/v1/vehicles/{raw}", f"/v1/submissions/{raw}"):
        r = await client.get(path, headers=reviewer)
        assert r.status == 404, (path, await r.text())
        assert (await r.json())["error"]["code"] == "not_found"
    await sign_in(client, reviewer, "/review")
    r = await client.get(f"/review/disputes/{raw}")
    assert r.status == 404
    assert "text/html" in r.headers["Content-Type"]
