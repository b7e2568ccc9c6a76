"""`carmileage calc`: answer a citizen's "what would I earn?" from the rules alone.

Pure: it reads no database and writes nothing. Single mode prints a readable answer (or JSON with
`--json`); `--batch FILE|-` reads JSON lines and writes one JSON line per input line, in order,
with `{"error": ...}` for a line that cannot be computed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import IO, Any

from prorate.calc import CalcRequest, calculate, parse_request
from prorate.errors import ProrateError
from prorate.figures import PeriodFigures

EXIT_OK = 0
#: Single mode: the input cannot be computed. Batch mode: at least one line could not be.
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2

_SINGLE_FIELDS = (
    "program",
    "start_date",
    "start_km",
    "end_date",
    "end_km",
    "baseline_daily_km",
    "first_registration_date",
    "acquired_date",
    "acquired_km",
    "district",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calc",
        help="compute a period's baseline, reduction and points (no database)",
        description=(
            "Compute a period's day-prorated baseline, reduction and points from the rule tables. "
            "Baseline: --baseline-daily-km (an operator's figure), or --first-registration "
            "[--acquired D --acquired-km Z] (the national formula; --district may be added and is used "
            "when the car has less than a year of history), or --district alone (a new car). "
            "Exit status: 0 computed; 1 input that cannot be computed (batch: at least one line); "
            "2 usage error. Figures are reported to 0.1 km and 0.01 %, never across a tier bound "
            "(prorate/display.py)."
        ),
    )
    p.add_argument("--program", choices=("annual", "season"))
    p.add_argument("--start-date", metavar="YYYY-MM-DD")
    p.add_argument("--start-km", metavar="KM", help="odometer at the start, km (up to 3 decimals)")
    p.add_argument("--end-date", metavar="YYYY-MM-DD")
    p.add_argument("--end-km", metavar="KM")
    p.add_argument("--baseline-daily-km", metavar="K", help="operator's daily average, km/day")
    p.add_argument("--first-registration", metavar="YYYY-MM-DD", dest="first_registration_date")
    p.add_argument("--acquired", metavar="YYYY-MM-DD", dest="acquired_date", help="used car: acquisition date")
    p.add_argument("--acquired-km", metavar="KM", help="used car: odometer at acquisition, km")
    p.add_argument("--district", metavar="NAME", help="자치구, e.g. 강남구")
    p.add_argument("--rules", metavar="NAME", help="force a rule set (default: chosen by the start date)")
    p.add_argument("--json", action="store_true", help="single mode: print JSON instead of text")
    p.add_argument(
        "--batch",
        metavar="FILE",
        help="JSON lines in (FILE or - for standard input), JSON lines out, one per input line",
    )
    p.set_defaults(func=run)


def _error_line(e: ProrateError) -> dict[str, Any]:
    return {"error": e.message, "code": e.code}


def calc_lines(lines: Iterable[str], forced_rules: str | None = None) -> Iterator[tuple[dict[str, Any], bool]]:
    """One (output object, ok) per input line, in order; a bad line never stops the others."""
    for raw in lines:
        line = raw.strip()
        if not line:
            yield _error_line(ProrateError("bad_request", "empty line")), False
            continue
        try:
            data = json.loads(line, parse_float=Decimal, parse_constant=_refuse_constant)
            figures = calculate(parse_request(data), forced_rules)
        except json.JSONDecodeError as e:
            yield _error_line(ProrateError("bad_json", f"not valid JSON: {e.msg} at column {e.colno}")), False
        except ProrateError as e:
            yield _error_line(e), False
        else:
            yield figures.report(), True


def _refuse_constant(name: str) -> Any:
    raise ProrateError("bad_request", f"{name} is not a number")


def _run_batch(args: argparse.Namespace, forced_rules: str | None, out: IO[str]) -> int:
    given = [f for f in _SINGLE_FIELDS if getattr(args, f) is not None]
    if given or args.json:
        flags = ", ".join("--" + f.replace("_", "-") for f in given) + (" --json" if args.json else "")
        print(f"carmileage calc: --batch takes its inputs from JSON lines; drop {flags.strip(', ')}", file=sys.stderr)
        return EXIT_USAGE
    try:
        src: IO[str] = sys.stdin if args.batch == "-" else open(args.batch, encoding="utf-8")
    except OSError as e:
        print(f"carmileage calc: cannot read {args.batch}: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
    failed = 0
    try:
        for obj, ok in calc_lines(src, forced_rules):
            failed += not ok
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if src is not sys.stdin:
            src.close()
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _single_request(args: argparse.Namespace) -> CalcRequest:
    data = {f: getattr(args, f) for f in _SINGLE_FIELDS if getattr(args, f) is not None}
    missing = [f for f in ("program", "start_date", "start_km", "end_date", "end_km") if f not in data]
    if missing:
        flags = ", ".join("--" + f.replace("_", "-") for f in missing)
        raise ProrateError("bad_request", f"missing {flags} (or use --batch)")
    return parse_request(data)


def _thousands(x: float | None, unit: str = "") -> str:
    return "–" if x is None else f"{x:,.1f}{unit}"


def format_figures(f: PeriodFigures) -> str:
    """The readable answer an operator reads out to a citizen."""
    r = f.report()
    lines = [
        f"rules           {f.rules}",
        f"program         {f.program}",
        f"period          {r['start_date']} → {r['end_date']} ({f.days} days)",
    ]
    if f.baseline is not None:
        lines.append(f"baseline        {f.baseline.explain()}")
    if f.baseline_days != f.days:
        lines.append(f"baseline_days   {f.baseline_days} (no day-proration: the scheduled period's days)")
    lines += [
        f"baseline_km     {_thousands(r['baseline_km'], ' km')}",
        f"actual_km       {_thousands(r['actual_km'], ' km')}",
        f"reduction_km    {_thousands(r['reduction_km'], ' km')}",
        "reduction_rate  "
        + ("–" if r["reduction_rate_pct"] is None else f"{r['reduction_rate_pct']:.2f} %"),
    ]
    if f.program == "annual":
        basis = {"rate": "by rate", "amount": "by amount", "rate_and_amount": "by rate and amount"}
        why = f" ({basis[f.tier_by]})" if f.tier_by in basis else " (no reduction)"
        lines.append(f"points          {r['points']:,}{why}")
    else:
        lines += [
            f"season          {r['season']} ({r['season_days']} days)",
            f"season_km       {_thousands(r['season_km'], ' km')}",
            f"special_points  {r['special_points']:,}",
        ]
    return "\n".join(lines)


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    forced_rules = args.rules
    if args.batch is not None:
        return _run_batch(args, forced_rules, out)
    try:
        figures = calculate(_single_request(args), forced_rules)
    except ProrateError as e:
        print(f"carmileage calc: {e.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        out.write(json.dumps(figures.report(), ensure_ascii=False) + "\n")
    else:
        out.write(format_figures(figures) + "\n")
    return EXIT_OK
