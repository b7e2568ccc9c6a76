"""The canonical odometer reading every provider payload becomes, and why an item was refused.

The reading is a NamedTuple rather than a pydantic model: the MQTT fast path builds twenty
thousand a second, and the adapters have already validated every field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, NamedTuple

Unit = Literal["km", "mi", "m"]

#: The largest odometer the service accepts, in kilometres (DESIGN: over 10,000,000 km is bad input).
MAX_ODOMETER_KM = 10_000_000
MAX_EVENT_ID_LENGTH = 200
#: The earliest instant a reading may claim: before it, a car's clock was never set (epoch 0,
#: year 0001) and the instant says nothing about when the car drove.
MIN_RECORDED_AT = datetime(2000, 1, 1, tzinfo=UTC)
#: Items nest at most this deep (the deepest shape, the webhook envelope, needs 4).
MAX_ITEM_DEPTH = 16


class OdometerReading(NamedTuple):
    """A provider's reading in the program's own terms: integer metres and a UTC instant.

    `original_value`/`original_unit` keep what the provider sent, exactly (the value is parsed
    as a decimal, never a binary float).
    """

    event_id: str
    vin: str
    odometer_m: int
    recorded_at: datetime
    original_value: Decimal
    original_unit: Unit


@dataclass(frozen=True, slots=True)
class Problem:
    """One machine-readable reason an item could not be read, with a sentence for people."""

    code: str
    message: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item (or a whole payload) that could not become a reading; `raw` is kept in quarantine."""

    problems: tuple[Problem, ...]
    raw: str

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.code for p in self.problems))


Adapted = OdometerReading | Rejected


class ItemError(ValueError):
    """Raised inside an adapter; the dispatcher turns it into a `Rejected`."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.problem = Problem(code, message, field)
