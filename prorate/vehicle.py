"""What the programme knows about a car when deciding whether it may take part."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict

Fuel = Literal["gasoline", "diesel", "lpg", "cng", "hybrid", "plug_in_hybrid", "electric", "hydrogen"]
VehicleType = Literal["passenger", "van", "truck", "special"]
VehicleUse = Literal["non_commercial", "commercial"]

#: The 25 autonomous districts (자치구) of Seoul.
SEOUL_DISTRICTS: tuple[str, ...] = (
    "종로구", "중구", "용산구", "성동구", "광진구", "동대문구", "중랑구", "성북구", "강북구",
    "도봉구", "노원구", "은평구", "서대문구", "마포구", "양천구", "강서구", "구로구", "금천구",
    "영등포구", "동작구", "관악구", "서초구", "강남구", "송파구", "강동구",
)


class VehicleFacts(BaseModel):
    """The registration facts eligibility is decided on (자동차등록원부)."""

    model_config = ConfigDict(frozen=True)

    plate: str
    registration_region: str
    use: VehicleUse
    vehicle_type: VehicleType
    seats: int
    fuel: Fuel
    owner_is_registered_owner: bool
    first_registration_date: date
