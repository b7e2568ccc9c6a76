"""Fixtures of the security tests: a citizen with a running participation on the shared live
service (the car is inserted directly, as checked by an operator, so these tests do not depend
on how enrolment is verified), and a signed-in page session."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
import requests

from tests.conftest import LiveService, cli_token, random_plate, random_vin


@dataclass
class LiveCitizen:
    token: str
    subject: str
    plate: str
    vehicle_id: int
    participation_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def insert_active_car(database_url: str, owner: str) -> tuple[int, str]:
    conn = await asyncpg.connect(database_url)
    try:
        plate = random_plate()
        await conn.execute("insert into owners (id, district) values ($1, '강남구') on conflict do nothing", owner)
        vid = await conn.fetchval(
            """insert into vehicles (owner_id, plate, plate_key, vin, district, registration_region, use,
                                     vehicle_type, seats, fuel, first_registration_date, status)
               values ($1, $2, $2, $3, '강남구', '서울', 'non_commercial', 'passenger', 5, 'gasoline',
                       '2018-03-15', 'active')
               returning id""",
            owner,
            plate,
            random_vin(),
        )
        return int(vid), plate
    finally:
        await conn.close()


def live_citizen(service: LiveService) -> LiveCitizen:
    subject = f"citizen-{uuid.uuid4().hex[:10]}"
    token = cli_token(service.database_url, "citizen", subject)
    vid, plate = asyncio.run(insert_active_car(service.database_url, subject))
    r = requests.post(
        f"{service.url}/v1/vehicles/{vid}/participations", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert r.status_code == 201, r.text
    return LiveCitizen(token, subject, plate, vid, r.json()["id"])


@pytest.fixture(scope="module")
def citizen_on_live(live_service: LiveService) -> LiveCitizen:
    return live_citizen(live_service)


def page_session(base_url: str, token: str) -> requests.Session:
    """A browser-like session signed in through the sign-in form."""
    s = requests.Session()
    html = s.get(f"{base_url}/sign-in", timeout=30).text
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    r = s.post(f"{base_url}/sign-in", data={"token": token, "csrf": m.group(1), "next": "/"}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    return s
