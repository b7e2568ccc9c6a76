"""`carmileage evaluate --round 2022-05 [--dry-run]`: run an evaluation round.

The round first designates connected cars' start and end readings (`carmileage periods designate`,
in the same transaction), then evaluates every participation whose end reading was verified before
the round's cutoff (1st of the round's month, 00:00 Asia/Seoul) and has no result for the same
inputs yet; results and their outbox rows are written in one transaction. Participations whose inputs cannot be
computed, or that the rule set refuses to pay (a period too short, a partial season, a transferred
car, ...), are listed as not computable with a reason code and get nothing written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
from tqdm import tqdm

from ingest.commands.periods import designation_line
from ingest.settings import load_settings
from prorate.errors import ProrateError
from prorate.rounds import Round, parse_round
from storage.evaluation import StagedRound, evaluate_round

EXIT_OK = 0
#: The round ran, but some participations could not be evaluated (they are listed).
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run an evaluation round: period results and their outbox rows",
        description=(
            "Designate connected cars' start and end readings, then evaluate every participation whose end "
            "reading was verified before the round's cutoff and that has no result for the same inputs "
            "yet. Exit status: 0 done; 1 done, but some "
            "participations are not computable (listed on stderr with a reason code; nothing is paid for "
            "them); 2 usage error."
        ),
    )
    p.add_argument("--round", required=True, metavar="YYYY-MM", help="a round month, e.g. 2022-05")
    p.add_argument("--dry-run", action="store_true", help="compute and report, write nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--operator", help="who runs the round (recorded with the run)")
    p.add_argument("--chunk-size", type=int, default=100_000, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def summary(staged: StagedRound, dry_run: bool) -> dict[str, object]:
    return {
        "round": staged.round.name,
        "cutoff": staged.round.cutoff.isoformat(),
        "previous_round": staged.round.previous().name,
        "dry_run": dry_run,
        "candidates": staged.candidates,
        "new_results": staged.to_write - staged.superseding,
        "superseding": staged.superseding,
        "unchanged": staged.unchanged,
        "waiting_for_season_end": staged.waiting,
        "problems": len(staged.problems),
        "problems_by_code": dict(sorted(Counter(code for _, code, _ in staged.problems).items())),
        "points": staged.points,
        "special_points": staged.special_points,
        "designated": staged.designation.as_dict() if staged.designation else None,
    }


async def _run(args: argparse.Namespace, rnd: Round) -> StagedRound:
    settings = load_settings()
    conn = await asyncpg.connect(settings.database_url)
    bar: tqdm[Any] | None = None

    def staged_cb(s: StagedRound) -> None:
        nonlocal bar
        if not args.dry_run:
            bar = tqdm(total=s.to_write, unit="result", desc=f"round {rnd.name}", file=sys.stderr, disable=None)

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

    try:
        return await evaluate_round(
            conn,
            rnd,
            dry_run=args.dry_run,
            chunk_size=args.chunk_size,
            on_staged=staged_cb,
            on_progress=progress,
            operator=args.operator,
        )
    finally:
        if bar is not None:
            bar.close()
        await conn.close()


def run(args: argparse.Namespace) -> int:
    try:
        rnd = parse_round(args.round)
    except ProrateError as e:
        print(f"carmileage evaluate: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    if rnd.cutoff > datetime.now(UTC) and not args.dry_run:
        print(
            f"carmileage evaluate: round {rnd.name} cannot run before its cutoff {rnd.cutoff.isoformat()} "
            "(use --dry-run to preview)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        staged = asyncio.run(_run(args, rnd))
    except (OSError, asyncpg.PostgresError) as e:
        print(f"carmileage evaluate: database error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for pid, code, message in staged.problems:
        print(f"participation {pid}: {code}: {message}", file=sys.stderr)
    s = summary(staged, args.dry_run)
    if args.json:
        print(json.dumps(s))
    else:
        verb = "would write" if args.dry_run else "wrote"
        if staged.designation is not None:
            print(designation_line(staged.designation, args.dry_run))
        print(
            f"round {rnd.name} (cutoff {rnd.cutoff.isoformat()}): {staged.candidates} candidates; {verb} "
            f"{s['new_results']} new and {staged.superseding} superseding results; {staged.unchanged} unchanged; "
            f"{staged.waiting} season participations wait for their season's end; "
            f"{len(staged.problems)} not computable (nothing paid for them); points {staged.points:,}, "
            f"special points {staged.special_points:,}"
        )
    return EXIT_PROBLEMS if staged.problems else EXIT_OK
