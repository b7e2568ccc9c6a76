"""A round's output next to the period rules': the comparisons of the SQL-parity tests.

The round's SQL (storage.evaluation) and its payload function (cm_result_payload) restate what
`prorate.evaluate.evaluate_participation` decides and `prorate.reward_event.PeriodResultEvent`
serialises. `compare_round` holds them equal participation by participation: the problem code or
the stored figures, and the body the outbox sender would POST (parsed into the model, the same
keys and JSON types as the model's own serialisation, valid against the checked-in JSON Schema).
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema

from prorate.evaluate import Refusal
from prorate.figures import PeriodFigures
from prorate.reward_event import PeriodResultEvent, ReadingEvidence, period_result_event
from storage.outbox import claim_due

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "reward-calculator.schema.json"


@cache
def schema_validator() -> jsonschema.protocols.Validator:
    """The checked-in JSON Schema, formats checked (uuid, date, date-time where a checker exists)."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def shape(x: Any) -> Any:
    """A JSON document's keys at every level and the JSON type of every value (an integer is not
    a number with decimals: `25500` and `25500.000` differ)."""
    if isinstance(x, dict):
        return {k: shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [shape(v) for v in x]
    if x is None or isinstance(x, bool | str):
        return type(x).__name__
    return "integer" if isinstance(x, int) else "decimal"


def parse(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def assert_payload_is_the_models(body: str, expected: PeriodResultEvent) -> None:
    """The body as sent equals the model built from the rules: valid against the schema, the
    same values, and the same keys and JSON types as the model's own serialisation."""
    document = parse(body)
    schema_validator().validate(json.loads(body))
    assert PeriodResultEvent.model_validate_json(body) == expected
    assert shape(document) == shape(parse(expected.model_dump_json()))


def row_figures(r: asyncpg.Record) -> dict[str, Any]:
    """The figures a round stored for a result (exact decimals)."""
    return {
        "days": r["days"],
        "baseline_days": r["baseline_days"],
        "baseline_daily_km": r["baseline_daily_km"],
        "baseline_km": r["baseline_km"],
        "actual_km": r["actual_km"],
        "reduction_km": r["reduction_km"],
        "reduction_rate_pct": r["reduction_rate_pct"],
        "points": r["points"],
        "tier_by": r["tier_by"],
        "special_points": r["special_points"],
        "season_km": r["season_km"],
        "derivation": json.loads(r["derivation"]),
    }


def expected_figures(f: PeriodFigures) -> dict[str, Any]:
    """What the round must store for the figures the rules computed."""
    assert f.baseline is not None
    r = f.reported()
    return {
        "days": f.days,
        "baseline_days": f.baseline_days,
        "baseline_daily_km": r.baseline_daily_km,
        "baseline_km": r.baseline_km,
        "actual_km": r.actual_km,
        "reduction_km": r.reduction_km,
        "reduction_rate_pct": r.reduction_rate_pct,
        "points": f.points or 0,
        "tier_by": f.tier_by,
        "special_points": f.special_points or 0,
        "season_km": r.season_km,
        "derivation": f.baseline.evidence(),
    }


async def compare_round(
    conn: asyncpg.Connection,
    problems: dict[int, str],
    expected: dict[int, PeriodFigures | Refusal],
    context: dict[int, Any] | None = None,
) -> dict[int, asyncpg.Record]:
    """Every participation of `expected` as the round left it (`problems`: its codes by
    participation) against the rules' result, and every payload the round queued against the
    reward calculator's model; returns the current result rows by participation."""
    context = context or {}
    rows = {
        r["participation_id"]: r
        for r in await conn.fetch(
            """select r.*, cm_baseline_derivation(r)::text as derivation from period_results r
               where r.superseded_by is null and r.participation_id = any($1::bigint[])""",
            list(expected),
        )
    }
    bodies = {item.event_id: item.body.decode() for item in await claim_due(conn, "parity", 100_000, 60)}
    reading_ids = [x for r in rows.values() for x in (r["start_reading_id"], r["end_reading_id"])]
    readings = {
        x["id"]: ReadingEvidence.model_validate({k: x[k] for k in ReadingEvidence.model_fields})
        for x in await conn.fetch("select * from readings where id = any($1::bigint[])", reading_ids)
    }
    for pid, result in expected.items():
        why = (pid, context.get(pid), result)
        if isinstance(result, Refusal):
            assert problems.get(pid) == result.code, (*why, problems.get(pid))
            assert pid not in rows, why
            continue
        assert pid not in problems, (*why, problems.get(pid))
        r = rows[pid]
        assert row_figures(r) == expected_figures(result), why
        event = period_result_event(
            result,
            event_id=r["event_id"],
            supersedes=r["supersedes_event_id"],
            participation_id=pid,
            version=r["version"],
            round_name=r["round"],
            vehicle_id=r["vehicle_id"],
            owner_id=r["owner_id"],
            district=r["district"],
            start_reading=readings[r["start_reading_id"]],
            end_reading=readings[r["end_reading_id"]],
        )
        assert r["event_id"] in bodies, why
        assert_payload_is_the_models(bodies[r["event_id"]], event)
    return rows
