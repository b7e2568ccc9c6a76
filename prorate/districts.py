"""Published district daily averages (km per car per day), the baseline of cars with short history."""

from __future__ import annotations

import tomllib
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

from prorate.errors import ProrateError
from prorate.vehicle import SEOUL_DISTRICTS

DATA_FILE = Path(__file__).parent / "data" / "district_daily_km.toml"


@lru_cache(maxsize=1)
def district_tables() -> dict[str, dict[str, Decimal]]:
    """Every table by name; each must list all 25 districts with whole-metre figures."""
    raw = tomllib.loads(DATA_FILE.read_text(encoding="utf-8"))
    tables: dict[str, dict[str, Decimal]] = {}
    for name, entries in raw.items():
        figures: dict[str, Decimal] = {}
        for district, value in entries.items():
            if district == "source":
                continue
            if not isinstance(value, str):
                raise ValueError(f"{DATA_FILE.name} [{name}] {district}: write figures as strings")
            try:
                km = Decimal(value)
            except InvalidOperation as e:
                raise ValueError(f"{DATA_FILE.name} [{name}] {district}: not a number: {value!r}") from e
            if km <= 0 or (km * 1000) != (km * 1000).to_integral_value():
                raise ValueError(f"{DATA_FILE.name} [{name}] {district}: must be positive whole metres")
            figures[unicodedata.normalize("NFC", district)] = km
        missing = set(SEOUL_DISTRICTS) - set(figures)
        unknown = set(figures) - set(SEOUL_DISTRICTS)
        if missing or unknown:
            raise ValueError(f"{DATA_FILE.name} [{name}]: missing {sorted(missing)}, unknown {sorted(unknown)}")
        tables[name] = figures
    return tables


def normalise_district(name: str) -> str:
    """The district's canonical name; '서울 강남구' and '서울특별시 강남구' are accepted too."""
    text = unicodedata.normalize("NFC", name).strip()
    for prefix in ("서울특별시", "서울시", "서울"):
        if text.startswith(prefix + " "):
            text = text[len(prefix) :].strip()
            break
    if text not in SEOUL_DISTRICTS:
        raise ProrateError(
            "district_unknown",
            f"unknown district {name!r}: expected one of Seoul's 25 자치구 ({', '.join(SEOUL_DISTRICTS)})",
        )
    return text


def district_daily_km(table: str, district: str) -> Decimal:
    """The published daily average of a district in a named table."""
    tables = district_tables()
    if table not in tables:
        raise ProrateError("district_table_unknown", f"no district table named {table!r}")
    return tables[table][normalise_district(district)]
