-- Photo registration and the reviewer dispute queue: refines the base schema's photos,
-- photo_submissions, ocr_jobs and disputes, and adds the labelled data reviewers produce.

-- The perceptual hash as a 64-bit integer, so reuse is a Hamming-distance scan in SQL
-- (bit_count of the XOR) rather than a fetch of every hash.
alter table photos add column phash_bits bigint;
create index photos_phash_bits on photos (phash_bits) where phash_bits is not null;

alter table photo_submissions
    add column uploaded_by text,
    add column request_id  text,
    -- Every input and outcome of the machine's decision: OCR reads, window, reuse, checks.
    add column decision    jsonb,
    -- A reviewer's reason when the submission was rejected or a retake was requested.
    add column rejection_reason text;

-- Sending the same photos again for the same stage is the same submission (idempotent).
create unique index photo_submissions_same_photos
    on photo_submissions (participation_id, stage, dashboard_sha256, plate_sha256);
create index photo_submissions_participation on photo_submissions (participation_id, id);
create index photo_submissions_dashboard on photo_submissions (dashboard_sha256);
create index photo_submissions_plate on photo_submissions (plate_sha256);

-- Jobs are ordered by id (creation order); a queued job with lease_until in the future waits
-- (backoff after a failed attempt).
create index ocr_jobs_due on ocr_jobs (id) where status in ('queued', 'running');

alter table disputes
    add column claimed_at timestamptz,
    add column resolution_note text,
    -- Whatever the raiser knew (e.g. the readings around a rollback), shown to the reviewer.
    add column details jsonb;

alter table disputes add constraint disputes_rejection_reason check (
    resolution is distinct from 'rejected'
    or resolution_reason in ('unreadable', 'trip_instead_of_odo', 'other_car', 'reused_photo',
                             'out_of_window', 'suspected_tampering'));
alter table disputes add constraint disputes_resolved_complete check (
    (status = 'resolved') = (resolution is not null and resolved_by is not null and resolved_at is not null));

create index disputes_open_district on disputes (district, created_at) where status = 'open';
create index disputes_open_reasons on disputes using gin (reasons) where status = 'open';
create index disputes_submission on disputes (submission_id);
-- At most one open dispute per photo submission.
create unique index disputes_one_open_per_submission on disputes (submission_id)
    where status = 'open' and submission_id is not null;

-- What reviewers confirmed or corrected, kept as labelled data for improving the OCR.
create table ocr_labels (
    id            bigint generated always as identity primary key,
    photo_sha256  text not null references photos (sha256),
    kind          text not null check (kind in ('odometer', 'plate')),
    true_value    text not null,
    ocr_value     text,
    source        text not null check (source in ('accepted', 'corrected')),
    dispute_id    bigint references disputes (id),
    labelled_by   text not null,
    labelled_at   timestamptz not null default now()
);
create index ocr_labels_photo on ocr_labels (photo_sha256);
