"""Who may talk SQL (issue 17, item 2): the service (`ingest/`) asks `storage/` repositories and
runs no SQL of its own, and `disputes` has one writer, `storage/disputes.py`, so the queue's
rules (one open rollback case per car, resolved exactly once) live in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: asyncpg's ways of sending SQL.
SQL_METHODS = frozenset(
    {"fetch", "fetchrow", "fetchval", "execute", "executemany", "copy_records_to_table", "copy_to_table"}
)
#: Known, waiting for their owner's refactor (issue 17): (file, method).
NOT_YET: set[tuple[str, str]] = set()
DISPUTE_WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+disputes\b", re.IGNORECASE)
DISPUTE_WRITERS_NOT_YET: set[str] = set()


def sql_calls(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS
    ]


def test_the_service_runs_no_sql_of_its_own() -> None:
    offences = [
        f"{rel}:{line} calls .{method}()"
        for path in sorted((ROOT / "ingest").rglob("*.py"))
        for line, method in sql_calls(path)
        if ((rel := str(path.relative_to(ROOT))), method) not in NOT_YET
    ]
    assert offences == []


def test_only_storage_disputes_writes_disputes() -> None:
    offences = [
        str(path.relative_to(ROOT))
        for folder in ("ingest", "storage")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if DISPUTE_WRITE.search(path.read_text())
        and str(path.relative_to(ROOT)) not in {"storage/disputes.py", *DISPUTE_WRITERS_NOT_YET}
    ]
    assert offences == []


def test_the_checks_catch_an_offence(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('async def f(pool):\n    await pool.execute("update disputes set status = 1")\n')
    assert sql_calls(module) == [(2, "execute")]
    assert DISPUTE_WRITE.search(module.read_text())
