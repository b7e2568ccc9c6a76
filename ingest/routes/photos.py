"""Citizens' photo registration: upload a dashboard and a plate photo, then follow the outcome.

An upload is answered 202 only after both photos are durable in the blob store and the submission
and its OCR job are committed, so an answered upload is never lost; the OCR workers decide later.
"""

from __future__ import annotations

import asyncio
import io
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any, Literal, cast

import asyncpg
from aiohttp import MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel

from ingest.api import ApiError, BodyStream, Reason, path_id, respond
from ingest.auth import Principal, check_owner
from ingest.pages.messages import reason_text, status_text
from ingest.routes import api
from ingest.state import BLOBS, POOL, REQUEST_ID, SETTINGS
from storage.audit import write_audit
from storage.blobs import BlobError, sha256_of
from storage.photos import NewSubmission, create_submission, get_submission, record_photo, submissions_of
from storage.vehicles import get_participation

UPLOAD_SLOTS = web.AppKey("upload_slots", asyncio.Semaphore)

_TEXT_LIMIT = 256
#: The text fields and the multipart framing, beside the two photos.
_FORM_OVERHEAD = 64 * 1024
PHOTO_PARTS = ("dashboard", "plate")
TEXT_PARTS = ("stage", "claimed_km")
#: The formats the readers take (ocr.intake decides which a photo is), as stored and served.
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "heif": "image/heic"}
_CLAIMED_KM = re.compile(r"^\d{1,7}$")


def photo_intake() -> ModuleType:
    """`ocr.intake`, which decides what a photo is and how large it may be, for uploads and readers
    alike. Imported on the first upload, not with the app: it loads OpenCV and the OCR package
    (0.3 s and 40 MB that a process without uploads never needs)."""
    from ocr import intake

    return intake


def upload_limit() -> int:
    """The largest upload body: two photos at the readers' limit, the text fields and framing."""
    return 2 * photo_intake().MAX_BYTES + _FORM_OVERHEAD


# -- models ---------------------------------------------------------------------------------


class ReasonOut(BaseModel):
    code: str
    message: str
    message_ko: str


class SubmissionOut(BaseModel):
    id: int
    participation_id: int
    stage: Literal["start", "mid", "end"]
    claimed_km: int | None
    status: Literal["processing", "accepted", "in_review", "rejected", "retake"]
    status_message: str
    status_message_ko: str
    reasons: list[ReasonOut]
    rejection_reason: ReasonOut | None
    uploaded_at: datetime
    decided_at: datetime | None
    reading_id: int | None
    dashboard_sha256: str
    plate_sha256: str


class UploadAccepted(BaseModel):
    id: int
    status: str
    status_url: str
    #: True when these photos had already been sent for this stage: the earlier submission.
    repeated: bool


class SubmissionList(BaseModel):
    submissions: list[SubmissionOut]


def _reason(code: str) -> ReasonOut:
    return ReasonOut(code=code, message=reason_text(code, "en"), message_ko=reason_text(code, "ko"))


def submission_out(r: asyncpg.Record) -> SubmissionOut:
    return SubmissionOut(
        id=r["id"],
        participation_id=r["participation_id"],
        stage=r["stage"],
        claimed_km=r["claimed_km"],
        status=r["status"],
        status_message=status_text(r["status"], "en"),
        status_message_ko=status_text(r["status"], "ko"),
        reasons=[_reason(c) for c in r["reasons"]],
        rejection_reason=_reason(r["rejection_reason"]) if r["rejection_reason"] else None,
        uploaded_at=r["uploaded_at"],
        decided_at=r["decided_at"],
        reading_id=r["reading_id"],
        dashboard_sha256=r["dashboard_sha256"],
        plate_sha256=r["plate_sha256"],
    )


# -- reading the upload -----------------------------------------------------------------------


@dataclass
class Photo:
    data: bytes
    sha256: str
    content_type: str
    width: int
    height: int


@dataclass
class UploadForm:
    photos: dict[str, Photo]
    stage: str
    claimed_km: int
    extra: dict[str, str] = field(default_factory=dict)


def _refuse(status: int, code: str, field_name: str | None, message: str | None = None) -> ApiError:
    text = message or reason_text(code)
    return ApiError(
        status,
        code,
        text,
        [Reason(code=code, message=text, message_ko=reason_text(code, "ko"), field=field_name)],
    )


def sniff_photo(data: bytes) -> str | None:
    """'jpeg' | 'png' | 'heif' by content (never by the file name or the declared type), as the
    readers' intake sniffs it; None for anything the readers do not take."""
    fmt: str | None = photo_intake().sniff_format(data)
    return fmt if fmt in CONTENT_TYPES else None


def probe_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height from the header alone (no decoding); None when the header is unreadable."""
    from PIL import Image

    max_pixels: int = photo_intake().MAX_PIXELS
    if fmt == "heif":
        import pillow_heif

        pillow_heif.register_heif_opener()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        return (max_pixels + 1, 1)  # far over the limit: Pillow refused even to open it
    except Exception:
        return None
    return (w, h) if w > 0 and h > 0 else None


def without_personal_metadata(data: bytes) -> bytes | None:
    """The photo as stored: location and other personal EXIF/XMP removed, pixels untouched."""
    stripped: bytes | None = photo_intake().strip_metadata(data)
    return stripped


async def _read_part(part: Any, limit: int, name: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await part.read_chunk(256 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            if name in PHOTO_PARTS:
                raise _refuse(413, "photo_too_large", name)
            raise _refuse(422, "invalid_request", name, f"The field {name} is too long.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload_form(request: web.Request, extra_fields: frozenset[str] = frozenset()) -> UploadForm:
    """Parse and check the multipart body while streaming it; every refusal names its field."""
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "Send the photos as multipart/form-data.")
    # (in a thread: the first upload's import of the intake must not stall the event loop)
    intake = await asyncio.to_thread(photo_intake)
    raw, declared = await _read_parts(request, extra_fields, intake.MAX_BYTES)
    _check_complete(raw)
    photos = {name: await _checked_photo(name, raw[name], declared[name], intake.MAX_PIXELS) for name in PHOTO_PARTS}
    texts = {n: raw[n].decode("utf-8", errors="replace").strip() for n in (*TEXT_PARTS, *extra_fields) if n in raw}
    if texts["stage"] not in ("start", "mid", "end"):
        raise _refuse(422, "invalid_stage", "stage")
    if not _CLAIMED_KM.match(texts["claimed_km"]):
        raise _refuse(422, "invalid_claimed_km", "claimed_km")
    return UploadForm(
        photos=photos,
        stage=texts["stage"],
        claimed_km=int(texts["claimed_km"]),
        extra={n: texts[n] for n in extra_fields if n in texts},
    )


async def _read_parts(
    request: web.Request, extra_fields: frozenset[str], photo_limit: int
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The parts the form knows, each within its limit: (bytes, declared content type) by name.
    The whole body, whatever its transfer encoding (chunked has no Content-Length to refuse up
    front), stops at the form's limit: preamble, part headers and skipped parts count too."""
    body = BodyStream(
        request,
        upload_limit(),
        lambda: _refuse(413, "photo_too_large", None, "The upload is larger than two 15 MB photos."),
    )
    try:
        reader = MultipartReader(request.headers, cast(StreamReader, body))
    except (ValueError, AssertionError, KeyError) as e:
        raise ApiError(400, "malformed_multipart", f"The multipart body cannot be read: {e}") from None
    raw: dict[str, bytes] = {}
    declared: dict[str, str] = {}
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            name = getattr(part, "name", None)
            if name is None:
                raise ApiError(400, "malformed_multipart", "A part has no name.")
            if name not in PHOTO_PARTS and name not in TEXT_PARTS and name not in extra_fields:
                await part.release()
                continue
            if name in raw:
                raise _refuse(422, "duplicate_part", name, f"The part {name} was sent twice.")
            limit = photo_limit if name in PHOTO_PARTS else _TEXT_LIMIT
            declared[name] = part.headers.get("Content-Type", "")
            raw[name] = await _read_part(part, limit, name)
    except ApiError:
        raise
    except (ValueError, AssertionError, UnicodeDecodeError) as e:
        raise ApiError(400, "malformed_multipart", f"The multipart body cannot be read: {e}") from None
    except HttpProcessingError:  # a boundary or part header line longer than aiohttp reads
        raise ApiError(400, "malformed_multipart", "The multipart body has a line too long to be a header.") from None
    return raw, declared


def _check_complete(raw: dict[str, bytes]) -> None:
    missing = [n for n in (*PHOTO_PARTS, *TEXT_PARTS) if n not in raw or (n in PHOTO_PARTS and not raw[n])]
    if missing:
        raise ApiError(
            422,
            "missing_part",
            "Send a dashboard photo, a plate photo, the stage and the claimed distance.",
            [
                Reason(code="missing_part", message=f"{n} is required", message_ko=f"{n} 항목이 필요합니다", field=n)
                for n in missing
            ],
        )


async def _checked_photo(name: str, data: bytes, declared_type: str, max_pixels: int) -> Photo:
    """One photo part: an image by its content (whatever it was declared), within the pixel
    limit, stored without personal metadata."""
    ctype = declared_type.split(";")[0].strip().lower()
    if ctype and not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise _refuse(415, "unsupported_media_type", name, f"The {name} part must be an image, not {ctype}.")
    fmt = sniff_photo(data)
    if fmt is None:
        raise _refuse(422, "not_an_image", name)
    size = await asyncio.to_thread(probe_size, data, fmt)
    if size is None:
        raise _refuse(422, "not_an_image", name)
    if size[0] * size[1] > max_pixels:
        raise _refuse(422, "too_many_pixels", name)
    # Stored and shown without where it was taken (docs/photos.md, "Personal data"); the
    # content hash is of these bytes, the ones kept.
    clean = await asyncio.to_thread(without_personal_metadata, data)
    if clean is None:
        raise _refuse(422, "not_an_image", name)
    return Photo(clean, sha256_of(clean), CONTENT_TYPES[fmt], size[0], size[1])


async def check_participation(request: web.Request, principal: Principal, participation_id: int, stage: str | None) -> asyncpg.Record:
    """The participation exists, is the caller's, is running, and the stage is still open."""
    p = await get_participation(request.app[POOL], participation_id)
    if p is None:
        raise ApiError(404, "participation_not_found", "No participation has this id.")
    check_owner(principal, p["owner_id"])
    if p["status"] != "active":
        raise ApiError(409, "participation_ended", "This participation has ended.")
    if stage in ("start", "end") and p[f"{stage}_reading_id"] is not None:
        raise _refuse(409, "stage_already_verified", "stage")
    return p


async def store_upload(
    request: web.Request, principal: Principal, participation_id: int, form: UploadForm
) -> tuple[asyncpg.Record, bool]:
    """Make both photos durable, then commit the submission and its job; (row, created)."""
    blobs = request.app[BLOBS]
    for photo in form.photos.values():
        try:
            await blobs.put(photo.sha256, photo.data)
        except (OSError, BlobError) as e:
            raise ApiError(503, "photo_store_unavailable", f"The photo could not be stored: {type(e).__name__}") from None
    settings = request.app[SETTINGS]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        for photo in form.photos.values():
            await record_photo(
                conn,
                sha256=photo.sha256,
                content_type=photo.content_type,
                size_bytes=len(photo.data),
                width=photo.width,
                height=photo.height,
            )
        row, created = await create_submission(
            conn,
            NewSubmission(
                participation_id=participation_id,
                stage=form.stage,
                claimed_km=form.claimed_km,
                dashboard_sha256=form.photos["dashboard"].sha256,
                plate_sha256=form.photos["plate"].sha256,
                uploaded_by=principal.subject,
                request_id=request.get(REQUEST_ID),
            ),
            max_attempts=settings.ocr_max_attempts,
        )
        if created:
            await write_audit(
                conn,
                actor_role=principal.role,
                actor_id=principal.subject,
                action="submission.create",
                entity="photo_submission",
                entity_id=str(row["id"]),
                before=None,
                after={
                    "participation_id": participation_id,
                    "stage": form.stage,
                    "claimed_km": form.claimed_km,
                    "dashboard_sha256": row["dashboard_sha256"],
                    "plate_sha256": row["plate_sha256"],
                },
                request_id=request.get(REQUEST_ID),
            )
    return row, created


# -- operations -----------------------------------------------------------------------------

_UPLOAD_SCHEMA = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["dashboard", "plate", "stage", "claimed_km"],
            "properties": {
                "dashboard": {
                    "type": "string",
                    "format": "binary",
                    "description": "Odometer photo: JPEG, PNG or HEIC, at most 15 MB and 40 megapixels.",
                },
                "plate": {"type": "string", "format": "binary", "description": "Licence-plate photo, same limits."},
                "stage": {"type": "string", "enum": ["start", "mid", "end"]},
                "claimed_km": {
                    "type": "string",
                    "pattern": r"^\d{1,7}$",
                    "description": "The total distance the odometer shows, in whole km.",
                },
            },
        },
        "encoding": {
            "dashboard": {"contentType": "image/jpeg, image/png, image/heic, image/heif"},
            "plate": {"contentType": "image/jpeg, image/png, image/heic, image/heif"},
        },
    }
}


@api.operation(
    "POST",
    "/v1/participations/{id}/photos",
    summary="Register a dashboard (odometer) and a licence-plate photo",
    responses={202: UploadAccepted, 404: None, 408: None, 409: None, 413: None, 415: None, 422: None, 503: None},
    roles={"citizen"},
    tags=["photos"],
    request_content=_UPLOAD_SCHEMA,
)
async def upload_photos(request: web.Request, principal: Principal, body: None) -> web.Response:
    """Answers 202 once both photos and the OCR job are durably stored; follow `status_url`.
    The same photos sent again for the same stage answer with the earlier submission."""
    participation_id = path_id(request)
    await check_participation(request, principal, participation_id, None)
    async with request.app[UPLOAD_SLOTS]:
        form = await read_upload_form(request)
        await check_participation(request, principal, participation_id, form.stage)
        row, created = await store_upload(request, principal, participation_id, form)
    url = f"/v1/submissions/{row['id']}"
    return respond(
        UploadAccepted(id=row["id"], status=row["status"], status_url=url, repeated=not created),
        202,
        headers={"Location": url},
    )


async def load_submission(request: web.Request, principal: Principal, submission_id: int) -> asyncpg.Record:
    s = await get_submission(request.app[POOL], submission_id)
    if s is None:
        raise ApiError(404, "submission_not_found", "No submission has this id.")
    if principal.role == "citizen" and s["owner_id"] != principal.subject:
        raise ApiError(403, "not_your_submission", "This submission belongs to someone else.")
    return s


@api.operation(
    "GET",
    "/v1/submissions/{id}",
    summary="A photo submission's status: processing, accepted, in_review, rejected or retake",
    responses={200: SubmissionOut, 404: None},
    roles={"citizen", "reviewer", "operator"},
    tags=["photos"],
)
async def show_submission(request: web.Request, principal: Principal, body: None) -> web.Response:
    return respond(submission_out(await load_submission(request, principal, path_id(request))))


@api.operation(
    "GET",
    "/v1/participations/{id}/submissions",
    summary="A participation's photo submissions, newest first",
    responses={200: SubmissionList, 404: None},
    roles={"citizen", "reviewer", "operator"},
    tags=["photos"],
)
async def list_submissions(request: web.Request, principal: Principal, body: None) -> web.Response:
    pid = path_id(request)
    p = await get_participation(request.app[POOL], pid)
    if p is None:
        raise ApiError(404, "participation_not_found", "No participation has this id.")
    check_owner(principal, p["owner_id"])
    rows = await submissions_of(request.app[POOL], pid)
    return respond(SubmissionList(submissions=[submission_out(r) for r in rows]))


def install_plain_routes(app: web.Application) -> None:
    """Not routes: the upload slots every photo route shares (the blob store is the app's own)."""
    app[UPLOAD_SLOTS] = asyncio.Semaphore(app[SETTINGS].upload_concurrency)
