"""Who may take part: every failed rule is reported, so a citizen can fix all of them at once."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict

from prorate.identifiers import IdentifierError, parse_plate
from prorate.rules import RuleSet, rule_set_for
from prorate.vehicle import VehicleFacts

_FUEL_KO = {
    "electric": "전기차",
    "hydrogen": "수소차",
    "hybrid": "하이브리드차",
    "plug_in_hybrid": "플러그인 하이브리드차",
}
_PLATE_USE_TEXT = {
    "commercial": ("plate_commercial", "운수사업용(바·사·아·자) 번호판", "commercial transport (바/사/아/자)"),
    "rental": ("plate_rental", "렌터카(하·허·호) 번호판", "rental-car (하/허/호)"),
    "delivery": ("plate_delivery", "택배용(배) 번호판", "delivery (배)"),
}


class Refusal(BaseModel):
    """One failed eligibility rule: a code for machines, a sentence in Korean and English for people."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    message_ko: str


def check_eligibility(facts: VehicleFacts, on: date, rules: RuleSet | None = None) -> list[Refusal]:
    """Every rule the car fails on a date, under the rule set in force then (empty: eligible)."""
    r = (rules or rule_set_for(on)).eligibility
    refusals: list[Refusal] = []

    def refuse(code: str, en: str, ko: str) -> None:
        refusals.append(Refusal(code=code, message=en, message_ko=ko))

    if facts.registration_region not in r.registration_regions:
        refuse(
            "not_registered_in_seoul",
            "Only cars registered in Seoul can take part.",
            "서울시에 등록된 차량만 참여할 수 있습니다.",
        )
    if facts.use != "non_commercial":
        refuse(
            "commercial_use",
            "Commercial (business-use) cars cannot take part; only non-commercial cars can.",
            "사업용 차량은 참여할 수 없습니다. 비사업용 차량만 참여할 수 있습니다.",
        )
    if facts.vehicle_type not in r.vehicle_types:
        refuse(
            "vehicle_type_not_eligible",
            "Only passenger cars and vans can take part.",
            "승용차와 승합차만 참여할 수 있습니다.",
        )
    if facts.seats > r.max_seats:
        refuse(
            "too_many_seats",
            f"Vans may take part only with {r.max_seats} seats or fewer.",
            f"승합차는 {r.max_seats}인승 이하만 참여할 수 있습니다.",
        )
    if facts.fuel in r.excluded_fuels:
        ko = _FUEL_KO.get(facts.fuel, facts.fuel)
        refuse(
            "fuel_not_eligible",
            f"{facts.fuel.replace('_', '-')} cars are no longer part of the programme.",
            f"{ko}는 참여 대상이 아닙니다.",
        )
    if not facts.owner_is_registered_owner:
        refuse(
            "not_registered_owner",
            "Only the registered owner of the car can enrol it.",
            "차량 소유자 본인만 가입할 수 있습니다.",
        )
    try:
        plate = parse_plate(facts.plate)
    except IdentifierError as e:
        refuse(e.code, e.message, "차량 번호 형식이 올바르지 않습니다.")
    else:
        if plate.use in r.excluded_plate_uses:
            code, ko, en = _PLATE_USE_TEXT[plate.use]
            refuse(
                code,
                f"The plate is a {en} plate; such cars cannot take part.",
                f"{ko} 차량은 참여할 수 없습니다.",
            )
        if plate.vehicle_class not in r.vehicle_types:
            refuse(
                "plate_vehicle_class_not_eligible",
                "The plate number belongs to a truck or special vehicle; only passenger cars and vans can take part.",
                "번호판이 화물·특수차 번호입니다. 승용차와 승합차만 참여할 수 있습니다.",
            )
        if plate.region is not None and plate.region not in r.registration_regions:
            refuse(
                "plate_region_not_seoul",
                f"The plate shows {plate.region}; only cars registered in Seoul can take part.",
                f"번호판 지역이 {plate.region}입니다. 서울시 등록 차량만 참여할 수 있습니다.",
            )
    return refusals
