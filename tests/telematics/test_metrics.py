"""The batched lag histogram exposes exactly what a Prometheus Histogram fed one value at a time
would (buckets, count and sum), so dashboards and alerts cannot tell them apart."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from ingest.ingestion import INGEST_LAG, BatchHistogram

BOUNDS = INGEST_LAG.bounds
# Values on and around every bucket bound as well as anywhere in between.
values = st.one_of(
    st.sampled_from([b + d for b in BOUNDS for d in (-1e-9, 0.0, 1e-9)] + [0.0]),
    st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False),
)


def exposition(registry: CollectorRegistry, name: str) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(name) and not line.startswith(f"{name}_created"):
            key, value = line.rsplit(" ", 1)
            out[key.removeprefix(name)] = float(value)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(values, max_size=30), max_size=5))
def test_batch_histogram_matches_one_observation_at_a_time(batches: list[list[float]]) -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = BatchHistogram("lag", "lag", "transport", BOUNDS, registry=ours_registry)
    theirs = Histogram("lag", "lag", ["transport"], buckets=BOUNDS, registry=theirs_registry)
    for batch in batches:
        ours.observe_many("mqtt", batch)
        series = theirs.labels("mqtt")  # a batch's series exists even when nothing was accepted
        for v in batch:
            series.observe(v)
    got, want = exposition(ours_registry, "lag"), exposition(theirs_registry, "lag")
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-9), key
