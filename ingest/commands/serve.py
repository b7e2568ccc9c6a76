"""`carmileage serve`: run the service in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import gc

from ingest.logs import configure_logging
from ingest.service import Service
from ingest.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("serve", help="run the service (HTTP API, MQTT consumer, workers)")
    p.add_argument("--host", help="HTTP host (default CARMILEAGE_HTTP_HOST)")
    p.add_argument("--port", type=int, help="HTTP port (default CARMILEAGE_HTTP_PORT)")
    p.set_defaults(func=run)


#: Young collections every 50,000 net allocations instead of 700 (see `tune_gc`).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Collect less often, and never look again at what start-up built.

    Ingestion allocates hundreds of thousands of short-lived objects a second (parsed payloads,
    readings, rows), almost none in reference cycles. With the default thresholds the collector
    ran every 700 allocations and, every few seconds, over every object the process held (the
    MQTT inbox among them): about a fifth of a worker's CPU per reading, in interleaved runs of
    bench/ingest.py with and without this (HTTP 30 against 37 µs a reading).
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host:
        overrides["http_host"] = args.host
    if args.port:
        overrides["http_port"] = args.port
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    base = settings.public_url or f"http://{settings.http_host}:{settings.http_port}"
    print(f"carmileage: API docs {base}/docs  health {base}/readyz  metrics {base}/metrics", flush=True)
    tune_gc()
    asyncio.run(Service(settings).run())
    return 0
