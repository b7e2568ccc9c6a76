"""Evaluation rounds: seven a year (the rule set's months), each with a fixed cutoff instant.

A round named "2022-05" runs in May 2022; its cutoff is 1 May 2022 00:00 Asia/Seoul. It evaluates
the participations whose end reading was verified before its cutoff and that have no result for
the same inputs yet, which in steady state are exactly those verified since the previous round's
cutoff, and which also catches up rounds that were skipped and readings corrected since.
Fixed cutoffs make a round deterministic: running it again on the same inputs changes nothing.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from prorate.errors import ProrateError
from prorate.period import SEOUL
from prorate.rules import RuleSet, RuleSetError, rule_set_for
from prorate.season import Season

_ROUND = re.compile(r"^(\d{4})-(\d{2})$")


class Round(BaseModel):
    model_config = ConfigDict(frozen=True)

    year: int
    month: int

    @property
    def name(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def cutoff(self) -> datetime:
        """End readings verified strictly before this instant belong to this round or an earlier one."""
        return datetime(self.year, self.month, 1, tzinfo=SEOUL)

    def rules(self) -> RuleSet:
        return rule_set_for(self.first_day)

    def previous(self) -> Round:
        """The round before, by the months of this round's rule set."""
        months = self.rules().rounds.months
        earlier = [m for m in months if m < self.month]
        if earlier:
            return Round(year=self.year, month=earlier[-1])
        # The year before may have had other rounds (2021 had six); before the first rule set,
        # this year's months stand in.
        try:
            months = rule_set_for(date(self.year - 1, 12, 31)).rounds.months
        except RuleSetError:
            pass
        return Round(year=self.year - 1, month=months[-1])

    def evaluates_season(self, season: Season) -> bool:
        """Season special points are evaluated only once the season's end-data window has closed."""
        return self.first_day >= season.evaluable_from

    def __str__(self) -> str:
        return self.name


def parse_round(text: str) -> Round:
    """A round from "YYYY-MM"; the month must be one of the rule set's round months."""
    m = _ROUND.match(text.strip())
    if not m:
        raise ProrateError("round_malformed", f"a round is written YYYY-MM (e.g. 2022-05), not {text!r}")
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        raise ProrateError("round_malformed", f"no month {month} in round {text!r}")
    r = Round(year=year, month=month)
    try:
        rules = r.rules()
    except RuleSetError as e:
        raise ProrateError(e.code, f"round {r.name}: {e.message}") from e
    if month not in rules.rounds.months:
        months = ", ".join(f"{x:02d}" for x in rules.rounds.months)
        raise ProrateError(
            "round_not_scheduled",
            f"there is no round in {r.name}: rounds run in months {months} ({rules.name})",
        )
    return r
