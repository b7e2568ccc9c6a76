"""`carmileage ocr calibrate`: refit the OCR's claim thresholds from what reviewers established.

Reviewers' accepts and corrections are kept as labels (`ocr_labels`: the photo, the true value,
what the OCR read). For every labelled photo the readers are run in claimed mode with the true
value and with wrong claims (one character changed, and the OCR's own misread when a reviewer
corrected it), and the evidence of every look is kept. The development photos are added as a
floor (`--dev`, by default `CARMILEAGE_OCR_DEV_MANIFEST` or ../shared/ocr-dev/manifest.csv): the
new thresholds may not confirm fewer of their true claims. `ocr.calibration.fit` then takes the
loosest thresholds that confirm no wrong claim at all, with one grid step of safety on each.

It prints the thresholds and the true- and false-accept rates before and after, per source
(labels, development) and kind, and refuses any change that would confirm more wrong claims.
`--write` stores the new thresholds (by default in the file the readers load: the one
`CARMILEAGE_OCR_THRESHOLDS` names, or the packaged ocr/models/claim_thresholds.json, to be
reviewed and deployed like code); without it nothing changes.

Exit status: 0 when the thresholds were kept or refitted, 2 when a refit was refused because
nothing confirms no wrong claim (a labelled false accept under the current thresholds: look at it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEV = ROOT.parent / "shared" / "ocr-dev" / "manifest.csv"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ocr", help="OCR maintenance: refit the claim thresholds from reviewers' labels")
    osub = p.add_subparsers(dest="ocr_command", metavar="OCR_COMMAND", required=True)
    c = osub.add_parser("calibrate", help="refit the claim thresholds from ocr_labels (development set as a floor)")
    c.add_argument("--kind", choices=["odometer", "plate", "both"], default="both")
    c.add_argument("--dev", type=Path, default=None, help="development manifest (path,kind,expected)")
    c.add_argument("--no-dev-floor", action="store_true", help="refit without the development photos")
    c.add_argument("--wrong", type=int, default=5, help="wrong claims tried per photo (one character changed)")
    c.add_argument("--limit", type=int, default=2000, help="most recent labelled photos per kind")
    c.add_argument("--min-photos", type=int, default=20, help="fewer photos of a kind: keep its thresholds")
    c.add_argument("--seed", type=int, default=16)
    c.add_argument("--write", nargs="?", const="", default=None, metavar="PATH",
                   help="store the refitted thresholds (in the file the readers load, or PATH)")
    c.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    c.set_defaults(func=run)


def _dev_manifest(args: argparse.Namespace) -> Path | None:
    if args.no_dev_floor:
        return None
    if args.dev is not None:
        return Path(args.dev)
    env = os.environ.get("CARMILEAGE_OCR_DEV_MANIFEST")
    return Path(env) if env else DEFAULT_DEV


async def labelled_photos(settings: Settings, kinds: list[str], limit: int) -> list[tuple[Any, bytes]]:
    """(label, photo bytes) for the most recent labelled photos of each kind; photos whose
    bytes are gone are skipped (a retention job may have removed them)."""
    import asyncpg

    from storage.blobs import BlobError, blob_store_from_settings
    from storage.disputes import labels_for_calibration

    out: list[tuple[Any, bytes]] = []
    blobs = blob_store_from_settings(settings)
    conn = await asyncpg.connect(settings.database_url)
    try:
        for kind in kinds:
            for label in await labels_for_calibration(conn, kind, limit):
                try:
                    out.append((label, await blobs.get(label["photo_sha256"])))
                except BlobError:
                    continue
    finally:
        await conn.close()
        await blobs.close()
    return out


def calibrate(
    labelled: list[tuple[Any, bytes]],
    dev: Path | None,
    kinds: list[str],
    *,
    wrong: int,
    seed: int,
    min_photos: int,
    progress: Any = None,
) -> tuple[Any, list[Any]]:
    """Gather the evidence and refit each kind; returns (thresholds after, refits)."""
    from ocr import calibration, warm_up

    warm_up()
    examples: list[calibration.Example] = []
    for i, (label, data) in enumerate(labelled):
        kind = label["kind"]
        if kind not in kinds:
            continue
        true_value = str(label["true_value"])
        examples.append(
            calibration.example(
                kind,
                "labels",
                label["photo_sha256"][:12],
                data,
                true_value,
                calibration.wrong_claims_for(kind, true_value, label["ocr_value"], wrong, seed),
            )
        )
        if progress:
            progress(f"labels: {i + 1}/{len(labelled)}")
    if dev is not None:
        examples += [e for e in calibration.examples_from_manifest(dev, wrong, seed) if e.kind in kinds]
    before = calibration.current()
    after = before
    refits = []
    for kind in kinds:
        refit = calibration.fit(kind, examples, before, min_examples=min_photos)  # type: ignore[arg-type]
        refits.append(refit)
        if refit.changed:
            after = after.model_copy(
                update={k: getattr(refit.after, k) for k in calibration.KIND_KEYS[kind]}  # type: ignore[index]
            )
    n_labels = sum(e.source == "labels" for e in examples)
    n_dev = sum(e.source == "development" for e in examples)
    if after != before:
        after = after.model_copy(
            update={"source": f"carmileage ocr calibrate {datetime.now(UTC):%Y-%m-%d}: "
                              f"{n_labels} labelled photos, {n_dev} development photos"}
        )
    return after, refits


def _report(refits: list[Any]) -> dict[str, Any]:
    from ocr.calibration import KIND_KEYS

    out: dict[str, Any] = {}
    for r in refits:
        out[r.kind] = {
            "before": {k: getattr(r.before, k) for k in KIND_KEYS[r.kind]},
            "after": {k: getattr(r.after, k) for k in KIND_KEYS[r.kind]},
            "changed": r.changed,
            "refused": r.refused,
            "rates_before": {k: v.as_dict() for k, v in sorted(r.rates_before.items())},
            "rates_after": {k: v.as_dict() for k, v in sorted(r.rates_after.items())},
        }
    return out


def _print_table(report: dict[str, Any]) -> None:
    for kind, r in report.items():
        print(f"{kind}:")
        for k in r["before"]:
            mark = "" if r["before"][k] == r["after"][k] else "   (changed)"
            print(f"  {k:<24} {r['before'][k]!s:>8} -> {r['after'][k]!s:<8}{mark}")
        print(f"  {'source':<22} {'true accepted':>24} {'false accepted':>24}")
        for src in r["rates_before"]:
            b, a = r["rates_before"][src], r["rates_after"][src]
            t = f"{b['true_accepted']}/{b['true_n']} -> {a['true_accepted']}/{a['true_n']}"
            f = f"{b['false_accepted']}/{b['false_n']} -> {a['false_accepted']}/{a['false_n']}"
            print(f"  {src:<22} {t:>24} {f:>24}")
        verdict = f"refused: {r['refused']}" if r["refused"] else ("refitted" if r["changed"] else "unchanged")
        print(f"  {verdict}")


def run(args: argparse.Namespace) -> int:
    from ocr import calibration

    kinds = ["odometer", "plate"] if args.kind == "both" else [args.kind]
    dev = _dev_manifest(args)
    if dev is not None and not dev.exists():
        print(
            f"carmileage ocr calibrate: the development manifest {dev} is missing; give --dev PATH "
            "(or --no-dev-floor to refit on reviewers' labels alone)",
            file=sys.stderr,
        )
        return 1
    settings = load_settings()
    labelled = asyncio.run(labelled_photos(settings, kinds, args.limit))

    def progress(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, end="\r")

    after, refits = calibrate(
        labelled, dev, kinds, wrong=args.wrong, seed=args.seed, min_photos=args.min_photos, progress=progress
    )
    report = _report(refits)
    written = None
    if args.write is not None and any(r.changed for r in refits):
        written = str(calibration.save(after, Path(args.write) if args.write else None))
    if args.json:
        print(json.dumps({"kinds": report, "thresholds": after.model_dump(), "written": written}))
    else:
        _print_table(report)
        if written:
            print(f"wrote {written}")
        elif any(r.changed for r in refits):
            print("not written (give --write to store the refitted thresholds)")
    unsafe = any(r.refused and r.refused.startswith(("no thresholds", "the refit")) for r in refits)
    return 2 if unsafe else 0
