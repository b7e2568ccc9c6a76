"""`carmileage periods designate [--dry-run] [--json]` and `carmileage periods show ID`.

Connected cars upload no photos: their participations' start and end readings are designated from
the readings their provider streams, by the rule of `prorate.period_bounds` (the participation's
rule set, `[periods]`). Every evaluation round designates first; this command does the same on its
own (e.g. daily, so citizens see their period's readings early) and explains one participation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime

import asyncpg

from ingest.settings import load_settings
from prorate.calendar import seoul_date
from prorate.errors import ProrateError
from prorate.period_bounds import period_bounds
from prorate.rules import RuleSetError, rule_set_named
from storage.period_readings import Designation, PeriodFacts, designate, period_facts

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_ERROR = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("periods", help="designate and explain connected cars' start and end readings")
    psub = p.add_subparsers(dest="periods_command", required=True)
    d = psub.add_parser(
        "designate",
        help="point connected cars' participations at their start and end readings",
        description=(
            "For every participation of a car with a provider's consent: the earliest verified reading "
            "of its period becomes its start reading, and once the period has ended and settled, the "
            "latest becomes its end reading. Existing designations never move, except from a superseded "
            "reading to its correction. Idempotent; one transaction."
        ),
    )
    d.add_argument("--dry-run", action="store_true", help="report what would be designated, write nothing")
    d.add_argument("--json", action="store_true", help="print the counts as JSON")
    d.set_defaults(func=run_designate)
    s = psub.add_parser("show", help="one participation's period, readings and designations")
    s.add_argument("participation_id", type=int)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_show)


def designation_line(d: Designation, dry_run: bool) -> str:
    verb = "would designate" if dry_run else "designated"
    line = (
        f"{verb} {d.starts} start and {d.ends} end readings of connected cars "
        f"({d.corrections} moved to a correction) as of {d.as_of.isoformat()} in {d.seconds:.1f} s"
    )
    if d.unbounded:
        line += f"; {d.unbounded} participations have no period under their rule set"
    return line


async def _designate(dry_run: bool) -> Designation:
    conn = await asyncpg.connect(load_settings().database_url)
    try:
        return await designate(conn, dry_run=dry_run)
    finally:
        await conn.close()


def run_designate(args: argparse.Namespace) -> int:
    try:
        d = asyncio.run(_designate(args.dry_run))
    except (OSError, asyncpg.PostgresError) as e:
        print(f"carmileage periods designate: database error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, **d.as_dict()}))
    else:
        print(designation_line(d, args.dry_run))
    return EXIT_OK


def _iso(v: object) -> object:
    return v.isoformat() if isinstance(v, datetime) else v


def describe(f: PeriodFacts) -> dict[str, object]:
    """The period as data: bounds under the rule set, consents, readings and designation history."""
    p = f.participation
    out: dict[str, object] = {
        "participation_id": p["id"],
        "program": p["program"],
        "season_year": p["season_year"],
        "rule_set": p["rule_set"],
        "status": p["status"],
        "enrolled_on": p["enrolled_on"].isoformat(),
        "ended_on": p["ended_on"].isoformat() if p["ended_on"] else None,
    }
    try:
        b = period_bounds(p["program"], p["enrolled_on"], p["season_year"], rule_set_named(p["rule_set"]))
        out["period"] = {
            "first_day": b.first_day.isoformat(),
            "last_day": b.last_day.isoformat(),
            "end_designated_from": b.end_designated_from.isoformat(),
            # Where the period ends at an instant: its end reading is the first from it.
            "end_from": b.end_from.isoformat() if b.end_from else None,
            "end_until": b.end_until.isoformat() if b.end_until else None,
            "complete": b.complete_before(p["ended_on"]),
        }
    except (ProrateError, RuleSetError) as e:
        out["period"] = {"error": e.message}
    out["consents"] = [{k: _iso(c[k]) for k in ("provider", "granted_at", "withdrawn_at")} for c in f.consents]
    for stage, r in f.readings.items():
        out[f"{stage}_reading"] = (
            None
            if r is None
            else {
                "id": r["id"],
                "source": r["source"],
                "odometer_km": r["odometer_m"] / 1000,
                "recorded_on": seoul_date(r["recorded_at"]).isoformat(),
                "status": r["status"],
            }
        )
    out["designations"] = [
        {k: _iso(h[k]) for k in ("stage", "reading_id", "reason", "replaces_reading_id", "as_of", "designated_at")}
        for h in f.history
    ]
    return out


async def _show(pid: int) -> PeriodFacts | None:
    conn = await asyncpg.connect(load_settings().database_url)
    try:
        return await period_facts(conn, pid)
    finally:
        await conn.close()


def run_show(args: argparse.Namespace) -> int:
    try:
        f = asyncio.run(_show(args.participation_id))
    except (OSError, asyncpg.PostgresError) as e:
        print(f"carmileage periods show: database error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if f is None:
        print(f"carmileage periods show: no participation {args.participation_id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    d = describe(f)
    if args.json:
        print(json.dumps(d, ensure_ascii=False))
        return EXIT_OK
    period = d["period"]
    assert isinstance(period, dict)
    print(f"participation {d['participation_id']}: {d['program']} ({d['rule_set']}), {d['status']}, "
          f"enrolled {d['enrolled_on']}" + (f", ended {d['ended_on']}" if d["ended_on"] else ""))
    if "error" in period:
        print(f"  period: {period['error']}")
    else:
        print(f"  period: {period['first_day']} – {period['last_day']}; end reading designated from "
              f"{period['end_designated_from']}" + ("" if period["complete"] else " (ended before its period was complete)"))
        if period["end_from"]:
            print(f"  end: the first reading from {period['end_from']} until {period['end_until']}, "
                  "else the last within the period")
    consents = d["consents"]
    assert isinstance(consents, list)
    if not consents:
        print("  no provider consent: a photo participation (the photo flow sets its readings)")
    for c in consents:
        print(f"  consent of {c['provider']}: granted {c['granted_at']}"
              + (f", withdrawn {c['withdrawn_at']}" if c["withdrawn_at"] else ""))
    for stage in ("start", "end"):
        r = d[f"{stage}_reading"]
        if r is None:
            print(f"  {stage} reading: none yet")
        else:
            assert isinstance(r, dict)
            print(f"  {stage} reading: #{r['id']} {r['source']} {r['odometer_km']:,.3f} km on {r['recorded_on']} ({r['status']})")
    history = d["designations"]
    assert isinstance(history, list)
    for h in history:
        extra = f", replacing #{h['replaces_reading_id']}" if h["replaces_reading_id"] else ""
        print(f"  designated {h['stage']} #{h['reading_id']} by {h['reason']}{extra} at {h['designated_at']}")
    return EXIT_OK
