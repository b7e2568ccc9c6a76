"""The odometer reader's steps (issue 17, item 4): named weights that rank as documented, and
no reader writing to the terminal (the service's logs are JSON; debugging goes through logging)."""

from __future__ import annotations

import ast
from pathlib import Path

from ocr import odometer

ROOT = Path(__file__).resolve().parents[2]


def _features(**over: float) -> dict[str, float]:
    f = {
        "len": 6, "odo": 0.0, "km": 0.0, "trip": 0.0, "speed": 0.0, "pp": 1.0, "letters": 0, "dash": 0.0,
        "inter": 0.0, "rel_h": 1.0, "n_engines": 2.0, "ctc_mean": 1.0,
    }
    f.update(over)
    return f


def test_the_score_ranks_as_its_weights_say() -> None:
    w = odometer.WEIGHTS
    plain = odometer.score(_features(), decimal=False)
    assert odometer.score(_features(odo=1.0), decimal=False) - plain == w.odo_label
    # a labelled six-digit number beats an unlabelled one, a trip meter loses to both
    assert odometer.score(_features(odo=1.0), False) > plain > odometer.score(_features(trip=1.0), False)
    assert odometer.score(_features(), decimal=True) < plain
    # six digits is the likeliest length; four digits or fewer pays for a speed unit beside it
    assert all(odometer.score(_features(len=n), False) < plain for n in (3, 4, 5, 7, 8))
    assert odometer.score(_features(len=4, speed=1.0), False) < odometer.score(_features(len=4), False)
    assert odometer.score(_features(speed=1.0), False) == plain
    assert odometer.score(_features(len=2), False) < odometer.NO_READING_SCORE


def test_confidence_reaches_auto_accept_only_with_both_engines() -> None:
    best = odometer.Cand("253179", 0, features=_features(odo=1.0, ctc_min=1.0))
    assert odometer._confidence(best, "253179", margin=3.0) >= odometer.AUTO_ACCEPT
    one = odometer.Cand("253179", 0, features=_features(odo=1.0, ctc_min=1.0, n_engines=1.0))
    assert odometer._confidence(one, "253179", margin=3.0) < odometer.AUTO_ACCEPT


def test_no_ocr_module_prints() -> None:
    """Only the yardstick's command line (ocr/evaluate.py) prints."""
    offences = []
    for path in sorted((ROOT / "ocr").rglob("*.py")):
        if path.name == "evaluate.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offences == []
