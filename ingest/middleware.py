"""Request id, errors as JSON with stable codes, access log and metrics, in one middleware."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from ingest.api import ApiError, ErrorBody, ErrorResponse
from ingest.http_server import guard_of
from ingest.logs import request_id_var
from ingest.metrics import HTTP_LATENCY, HTTP_REQUESTS
from ingest.state import REQUEST_ID

log = logging.getLogger("carmileage.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_HTTP_CODES = {
    404: ("not_found", "There is nothing here."),
    405: ("method_not_allowed", "This method is not allowed here."),
    408: ("body_timeout", "The request body did not arrive in time."),
    413: ("body_too_large", "The body is too large."),
}


def error_response(exc: ApiError, request_id: str | None) -> web.Response:
    body = ErrorResponse(
        error=ErrorBody(code=exc.code, message=exc.message, reasons=exc.reasons, request_id=request_id)
    )
    return web.Response(
        text=body.model_dump_json(exclude_none=True),
        status=exc.status,
        content_type="application/json",
        headers=exc.headers,
    )


@web.middleware
async def observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    token = request_id_var.set(rid)
    request[REQUEST_ID] = rid
    started = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    status = 500
    guard = guard_of(request)
    if guard is not None:
        guard.request_started()  # the head is complete: no head deadline while it is handled
    try:
        try:
            response = await handler(request)
        except ApiError as e:
            response = error_response(e, rid)
        except web.HTTPException as e:
            if e.status < 400:
                status = e.status  # a redirect, raised: counted and logged as what it is
                raise
            code, message = _HTTP_CODES.get(e.status, ("http_error", e.reason))
            response = error_response(ApiError(e.status, code, message), rid)
            response.headers.update({k: v for k, v in e.headers.items() if k.lower() == "allow"})
        except Exception:
            log.exception("unhandled error in %s %s", request.method, route)
            response = error_response(
                ApiError(500, "internal_error", "Something went wrong on our side; it was logged."), rid
            )
        status = response.status
        response.headers["X-Request-Id"] = rid
        if status >= 400 and not request.content.is_eof():
            # Refused before its body was read (413, 408, 401, ...): the rest is not worth keeping
            # the connection for; aiohttp drops it for at most http_lingering_s, then closes.
            response.force_close()
        return response
    finally:
        if guard is not None:
            guard.request_finished()
        elapsed = time.perf_counter() - started
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_LATENCY.labels(request.method, route).observe(elapsed)
        log.info(
            "%s %s %s",
            request.method,
            route,
            status,
            extra={"status": status, "ms": round(elapsed * 1000, 1)},
        )
        request_id_var.reset(token)
