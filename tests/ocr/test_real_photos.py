"""Skip-if-absent checks on the real development photos in ../shared/ocr-dev (never copied here)."""

from __future__ import annotations

import json

from ocr.evaluate import evaluate


def test_real_photos_yardstick(real_dir) -> None:
    res = evaluate(real_dir / "manifest.csv")
    print(json.dumps(res, ensure_ascii=False))
    odo, plate = res["odometer"], res["plate"]
    # precision of auto-accept is what matters most: never a confident wrong answer
    assert odo["auto_precision"] in (None, 1.0)
    assert plate["auto_precision"] in (None, 1.0)
    assert odo["claim_false_accept"] == 0.0
    assert plate["claim_false_accept"] in (None, 0.0)
    # regression floors, a little under the measured figures (see docs/ocr.md)
    assert odo["exact"] >= 0.85
    assert odo["claim_true_accept"] >= 0.85
    assert plate["exact"] >= 0.7
    assert plate["claim_true_accept"] >= 0.7
