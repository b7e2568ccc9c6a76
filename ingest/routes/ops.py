"""Liveness, readiness, metrics and the API's own description."""

from __future__ import annotations

import asyncio
import html
import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from ingest.api import respond
from ingest.auth import Principal
from ingest.routes import api
from ingest.state import POOL, READINESS
from storage.db import ping


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@api.operation("GET", "/healthz", summary="The process is alive", responses={200: Health}, tags=["ops"])
async def healthz(request: web.Request, principal: Principal | None, body: None) -> web.Response:
    return respond(Health(status="ok"))


async def _database_ready(request: web.Request) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(2):
            await ping(request.app[POOL])
        return True, "ok"
    except Exception as e:
        return False, f"{type(e).__name__}"


@api.operation(
    "GET",
    "/readyz",
    summary="PostgreSQL and the MQTT broker are reachable",
    responses={200: Readiness, 503: Readiness},
    tags=["ops"],
)
async def readyz(request: web.Request, principal: Principal | None, body: None) -> web.Response:
    checks: dict[str, str] = {}
    ok, checks["postgresql"] = await _database_ready(request)
    for name, check in request.app.get(READINESS, {}).items():
        try:
            async with asyncio.timeout(2):
                passed, detail = await check()
        except Exception as e:
            passed, detail = False, type(e).__name__
        checks[name] = detail
        ok = ok and passed
    return respond(Readiness(status="ready" if ok else "not_ready", checks=checks), 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(api.openapi())


async def docs(request: web.Request) -> web.Response:
    """A self-contained page (no external assets) listing every operation and its schemas."""
    spec = api.openapi()
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>carmileage API</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}",
        "section{border-top:1px solid #ccc;padding:.5rem 0}code{background:#f3f3f3;padding:0 .2rem}",
        ".m{font-weight:bold;display:inline-block;min-width:4rem}pre{background:#f7f7f7;padding:.5rem;",
        "overflow:auto;font-size:.8rem}</style></head><body>",
        "<h1>carmileage API</h1><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. ",
        "Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>; providers sign batches.</p>",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            roles = ", ".join(op.get("x-roles", [])) or "public"
            parts.append(
                f"<section><h2><span class='m'>{method.upper()}</span><code>{html.escape(path)}</code></h2>"
                f"<p>{html.escape(op['summary'])} <small>({html.escape(roles)})</small></p>"
            )
            if "description" in op:
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            if "requestBody" in op:
                parts.append("<details><summary>Request body</summary><pre>")
                parts.append(html.escape(json.dumps(op["requestBody"], indent=2, ensure_ascii=False)))
                parts.append("</pre></details>")
            codes = ", ".join(op["responses"].keys())
            parts.append(f"<p>Responses: {codes}</p></section>")
    parts.append("<h2>Schemas</h2><pre>")
    parts.append(html.escape(json.dumps(spec["components"]["schemas"], indent=2, ensure_ascii=False)))
    parts.append("</pre></body></html>")
    return web.Response(text="".join(parts), content_type="text/html")


def install_plain_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
