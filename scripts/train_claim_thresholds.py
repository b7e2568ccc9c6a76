"""Fit the shipped claim thresholds (ocr/models/claim_thresholds.json) on synthetic photos.

Renders the wide synthetic set (fixtures/ocr/generate.py: dashboards with stickers, scales, TRIP
rows, night, glare, phone-sized photos; plates of every kind by day and night), runs the readers
in claimed mode with the true value and with wrong claims (one character changed) on every look,
and refits each kind's thresholds with `ocr.calibration.fit`: the loosest grid point that confirms
no wrong claim, with a step of safety on every threshold, never looser than the grid's floor (the
values the earlier, hand-set rules were validated at). The development photos are never used
here; `--check MANIFEST` only reports what the result does on them.

    nice -n 10 .venv/bin/python scripts/train_claim_thresholds.py --n 80 --seed 101 \\
        --out ocr/models/claim_thresholds.json --check ../shared/ocr-dev/manifest.csv

`--cache FILE` keeps the gathered evidence (a pickle) so a refit with other grids is instant.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ocr import calibration, warm_up
from ocr.calibration import Example

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("ocr_fixture_generate", ROOT / "fixtures" / "ocr" / "generate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ocr_fixture_generate"] = mod
    spec.loader.exec_module(mod)
    return mod


def gather(n: int, seed: int, wrong: int) -> list[Example]:
    gen = _generator()
    out: list[Example] = []
    t0 = time.time()
    for i, (name, kind, expected, data) in enumerate(gen.wide_set(n, seed)):
        k: calibration.Kind = "odometer" if kind == "odometer" else "plate"
        out.append(
            calibration.example(
                k, "synthetic", name, data, expected, calibration.wrong_claims_for(k, expected, None, wrong, seed)
            )
        )
        print(f"{i + 1}/{2 * n} {name} {time.time() - t0:.0f}s", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=80, help="photos of each kind")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--wrong", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--check", type=Path, default=None, help="a manifest to report on (never fitted)")
    a = ap.parse_args()
    warm_up()
    if a.cache and a.cache.exists():
        examples = pickle.loads(a.cache.read_bytes())
    else:
        examples = gather(a.n, a.seed, a.wrong)
        if a.cache:
            a.cache.write_bytes(pickle.dumps(examples))
    before = calibration.DEFAULT
    after = before
    kinds: tuple[calibration.Kind, ...] = ("odometer", "plate")
    for kind in kinds:
        r = calibration.fit(kind, examples, before, min_examples=10)
        print(f"{kind}: refused={r.refused}")
        for k in calibration.KIND_KEYS[kind]:
            print(f"  {k:<24} {getattr(r.before, k)} -> {getattr(r.after, k)}")
        for src, rb in sorted(r.rates_before.items()):
            ra = r.rates_after[src]
            print(
                f"  {src:<20} true {rb.true_accepted}/{rb.true_n} -> {ra.true_accepted}/{ra.true_n}"
                f"   false {rb.false_accepted}/{rb.false_n} -> {ra.false_accepted}/{ra.false_n}"
            )
        if r.changed:
            after = after.model_copy(update={k: getattr(r.after, k) for k in calibration.KIND_KEYS[kind]})
    after = after.model_copy(
        update={"source": f"scripts/train_claim_thresholds.py --n {a.n} --seed {a.seed} --wrong {a.wrong}"}
    )
    print(after.model_dump())
    if a.check:
        dev = calibration.examples_from_manifest(a.check, a.wrong, a.seed)
        for name, th in (("defaults", before), ("fitted", after)):
            for src, rt in sorted(calibration.rates(dev, th).items()):
                print(f"check {name:<9} {src:<22} {rt.as_dict()}")
    if a.out:
        calibration.save(after, a.out)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
