"""The providers' MQTT broker: its contract (topics, credentials) and the project's own nodes.

Providers publish QoS 1 to `carmileage/v1/providers/<name>/readings` with their own username
(the provider's name) and password. The broker is RabbitMQ (`ingest.broker.rabbitmq`): its MQTT
plugin PUBACKs a reading once a quorum queue has it durably, and workers consume that queue.
The database is the source of truth for providers' broker credentials (a hash of each password);
`carmileage providers` writes them to the broker through its management API.
"""

from __future__ import annotations

import secrets

TOPIC_FILTER = "carmileage/v1/providers/+/readings"


def topic_for(provider: str) -> str:
    return f"carmileage/v1/providers/{provider}/readings"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    """What the database keeps of a provider's broker password (RabbitMQ's salted SHA-256)."""
    from ingest.broker.rabbitmq import rabbit_hash

    return rabbit_hash(password)
