"""The yardstick runs on a synthetic manifest and ends with one JSON line."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from ocr.evaluate import char_accuracy, wrong_claims


def test_wrong_claims_change_exactly_one_character() -> None:
    rng = random.Random(1)
    for kind, exp in (("odometer", "274384"), ("plate", "12가3456"), ("plate", "서울12가3456")):
        ws = wrong_claims(kind, exp, rng, 5)
        assert len(ws) == 5
        for w in ws:
            assert len(w) == len(exp) and sum(a != b for a, b in zip(w, exp, strict=True)) == 1
    assert all(not w.startswith("0") for w in wrong_claims("odometer", "123456", rng, 20))


def test_char_accuracy() -> None:
    assert char_accuracy("123456", "123456") == 1.0
    assert char_accuracy(None, "1234") == 0.0
    assert abs(char_accuracy("12345", "123456") - 5 / 6) < 1e-9


def test_evaluate_cli_on_synthetic_manifest(gen, tmp_path: Path) -> None:
    rng = random.Random(11)
    rows = ["path,kind,expected"]
    for i, style in enumerate(["lcd", "tft"]):
        odo = rng.randint(100000, 999999)
        (tmp_path / f"o{i}.jpg").write_bytes(
            gen.to_jpeg(gen.render_dashboard(odo, rng, trip=12.3, style=style, effects=0.3))
        )
        rows.append(f"o{i}.jpg,odometer,{odo}")
    text = "36가1234"
    (tmp_path / "p0.jpg").write_bytes(gen.to_jpeg(gen.render_plate_photo(text, "white", rng, effects=0.3)))
    rows.append(f"p0.jpg,plate,{text}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "ocr.evaluate", str(tmp_path / "m.csv"), "--claims", "2"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert set(last) == {"odometer", "plate"}
    for k in (
        "n",
        "exact",
        "auto_coverage",
        "auto_precision",
        "char_accuracy",
        "claim_true_accept",
        "claim_false_accept",
        "median_ms",
        "p95_ms",
        "median_cpu_ms",
        "claim_median_cpu_ms",
    ):
        assert k in last["odometer"] and k in last["plate"]
    assert last["odometer"]["n"] == 2 and last["plate"]["n"] == 1
    assert last["odometer"]["auto_precision"] in (None, 1.0)
    assert last["odometer"]["claim_false_accept"] == 0.0
