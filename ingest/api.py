"""Declared HTTP operations: one place that authenticates, reads and validates a request body,
and from which `/openapi.json` is generated, so the document and the behaviour cannot drift.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

JSON_LIMIT = 1024 * 1024
M = TypeVar("M", bound=BaseModel)


class Reason(BaseModel):
    """One machine-readable reason, with a sentence for people."""

    code: str
    message: str
    message_ko: str | None = None
    field: str | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    reasons: list[Reason] = []
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """An answer other than success, rendered as `{"error": {...}}` with a stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        reasons: Iterable[Reason] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reasons = list(reasons)
        self.headers = headers or {}


def respond(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=model.model_dump_json(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: NaN and Infinity are refused, as are non-UTF-8 bodies."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {e}") from None


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read at most `limit` bytes; a larger body is refused before it is buffered whole."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"The body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"The body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def validation_reasons(e: ValidationError) -> list[Reason]:
    reasons = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        reasons.append(Reason(code=str(err["type"]), message=str(err["msg"]), field=loc or None))
    return reasons


async def read_model(request: web.Request, model: type[M], limit: int = JSON_LIMIT) -> M:
    ctype = request.content_type
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    data = parse_json(await read_body(request, limit))
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ApiError(
            422, "invalid_request", "The request does not follow the schema.", validation_reasons(e)
        ) from None


Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None
    responses: dict[int, type[BaseModel] | None]
    roles: frozenset[str] | None
    tags: tuple[str, ...]
    body_limit: int
    request_content: dict[str, Any] | None = None
    description: str | None = None
    extra_security: list[dict[str, list[str]]] = field(default_factory=list)


class Api:
    """A registry of operations. Handlers are called as `handler(request, principal, body)`."""

    def __init__(self, title: str, version: str) -> None:
        self.title = title
        self.version = version
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        responses: dict[int, type[BaseModel] | None],
        body: type[BaseModel] | None = None,
        roles: Iterable[str] | None = None,
        tags: Iterable[str] = (),
        body_limit: int = JSON_LIMIT,
        request_content: dict[str, Any] | None = None,
        description: str | None = None,
        extra_security: list[dict[str, list[str]]] | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    handler=fn,
                    summary=summary,
                    body=body,
                    responses=responses,
                    roles=frozenset(roles) if roles is not None else None,
                    tags=tuple(tags),
                    body_limit=body_limit,
                    request_content=request_content,
                    description=description or (fn.__doc__ or "").strip() or None,
                    extra_security=extra_security or [],
                )
            )
            return fn

        return register

    def install(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, _bind(op))

    def openapi(self) -> dict[str, Any]:
        models: set[type[BaseModel]] = {ErrorResponse}
        # Error statuses declared without a model answer with ErrorResponse.
        for op in self.operations:
            if op.body is not None:
                models.add(op.body)
            models.update(m for m in op.responses.values() if m is not None)
        ordered = sorted(models, key=lambda m: m.__name__)
        keys, schema = models_json_schema(
            [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
        )
        ref = {m: keys[(m, "validation")] for m in ordered}
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "operationId": op.handler.__name__,
                "tags": list(op.tags),
                "responses": {},
            }
            if op.description:
                entry["description"] = op.description
            params = [
                {"name": n, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
                if n.endswith("id")
                else {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in re.findall(r"{(\w+)}", op.path)
            ]
            if params:
                entry["parameters"] = params
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref[op.body]}},
                }
            elif op.request_content is not None:
                entry["requestBody"] = {"required": True, "content": op.request_content}
            security: list[dict[str, list[str]]] = []
            if op.roles is not None:
                security.append({"bearer": []})
                entry["x-roles"] = sorted(op.roles)
            security.extend(op.extra_security)
            entry["security"] = security
            statuses = dict(op.responses)
            if op.body is not None:
                statuses.setdefault(400, ErrorResponse)
                statuses.setdefault(413, ErrorResponse)
                statuses.setdefault(415, ErrorResponse)
                statuses.setdefault(422, ErrorResponse)
            if op.roles is not None:
                statuses.setdefault(401, ErrorResponse)
                statuses.setdefault(403, ErrorResponse)
            for status, model in sorted(statuses.items()):
                if model is None and status >= 400:
                    model = ErrorResponse
                resp: dict[str, Any] = {"description": _STATUS_TEXT.get(status, str(status))}
                if model is not None:
                    resp["content"] = {"application/json": {"schema": ref[model]}}
                entry["responses"][str(status)] = resp
            paths.setdefault(op.path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": schema.get("$defs", {}),
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "providerSignature": {
                        "type": "apiKey",
                        "in": "header",
                        "name": "X-Carmileage-Signature",
                        "description": "sha256=<hex HMAC-SHA256(secret, timestamp + '.' + raw body)>,"
                        " with X-Carmileage-Timestamp (unix seconds).",
                    },
                },
            },
        }


_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    400: "Malformed request",
    401: "No or bad credentials",
    403: "Not allowed for this credential",
    404: "Not found",
    409: "Conflicts with what exists",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Refused: see reasons",
    429: "Too many requests",
}


def _bind(op: Operation) -> Handler:
    from ingest.auth import authenticate

    async def handle(request: web.Request) -> web.StreamResponse:
        principal = None
        if op.roles is not None:
            principal = await authenticate(request)
            if principal.role not in op.roles:
                raise ApiError(403, "forbidden", "This credential may not do that.")
        body = await read_model(request, op.body, op.body_limit) if op.body is not None else None
        return await op.handler(request, principal, body)

    handle.__name__ = op.handler.__name__
    return handle
