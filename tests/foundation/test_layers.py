"""The layout's import rules (DESIGN.md, Layout), enforced on every module: the domain packages
import neither `ingest` nor `storage` nor any network or database library, and `storage`
never imports `ingest`. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ("prorate", "telematics", "ocr")
#: What a pure domain module may not import: the service, the database, the network.
NOT_IN_DOMAIN = ("ingest", "storage", "asyncpg", "aiohttp", "paho", "pamqp", "socket", "urllib.request", "http.client")


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def refused(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", DOMAIN)
def test_the_domain_imports_no_service_database_or_network(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules(package)
        for line, name in imports_of(path)
        if refused(name, NOT_IN_DOMAIN)
    ]
    assert offences == []


def test_storage_does_not_import_the_service() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules("storage")
        for line, name in imports_of(path)
        if refused(name, ("ingest",))
    ]
    assert offences == []


def test_the_rule_catches_an_offence(tmp_path: Path) -> None:
    """The checker itself: an import hidden in a function is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from storage.readings import store_batch\n    import ingest.app\n")
    names = [name for _, name in imports_of(module)]
    assert refused(names[0], NOT_IN_DOMAIN) and refused(names[1], NOT_IN_DOMAIN)
