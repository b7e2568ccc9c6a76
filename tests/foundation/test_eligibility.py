"""Eligibility: every rule, under each dated rule set."""

from datetime import date
from typing import Any

import pytest

from prorate.eligibility import check_eligibility
from prorate.rules import RuleSetError, rule_set_for
from prorate.vehicle import VehicleFacts


def facts(**overrides: Any) -> VehicleFacts:
    base: dict[str, Any] = {
        "plate": "123가4567",
        "registration_region": "서울",
        "use": "non_commercial",
        "vehicle_type": "passenger",
        "seats": 5,
        "fuel": "gasoline",
        "owner_is_registered_owner": True,
        "first_registration_date": date(2018, 1, 1),
    }
    base.update(overrides)
    return VehicleFacts(**base)


D2022 = date(2022, 5, 1)
D2025H2 = date(2025, 8, 1)
D2026 = date(2026, 3, 1)


@pytest.mark.parametrize("on", [D2022, D2025H2, D2026])
def test_an_ordinary_seoul_car_is_eligible(on: date) -> None:
    assert check_eligibility(facts(), on) == []


@pytest.mark.parametrize(
    ("overrides", "on", "codes"),
    [
        ({"registration_region": "경기"}, D2022, ["not_registered_in_seoul"]),
        ({"use": "commercial"}, D2022, ["commercial_use"]),
        ({"vehicle_type": "truck", "plate": "850가1234"}, D2022,
         ["vehicle_type_not_eligible", "plate_vehicle_class_not_eligible"]),
        ({"vehicle_type": "special"}, D2022, ["vehicle_type_not_eligible"]),
        ({"vehicle_type": "van", "seats": 12, "plate": "750가1234"}, D2022, []),
        ({"vehicle_type": "van", "seats": 15, "plate": "750가1234"}, D2022, ["too_many_seats"]),
        ({"owner_is_registered_owner": False}, D2022, ["not_registered_owner"]),
        ({"plate": "서울12바3456"}, D2022, ["plate_commercial"]),
        ({"plate": "19허0995"}, D2022, ["plate_rental"]),
        ({"plate": "80배1234"}, D2022, ["plate_delivery", "plate_vehicle_class_not_eligible"]),
        ({"plate": "부산12가3456"}, D2022, ["plate_region_not_seoul"]),
        ({"plate": "12X3456"}, D2022, ["plate_invalid_format"]),
        # fuel: the 2022 set admits every fuel
        ({"fuel": "electric"}, D2022, []),
        ({"fuel": "hydrogen"}, D2022, []),
        ({"fuel": "hybrid"}, D2022, []),
        # from 2025-07 electric and hydrogen are out
        ({"fuel": "electric"}, D2025H2, ["fuel_not_eligible"]),
        ({"fuel": "hydrogen"}, D2025H2, ["fuel_not_eligible"]),
        ({"fuel": "hybrid"}, D2025H2, []),
        ({"fuel": "electric"}, date(2025, 6, 30), []),
        # from 2026 hybrids as well
        ({"fuel": "hybrid"}, D2026, ["fuel_not_eligible"]),
        ({"fuel": "plug_in_hybrid"}, D2026, ["fuel_not_eligible"]),
        ({"fuel": "diesel"}, D2026, []),
        ({"fuel": "lpg"}, D2026, []),
    ],
)
def test_each_rule(overrides: dict[str, Any], on: date, codes: list[str]) -> None:
    assert [r.code for r in check_eligibility(facts(**overrides), on)] == codes


def test_every_failed_rule_is_reported_at_once() -> None:
    refusals = check_eligibility(
        facts(
            registration_region="경기",
            use="commercial",
            vehicle_type="truck",
            seats=20,
            fuel="electric",
            owner_is_registered_owner=False,
            plate="경기80바1234",
        ),
        D2026,
    )
    codes = {r.code for r in refusals}
    assert codes == {
        "not_registered_in_seoul",
        "commercial_use",
        "vehicle_type_not_eligible",
        "too_many_seats",
        "fuel_not_eligible",
        "not_registered_owner",
        "plate_commercial",
        "plate_vehicle_class_not_eligible",
        "plate_region_not_seoul",
    }
    for r in refusals:
        assert r.message and r.message_ko


@pytest.mark.parametrize(
    ("on", "name"),
    [
        (date(2022, 1, 1), "seoul-2022"),
        (date(2025, 6, 30), "seoul-2022"),
        (date(2025, 7, 1), "seoul-2025-07"),
        (date(2025, 12, 31), "seoul-2025-07"),
        (date(2026, 1, 1), "seoul-2026"),
    ],
)
def test_rule_set_by_date(on: date, name: str) -> None:
    assert rule_set_for(on).name == name


def test_no_rule_set_before_the_first() -> None:
    with pytest.raises(RuleSetError) as e:
        rule_set_for(date(2020, 12, 31))
    assert e.value.code == "rules_no_rule_set"
