"""Fuzz every operation from the OpenAPI document against a real service process.

Whatever schemathesis generates, the service answers without a 5xx, with a documented status and a
body of the documented shape; and an answer of 4xx leaves the database exactly as it was.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ingest.routes import ROUTE_MODULES, api
from tests.conftest import LiveService, cli_token

for _name in ROUTE_MODULES:
    importlib.import_module(f"ingest.routes.{_name}")

schema = schemathesis.openapi.from_dict(api.openapi())

_TABLES = ("owners", "vehicles", "participations", "audit_log", "api_tokens")


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {t: await conn.fetchval(f"select count(*) from {t}") for t in _TABLES}
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def fuzz_token(live_service: LiveService) -> Iterator[str]:
    yield cli_token(live_service.database_url, "citizen", "fuzz-citizen")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_fuzz(case: schemathesis.Case, live_service: LiveService, fuzz_token: str) -> None:
    database_url = live_service.database_url
    before = asyncio.run(_counts(database_url))
    response = case.call(base_url=live_service.url, headers={"Authorization": f"Bearer {fuzz_token}"}, timeout=30)
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    if 400 <= response.status_code < 500:
        assert asyncio.run(_counts(database_url)) == before, response.text
