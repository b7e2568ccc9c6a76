from aiohttp.test_utils import TestClient

from tests.conftest import TokenFactory, vehicle_payload


async def test_healthz(client: TestClient) -> None:
    r = await client.get("/healthz")
    assert r.status == 200
    assert (await r.json()) == {"status": "ok"}


async def test_enrol_and_show(client: TestClient, make_token: TokenFactory) -> None:
    h = await make_token("citizen")
    r = await client.post("/v1/vehicles", json=vehicle_payload(), headers=h)
    assert r.status == 201, await r.text()
    vid = (await r.json())["id"]
    r = await client.get(f"/v1/vehicles/{vid}", headers=h)
    assert r.status == 200
