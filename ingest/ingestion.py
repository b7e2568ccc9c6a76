"""What both telematics transports share: the check limits from settings, and the metrics.

Metrics live in the default Prometheus registry, so `/metrics` shows them. Labels are bounded:
provider names come from the providers table (unknown topics count as "unknown"), reasons from
the fixed reason codes.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

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
INGEST_LAG = Histogram(
    "carmileage_ingest_lag_seconds",
    "received_at - recorded_at of accepted readings",
    ["transport"],
    buckets=(1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400),
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
MQTT_CONNECTED = Gauge("carmileage_mqtt_connected", "1 while the MQTT consumer is connected and subscribed")
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
    accepted: Tally[str] = Tally()
    duplicate: Tally[str] = Tally()
    quarantined: Tally[tuple[str, str]] = Tally()
    lag = INGEST_LAG.labels(transport)
    n = 0
    for item, o in zip(items, outcome.items, strict=True):
        n += 1
        name = provider_names.get(item.provider_id or 0, "unknown")
        if o.status == "accepted":
            accepted[name] += 1
            if item.reading is not None:
                lag.observe(max(0.0, (item.received_at - item.reading.recorded_at).total_seconds()))
        elif o.status == "duplicate":
            duplicate[name] += 1
        else:
            for reason in o.reasons or ("unreadable",):
                quarantined[(name, reason)] += 1
    for name, k in accepted.items():
        READINGS_ACCEPTED.labels(name, transport).inc(k)
    for name, k in duplicate.items():
        READINGS_DUPLICATE.labels(name, transport).inc(k)
    for (name, reason), k in quarantined.items():
        READINGS_QUARANTINED.labels(name, transport, reason).inc(k)
    BATCH_SIZE.labels(transport).observe(n)
    BATCH_SECONDS.labels(transport).observe(elapsed_s)
    if outcome.retries:
        BATCH_RETRIES.labels(transport).inc(outcome.retries)
