"""The eligibility section of a rule set."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from prorate.vehicle import Fuel, VehicleType


class EligibilityRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    registration_regions: tuple[str, ...]
    vehicle_types: tuple[VehicleType, ...]
    max_seats: int
    excluded_plate_uses: tuple[str, ...]
    excluded_fuels: tuple[Fuel, ...]
