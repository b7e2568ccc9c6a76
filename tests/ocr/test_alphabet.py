"""Region names and plate syllables have one source, the domain's `prorate.identifiers` (issue 17,
item 6): the plate reader, its syllable model, the yardstick and the synthetic plates all take
them from there, and no other module keeps a copy."""

from __future__ import annotations

import re
from pathlib import Path

from ocr import evaluate, hangul
from prorate import identifiers

ROOT = Path(__file__).resolve().parents[2]


def test_the_reader_uses_the_domains_alphabet() -> None:
    assert set(hangul.PLATE_SYLLABLES) == identifiers.PLATE_SYLLABLES
    assert len(hangul.PLATE_SYLLABLES) == len(identifiers.PLATE_SYLLABLES)
    assert hangul.REGIONS == identifiers.PLATE_REGIONS
    assert set(evaluate.PLATE_CHARS) == identifiers.PLATE_SYLLABLES


def test_the_shipped_syllable_model_can_read_every_syllable_the_domain_allows() -> None:
    """A syllable or region the domain adds that the model has no class for fails here: retrain
    (scripts/train_hangul.py writes the new class order beside the model)."""
    classes = set(hangul.CLASSES)
    assert identifiers.PLATE_SYLLABLES <= classes
    assert {c for r in identifiers.PLATE_REGIONS for c in r} <= classes
    assert set(hangul.domain_classes()) <= classes
    if hangul.available():
        out = hangul._session().get_outputs()[0].shape
        assert out[-1] == len(hangul.CLASSES)


def test_the_synthetic_plates_draw_from_the_domain(gen) -> None:
    assert gen.SYLLABLES == identifiers.NON_COMMERCIAL_SYLLABLE_ORDER
    assert set(gen.SYLLABLES) == identifiers.NON_COMMERCIAL_SYLLABLES
    assert set(gen.COMMERCIAL) == identifiers.COMMERCIAL_SYLLABLES
    assert set(gen.REGIONS) <= set(identifiers.PLATE_REGIONS)


def test_no_other_module_keeps_a_copy() -> None:
    """A run of eight or more plate syllables, or five or more region names, written out in the
    source of any module but prorate/identifiers.py is a second copy."""
    syllables = "".join(sorted(identifiers.PLATE_SYLLABLES))
    run = re.compile(f"[{syllables}]{{8,}}")
    offences = []
    for package in ("ocr", "prorate", "telematics", "ingest", "storage", "fixtures", "scripts", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "prorate" / "identifiers.py":
                continue
            text = path.read_text(encoding="utf-8")
            names = {r for r in identifiers.PLATE_REGIONS if f'"{r}"' in text or f"'{r}'" in text or f"|{r}|" in text}
            if run.search(text) or len(names) >= 5:
                offences.append(str(path.relative_to(ROOT)))
    assert offences == []
