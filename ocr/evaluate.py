"""The yardstick: ``python -m ocr.evaluate MANIFEST.csv [--engine full|tesseract-plain]``.

MANIFEST.csv has columns ``path,kind,expected`` (kind: odometer | plate; paths relative to the
manifest).  Per kind it reports n, exact, auto_coverage, auto_precision, char_accuracy,
claim_true_accept (claim = expected), claim_false_accept (claim = a plausible wrong value: one digit
changed, or one plate character), median_ms and p95_ms; a readable table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .hangul import PLATE_SYLLABLES as PLATE_CHARS  # the domain's syllables (prorate.identifiers)


def _lev(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(pred: str | None, exp: str) -> float:
    if not exp:
        return 0.0
    return max(0.0, 1.0 - _lev(pred or "", exp) / len(exp))


def wrong_claims(kind: str, expected: str, rng: random.Random, n: int = 3) -> list[str]:
    """Plausible wrong claims: one character changed (a digit for a digit, a syllable for a syllable)."""
    out: set[str] = set()
    tries = 0
    while len(out) < n and tries < 100:
        tries += 1
        pos = [i for i, c in enumerate(expected) if c.isdigit() or (kind == "plate" and c in PLATE_CHARS)]
        if not pos:
            break
        i = rng.choice(pos)
        c = expected[i]
        if c.isdigit():
            if kind == "odometer" and i == 0 and len(expected) > 1:
                choices = "123456789"
            else:
                choices = "0123456789"
            r = rng.choice([d for d in choices if d != c])
        else:
            r = rng.choice([s for s in PLATE_CHARS if s != c])
        w = expected[:i] + r + expected[i + 1 :]
        if w != expected:
            out.add(w)
    return sorted(out)


def _cpu() -> float:
    """CPU seconds used by this process and its finished children (tesseract runs as one)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# ---------------------------------------------------------------------------------------------
# plain tesseract baseline: whole frame, no location, no rejection
# ---------------------------------------------------------------------------------------------


def _tess_plain(kind: str, data: bytes, claim: str | None) -> dict[str, Any]:
    import io

    import pytesseract
    from PIL import Image, ImageOps

    c0 = _cpu()
    t0 = time.perf_counter()
    text = ""
    try:
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        lang = "kor+eng" if kind == "plate" else "eng"
        text = pytesseract.image_to_string(im, lang=lang, config="--psm 11")
    except Exception:
        text = ""
    value: str | None = None
    if kind == "odometer":
        nums = re.findall(r"\d{4,7}", text.replace(" ", ""))
        value = max(nums, key=len) if nums else None
        if value is not None:
            value = str(int(value))
    else:
        s = re.sub(r"\s", "", text)
        m = re.search(r"(\d{2,3})([가-힣])(\d{4})", s)
        value = "".join(m.groups()) if m else None
    ms = (time.perf_counter() - t0) * 1000
    return {
        "cpu_ms": (_cpu() - c0) * 1000,
        "value": value,
        "auto": value is not None,
        "confirmed": value is not None and value == claim,
        "ms": ms,
    }


def _full(kind: str, data: bytes, claim: str | None) -> dict[str, Any]:
    from . import read_odometer, read_plate

    c0 = _cpu()
    t0 = time.perf_counter()
    if kind == "odometer":
        r = read_odometer(data, int(claim) if claim is not None else None)
        value = None if r.value_km is None else str(r.value_km)
    else:
        r = read_plate(data, claim)  # type: ignore[assignment]
        value = r.text  # type: ignore[attr-defined]
    ms = (time.perf_counter() - t0) * 1000
    return {
        "cpu_ms": (_cpu() - c0) * 1000,
        "value": value,
        "auto": r.auto_accept,
        "confirmed": r.claim_confirmed,
        "ms": ms,
        "conf": r.confidence,
        "reasons": r.reasons,
    }


def _norm_expected(kind: str, e: str) -> str:
    e = e.strip()
    if kind == "odometer":
        return str(int(e))
    return re.sub(r"[\s\-]", "", e)


def evaluate(
    manifest: Path, engine: str = "full", verbose: bool = False, seed: int = 7, claims: int = 3
) -> dict[str, dict[str, Any]]:
    rows = list(csv.DictReader(manifest.open(encoding="utf-8")))
    base = manifest.parent
    run = _full if engine == "full" else _tess_plain
    if engine == "full":
        from . import warm_up

        warm_up()  # timings are for a warmed-up worker, as in the service's process pool
    rng = random.Random(seed)
    per: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        kind = row["kind"].strip()
        exp = _norm_expected(kind, row["expected"])
        try:
            data = (base / row["path"]).read_bytes()
        except OSError:
            data = b""
        blind = run(kind, data, None)
        true_claim = run(kind, data, exp)
        wrong = [run(kind, data, w) for w in wrong_claims(kind, exp, rng, claims)]
        rec = {
            "path": row["path"],
            "expected": exp,
            "value": blind["value"],
            "auto": bool(blind["auto"]),
            "exact": blind["value"] == exp,
            "char_acc": char_accuracy(blind["value"], exp),
            "claim_true": bool(true_claim["confirmed"]),
            "claim_false": [bool(w["confirmed"]) for w in wrong],
            "ms": blind["ms"],
            "cpu_ms": blind["cpu_ms"],
            "claim_cpu_ms": true_claim["cpu_ms"],
            "conf": blind.get("conf"),
            "reasons": blind.get("reasons"),
        }
        per.setdefault(kind, []).append(rec)
        if verbose:
            print(
                f"{'OK ' if rec['exact'] else 'BAD'} {'A' if rec['auto'] else '-'} {kind:8s} exp={exp:>12s} "
                f"got={rec['value']!s:>12s} conf={rec['conf']} ct={int(rec['claim_true'])} "
                f"cf={sum(rec['claim_false'])}/{len(rec['claim_false'])} {rec['ms']:.0f}ms {row['path']} "
                f"{rec['reasons'] if not rec['exact'] or not rec['auto'] else ''}",
                file=sys.stderr,
            )
    out: dict[str, dict[str, Any]] = {}
    for kind in ("odometer", "plate"):
        recs = per.get(kind, [])
        n = len(recs)
        if not n:
            out[kind] = {"n": 0}
            continue
        auto = [r for r in recs if r["auto"]]
        falses = [x for r in recs for x in r["claim_false"]]
        ms = np.array([r["ms"] for r in recs])
        cpu = np.array([r["cpu_ms"] for r in recs])
        claim_cpu = np.array([r["claim_cpu_ms"] for r in recs])
        out[kind] = {
            "n": n,
            "exact": round(sum(r["exact"] for r in recs) / n, 4),
            "auto_coverage": round(len(auto) / n, 4),
            "auto_precision": round(sum(r["exact"] for r in auto) / len(auto), 4) if auto else None,
            "char_accuracy": round(float(np.mean([r["char_acc"] for r in recs])), 4),
            "claim_true_accept": round(sum(r["claim_true"] for r in recs) / n, 4),
            "claim_false_accept": round(sum(falses) / len(falses), 4) if falses else None,
            "claim_false_n": len(falses),
            "median_ms": round(float(np.median(ms)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            # CPU time of the blind read (the process and its tesseract children): what one core
            # spends, independent of what else the machine is doing
            "median_cpu_ms": round(float(np.median(cpu)), 1),
            "p95_cpu_ms": round(float(np.percentile(cpu, 95)), 1),
            # CPU time of a read with the right claim (what the service's worker runs)
            "claim_median_cpu_ms": round(float(np.median(claim_cpu)), 1),
            "claim_p95_cpu_ms": round(float(np.percentile(claim_cpu, 95)), 1),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ocr.evaluate")
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--engine", choices=["full", "tesseract-plain"], default="full")
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--claims", type=int, default=3, help="wrong claims tried per photo (one character changed)"
    )
    a = ap.parse_args(argv)
    res = evaluate(a.manifest, a.engine, a.verbose, a.seed, a.claims)
    cols = [
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
    ]
    print(f"engine: {a.engine}   manifest: {a.manifest}")
    print(f"{'kind':10s}" + "".join(f"{c:>{max(len(c), 6) + 2}s}" for c in cols))
    for kind, m in res.items():
        print(f"{kind:10s}" + "".join(f"{m.get(c)!s:>{max(len(c), 6) + 2}s}" for c in cols))
    print(json.dumps(res, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
