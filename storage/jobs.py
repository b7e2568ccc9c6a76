"""The OCR job queue: one row per photo submission in `ocr_jobs`.

Workers claim the oldest due job with `FOR UPDATE SKIP LOCKED`, so any number of worker
processes (on any number of machines) share the table without handing a job to two of them.
A claim takes a lease and counts an attempt. A worker that dies leaves its lease to expire, after
which the job is claimed again; a job that failed `max_attempts` times (a poison image that
crashes or hangs the reader) is not retried again but handed to review by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from storage.db import Conn


@dataclass(frozen=True)
class OcrJob:
    id: int
    submission_id: int
    attempts: int
    max_attempts: int
    last_error: str | None

    @property
    def exhausted(self) -> bool:
        """More attempts were started than allowed: earlier ones died without a trace."""
        return self.attempts > self.max_attempts


def _job(r: asyncpg.Record) -> OcrJob:
    return OcrJob(r["id"], r["submission_id"], r["attempts"], r["max_attempts"], r["last_error"])


async def claim_job(conn: Conn, worker: str, lease_s: float) -> OcrJob | None:
    """The oldest due job, now leased to `worker`; None when nothing is due."""
    row = await conn.fetchrow(
        """update ocr_jobs j
           set status = 'running', attempts = j.attempts + 1, worker = $1,
               lease_until = now() + make_interval(secs => $2), updated_at = now()
           where j.id = (
               select id from ocr_jobs
               where (status = 'queued' and (lease_until is null or lease_until <= now()))
                  or (status = 'running' and lease_until < now())
               order by id
               for update skip locked
               limit 1)
           returning j.*""",
        worker,
        lease_s,
    )
    return _job(row) if row is not None else None


async def renew_job(conn: Conn | asyncpg.Pool, job_id: int, worker: str, lease_s: float) -> bool:
    """Extend the lease of a job still held; False when it was lost (expired and taken)."""
    status = await conn.execute(
        """update ocr_jobs set lease_until = now() + make_interval(secs => $3), updated_at = now()
           where id = $1 and worker = $2 and status = 'running'""",
        job_id,
        worker,
        lease_s,
    )
    return bool(status.endswith(" 1"))


async def complete_job(conn: Conn, job_id: int, result: dict[str, Any] | None) -> None:
    await conn.execute(
        """update ocr_jobs set status = 'done', result = $2, lease_until = null, updated_at = now()
           where id = $1""",
        job_id,
        result,
    )


async def fail_job(
    conn: Conn | asyncpg.Pool, job: OcrJob, error: str, backoff_s: float
) -> bool:
    """Record a failed attempt. True when the job will be retried after `backoff_s`; False when
    its attempts are used up (status 'failed'): the caller sends the submission to review."""
    retry = job.attempts < job.max_attempts
    await conn.execute(
        """update ocr_jobs
           set status = $2, last_error = $3, updated_at = now(),
               lease_until = case when $2 = 'queued' then now() + make_interval(secs => $4) else null end
           where id = $1""",
        job.id,
        "queued" if retry else "failed",
        error[:2000],
        backoff_s,
    )
    return retry


async def hand_back_jobs(conn: Conn | asyncpg.Pool, job_ids: list[int]) -> None:
    """Queue jobs a stopping worker still held again at once, without counting the attempt, rather
    than leaving them to wait for their lease to run out."""
    await conn.execute(
        """update ocr_jobs set status = 'queued', lease_until = null, attempts = greatest(attempts - 1, 0)
           where id = any($1::bigint[]) and status = 'running'""",
        job_ids,
    )


async def give_up_job(conn: Conn, job_id: int, error: str) -> None:
    await conn.execute(
        """update ocr_jobs set status = 'failed', last_error = $2, lease_until = null, updated_at = now()
           where id = $1""",
        job_id,
        error[:2000],
    )


async def queue_depth(conn: Conn | asyncpg.Pool) -> int:
    n: int = await conn.fetchval("select count(*) from ocr_jobs where status in ('queued', 'running')")
    return n


async def job_of_submission(conn: Conn | asyncpg.Pool, submission_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from ocr_jobs where submission_id = $1", submission_id)
