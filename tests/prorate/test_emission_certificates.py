"""Emission certificate numbers (배출가스 인증번호) in the low-emission vehicle guide's format.

The issue quotes four numbers of the guide (GMV-DB-21-03, BMV-HT-12-1, BYM-KM-21-58, GMY-HD-21-19);
the guide's full list of 59 was not available to us, so the list below is constructed to the
format it describes: three letters (the model-year letter and two letters of the certificate's
kind), the maker's code, the OBD digit and the class digit, a serial of one to four digits.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prorate.identifiers import IdentifierError, parse_emission_certificate

TODAY = date(2026, 11, 1)

#: (number, model year, kind, maker, OBD digit, low-emission class or None for class digit 4, serial)
QUOTED: list[tuple[str, int, str, str, int, int | None, str]] = [
    ("GMV-DB-21-03", 2016, "MV", "DB", 2, 1, "03"),
    ("BMV-HT-12-1", 2011, "MV", "HT", 1, 2, "1"),
    ("BYM-KM-21-58", 2011, "YM", "KM", 2, 1, "58"),
    ("GMY-HD-21-19", 2016, "MY", "HD", 2, 1, "19"),
]
CONSTRUCTED = [
    (f"{y}{kind}-{maker}-{obd}{cls}-{serial}", year, kind, maker, obd, None if cls == 4 else cls, serial)
    for (y, year), kind, maker, obd, cls, serial in [
        (("A", 2010), "MY", "HD", 1, 3, "7"), (("B", 2011), "MY", "KM", 1, 4, "12"),
        (("C", 2012), "MY", "SY", 2, 2, "104"), (("D", 2013), "MV", "BM", 1, 3, "8"),
        (("E", 2014), "MV", "DB", 2, 1, "33"), (("F", 2015), "YM", "GM", 1, 2, "5"),
        (("H", 2017), "MY", "RS", 1, 4, "2"), (("J", 2018), "MV", "TY", 2, 1, "41"),
        (("K", 2019), "MY", "KM", 2, 3, "120"), (("L", 2020), "YM", "HD", 1, 1, "9"),
        (("M", 2021), "MV", "VW", 1, 2, "0017"), (("N", 2022), "MY", "GN", 2, 1, "66"),
        (("P", 2023), "MV", "VO", 2, 2, "3"), (("R", 2024), "YM", "KM", 1, 3, "250"),
        (("S", 2025), "MY", "HD", 2, 1, "1"), (("T", 2026), "MV", "LR", 1, 4, "18"),
        (("V", 2027), "MY", "HD", 2, 2, "4"),  # next year's models are already certified
        (("W", 1998), "MY", "DW", 1, 4, "27"),  # W = 2028 is after next year: 30 years earlier
        (("G", 2016), "MV", "PS", 1, 3, "6"), (("G", 2016), "MV", "FCA", 2, 2, "11"),
        (("F", 2015), "MV", "HO", 2, 3, "52"), (("E", 2014), "YM", "SY", 1, 1, "6"),
        (("D", 2013), "MY", "TY", 1, 1, "77"), (("C", 2012), "MV", "AD", 2, 2, "9"),
        (("B", 2011), "YM", "RS", 2, 4, "31"), (("A", 2010), "MV", "BM", 1, 1, "2"),
        (("N", 2022), "YM", "KM", 2, 2, "14"), (("M", 2021), "MY", "HD", 1, 1, "152"),
        (("L", 2020), "MV", "DB", 2, 3, "1"), (("K", 2019), "MV", "NS", 1, 2, "23"),
    ]
]


@pytest.mark.parametrize(
    ("text", "model_year", "kind", "maker", "obd", "low_emission_class", "serial"), QUOTED + CONSTRUCTED
)
def test_numbers_in_the_guides_format(
    text: str, model_year: int, kind: str, maker: str, obd: int, low_emission_class: int | None, serial: str
) -> None:
    c = parse_emission_certificate(text, today=TODAY)
    assert (c.text, c.model_year, c.kind, c.maker, c.obd_flag, c.low_emission_class, c.serial) == (
        text, model_year, kind, maker, obd, low_emission_class, serial)


def test_the_issues_numbers_refused_before_are_read() -> None:
    for text in ("GMV-DB-21-03", "BMV-HT-12-1", "BYM-KM-21-58"):
        assert parse_emission_certificate(text, today=TODAY).low_emission_class in (1, 2)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("GMV-DB-01-03", "emission_certificate_invalid_obd"),
        ("GMV-DB-31-03", "emission_certificate_invalid_obd"),
        ("GMV-DB-91-03", "emission_certificate_invalid_obd"),
        ("GMV-DB-20-03", "emission_certificate_invalid_class"),
        ("GMV-DB-15-03", "emission_certificate_invalid_class"),
        ("IMV-DB-21-03", "emission_certificate_invalid_year"),
        ("OMY-HD-21-19", "emission_certificate_invalid_year"),
        ("GM-DB-21-03", "emission_certificate_invalid_format"),
        ("GMVV-DB-21-03", "emission_certificate_invalid_format"),
        ("G1V-DB-21-03", "emission_certificate_invalid_format"),
        ("GMV-D-21-03", "emission_certificate_invalid_format"),
        ("GMV-DBXX-21-03", "emission_certificate_invalid_format"),
        ("GMV-DB-2-03", "emission_certificate_invalid_format"),
        ("GMV-DB-21-12345", "emission_certificate_invalid_format"),
        ("GMV-DB-21-", "emission_certificate_invalid_format"),
        ("GMVDB2103", "emission_certificate_invalid_format"),
    ],
)
def test_invalid_numbers(text: str, code: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_emission_certificate(text, today=TODAY)
    assert e.value.code == code


def test_what_people_type_is_folded() -> None:
    for typed in ("gmv-db-21-03", " GMV - DB - 21 - 03 ", "ＧＭＶ－ＤＢ－２１－０３"):
        assert parse_emission_certificate(typed, today=TODAY).text == "GMV-DB-21-03"


letters = st.sampled_from("ABCDEFGHJKLMNPRSTVWXY")
caps = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)


@given(letters, caps, st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=3), st.integers(1, 2),
       st.integers(1, 4), st.text("0123456789", min_size=1, max_size=4))
def test_every_number_of_the_format_is_read_back(
    year: str, kind: str, maker: str, obd: int, cls: int, serial: str
) -> None:
    text = f"{year}{kind}-{maker}-{obd}{cls}-{serial}"
    c = parse_emission_certificate(text, today=TODAY)
    assert (c.text, c.kind, c.maker, c.obd_flag, c.serial) == (text, kind, maker, obd, serial)
    assert c.low_emission_class == (None if cls == 4 else cls)
    assert TODAY.year + 1 - 30 < c.model_year <= TODAY.year + 1
