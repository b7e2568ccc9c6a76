"""Rule tables load, are chosen by date, and refuse figures that could not decide money exactly."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from prorate import rules as rules_mod
from prorate.errors import ProrateError
from prorate.rounds import parse_round
from prorate.rules import RuleSetError, all_rule_sets, rule_set_for, rule_set_named


def test_rule_sets_by_date() -> None:
    assert rule_set_for(date(2021, 1, 1)).name == "seoul-2021"
    assert rule_set_for(date(2021, 12, 31)).name == "seoul-2021"
    assert rule_set_for(date(2022, 1, 1)).name == "seoul-2022"
    assert rule_set_for(date(2025, 6, 30)).name == "seoul-2022"
    assert rule_set_for(date(2025, 7, 1)).name == "seoul-2025-07"
    assert rule_set_for(date(2026, 1, 1)).name == "seoul-2026"
    with pytest.raises(RuleSetError) as e:
        rule_set_for(date(2020, 12, 31))
    assert e.value.code == "rules_no_rule_set"
    with pytest.raises(RuleSetError):
        rule_set_named("busan-2022")


def test_every_rule_set_has_the_2022_tiers_and_season() -> None:
    for r in all_rule_sets():
        assert [t.points for t in r.tiers] == [20_000, 30_000, 50_000, 70_000]
        assert r.season is not None and r.season.special_points == 10_000
        assert r.participations.pay_transferred is False
        if r.name != "seoul-2021":
            assert r.rounds.months == (1, 3, 5, 6, 7, 9, 11)
            assert r.periods.proration == "days"


def test_the_2021_rule_set_is_the_plan_before_its_2022_changes() -> None:
    r = rule_set_named("seoul-2021")
    assert r.periods.proration == "none"
    assert r.periods.annual_end_within_days == 10
    assert len(r.rounds.months) == 6
    assert r.season is not None and str(r.season.end_data_by) == "04-10"


def test_a_float_figure_in_a_rule_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (rules_mod.RULES_DIR / "seoul-2022.toml").read_text(encoding="utf-8")
    (tmp_path / "x.toml").write_text(text.replace("rate_from_pct = 10", "rate_from_pct = 10.5"), encoding="utf-8")
    monkeypatch.setattr(rules_mod, "RULES_DIR", tmp_path)
    rules_mod.all_rule_sets.cache_clear()
    try:
        with pytest.raises(RuleSetError) as e:
            rules_mod.all_rule_sets()
        assert e.value.code == "rules_malformed"
    finally:
        monkeypatch.undo()
        rules_mod.all_rule_sets.cache_clear()


def test_rounds() -> None:
    r = parse_round("2022-05")
    assert r.cutoff.isoformat() == "2022-05-01T00:00:00+09:00"
    assert parse_round("2022-01").previous().name == "2021-11"
    assert parse_round("2022-06").previous().name == "2022-05"
    # 2021 had six rounds; the first is preceded by nothing the rules know (it names its own last).
    assert parse_round("2021-07").previous().name == "2021-05"
    assert parse_round("2021-01").previous().name == "2020-11"
    for bad in ("2022-04", "2022-13", "22-05", "2021-06", "2020-05"):
        with pytest.raises(ProrateError):
            parse_round(bad)
