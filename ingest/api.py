"""Declared HTTP operations: one place that authenticates, reads and validates a request body,
and from which `/openapi.json` is generated, so the document and the behaviour cannot drift.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from ingest.state import SETTINGS

JSON_LIMIT = 1024 * 1024
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


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


#: Row ids are bigints: at most 18 digits, so a longer number is refused before it reaches the database.
_ID_DIGITS = 18


def parse_id(raw: str) -> int | None:
    """A row id as a path or a form carries it: a whole number from 1 with at most 18 digits;
    None for anything else (a sign, a space, '0', a number a bigint cannot hold)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > _ID_DIGITS:
        return None
    value = int(raw)
    return value if value >= 1 else None


def path_id(request: web.Request, name: str = "id", *, missing: ApiError | None = None) -> int:
    """The id in the request's path; `missing` (by default a plain 404) when it cannot be one, so
    no handler sends a database a value it would refuse."""
    value = parse_id(request.match_info[name])
    if value is None:
        raise missing or ApiError(404, "not_found", "There is nothing here.")
    return value


def respond(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=model.model_dump_json(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


#: Arrays and objects nest at most this deep in a request body (the deepest schema needs 3).
MAX_JSON_DEPTH = 32


def _bad_json(code: str, message: str) -> ApiError:
    return ApiError(400, code, message, [Reason(code=code, message=message)])


def parse_json(raw: bytes) -> Any:
    """Strict JSON, refused with a 400 and its reason before any handler sees it: not UTF-8,
    not JSON, NaN/Infinity or a number beyond a double (`number_out_of_range`), nesting deeper
    than MAX_JSON_DEPTH (`too_deeply_nested`, checked without recursion), or a NUL character in
    a string (`nul_in_string`: PostgreSQL text cannot hold it)."""
    try:
        data = _decoder.decode(raw)
    except RecursionError:
        raise _too_deep() from None
    except msgspec.ValidationError as e:  # msgspec's only one for untyped JSON: a number too large
        raise _bad_json("number_out_of_range", f"The body holds a number out of range: {e}") from None
    except msgspec.DecodeError as e:
        raise _bad_json("malformed_json", f"The body is not valid JSON: {e}") from None
    _check_nesting(data)
    return data


_decoder = msgspec.json.Decoder()


def _too_deep() -> ApiError:
    return _bad_json("too_deeply_nested", f"Arrays and objects nest at most {MAX_JSON_DEPTH} deep.")


def _check_nesting(data: Any) -> None:
    """Depth and NUL check of a decoded body, iteratively (a recursive walk is what deep input
    attacks)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise _bad_json("nul_in_string", "Strings may not contain the NUL character (\\u0000).")
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep()
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(v, str | dict | list):
                    stack.append((v, depth + 1))
                if isinstance(k, str) and "\x00" in k:
                    raise _bad_json("nul_in_string", "Strings may not contain the NUL character (\\u0000).")


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"The body is larger than {limit} bytes.")


class BodyStream:
    """A request's body as a stream that enforces, on every read, whatever the transfer encoding
    (Content-Length or chunked): at most `limit` bytes received (`too_large()` is raised the
    moment more arrived), no stall longer than `http_body_timeout_s`, and the whole body within
    `http_body_timeout_s` plus one second per `http_body_min_rate` bytes (a trickle is cut: 408).

    It offers what aiohttp's multipart reader needs of a stream, so a multipart body is bounded
    as a whole, its preamble, part headers and skipped parts included."""

    def __init__(self, request: web.Request, limit: int, too_large: Callable[[], Exception] | None = None) -> None:
        settings = request.app[SETTINGS]
        self._stream = request.content
        self._limit = limit
        self._too_large = too_large or (lambda: body_too_large(limit))
        self._stall_s = settings.http_body_timeout_s
        self._min_rate = settings.http_body_min_rate
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        if request.content_length is not None and request.content_length > limit:
            raise self._too_large()

    @property
    def received(self) -> int:
        return self._stream.total_bytes

    async def _within(self, read: Awaitable[T]) -> T:
        now = self._loop.time()
        deadline = min(now + self._stall_s, self._started + self._stall_s + self.received / self._min_rate)
        try:
            async with asyncio.timeout_at(deadline):
                result = await read
        except TimeoutError:
            raise ApiError(
                408,
                "body_timeout",
                "The request body arrived too slowly.",
                [Reason(code="body_timeout", message=f"Send the body at {self._min_rate} bytes a second at least.")],
            ) from None
        if self.received > self._limit:
            raise self._too_large()
        return result

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            return b"".join([chunk async for chunk in self])
        return await self._within(self._stream.read(n))

    async def readany(self) -> bytes:
        return await self._within(self._stream.readany())

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        return await self._within(self._stream.readline(max_line_length=max_line_length))

    async def readexactly(self, n: int) -> bytes:
        return await self._within(self._stream.readexactly(n))

    def at_eof(self) -> bool:
        return self._stream.at_eof()

    def unread_data(self, data: bytes) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._stream.unread_data(data)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.readany()
        if not chunk:
            raise StopAsyncIteration
        return chunk


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read at most `limit` bytes (refused the moment more arrived, never buffered whole), within
    the body deadlines of `BodyStream`."""
    return await BodyStream(request, limit).read()


async def read_small_form(request: web.Request, limit: int) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """A page's form (urlencoded or multipart) of at most `limit` bytes, read within the body
    deadlines: a form is small, so it gets one stall-length for the whole of it."""
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(limit)
    try:
        async with asyncio.timeout(request.app[SETTINGS].http_body_timeout_s):
            return await request.clone(client_max_size=limit).post()
    except TimeoutError:
        raise ApiError(408, "body_timeout", "The form arrived too slowly.") from None
    except web.HTTPRequestEntityTooLarge:
        raise body_too_large(limit) from None
    except (ValueError, HttpProcessingError) as e:
        raise ApiError(400, "malformed_form", f"The form cannot be read: {type(e).__name__}") from None


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
                statuses.setdefault(408, ErrorResponse)
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
                    "smartcarSignature": {
                        "type": "apiKey",
                        "in": "header",
                        "name": "SC-Signature",
                        "description": "hex HMAC-SHA256(Application Management Token, raw body), as Smartcar "
                        "signs its webhook deliveries.",
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
    408: "The body arrived too slowly",
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
