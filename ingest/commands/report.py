"""`carmileage report districts --year 2022 [--csv|--json]`: per 자치구 statistics for the year."""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import sys
from decimal import Decimal

import asyncpg

from ingest.settings import load_settings
from storage.reports import DistrictRow, district_report

FIELDS = (
    "district",
    "members",
    "new_members",
    "ended_participations",
    "results",
    "verified_reduction_km",
    "points",
    "special_points",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="reports for operators and the city")
    rsub = p.add_subparsers(dest="report_command", required=True)
    d = rsub.add_parser(
        "districts",
        help="per 자치구: members, new members, ended participations, verified reductions, points",
        description=(
            "Per district (자치구) for a calendar year: owners taking part, new members, participations "
            "ended, current period results whose period ended in the year, the sum of their positive "
            "reductions (km) and their points."
        ),
    )
    d.add_argument("--year", type=int, required=True)
    fmt = d.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV with a header line")
    fmt.add_argument("--json", action="store_true", help="one JSON object per district")
    d.set_defaults(func=run_districts)


async def _fetch(year: int) -> list[DistrictRow]:
    conn = await asyncpg.connect(load_settings().database_url)
    try:
        return await district_report(conn, year)
    finally:
        await conn.close()


def format_table(rows: list[DistrictRow], year: int) -> str:
    header = f"{'자치구':<8}{'members':>9}{'new':>7}{'ended':>7}{'results':>9}{'reduction_km':>15}{'points':>14}{'special':>11}"
    lines = [f"district report {year}", header]
    for r in rows:
        values = (r.members, r.new_members, r.ended_participations, r.results, r.verified_reduction_km, r.points, r.special_points)
        lines.append(_line(r.district, values))
    total = (
        sum(r.members for r in rows),
        sum(r.new_members for r in rows),
        sum(r.ended_participations for r in rows),
        sum(r.results for r in rows),
        sum((r.verified_reduction_km for r in rows), Decimal(0)),
        sum(r.points for r in rows),
        sum(r.special_points for r in rows),
    )
    lines.append(_line("합계", total))
    return "\n".join(lines)


def _line(name: str, v: tuple[object, ...]) -> str:
    # Hangul is double width in a terminal: pad by display width.
    pad = 8 - sum(2 if ord(ch) > 0x1100 else 1 for ch in name)
    return (
        f"{name}{' ' * max(pad, 1)}{v[0]:>9,}{v[1]:>7,}{v[2]:>7,}{v[3]:>9,}"
        f"{Decimal(str(v[4])):>15,.1f}{v[5]:>14,}{v[6]:>11,}"
    )


def run_districts(args: argparse.Namespace) -> int:
    if not 2000 <= args.year <= 2100:
        print("carmileage report: --year must be a calendar year such as 2022", file=sys.stderr)
        return 2
    try:
        rows = asyncio.run(_fetch(args.year))
    except (OSError, asyncpg.PostgresError) as e:
        print(f"carmileage report: database error: {e}", file=sys.stderr)
        return 2
    if args.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(FIELDS)
        for r in rows:
            w.writerow([getattr(r, f) for f in FIELDS])
    elif args.json:
        for r in rows:
            d = dataclasses.asdict(r)
            d["verified_reduction_km"] = str(r.verified_reduction_km)
            print(json.dumps(d, ensure_ascii=False))
    else:
        print(format_table(rows, args.year))
    return 0
