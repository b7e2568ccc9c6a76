"""Typed keys for what the aiohttp application carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from ingest.settings import Settings
from storage.blobs import BlobStore

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
#: Where photo bytes live: the uploads write and the OCR workers and photo pages read the same one.
BLOBS = web.AppKey("blobs", BlobStore)
REQUEST_ID = web.RequestKey("request_id", str)
#: name -> async check returning (ok, detail); /readyz runs them all.
READINESS = web.AppKey("readiness", dict[str, Callable[[], Awaitable[tuple[bool, str]]]])
