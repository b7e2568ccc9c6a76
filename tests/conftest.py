"""Shared fixtures: a migrated template database per test run, cloned per session or per test,
an asyncpg pool, the aiohttp app under a test client, a live service process, tokens, and
factories for enrolment payloads. Everything talks to the real PostgreSQL (and RabbitMQ nodes the
telematics tests start).

Roles: the fixtures' database URLs are the administrator's (to create, clone, drop and alter
databases), but the template is migrated by a plain owning role (`cmtest_owner`, as
`carmileage migrate` would with CARMILEAGE_MIGRATION_DATABASE_URL) and the application under test
(the `pool` fixture, the apps built on it, live services and CLI tokens) connects as the
least-privilege service role (`cmtest_service`) with the grants `carmileage migrate` gives: the
suite proves those grants suffice. `service_url(url)` / `owner_url(url)` name a test database as
those roles.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.settings import Settings
from prorate.identifiers import NON_COMMERCIAL_SYLLABLES
from storage.db import create_pool, drop_database, with_database
from storage.migrate import migrate
from storage.roles import ensure_login_role, grant_service_role
from storage.secret_box import box_for, decode_key, new_key_text
from storage.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent


def _admin_url() -> str:
    """A role that may create databases and roles: CARMILEAGE_TEST_DATABASE_URL, else the one
    scripts/setup.sh wrote for its project-local cluster, else CARMILEAGE_DATABASE_URL's server."""
    if os.environ.get("CARMILEAGE_TEST_DATABASE_URL"):
        return os.environ["CARMILEAGE_TEST_DATABASE_URL"]
    written = ROOT / ".var" / "db" / "admin.env"
    if written.is_file():
        for line in written.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "CARMILEAGE_TEST_DATABASE_URL" and value.strip():
                return value.strip()
    return with_database(
        os.environ.get("CARMILEAGE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/carmileage"), "postgres"
    )


ADMIN_URL = _admin_url()
RUN_ID = uuid.uuid4().hex[:8]
#: Cluster-wide roles shared by every test run (never dropped; they own only test databases).
OWNER_ROLE = "cmtest_owner"
SERVICE_ROLE = "cmtest_service"
# The developer's migration URL names their own database, never a test's: subprocesses (CLI, live
# services) must not pick it up from the environment or .var/db/service.env.
os.environ["CARMILEAGE_MIGRATION_DATABASE_URL"] = ""
# One provider-secret key for the run, shared by in-process apps, CLI subprocesses and live services.
os.environ["CARMILEAGE_PROVIDER_SECRET_KEY"] = new_key_text()
#: Seals providers' HMAC secrets as every app and command of this run does.
PROVIDER_BOX = box_for(decode_key(os.environ["CARMILEAGE_PROVIDER_SECRET_KEY"]))


def _role_password(role: str) -> str:
    """Stable for a cluster (concurrent runs agree on it) and as secret as the admin's password."""
    admin_password = urlsplit(ADMIN_URL).password or ""
    return hashlib.sha256(f"{admin_password}|{role}|carmileage-tests".encode()).hexdigest()[:32]


def role_url(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(role)}:{quote(_role_password(role))}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _made_by_this_run(url: str) -> bool:
    return urlsplit(url).path.lstrip("/").startswith(f"cmtest_{RUN_ID}_")


def service_url(url: str) -> str:
    """A database of this run as the least-privilege service role (other URLs: unchanged)."""
    return role_url(url, SERVICE_ROLE) if _made_by_this_run(url) else url


def owner_url(url: str) -> str:
    """A database of this run as the role that owns its schema (other URLs: unchanged)."""
    return role_url(url, OWNER_ROLE) if _made_by_this_run(url) else url


# -- databases ------------------------------------------------------------------------------


async def _create_template(url: str) -> None:
    """Migrated by the owning role, then the service role granted, as `carmileage migrate` does."""
    await drop_database(url)
    admin = await asyncpg.connect(with_database(ADMIN_URL, "postgres"))
    try:
        for role in (OWNER_ROLE, SERVICE_ROLE):
            await ensure_login_role(admin, role, _role_password(role))
        await admin.execute(f'create database "{url.rsplit("/", 1)[1]}" owner {OWNER_ROLE}')
    finally:
        await admin.close()
    conn = await asyncpg.connect(owner_url(url))
    try:
        await migrate(conn)
        await grant_service_role(conn, SERVICE_ROLE)
    finally:
        await conn.close()


async def _clone(template_url: str, url: str) -> None:
    conn = await asyncpg.connect(with_database(ADMIN_URL, "postgres"))
    try:
        name = url.rsplit("/", 1)[1]
        template = template_url.rsplit("/", 1)[1]
        await conn.execute(f'create database "{name}" template "{template}" owner {OWNER_ROLE}')
    finally:
        await conn.close()


def clone_database(template_url: str, suffix: str) -> str:
    url = with_database(ADMIN_URL, f"cmtest_{RUN_ID}_{suffix}")
    asyncio.run(_clone(template_url, url))
    return url


@pytest.fixture(scope="session")
def template_database_url() -> Iterator[str]:
    """Migrated once per run; clones of it are cheap."""
    url = with_database(ADMIN_URL, f"cmtest_{RUN_ID}_tpl")
    asyncio.run(_create_template(url))
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="session")
def database_url(template_database_url: str) -> Iterator[str]:
    """One database shared by the whole session: tests create their own, unique data in it."""
    url = clone_database(template_database_url, "main")
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture
def fresh_database_url(template_database_url: str) -> Iterator[str]:
    """A database of this test's own, for tests that count rows or need an empty world."""
    url = clone_database(template_database_url, uuid.uuid4().hex[:8])
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The session database as the service role (the app under test uses this pool)."""
    p = await create_pool(service_url(database_url), min_size=1, max_size=10)
    yield p
    await p.close()


# -- the application --------------------------------------------------------------------------


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": service_url(database_url),
        "data_dir": data_dir,
        "mqtt_enabled": False,
        "log_format": "text",
        "secret_key": "test-secret-key-" + RUN_ID,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "data")


@pytest.fixture
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    app = create_app(settings, pool)
    async with TestClient(TestServer(app)) as c:
        yield c


TokenFactory = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
def make_token(pool: asyncpg.Pool) -> TokenFactory:
    """`await make_token("citizen")` -> Authorization headers for a new subject (or a given one)."""

    async def make(role: str, subject: str | None = None) -> dict[str, str]:
        subject = subject or f"{role}-{uuid.uuid4().hex[:10]}"
        async with pool.acquire() as conn:
            _, token = await create_token(conn, role, subject)
        return {"Authorization": f"Bearer {token}", "X-Subject": subject}

    return make


# -- enrolment data ---------------------------------------------------------------------------

_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_SYLLABLES = sorted(NON_COMMERCIAL_SYLLABLES)


def random_plate(rng: random.Random | None = None) -> str:
    r = rng or random
    if r.random() < 0.5:
        return f"{r.randint(100, 699)}{r.choice(_SYLLABLES)}{r.randint(0, 9999):04d}"
    return f"{r.randint(10, 69)}{r.choice(_SYLLABLES)}{r.randint(0, 9999):04d}"


def random_vin(rng: random.Random | None = None) -> str:
    r = rng or random
    return "KMH" + "".join(r.choice(_VIN_CHARS) for _ in range(14))


def ownership_check(vehicle: dict[str, Any]) -> dict[str, Any]:
    """The operator's body for `POST /v1/vehicles/{id}/ownership-checks` verifying an enrolment
    (`vehicle` as the enrolment answered it): enrolled cars take part only once verified."""
    return {
        "outcome": "verified",
        "registration_certificate_no": f"2024-{vehicle['id'] % 1_000_000:06d}",
        "vin": vehicle["vin"],
    }


def vehicle_payload(**overrides: Any) -> dict[str, Any]:
    """An eligible Seoul passenger car; override any field."""
    body: dict[str, Any] = {
        "plate": random_plate(),
        "vin": random_vin(),
        "registration_region": "서울",
        "district": "강남구",
        "use": "non_commercial",
        "vehicle_type": "passenger",
        "seats": 5,
        "fuel": "gasoline",
        "first_registration_date": "2018-03-15",
        "owner_is_registered_owner": True,
    }
    body.update(overrides)
    return body


# -- a live service process -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveService:
    """`carmileage serve` in a child process, for fault tests and fuzzing over real HTTP."""

    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.env = {
            **os.environ,
            "CARMILEAGE_DATABASE_URL": service_url(database_url),
            "CARMILEAGE_MIGRATION_DATABASE_URL": "",
            "CARMILEAGE_DATA_DIR": str(data_dir),
            "CARMILEAGE_HTTP_PORT": str(self.port),
            "CARMILEAGE_MQTT_ENABLED": "false",
            "CARMILEAGE_SECRET_KEY": "test-secret-key-" + RUN_ID,
            "CARMILEAGE_LOG_FORMAT": "json",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"service-{self.port}.log"

    def start(self, timeout: float = 30) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "serve"], env=self.env, cwd=ROOT, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"service did not start:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no chance to drain."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM: graceful shutdown; returns the exit code."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def live_service_factory(tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    started: list[LiveService] = []

    def start(database_url: str, **env: str) -> LiveService:
        svc = LiveService(database_url, tmp_path / f"data-{len(started)}", **env)
        svc.start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.kill()


@pytest.fixture(scope="session")
def live_service(template_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """One service process for the session, on a database of its own: its background workers
    (OCR, outbox) must not take jobs that in-process tests created in the session database."""
    url = clone_database(template_database_url, "live")
    svc = LiveService(url, tmp_path_factory.mktemp("live") / "data")
    svc.start()
    yield svc
    svc.kill()
    asyncio.run(drop_database(url))


def cli_token(database_url: str, role: str, subject: str) -> str:
    """Create a token through the real CLI (sync: usable from sync tests and fixtures)."""
    out = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "tokens", "create", "--role", role, "--subject", subject],
        env={**os.environ, "CARMILEAGE_DATABASE_URL": service_url(database_url)},
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()
