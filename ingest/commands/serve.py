"""`carmileage serve`: run the service in the foreground."""

from __future__ import annotations

import argparse
import asyncio

from ingest.logs import configure_logging
from ingest.service import Service
from ingest.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("serve", help="run the service (HTTP API, MQTT consumer, workers)")
    p.add_argument("--host", help="HTTP host (default CARMILEAGE_HTTP_HOST)")
    p.add_argument("--port", type=int, help="HTTP port (default CARMILEAGE_HTTP_PORT)")
    p.set_defaults(func=run)


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
    asyncio.run(Service(settings).run())
    return 0
