"""`carmileage calc`: single mode, --json, --batch with one answer line per input line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.cli import main
from ingest.commands.calc import calc_lines

ANNUAL = [
    "calc", "--program", "annual", "--start-date", "2022-03-01", "--start-km", "45000",
    "--end-date", "2023-03-05", "--end-km", "53000.5",
]
GOOD = {
    "program": "annual", "start_date": "2022-03-01", "start_km": 45000, "end_date": "2023-03-01",
    "end_km": 50000.25, "baseline_daily_km": 30,
}


def test_single_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ANNUAL, "--first-registration", "2018-03-01"]) == 0
    out = capsys.readouterr().out
    assert "369 days" in out and "70,000" in out and "since first registration 2018-03-01" in out


def test_single_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ANNUAL, "--first-registration", "2018-03-01", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["days"] == 369
    assert r["baseline_km"] == 11365.5  # 45,000 km × 369 / 1,461 = 11,365.50…
    assert r["actual_km"] == 8000.5
    assert r["reduction_km"] == 3365.0
    assert r["reduction_rate_pct"] == 29.61
    assert (r["points"], r["tier_by"], r["rules"]) == (70_000, "amount", "seoul-2022")
    assert r["baseline"]["method"] == "national"


def test_single_season_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["calc", "--program", "season", "--start-date", "2022-11-28", "--start-km", "45000",
            "--end-date", "2023-04-03", "--end-km", "46874", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["season"], r["season_days"], r["season_km"], r["special_points"]) == ("2022-23", 121, 1799.6, 10_000)
    assert r["baseline_km"] is None


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ([], "no baseline inputs"),
        (["--first-registration", "2018-03-01", "--baseline-daily-km", "30"], "not both"),
        (["--first-registration", "2021-12-01"], "district"),
        (["--district", "강남구", "--rules", "nope"], "no rule set named"),
        (["--acquired", "2020-01-01", "--acquired-km", "100"], "first_registration_date"),
    ],
)
def test_single_bad_input_exits_non_zero(extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ANNUAL, *extra]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert needle in captured.err


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"end_date": "2022-02-01"}, "before the start"),
        ({"end_km": 40000}, "below start_km"),
        ({"start_date": "2020-03-01"}, "no rule set covers"),
        ({"start_km": "abc"}, "start_km"),
        ({"start_date": 20220301}, "YYYY-MM-DD"),
        ({"program": "monthly"}, "program"),
    ],
)
def test_batch_error_per_line(change: dict[str, object], needle: str) -> None:
    [(obj, ok)] = list(calc_lines([json.dumps({**GOOD, **change})]))
    assert not ok and needle in obj["error"]


def test_batch_file_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.dumps(GOOD), "{not json", json.dumps({**GOOD, "end_km": 1}), json.dumps({**GOOD, "start_km": 45001})]
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["calc", "--batch", str(f)]) == 1  # at least one line failed
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(out) == 4
    assert out[0]["points"] == 70_000 and "error" in out[1] and "error" in out[2]
    assert out[3]["actual_km"] == 4999.3


def test_batch_with_single_mode_flags_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calc", "--batch", "-", "--program", "annual"]) == 2
    assert "--program" in capsys.readouterr().err


def test_batch_from_standard_input_through_the_installed_command() -> None:
    exe = Path(sys.executable).with_name("carmileage")
    lines = json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "district": "강남구"}) + "\n"
    p = subprocess.run([str(exe), "calc", "--batch", "-"], input=lines, capture_output=True, text=True, check=False)
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 1
    assert out[0]["points"] == 70_000
    assert out[1] == {"error": out[1]["error"], "code": "baseline_contradictory"}


line_st = st.one_of(
    st.builds(lambda km: json.dumps({**GOOD, "end_km": km}), st.integers(0, 100_000)),
    st.text(max_size=20).filter(lambda s: "\n" not in s and "\r" not in s),
)


@given(st.lists(line_st, max_size=15))
def test_batch_answers_every_line_in_order(lines: list[str]) -> None:
    out = list(calc_lines(io.StringIO("".join(x + "\n" for x in lines))))
    assert len(out) == len(lines)
    for line, (obj, ok) in zip(lines, out, strict=True):
        assert ok == ("error" not in obj)
        if ok:
            assert obj["actual_km"] == json.loads(line)["end_km"] - 45000
