"""`make demo`: against the running service, walk through every flow once and print what to try
next. It enrols the sample cars of fixtures/vehicles.json, lets a demo provider stream signed
readings for one of them (and one reading that goes backwards, which opens a review case),
uploads synthetic dashboard and plate photos for another, and prints tokens and commands for
the reviewer and the operator. Tokens are created directly in the database the service uses.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ingest.settings import load_settings
from prorate.calendar import SEOUL
from storage.tokens import create_token
from telematics.signatures import signature

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
PROVIDER = "demo-maker"


class Service:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self, method: str, path: str, *, token: str | None = None, body: Any = None,
        raw: bytes | None = None, headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body, ensure_ascii=False).encode())
        h = {"Content-Type": "application/json", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


async def make_token(url: str, role: str, subject: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return (await create_token(conn, role, subject, label="demo"))[1]
    finally:
        await conn.close()


def enrol(svc: Service, citizen: str, operator: str) -> dict[str, dict[str, Any]]:
    print(
        "1. Enrolment (POST /v1/vehicles), the operator's ownership check "
        "(POST /v1/vehicles/{id}/ownership-checks), participation (POST /v1/vehicles/{id}/participations)"
    )
    data = json.loads((FIXTURES / "vehicles.json").read_text())
    _, mine = svc.call("GET", "/v1/vehicles", token=citizen)
    known = {v["plate"]: v for v in mine["vehicles"]}
    cars: dict[str, dict[str, Any]] = {}
    for v in data["vehicles"]:
        status, body = svc.call("POST", "/v1/vehicles", token=citizen, body=v)
        if status == 201:
            check = {"outcome": "verified", "registration_certificate_no": f"DEMO-{body['id']:06d}", "vin": body["vin"]}
            svc.call("POST", f"/v1/vehicles/{body['id']}/ownership-checks", token=operator, body=check)
            svc.call("POST", f"/v1/vehicles/{body['id']}/participations", token=citizen, body={"program": "annual"})
            _, body = svc.call("GET", f"/v1/vehicles/{body['id']}", token=citizen)
            print(f"   enrolled {v['plate']}: vehicle {body['id']}")
        elif status == 409 and v["plate"] in known:
            body = known[v["plate"]]
            print(f"   {v['plate']}: already enrolled as vehicle {body['id']}")
        elif status == 409:
            print(f"   {v['plate']}: enrolled by someone else ({body['error']['code']})")
            continue
        else:
            reasons = ", ".join(r["code"] for r in body["error"].get("reasons", []))
            print(f"   {v['plate']}: refused {status} {body['error']['code']}: {reasons}")
            continue
        cars[v["plate"]] = body
    return cars


def provider_secret() -> str | None:
    out = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "providers", "add", PROVIDER, "--display-name", "Demo maker", "--json"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if out.returncode != 0:
        return None
    secret: str = json.loads(out.stdout)["http"]["secret"]
    return secret


def stream(svc: Service, citizen: str, car: dict[str, Any], secret: str | None) -> None:
    print(f"\n2. A connected car: provider {PROVIDER} sends signed readings of {car['plate']}")
    if secret is None:
        print(f"   provider {PROVIDER} existed before this run; its secret was shown when it was added")
        return
    status, _ = svc.call("POST", f"/v1/vehicles/{car['id']}/consents", token=citizen, body={"provider": PROVIDER})
    print(f"   the member consents (POST /v1/vehicles/{car['id']}/consents): {status}")
    now = datetime.now(SEOUL).replace(microsecond=0)
    run = uuid.uuid4().hex[:6]
    odo = 52_000.0
    readings = []
    for days_ago in range(10, 0, -1):
        odo += random.uniform(15, 45)
        readings.append({
            "event_id": f"demo-{run}-{days_ago}", "vin": car["vin"],
            "odometer": {"value": round(odo, 1), "unit": "km"},
            "recorded_at": (now - timedelta(days=days_ago)).isoformat(),
        })
    readings.append({  # the odometer goes backwards: quarantined, and a rollback case for a reviewer
        "event_id": f"demo-{run}-rollback", "vin": car["vin"],
        "odometer": {"value": round(odo - 5_000, 1), "unit": "km"},
        "recorded_at": (now - timedelta(hours=1)).isoformat(),
    })
    body = json.dumps({"readings": readings}).encode()
    for attempt in ("sent", "sent again (a retry: duplicates)"):
        ts = str(int(time.time()))
        status, answer = svc.call(
            "POST", f"/v1/providers/{PROVIDER}/readings", raw=body,
            headers={"X-Carmileage-Timestamp": ts, "X-Carmileage-Signature": signature(secret, ts, body)},
        )
        print(f"   {len(readings)} readings {attempt}: {status} {json.dumps(answer, ensure_ascii=False)}")
        time.sleep(1.1)  # a new timestamp, so the retry is not refused as a replay
    status, answer = svc.call(
        "POST", f"/v1/providers/{PROVIDER}/readings", raw=body,
        headers={"X-Carmileage-Timestamp": str(int(time.time())), "X-Carmileage-Signature": "sha256=" + "0" * 64},
    )
    print(f"   a forged signature: {status} {answer['error']['code']}")


def photos(svc: Service, citizen: str, car: dict[str, Any]) -> None:
    print(f"\n3. A citizen without a connected car uploads photos of {car['plate']}")
    sys.path.insert(0, str(FIXTURES / "ocr"))
    try:
        generate = importlib.import_module("generate")
        render_dashboard, render_plate_photo = generate.render_dashboard, generate.render_plate_photo
    except Exception as e:  # fonts missing: scripts/setup.sh --test installs them
        print(f"   skipped: the synthetic photo generator needs its fonts ({e})")
        return
    participation = next((p for p in car["participations"] if p["status"] == "active"), None)
    if participation is None:
        print("   no active participation")
        return
    rng = random.Random(car["id"])
    claimed = (car.get("acquired_odometer_km") or 60_000) + rng.randint(500, 5_000)

    def jpeg(im: Any) -> bytes:
        exif = im.getexif()
        exif[0x0132] = datetime.now(SEOUL).strftime("%Y:%m:%d %H:%M:%S")
        ifd = exif.get_ifd(0x8769)
        ifd[0x9003] = datetime.now(SEOUL).strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
        ifd[0x9011] = "+09:00"  # OffsetTimeOriginal
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=90, exif=exif)
        return buf.getvalue()

    dashboard = jpeg(render_dashboard(claimed, rng, effects=0.4))
    plate = jpeg(render_plate_photo(car["plate"], "white", rng, effects=0.4))
    boundary = uuid.uuid4().hex
    parts = []
    for name, value, ctype in (("dashboard", dashboard, "image/jpeg"), ("plate", plate, "image/jpeg")):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.jpg"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode() + value + b"\r\n"
        )
    for name, text in (("stage", "start"), ("claimed_km", str(claimed))):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'.encode())
    raw = b"".join(parts) + f"--{boundary}--\r\n".encode()
    status, sub = svc.call(
        "POST", f"/v1/participations/{participation['id']}/photos", token=citizen, raw=raw,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    if status != 202:
        print(f"   upload: {status} {json.dumps(sub, ensure_ascii=False)}")
        return
    print(f"   uploaded (claimed {claimed} km): 202, submission {sub['id']}; waiting for the OCR ...")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sub["status"] == "processing":
        time.sleep(1)
        _, sub = svc.call("GET", f"/v1/submissions/{sub['id']}", token=citizen)
    reasons = ", ".join(r["code"] for r in sub.get("reasons", [])) or "-"
    print(f"   outcome: {sub['status']} (reasons: {reasons})")


def main() -> int:
    settings = load_settings()
    base = settings.public_url or f"http://{settings.http_host}:{settings.http_port}"
    try:
        urllib.request.urlopen(base + "/healthz", timeout=3)
    except OSError:
        print(f"demo: the service does not answer at {base}; start it with `make run` first", file=sys.stderr)
        return 1
    svc = Service(base)
    owner = json.loads((FIXTURES / "vehicles.json").read_text())["owner_id"]
    citizen = asyncio.run(make_token(settings.database_url, "citizen", owner))
    reviewer = asyncio.run(make_token(settings.database_url, "reviewer", "demo-reviewer"))
    operator = asyncio.run(make_token(settings.database_url, "operator", "demo-operator"))

    cars = enrol(svc, citizen, operator)
    plates = list(cars)
    if plates:
        stream(svc, citizen, cars[plates[0]], provider_secret())
    if len(plates) > 1:
        photos(svc, citizen, cars[plates[1]])

    print(
        f"""
4. Try next
   citizen ({owner}):   {citizen}
   reviewer:            {reviewer}
   operator:            {operator}

   {base}/sign-in           sign in with the citizen token, then /upload (photo registration)
                            or with the reviewer token, then /review (the dispute queue: the
                            rollback case above waits there; A accept, C correct, R reject)
   {base}/docs              every API operation; {base}/openapi.json
   curl -s -H 'Authorization: Bearer {citizen}' {base}/v1/vehicles | python3 -m json.tool
   curl -s {base}/readyz ; curl -s {base}/metrics | grep carmileage_
   .venv/bin/carmileage stats --json
   .venv/bin/carmileage calc --program annual --start-date 2022-03-01 --start-km 45000 \\
       --end-date 2023-03-05 --end-km 53000 --first-registration 2018-03-01
   .venv/bin/carmileage evaluate --round 2022-05 --dry-run
   .venv/bin/carmileage outbox list ; .venv/bin/carmileage report districts --year 2022
   .venv/bin/carmileage --help"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
