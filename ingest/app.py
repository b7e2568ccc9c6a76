"""The aiohttp application: middleware, declared operations, plain routes (metrics, pages)."""

from __future__ import annotations

import importlib

import asyncpg
from aiohttp import web

from ingest.middleware import observe
from ingest.routes import ROUTE_MODULES, api
from ingest.settings import Settings
from ingest.state import BLOBS, POOL, READINESS, SETTINGS
from storage.blobs import blob_store_from_settings

#: What aiohttp's own body readers (request.read/post/json) buffer at most. No route relies on
#: it: JSON bodies, photo uploads and page forms are read with limits of their own (ingest.api).
MAX_REQUEST_BYTES = 1024 * 1024


def create_app(settings: Settings, pool: asyncpg.Pool) -> web.Application:
    app = web.Application(middlewares=[observe], client_max_size=MAX_REQUEST_BYTES)
    app[SETTINGS] = settings
    app[POOL] = pool
    app[READINESS] = {}
    app[BLOBS] = blob_store_from_settings(settings)
    app.on_cleanup.append(_close_blobs)
    for name in ROUTE_MODULES:
        module = importlib.import_module(f"ingest.routes.{name}")
        install = getattr(module, "install_plain_routes", None)
        if install is not None:
            install(app)
    api.install(app)
    return app


async def _close_blobs(app: web.Application) -> None:
    await app[BLOBS].close()
