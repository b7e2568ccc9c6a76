"""`make demo`: against the running service, enrol the sample cars from fixtures/ and show what
to try next. It creates a demo citizen token directly in the database the service uses."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

from ingest.settings import load_settings
from storage.tokens import create_token

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def call(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def make_token(url: str, role: str, subject: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return (await create_token(conn, role, subject, label="demo"))[1]
    finally:
        await conn.close()


def main() -> int:
    settings = load_settings()
    base = settings.public_url or f"http://{settings.http_host}:{settings.http_port}"
    try:
        urllib.request.urlopen(base + "/healthz", timeout=3)
    except OSError:
        print(f"demo: the service does not answer at {base}; start it with `make run` first", file=sys.stderr)
        return 1
    data = json.loads((FIXTURES / "vehicles.json").read_text())
    citizen = asyncio.run(make_token(settings.database_url, "citizen", data["owner_id"]))
    operator = asyncio.run(make_token(settings.database_url, "operator", "demo-operator"))
    print(f"citizen token ({data['owner_id']}): {citizen}")
    print(f"operator token: {operator}\n")
    for v in data["vehicles"]:
        status, body = call(base, "POST", "/v1/vehicles", citizen, v)
        if status == 201:
            _, p = call(base, "POST", f"/v1/vehicles/{body['id']}/participations", citizen, {"program": "annual"})
            print(f"enrolled {v['plate']} as vehicle {body['id']}, participation {p.get('id')} ({p.get('rule_set')})")
        elif status == 409:
            print(f"{v['plate']}: already enrolled ({body['error']['code']})")
        else:
            reasons = ", ".join(r["code"] for r in body["error"].get("reasons", []))
            print(f"{v['plate']}: refused {status} {body['error']['code']}: {reasons}")
    print(
        f"""
Try next:
  curl -s -H 'Authorization: Bearer {citizen}' {base}/v1/vehicles | python3 -m json.tool
  open {base}/docs for every operation, {base}/openapi.json for the machine-readable form
  curl -s {base}/readyz ; curl -s {base}/metrics | grep carmileage_
  .venv/bin/carmileage --help   (tokens, migrate, and the operator commands)"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
