"""The thresholds that confirm a citizen's claim, the rules that apply them, and their refit.

A reader in claimed mode records, for every look it takes at the photo, the evidence the claim
rule weighs (`claim_evidence`): for odometers the CTC log-likelihood margins of the claimed digits
over every one-edit neighbour; for plates whether the read is the claim, how sure each digit is
and what backs the syllable. A claim is confirmed when one look's evidence passes the rule under
the current `Thresholds` (the looks run in a cascade that stops at the first confirmation, so
"confirmed" is exactly "some look passes").

The thresholds ship with the code (`ocr/models/claim_thresholds.json`); `CARMILEAGE_OCR_THRESHOLDS`
names another file. `carmileage ocr calibrate` refits them from what reviewers established
(`ocr_labels`) plus the development photos as a floor, with `fit` below: the loosest grid point
that confirms no wrong claim anywhere, keeps a step of safety on every threshold, and never
confirms fewer true claims of the development set. Pure: no database, no files but the one read.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal["odometer", "plate"]
THRESHOLDS_FILE = Path(__file__).parent / "models" / "claim_thresholds.json"
ENV = "CARMILEAGE_OCR_THRESHOLDS"


class Thresholds(BaseModel):
    """The claim rules' thresholds (see `odometer_confirms` and `plate_confirms`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: PP-OCR's log-likelihood margin of the claimed digits over every one-edit neighbour.
    odometer_pp_margin: float = 0.5
    #: PP-OCR's margin plus `odometer_own_weight` times our digit model's.
    odometer_margin: float = 2.0
    odometer_own_weight: float = 0.5
    #: The least probability of any digit of a plate read (restricted to digits) to confirm it.
    plate_digit_min: float = 0.9
    #: Our syllable model's least probability for a syllable tesseract did not read.
    plate_cnn_min: float = 0.9
    #: Our model's least probability for a syllable tesseract alone read.
    plate_tess_cnn_floor: float = 0.25
    #: Where these came from (a date and the data of the last refit), for the audit trail.
    source: str = "defaults"


DEFAULT = Thresholds()


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Thresholds:
    return Thresholds.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def thresholds_path() -> Path:
    return Path(os.environ.get(ENV) or THRESHOLDS_FILE)


def current() -> Thresholds:
    """The thresholds in force: the file (re-read when it changes), or the defaults when there is
    none. A file that does not parse is an error, never a silent fallback."""
    p = thresholds_path()
    if not p.exists():
        return DEFAULT
    return _load(str(p), p.stat().st_mtime)


def save(th: Thresholds, path: Path | None = None) -> Path:
    p = path or thresholds_path()
    p.write_text(json.dumps(th.model_dump(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return p


# -- the rules -----------------------------------------------------------------------------------


def odometer_confirms(ev: dict[str, Any], th: Thresholds) -> bool:
    """One look's odometer evidence confirms the claim: on the line chosen as the odometer (in a
    display; not a trip meter, decimal, cut or joined number), PP-OCR prefers the claimed digits to
    every one-edit neighbour by `odometer_pp_margin` and both engines together by
    `odometer_margin`, no different value was auto-accepted, and the row is surely the
    odometer's (`row_settled`)."""
    pp = ev.get("pp_margin")
    if not ev.get("eligible") or pp is None or ev.get("other_auto"):
        return False
    if not row_settled(ev):
        return False
    own = ev.get("own_margin")
    combined = float(pp) + th.odometer_own_weight * (float(own) if own is not None else 0.0)
    return float(pp) >= th.odometer_pp_margin and combined >= th.odometer_margin


def row_settled(ev: dict[str, Any]) -> bool:
    """Is the chosen number surely the odometer's row? Yes when the display's ODO / TOTAL label
    names it, on the full look; on a quick look (a smaller detector input, which misses small
    labels and numbers) only when nothing else in the photo reads as a rival reading. With a lit
    km unit beside it, only without a rival; found otherwise (a TRIP row, a lit panel), on the
    full look only and without a rival: a backlit sticker "13,000 km" next to an unlit LCD would
    otherwise pass for the display."""
    rivals = int(ev.get("rivals") or 0)
    final = bool(ev.get("final", True))
    if ev.get("labelled", True):
        return final or rivals == 0
    if ev.get("km_lit"):
        return rivals == 0
    return final and rivals == 0


def plate_confirms(ev: dict[str, Any], th: Thresholds) -> bool:
    """One look's plate evidence confirms the claim: a plate in the frame reads as the claim (front
    number, syllable, serial) and that is its best reading, no claimed region contradicts a region
    read, every digit at least `plate_digit_min`, and the syllable backed (`syllable_backed`).
    Other cars' plates in the frame do not matter (street scenes have them)."""
    return bool(
        ev.get("match")
        and ev.get("region_ok", True)
        and float(ev.get("digit_min", 0.0)) >= th.plate_digit_min
        and syllable_backed(ev, th)
    )


def syllable_backed(ev: dict[str, Any], th: Thresholds) -> bool:
    """Both syllable engines read it; or tesseract read exactly it while our model does not all
    but rule it out (`plate_tess_cnn_floor`); or our model gives it `plate_cnn_min` and tesseract
    read no other syllable (tesseract often reads nothing on small glyphs)."""
    cnn = float(ev.get("cnn", 0.0))
    if ev.get("agree"):
        return True
    if ev.get("tess"):
        return cnn >= th.plate_tess_cnn_floor
    return cnn >= th.plate_cnn_min and not ev.get("tess_other")


def confirms(kind: Kind, looks: Sequence[dict[str, Any]], th: Thresholds) -> bool:
    """A claim is confirmed when any look's evidence passes (the readers' cascade of looks stops
    at the first that does)."""
    rule = odometer_confirms if kind == "odometer" else plate_confirms
    return any(rule(ev, th) for ev in looks)


# -- refitting -----------------------------------------------------------------------------------


@dataclass
class Example:
    """One photo: the evidence of every look for its true claim, and for each wrong claim."""

    kind: Kind
    source: str  # "labels" (reviewers) | "development" | "synthetic"
    name: str
    true_looks: list[dict[str, Any]]
    wrong_looks: list[list[dict[str, Any]]] = field(default_factory=list)


@dataclass
class Rates:
    true_accepted: int = 0
    true_n: int = 0
    false_accepted: int = 0
    false_n: int = 0

    @property
    def true_rate(self) -> float | None:
        return round(self.true_accepted / self.true_n, 4) if self.true_n else None

    @property
    def false_rate(self) -> float | None:
        return round(self.false_accepted / self.false_n, 4) if self.false_n else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "true_accepted": self.true_accepted,
            "true_n": self.true_n,
            "true_accept_rate": self.true_rate,
            "false_accepted": self.false_accepted,
            "false_n": self.false_n,
            "false_accept_rate": self.false_rate,
        }


def rates(examples: Sequence[Example], th: Thresholds) -> dict[str, Rates]:
    """True- and false-accept counts per source and kind ("labels/plate", ...) and overall."""
    out: dict[str, Rates] = {}
    for ex in examples:
        for key in (f"{ex.source}/{ex.kind}", f"all/{ex.kind}"):
            r = out.setdefault(key, Rates())
            r.true_n += 1
            r.true_accepted += confirms(ex.kind, ex.true_looks, th)
            r.false_n += len(ex.wrong_looks)
            r.false_accepted += sum(confirms(ex.kind, w, th) for w in ex.wrong_looks)
    return out


#: The grid the refit searches, per threshold: rising values, and a higher value is stricter.
#: Each starts at a floor no refit goes below: the odometer margins the hand-set rule was
#: validated at (0 of 1,800 synthetic wrong claims came within 3 nats), a plate digit at 0.8 of
#: the digits' probability, our syllable model at 0.7 alone or 0.2 beside tesseract's word.
GRID: dict[str, tuple[float, ...]] = {
    "odometer_pp_margin": (0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
    "odometer_margin": (2.0, 2.5, 3.0, 4.0, 5.0),
    "plate_digit_min": (0.8, 0.85, 0.9, 0.95, 0.98),
    "plate_cnn_min": (0.7, 0.8, 0.85, 0.9, 0.95, 0.98),
    "plate_tess_cnn_floor": (0.2, 0.25, 0.3, 0.4, 0.5, 0.7),
}
KIND_KEYS: dict[Kind, tuple[str, ...]] = {
    "odometer": ("odometer_pp_margin", "odometer_margin"),
    "plate": ("plate_digit_min", "plate_cnn_min", "plate_tess_cnn_floor"),
}


def _nearest(grid: tuple[float, ...], v: float) -> int:
    return min(range(len(grid)), key=lambda i: abs(grid[i] - v))


@dataclass
class Refit:
    kind: Kind
    before: Thresholds
    after: Thresholds
    rates_before: dict[str, Rates]
    rates_after: dict[str, Rates]
    refused: str | None = None  # why the refit keeps the thresholds it had

    @property
    def changed(self) -> bool:
        return self.refused is None and any(
            getattr(self.before, k) != getattr(self.after, k) for k in KIND_KEYS[self.kind]
        )


def _count(examples: Sequence[Example], th: Thresholds) -> tuple[int, int, int]:
    """(true accepted, false accepted, development-set true accepted)."""
    ta = fa = dev = 0
    for ex in examples:
        ok = confirms(ex.kind, ex.true_looks, th)
        ta += ok
        dev += ok and ex.source == "development"
        fa += sum(confirms(ex.kind, w, th) for w in ex.wrong_looks)
    return ta, fa, dev


def fit(kind: Kind, examples: Sequence[Example], before: Thresholds, min_examples: int = 20) -> Refit:
    """Refit one kind's thresholds on `examples` (reviewers' labels, the development floor, and
    any synthetic photos given).

    A grid point qualifies when it confirms no wrong claim, and neither does any point one grid
    step looser on any single threshold (a margin of safety against fitting the boundary of
    these very examples), and it confirms at least as many of the development photos' true claims
    as `before`. Among those, the one confirming the most true claims wins; ties go to the point
    nearest `before` (nothing moves that the evidence does not ask for), then the stricter. The refit is refused, keeping
    `before`, when there are too few examples, when nothing qualifies, or when the winner would
    confirm more wrong claims than `before` (it cannot, by construction, unless `before` itself
    confirms wrong ones: then a stricter point that confirms none is taken)."""
    exs = [e for e in examples if e.kind == kind]
    keys = KIND_KEYS[kind]
    rb = rates(exs, before)
    if len(exs) < min_examples:
        return Refit(kind, before, before, rb, rb, refused=f"only {len(exs)} photos (at least {min_examples})")
    ta0, fa0, dev0 = _count(exs, before)
    grids = [GRID[k] for k in keys]
    memo: dict[tuple[float, ...], tuple[int, int, int]] = {}

    def score(point: tuple[float, ...]) -> tuple[int, int, int]:
        if point not in memo:
            memo[point] = _count(exs, before.model_copy(update=dict(zip(keys, point, strict=True))))
        return memo[point]

    def looser(point: tuple[float, ...]) -> list[tuple[float, ...]]:
        """The points one grid step looser on one threshold (every grid rises; higher is
        stricter for every threshold)."""
        out = []
        for i, g in enumerate(grids):
            j = g.index(point[i])
            if j > 0:
                out.append((*point[:i], g[j - 1], *point[i + 1 :]))
        return out

    base = [float(getattr(before, k)) for k in keys]
    best: tuple[tuple[int, int, int], tuple[float, ...]] | None = None
    for point in itertools.product(*grids):
        ta, fa, dev = score(point)
        if fa or dev < dev0:
            continue
        if any(score(p)[1] for p in looser(point)):
            continue
        # among the points confirming the most true claims, the one nearest `before` (change
        # only what the evidence asks for), then the stricter
        near = -sum(abs(g.index(v) - _nearest(g, b)) for g, v, b in zip(grids, point, base, strict=True))
        strictness = sum(g.index(v) for g, v in zip(grids, point, strict=True))
        key = (ta, near, strictness)
        if best is None or key > best[0]:
            best = (key, point)
    if best is None:
        return Refit(kind, before, before, rb, rb, refused="no thresholds confirm no wrong claim here")
    after = before.model_copy(update=dict(zip(keys, best[1], strict=True)))
    ta1, fa1, _dev1 = score(best[1])
    ra = rates(exs, after)
    if fa1 > fa0:  # cannot happen (fa1 == 0), kept as the rule the command promises
        return Refit(kind, before, before, rb, rb, refused="the refit would confirm more wrong claims")
    if ta1 < ta0 and fa0 == 0:
        return Refit(kind, before, before, rb, rb, refused="the refit would confirm fewer true claims")
    return Refit(kind, before, after, rb, ra)


# -- gathering evidence --------------------------------------------------------------------------


def claim_looks(kind: Kind, data: bytes, claim: str) -> list[dict[str, Any]]:
    """Every claimed-mode look's evidence for `claim` on the photo (the readers' claim_looks)."""
    if kind == "odometer":
        from .odometer import claim_looks as odo_looks

        try:
            return odo_looks(data, int(claim))
        except (TypeError, ValueError):
            return []
    from .plate import claim_looks as plate_looks

    return plate_looks(data, claim)


def example(
    kind: Kind, source: str, name: str, data: bytes, true_value: str, wrong: Sequence[str]
) -> Example:
    """The evidence of one photo: its true claim and each wrong claim, every look."""
    return Example(
        kind,
        source,
        name,
        claim_looks(kind, data, true_value),
        [claim_looks(kind, data, w) for w in wrong if w != true_value],
    )


def wrong_claims_for(kind: Kind, true_value: str, ocr_value: str | None, n: int, seed: int) -> list[str]:
    """Wrong claims to try on a labelled photo: one character changed (the yardstick's kind), and
    the value the OCR read when a reviewer corrected it (a real misread, claimed)."""
    import random

    from .evaluate import wrong_claims

    out = wrong_claims(kind, true_value, random.Random(f"{seed}:{kind}:{true_value}"), n)
    if ocr_value and ocr_value != true_value:
        out.append(ocr_value)
    return list(dict.fromkeys(out))


def examples_from_manifest(path: Path, n_wrong: int, seed: int, source: str = "development") -> list[Example]:
    """Examples from a `path,kind,expected` manifest (the development photos, used in place)."""
    import csv

    from .evaluate import _norm_expected

    out: list[Example] = []
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            kind = row["kind"].strip()
            if kind not in ("odometer", "plate"):
                continue
            exp = _norm_expected(kind, row["expected"])
            try:
                data = (path.parent / row["path"]).read_bytes()
            except OSError:
                continue
            k: Kind = "odometer" if kind == "odometer" else "plate"
            out.append(example(k, source, row["path"], data, exp, wrong_claims_for(k, exp, None, n_wrong, seed)))
    return out
