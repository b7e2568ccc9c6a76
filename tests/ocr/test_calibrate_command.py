"""`carmileage ocr calibrate` against the real PostgreSQL: reviewers' labels (ocr_labels) and the
photos in the blob store, the development set as a floor (here a small synthetic stand-in)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ingest.cli import main
from ocr import calibration
from storage.blobs import LocalBlobStore


def _photos(gen) -> dict[str, tuple[str, bytes]]:
    """Two dashboards and two plates (value, JPEG), small and clear."""
    out: dict[str, tuple[str, bytes]] = {}
    for i, (kind, odo) in enumerate((("tft", 253179), ("lcd_panel", 418062))):
        rng = random.Random(40 + i)
        spec = gen.dash_spec(odo, rng, kind=kind, sticker=None, night=False, glare=False, size=(1280, 960),
                             jpeg=90, motion=0.0, blur=0.5, scale_pair=False)
        out[f"odo{i}"] = (str(odo), gen.to_jpeg(gen.render_cluster(spec, rng), 90))
    for i, text in enumerate(("34나5678", "152가3047")):
        rng = random.Random(50 + i)
        style = "white" if len(text) == 7 else "white3"
        spec = gen.PlateSpec(text=text, style=style, scene="close", size=(900, 420), yaw=0.03, blur=0.5)
        out[f"plate{i}"] = (text, gen.to_jpeg(gen.render_plate_scene(spec, rng), 90))
    return out


async def _store(url: str, blobs: Path, rows: Sequence[tuple[str, str, bytes, str | None, str]]) -> None:
    """rows: (kind, true value, photo bytes, OCR value, source)."""
    store = LocalBlobStore(blobs)
    conn = await asyncpg.connect(url)
    try:
        for kind, true_value, data, ocr_value, source in rows:
            sha = hashlib.sha256(data).hexdigest()
            await store.put(sha, data)
            await conn.execute(
                "insert into photos (sha256, content_type, size_bytes) values ($1, 'image/jpeg', $2)"
                " on conflict do nothing",
                sha,
                len(data),
            )
            await conn.execute(
                "insert into ocr_labels (photo_sha256, kind, true_value, ocr_value, source, labelled_by)"
                " values ($1, $2, $3, $4, $5, 'reviewer-1')",
                sha,
                kind,
                true_value,
                ocr_value,
                source,
            )
    finally:
        await conn.close()


@pytest.fixture
def env(fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gen) -> dict[str, Any]:
    data = tmp_path / "data"
    monkeypatch.setenv("CARMILEAGE_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CARMILEAGE_DATA_DIR", str(data))
    monkeypatch.setenv("CARMILEAGE_BLOB_STORE", "local")
    thresholds = tmp_path / "thresholds.json"
    monkeypatch.setenv(calibration.ENV, str(thresholds))  # none yet: the defaults are in force
    # the development floor: one photo of each kind, in place, like ../shared/ocr-dev
    dev = tmp_path / "dev"
    dev.mkdir()
    rng = random.Random(61)
    spec = gen.dash_spec(562104, rng, kind="tft", sticker=None, night=False, glare=False, size=(1280, 960),
                         jpeg=90, motion=0.0, blur=0.5, scale_pair=False)
    (dev / "o.jpg").write_bytes(gen.to_jpeg(gen.render_cluster(spec, rng), 90))
    pspec = gen.PlateSpec(text="27다4946", style="white", scene="close", size=(900, 420), yaw=0.02, blur=0.5)
    (dev / "p.jpg").write_bytes(gen.to_jpeg(gen.render_plate_scene(pspec, rng), 90))
    (dev / "manifest.csv").write_text(
        "path,kind,expected\no.jpg,odometer,562104\np.jpg,plate,27다4946\n", encoding="utf-8"
    )
    return {"url": fresh_database_url, "blobs": data / "blobs", "dev": dev / "manifest.csv",
            "thresholds": thresholds}


def test_calibrate_reports_before_and_after_and_writes_only_what_is_safe(env, gen, capsys) -> None:
    photos = _photos(gen)
    rows = [("odometer", v, d, v, "accepted") for k, (v, d) in photos.items() if k.startswith("odo")]
    rows += [("plate", v, d, v, "accepted") for k, (v, d) in photos.items() if k.startswith("plate")]
    asyncio.run(_store(env["url"], env["blobs"], rows))
    out = env["thresholds"].parent / "refit.json"
    code = main(["ocr", "calibrate", "--dev", str(env["dev"]), "--wrong", "2", "--min-photos", "2",
                 "--write", str(out), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for kind in ("odometer", "plate"):
        r = report["kinds"][kind]
        assert r["refused"] is None
        assert set(r["rates_before"]) == {f"labels/{kind}", f"development/{kind}", f"all/{kind}"}
        labels = r["rates_after"][f"labels/{kind}"]
        assert labels["true_n"] == 2 and labels["false_n"] >= 2
        # never a false accept, and never fewer true accepts on the development floor
        assert r["rates_after"][f"all/{kind}"]["false_accepted"] == 0
        dev_b, dev_a = r["rates_before"][f"development/{kind}"], r["rates_after"][f"development/{kind}"]
        assert dev_a["true_accepted"] >= dev_b["true_accepted"]
    changed = any(report["kinds"][k]["changed"] for k in ("odometer", "plate"))
    assert (report["written"] is not None) == changed
    if changed:
        th = calibration.Thresholds.model_validate_json(out.read_text(encoding="utf-8"))
        assert th.source.startswith("carmileage ocr calibrate")
    assert not env["thresholds"].exists()  # --write PATH wrote there, not over the thresholds in force

    # the table a person reads: thresholds and rates, before -> after
    assert main(["ocr", "calibrate", "--dev", str(env["dev"]), "--wrong", "1", "--min-photos", "2",
                 "--kind", "plate"]) == 0
    text = capsys.readouterr().out
    assert "plate:" in text and "labels/plate" in text and "development/plate" in text and "->" in text


def test_calibrate_refuses_what_would_confirm_a_wrong_claim(env, gen, capsys) -> None:
    """A reviewer's mistake: the label says 253170 where the photo clearly shows 253179 (what the
    OCR read). Claimed, the photo's own value confirms under every allowed threshold: a wrong
    claim by the label, so no refit confirms none, and nothing is written."""
    photos = _photos(gen)
    value, data = photos["odo0"]
    other_value, other = photos["odo1"]
    asyncio.run(_store(env["url"], env["blobs"], [
        ("odometer", "253170", data, value, "corrected"),
        ("odometer", other_value, other, other_value, "accepted"),
    ]))
    code = main(["ocr", "calibrate", "--kind", "odometer", "--dev", str(env["dev"]), "--wrong", "1",
                 "--min-photos", "2", "--write", "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    r = report["kinds"]["odometer"]
    assert code == 2
    assert r["refused"] and r["refused"].startswith("no thresholds")
    assert r["before"] == r["after"] and report["written"] is None
    assert r["rates_before"]["labels/odometer"]["false_accepted"] >= 1  # shown, not hidden
    assert not env["thresholds"].exists()


def test_calibrate_needs_its_floor(env, capsys) -> None:
    code = main(["ocr", "calibrate", "--dev", str(env["dev"].parent / "missing.csv")])
    assert code == 1
    assert "development manifest" in capsys.readouterr().err
