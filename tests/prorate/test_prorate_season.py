"""Winter season special points: [1 Dec, 1 Apr), prorated to the season, ≤ 1,800 km earns."""

from __future__ import annotations

from datetime import date

import pytest

from prorate.errors import ProrateError
from prorate.period import Period
from prorate.rules import SeasonRules, rule_set_named
from prorate.season import season_for_period, season_starting, special_points


def _season() -> SeasonRules:
    s = rule_set_named("seoul-2022").season
    assert s is not None
    return s


SEASON = _season()
KM = 1000


def test_season_length() -> None:
    assert season_starting(2022, SEASON).days == 121
    assert season_starting(2023, SEASON).days == 122  # February 2024 has 29 days
    s = season_starting(2022, SEASON)
    assert (s.starts, s.ends, s.end_data_by, s.label) == (date(2022, 12, 1), date(2023, 4, 1), date(2023, 4, 30), "2022-23")


@pytest.mark.parametrize(
    ("actual_m", "points"),
    [(0, 10_000), (1800 * KM, 10_000), (1800 * KM + 1, 0)],
)
def test_limit_on_the_season_itself(actual_m: int, points: int) -> None:
    period = Period(date(2022, 12, 1), date(2023, 4, 1))
    season = season_for_period(period, SEASON)
    assert special_points(actual_m, period, season, SEASON) == points


def test_distance_is_prorated_to_the_season() -> None:
    # 126 days measured: 1,874 km × 121 / 126 = 1,799.6 km -> earns; 1,875 km -> 1,800.6 km -> does not.
    period = Period(date(2022, 11, 28), date(2023, 4, 3))
    season = season_for_period(period, SEASON)
    assert special_points(1874 * KM, period, season, SEASON) == 10_000
    assert special_points(1875 * KM, period, season, SEASON) == 0


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        (date(2022, 5, 1), date(2022, 10, 1), "season_no_overlap"),
        (date(2022, 1, 1), date(2023, 1, 1), "season_several"),
        (date(2022, 12, 1), date(2023, 5, 1), "season_end_too_late"),
    ],
)
def test_periods_that_measure_no_single_season(start: date, end: date, code: str) -> None:
    with pytest.raises(ProrateError) as e:
        season_for_period(Period(start, end), SEASON)
    assert e.value.code == code
