"""Every plate format DESIGN.md names, VINs and emission certificate numbers, table-driven."""

from datetime import date

import pytest

from prorate.identifiers import (
    IdentifierError,
    parse_emission_certificate,
    parse_plate,
    parse_vin,
    plate_key,
)


@pytest.mark.parametrize(
    ("text", "normalized", "region", "front", "syllable", "serial", "use", "vehicle_class"),
    [
        # 2-digit front (2006–2019 numbering)
        ("12가3456", "12가3456", None, "12", "가", "3456", "non_commercial", "passenger"),
        ("01소7351", "01소7351", None, "01", "소", "7351", "non_commercial", "passenger"),
        # 3-digit front (since 2019)
        ("123가4567", "123가4567", None, "123", "가", "4567", "non_commercial", "passenger"),
        ("389고8778", "389고8778", None, "389", "고", "8778", "non_commercial", "passenger"),
        # older regional plates
        ("서울12가3456", "서울12가3456", "서울", "12", "가", "3456", "non_commercial", "passenger"),
        ("경기04노7823", "경기04노7823", "경기", "04", "노", "7823", "non_commercial", "passenger"),
        # spacing, hyphens and full-width digits as people type them
        ("서울 12 가 3456", "서울12가3456", "서울", "12", "가", "3456", "non_commercial", "passenger"),
        ("12가-3456", "12가3456", None, "12", "가", "3456", "non_commercial", "passenger"),
        ("１２가３４５６", "12가3456", None, "12", "가", "3456", "non_commercial", "passenger"),
        # commercial transport syllables 바/사/아/자
        ("서울12바3456", "서울12바3456", "서울", "12", "바", "3456", "commercial", "passenger"),
        ("서울31사1234", "서울31사1234", "서울", "31", "사", "1234", "commercial", "passenger"),
        ("부산75아1234", "부산75아1234", "부산", "75", "아", "1234", "commercial", "van"),
        ("12자3456", "12자3456", None, "12", "자", "3456", "commercial", "passenger"),
        # delivery 배
        ("인천86배1209", "인천86배1209", "인천", "86", "배", "1209", "delivery", "truck"),
        ("80배1234", "80배1234", None, "80", "배", "1234", "delivery", "truck"),
        # rental 하/허/호
        ("19허0995", "19허0995", None, "19", "허", "0995", "rental", "passenger"),
        ("34하3118", "34하3118", None, "34", "하", "3118", "rental", "passenger"),
        ("123호4567", "123호4567", None, "123", "호", "4567", "rental", "passenger"),
        # vehicle classes by number
        ("70가1234", "70가1234", None, "70", "가", "1234", "non_commercial", "van"),
        ("750가1234", "750가1234", None, "750", "가", "1234", "non_commercial", "van"),
        ("850가1234", "850가1234", None, "850", "가", "1234", "non_commercial", "truck"),
        ("98가1234", "98가1234", None, "98", "가", "1234", "non_commercial", "special"),
        ("985가1234", "985가1234", None, "985", "가", "1234", "non_commercial", "special"),
        ("998가1234", "998가1234", None, "998", "가", "1234", "non_commercial", "emergency"),
    ],
)
def test_plates(
    text: str,
    normalized: str,
    region: str | None,
    front: str,
    syllable: str,
    serial: str,
    use: str,
    vehicle_class: str,
) -> None:
    p = parse_plate(text)
    assert (p.text, p.region, p.front, p.syllable, p.serial, p.use, p.vehicle_class) == (
        normalized,
        region,
        front,
        syllable,
        serial,
        use,
        vehicle_class,
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "plate_invalid_format"),
        ("12345678", "plate_invalid_format"),
        ("1가3456", "plate_invalid_format"),
        ("1234가5678", "plate_invalid_format"),
        ("12가345", "plate_invalid_format"),
        ("12가34567", "plate_invalid_format"),
        ("도쿄12가3456", "plate_invalid_format"),
        ("12A3456", "plate_invalid_format"),
        ("12갂3456", "plate_invalid_syllable"),
        ("12카3456", "plate_invalid_syllable"),
        ("서울123가4567", "plate_invalid_format"),
        ("00가1234", "plate_invalid_number"),
        ("099가1234", "plate_invalid_number"),
        ("<script>", "plate_invalid_format"),
    ],
)
def test_invalid_plates(text: str, code: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_plate(text)
    assert e.value.code == code


def test_plate_key_ignores_region() -> None:
    assert plate_key("서울12가3456") == plate_key("12가3456") == "12가3456"


@pytest.mark.parametrize(
    ("text", "normalized", "check_digit_valid"),
    [
        ("1M8GDM9AXKP042788", "1M8GDM9AXKP042788", True),
        ("1m8gdm9axkp042788", "1M8GDM9AXKP042788", True),
        ("KMHD841CBLU123456", "KMHD841CBLU123456", False),
        (" KMHD841CBLU123456 ", "KMHD841CBLU123456", False),
    ],
)
def test_vins(text: str, normalized: str, check_digit_valid: bool) -> None:
    v = parse_vin(text)
    assert v.text == normalized
    assert v.wmi == normalized[:3]
    assert v.check_digit_valid is check_digit_valid


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("KMHD841CBLU12345", "vin_invalid_length"),
        ("KMHD841CBLU1234567", "vin_invalid_length"),
        ("KMHD841CBLU12345I", "vin_invalid_character"),
        ("KMHD841CBLO123456", "vin_invalid_character"),
        ("KMHD841CBLQ123456", "vin_invalid_character"),
        ("KMHD841CBL-123456", "vin_invalid_character"),
    ],
)
def test_invalid_vins(text: str, code: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_vin(text)
    assert e.value.code == code


@pytest.mark.parametrize(
    ("text", "model_year", "maker", "obd", "low_emission_class"),
    [
        ("GMY-HD-21-19", 2016, "HD", 2, 1),
        ("KMY-KM-12-03", 2019, "KM", 1, 2),
        ("LMY-HD-13-120", 2020, "HD", 1, 3),
        ("NMY-SY-14-7", 2022, "SY", 1, None),
        ("gmy-hd-21-19", 2016, "HD", 2, 1),
    ],
)
def test_emission_certificates(
    text: str, model_year: int, maker: str, obd: int, low_emission_class: int | None
) -> None:
    c = parse_emission_certificate(text, today=date(2026, 11, 1))
    assert (c.model_year, c.maker, c.obd_flag, c.low_emission_class) == (
        model_year,
        maker,
        obd,
        low_emission_class,
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("GMY-HD-25-19", "emission_certificate_invalid_class"),
        ("GMY-HD-20-19", "emission_certificate_invalid_class"),
        ("IMY-HD-21-19", "emission_certificate_invalid_year"),
        ("GMYHD2119", "emission_certificate_invalid_format"),
        ("G1X-HD-21-19", "emission_certificate_invalid_format"),
    ],
)
def test_invalid_emission_certificates(text: str, code: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_emission_certificate(text)
    assert e.value.code == code
