"""The ops conventions (docs/ops.md): the alert rules pass `promtool check rules` and their unit
tests (`promtool test rules`), every alert is exercised by one, the Grafana dashboard's queries
parse, and every metric the rules and the dashboard name is exported by a running service (whose
backlog gauges follow the database)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from storage.db import create_pool, drop_database
from tests.conftest import LiveService, clone_database
from tests.review.conftest import make_photo_case

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "docs" / "ops"
ALERTS = OPS / "alerts.yml"
ALERT_TESTS = OPS / "alerts.test.yml"
DASHBOARD = OPS / "grafana-dashboard.json"
#: Series Prometheus makes itself, not the service.
PROMETHEUS_OWN = {"up"}
#: PromQL words that look like metric names in an expression.
METRIC = re.compile(r"\b(carmileage_[a-z0-9_]+|up)\b(?!\s*\()")
#: Suffixes of the series a family of each type exposes.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "unknown": ("",),
}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: scripts/setup.sh --test installs Debian's prometheus")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return found


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def _names(expr: str) -> set[str]:
    # label values and matchers in quotes are not metric names
    return set(METRIC.findall(re.sub(r'"[^"]*"', '""', expr)))


def test_the_alert_rules_pass_promtool_check(promtool: str) -> None:
    out = _run(promtool, "check", "rules", str(ALERTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in out.stdout


def test_the_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    out = _run(promtool, "test", "rules", ALERT_TESTS.name, cwd=OPS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_fails_a_rule_that_does_not_fire(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: the same tests against a rule with an unreachable threshold."""
    broken = ALERTS.read_text().replace(
        'max by (job) (carmileage_outbox_events{status="dead"}) > 0',
        'max by (job) (carmileage_outbox_events{status="dead"}) > 1000',
    )
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts.test.yml").write_text(ALERT_TESTS.read_text())
    out = _run(promtool, "test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert out.returncode != 0 and "CarmileageOutboxDeadLetters" in out.stdout + out.stderr


def test_every_alert_is_shown_firing_by_a_unit_test() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert alerts == fired
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_dashboard_is_well_formed_and_its_queries_parse(promtool: str, tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
            assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    # Grafana's own variables replaced by a duration, every query checked as a recording rule
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    out = _run(promtool, "check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_name_check_sees_names_and_only_names() -> None:
    expr = 'sum by (reason) (rate(carmileage_a_total{reason="carmileage_not_a_metric"}[5m])) and up'
    assert _names(expr) == {"carmileage_a_total", "up"}


# -- against a running service --------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_service(template_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A service on a database of its own holding an open dispute (three hours old) and a dead
    outbox event when it starts, its backlog gauges read every 0.2 s."""
    url = clone_database(template_database_url, "ops" + uuid.uuid4().hex[:6])

    async def seed() -> None:
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await make_photo_case(conn, created_at=datetime.now(UTC) - timedelta(hours=3))
                await _dead_event(conn)
        finally:
            await pool.close()

    asyncio.run(seed())
    live = LiveService(url, tmp_path_factory.mktemp("ops") / "data", CARMILEAGE_BACKLOG_METRICS_INTERVAL_S="0.2")
    live.start()
    try:
        yield live
    finally:
        live.kill()
        asyncio.run(drop_database(url))


async def _dead_event(conn: Any) -> None:
    await conn.execute(
        """insert into outbox (event_id, kind, payload, status, attempts, last_status, last_error, dead_at)
           values ($1, 'test.event', '{}', 'dead', 3, 400, 'refused', now())""",
        uuid.uuid4(),
    )


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        body: bytes = r.read()
    return body.decode()


def _value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_every_metric_the_rules_and_dashboard_name_is_exported(seeded_service: LiveService) -> None:
    exported: set[str] = set()
    for family in text_string_to_metric_families(_scrape(seeded_service.url)):
        exported.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    named = {name for rule in _alert_rules() for name in _names(rule["expr"])}
    named |= {name for _, expr in _dashboard_exprs() for name in _names(expr)}
    assert {"carmileage_ingest_consuming", "carmileage_readings_quarantined_total",
            "carmileage_review_backlog_oldest_seconds", "carmileage_outbox_events"} <= named
    missing = sorted(named - exported - PROMETHEUS_OWN)
    assert missing == [], f"named in docs/ops but not on /metrics: {missing}"


def test_the_backlog_gauges_follow_the_database(seeded_service: LiveService) -> None:
    text = _scrape(seeded_service.url)
    assert _value(text, "carmileage_review_backlog", kind="photo") == 1
    assert _value(text, "carmileage_review_backlog", kind="rollback") == 0
    oldest = _value(text, "carmileage_review_backlog_oldest_seconds")
    assert oldest is not None and 3 * 3600 <= oldest < 4 * 3600
    assert _value(text, "carmileage_outbox_events", status="dead") == 1
    assert _value(text, "carmileage_outbox_events", status="pending") == 0
    sampled = _value(text, "carmileage_backlog_sampled_timestamp_seconds")
    assert sampled is not None and abs(sampled - time.time()) < 60

    async def another_dead_event() -> None:
        pool = await create_pool(seeded_service.database_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await _dead_event(conn)
        finally:
            await pool.close()

    asyncio.run(another_dead_event())
    deadline = time.monotonic() + 30
    while _value(_scrape(seeded_service.url), "carmileage_outbox_events", status="dead") != 2:
        assert time.monotonic() < deadline, "the dead-letter gauge did not follow the database"
