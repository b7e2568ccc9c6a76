"""What both telematics transports share: the check limits from settings, and the metrics.

Metrics live in the default Prometheus registry, so `/metrics` shows them. Labels are bounded:
provider names come from the providers table (unknown topics count as "unknown"), reasons from
the fixed reason codes.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from ingest.settings import Settings
from storage.readings import BatchItem, BatchOutcome
from telematics.checks import Limits

READINGS_ACCEPTED = Counter(
    "carmileage_readings_accepted_total", "Telematics readings verified and stored", ["provider", "transport"]
)
READINGS_DUPLICATE = Counter(
    "carmileage_readings_duplicate_total",
    "Telematics readings already stored (redelivered or replayed)",
    ["provider", "transport"],
)
READINGS_QUARANTINED = Counter(
    "carmileage_readings_quarantined_total",
    "Telematics readings (or unreadable payloads) quarantined, by reason",
    ["provider", "transport", "reason"],
)


class BatchHistogram:
    """A labelled histogram observed a whole batch at a time.

    A Prometheus `Histogram` takes one value per call, under a lock; observing every accepted
    reading that way cost more than all the other metrics of a batch together. This one counts a
    batch's values into its buckets in a plain loop and is exposed through the registry's custom
    collector interface, in the same exposition format.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        buckets: Sequence[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.bounds = sorted(float(b) for b in buckets)
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, label_value: str, values: Iterable[float]) -> None:
        bounds = self.bounds
        counts = [0] * (len(bounds) + 1)
        total = 0.0
        for v in values:
            counts[bisect.bisect_left(bounds, v)] += 1
            total += v
        with self._lock:
            mine = self._counts.setdefault(label_value, [0] * (len(bounds) + 1))
            for i, k in enumerate(counts):
                mine[i] += k
            self._sums[label_value] = self._sums.get(label_value, 0.0) + total

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=[self.label])]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            snapshot = [(v, list(c), self._sums[v]) for v, c in self._counts.items()]
        for label_value, counts, total in snapshot:
            buckets, running = [], 0
            for bound, k in zip([*self.bounds, float("inf")], counts, strict=True):
                running += k
                buckets.append((floatToGoString(bound), running))
            family.add_metric([label_value], buckets, total)
        yield family


INGEST_LAG = BatchHistogram(
    "carmileage_ingest_lag_seconds",
    "received_at - recorded_at of accepted readings",
    "transport",
    (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400),
)
BATCH_SIZE = Histogram(
    "carmileage_ingest_batch_readings",
    "Readings per committed batch",
    ["transport"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
BATCH_SECONDS = Histogram(
    "carmileage_ingest_batch_seconds",
    "Time to store and commit one batch",
    ["transport"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge(
    "carmileage_ingest_queue_depth", "Readings received and not yet committed", ["transport", "stage"]
)
CONSUMING = Gauge(
    "carmileage_ingest_consuming", "1 while the readings consumer is connected to the broker and consuming"
)
BATCH_RETRIES = Counter(
    "carmileage_ingest_batch_retries_total", "Batches retried (database unavailable, lost races)", ["transport"]
)


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_speed_kmh=settings.max_speed_kmh,
        max_km_per_day=settings.max_km_per_day,
        clock_skew_s=settings.clock_skew_s,
        resolution_m=settings.odometer_resolution_m,
    )


def record(
    transport: str,
    items: Iterable[BatchItem],
    outcome: BatchOutcome,
    provider_names: dict[int, str],
    elapsed_s: float,
) -> None:
    """Count a committed batch's outcomes by provider and reason, and observe lag and size."""
    for provider_id, counts in outcome.per_provider.items():
        name = provider_names.get(provider_id, "unknown")
        if counts["accepted"]:
            READINGS_ACCEPTED.labels(name, transport).inc(counts["accepted"])
        if counts["duplicates"]:
            READINGS_DUPLICATE.labels(name, transport).inc(counts["duplicates"])
    quarantined: Tally[tuple[str, str]] = Tally()
    lags = []
    for item, o in zip(items, outcome.items, strict=True):
        if o.status == "accepted":
            if item.reading is not None:
                lags.append(max(0.0, (item.received_at - item.reading.recorded_at).total_seconds()))
        elif o.status == "quarantined":
            name = provider_names.get(item.provider_id or 0, "unknown")
            for reason in o.reasons or ("unreadable",):
                quarantined[(name, reason)] += 1
    for (name, reason), k in quarantined.items():
        READINGS_QUARANTINED.labels(name, transport, reason).inc(k)
    INGEST_LAG.observe_many(transport, lags)
    BATCH_SIZE.labels(transport).observe(len(outcome.items))
    BATCH_SECONDS.labels(transport).observe(elapsed_s)
    if outcome.retries:
        BATCH_RETRIES.labels(transport).inc(outcome.retries)
