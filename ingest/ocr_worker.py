"""The OCR workers: a process pool fed from the `ocr_jobs` table, off the event loop.

Each loop claims a job (storage.jobs), reads the two photos from the blob store, has the pool read
the odometer and the plate in separate processes, then decides in one transaction: a verified
reading, a dispute for a reviewer, or a retake. The pool (pebble) kills a reader that overruns
its timeout and replaces a process that died; the job then counts a failed attempt and is retried,
and after `ocr_max_attempts` it goes to review ('ocr_failed') instead of looping. A worker killed
outright leaves its job leased; the lease runs out and another worker (or the restarted service)
takes it again. A graceful stop hands unfinished jobs back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from pebble import ProcessExpired, ProcessPool
from prometheus_client import Counter, Gauge, Histogram

from ingest.settings import Settings
from ingest.state import BLOBS
from storage.blobs import BlobError, BlobStore
from storage.jobs import OcrJob, claim_job, fail_job, hand_back_jobs, queue_depth, renew_job
from storage.photos import JOBS_CHANNEL, get_submission

if TYPE_CHECKING:  # the readers load in the worker processes only
    from ocr.types import OdometerRead, PlateRead

log = logging.getLogger("carmileage.ocr")

OCR_SECONDS = Histogram(
    "carmileage_ocr_seconds",
    "Time to read one photo in a worker process",
    ["photo"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
DECISION_SECONDS = Histogram(
    "carmileage_photo_decision_seconds",
    "From upload to the machine's decision on a photo submission",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
)
DECISIONS = Counter("carmileage_photo_decisions_total", "Photo submissions decided by the machine", ["outcome"])
JOB_FAILURES = Counter("carmileage_ocr_job_failures_total", "OCR attempts that failed", ["kind"])
QUEUE_DEPTH = Gauge("carmileage_ocr_queue_depth", "OCR jobs queued or running")


# -- what runs in the worker processes ----------------------------------------------------------


def _warm_up() -> None:
    """Load the readers and their models once per process, so the first job does not pay for it."""
    import ocr

    ocr.warm_up()


def analyse_dashboard(data: bytes, claimed_km: int) -> dict[str, Any]:
    """Read the odometer (claimed mode); JSON-ready, with the image intake."""
    from ocr import read_odometer

    started = time.perf_counter()
    return _as_json(read_odometer(data, claimed_km=claimed_km), data, started)


def analyse_plate(data: bytes, enrolled_plate: str) -> dict[str, Any]:
    """Read the plate, with the enrolled plate as the claim."""
    from ocr import read_plate

    started = time.perf_counter()
    return _as_json(read_plate(data, claimed_plate=enrolled_plate), data, started)


def _as_json(read: OdometerRead | PlateRead, data: bytes, started: float) -> dict[str, Any]:
    """A read as the job table stores it: the read, its image intake and the time it took."""
    from ocr import inspect_image

    intake = read.intake or inspect_image(data)
    return {
        "read": read.model_dump(mode="json", exclude={"intake"}),
        "intake": intake.model_dump(mode="json"),
        "seconds": time.perf_counter() - started,
    }


# -- the component ------------------------------------------------------------------------------


Reader = Callable[[bytes, Any], dict[str, Any]]


class OcrFailure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class OcrWorkers:
    """Claims jobs and runs them on a process pool; `workers` jobs at a time."""

    name = "ocr_workers"

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        blobs: BlobStore,
        *,
        readers: tuple[Reader, Reader] | None = None,
    ) -> None:
        """`readers` (dashboard, plate) run in the pool: picklable top-level functions."""
        self.settings = settings
        self.readers = readers or (analyse_dashboard, analyse_plate)
        self.pool = pool
        self.blobs = blobs
        self.workers = settings.ocr_workers or os.cpu_count() or 1
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self._procs: ProcessPool | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._in_flight: dict[int, OcrJob] = {}

    # lifecycle

    async def start(self) -> None:
        self._procs = ProcessPool(
            max_workers=self.workers,
            initializer=_warm_up,
            context=multiprocessing.get_context("spawn"),
        )
        try:
            self._listener = await asyncpg.connect(self.settings.database_url)
            await self._listener.add_listener(JOBS_CHANNEL, self._notified)
        except Exception:
            log.warning("cannot LISTEN for new OCR jobs; polling only", exc_info=True)
            self._listener = None
        self._loops = [
            asyncio.create_task(self._loop(f"{self.identity}:{i}"), name=f"ocr-loop-{i}")
            for i in range(self.workers)
        ]
        log.info("OCR workers started: %d processes", self.workers)

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        # Jobs in flight finish if they can within the grace period (the service bounds stop()).
        try:
            await asyncio.gather(*self._loops, return_exceptions=True)
        finally:
            await self._hand_back()
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    await self._listener.close()
            if self._procs is not None:
                self._procs.stop()
                await asyncio.to_thread(self._procs.join, 10)

    async def _hand_back(self) -> None:
        """Unfinished jobs are queued again at once (without counting the attempt) rather than
        waiting for their lease to run out."""
        if not self._in_flight:
            return
        with contextlib.suppress(Exception):
            await hand_back_jobs(self.pool, list(self._in_flight))

    async def readiness(self) -> tuple[bool, str]:
        depth = await queue_depth(self.pool)
        QUEUE_DEPTH.set(depth)
        alive = self._procs is not None and self._procs.active and any(not t.done() for t in self._loops)
        return alive, f"{'ok' if alive else 'stopped'}; {depth} queued"

    def _notified(self, *args: Any) -> None:
        self._wake.set()

    # the loop

    async def _loop(self, worker: str) -> None:
        while not self._stopping.is_set():
            try:
                async with self.pool.acquire() as conn:
                    job = await claim_job(conn, worker, self.settings.ocr_lease_s)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("cannot claim an OCR job: %s", e)
                await self._sleep(2.0)
                continue
            if job is None:
                self._wake.clear()
                await self._sleep(1.0)
                continue
            self._in_flight[job.id] = job
            try:
                await self._run(job, worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database error while deciding: the lease runs out and the job is retried.
                log.exception("OCR job %d could not be finished", job.id)
                await self._sleep(1.0)
            finally:
                self._in_flight.pop(job.id, None)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _renew(self, job: OcrJob, worker: str) -> None:
        period = max(1.0, self.settings.ocr_lease_s / 3)
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(Exception):
                await renew_job(self.pool, job.id, worker, self.settings.ocr_lease_s)

    async def _run(self, job: OcrJob, worker: str) -> None:
        from ingest.photo_decisions import decide_submission, send_to_review_failed

        sub = await get_submission(self.pool, job.submission_id)
        assert sub is not None
        if job.exhausted:
            await send_to_review_failed(self.pool, job, job.last_error or "the worker died while reading")
            return
        renewer = asyncio.create_task(self._renew(job, worker))
        try:
            dashboard, plate = await self._analyse(sub)
        except OcrFailure as e:
            JOB_FAILURES.labels(e.kind).inc()
            log.warning("OCR job %d attempt %d failed: %s", job.id, job.attempts, e)
            if self._stopping.is_set() and e.kind == "pool_stopped":
                return
            retry = await fail_job(self.pool, job, f"{e.kind}: {e}", backoff_s=min(30.0, 2.0**job.attempts))
            if not retry:
                await send_to_review_failed(self.pool, job, f"{e.kind}: {e}")
            return
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        outcome = await decide_submission(self.pool, self.settings, job, dashboard, plate)
        DECISIONS.labels(outcome).inc()
        uploaded: datetime = sub["uploaded_at"]
        DECISION_SECONDS.observe(max(0.0, time.time() - uploaded.timestamp()))

    async def _analyse(self, sub: asyncpg.Record) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            dash_bytes = await self.blobs.get(sub["dashboard_sha256"])
            plate_bytes = await self.blobs.get(sub["plate_sha256"])
        except BlobError as e:
            raise OcrFailure("photo_missing", str(e)) from None
        assert self._procs is not None
        timeout = self.settings.ocr_task_timeout_s
        try:
            fd = self._procs.schedule(self.readers[0], (dash_bytes, sub["claimed_km"]), timeout=timeout)
            fp = self._procs.schedule(self.readers[1], (plate_bytes, sub["plate"]), timeout=timeout)
        except RuntimeError as e:  # the pool is stopping
            raise OcrFailure("pool_stopped", str(e)) from None
        results = await asyncio.gather(asyncio.wrap_future(fd), asyncio.wrap_future(fp), return_exceptions=True)
        for r in results:
            if isinstance(r, FutureTimeout | TimeoutError):
                raise OcrFailure("timeout", f"a reader ran longer than {timeout:g} s")
            if isinstance(r, ProcessExpired):
                raise OcrFailure("worker_died", f"the reader process died (exit code {r.exitcode})")
            if isinstance(r, BaseException):
                raise OcrFailure("error", f"{type(r).__name__}: {r}")
        dash, plate = results
        assert isinstance(dash, dict) and isinstance(plate, dict)
        OCR_SECONDS.labels("dashboard").observe(dash["seconds"])
        OCR_SECONDS.labels("plate").observe(plate["seconds"])
        return dash, plate


def create_component(settings: Settings, pool: asyncpg.Pool, app: web.Application) -> OcrWorkers | None:
    """The service's OCR worker pool (see ingest.service.COMPONENT_FACTORIES), on the app's blob
    store: the uploads write where the workers read."""
    return OcrWorkers(settings, pool, app[BLOBS])

