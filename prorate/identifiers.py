"""Parsers for the identifiers a car carries: Korean plates, VINs, emission certificate numbers.

They live in the domain because eligibility is decided from them (the plate's Hangul syllable tells
commercial, rental and delivery use; the plate's number tells the vehicle class) and because OCR
validates what it reads against the same grammar.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict


class IdentifierError(ValueError):
    """An identifier that does not follow its grammar; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Korean licence plates
# ---------------------------------------------------------------------------------------------

PlateUse = Literal["non_commercial", "commercial", "rental", "delivery"]
VehicleClass = Literal["passenger", "van", "truck", "special", "emergency"]

#: Registration regions printed on older plates (and on every commercial plate).
PLATE_REGIONS: tuple[str, ...] = (
    "서울", "부산", "대구", "인천", "광주", "대전", "울산", "세종",
    "경기", "강원", "충북", "충남", "전북", "전남", "경북", "경남", "제주",
)

#: Syllables on privately used (비사업용) cars, in the order the plate standard lists them (the
#: OCR's syllable model and the synthetic plates of fixtures/ocr keep this order).
NON_COMMERCIAL_SYLLABLE_ORDER = "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주"
NON_COMMERCIAL_SYLLABLES = frozenset(NON_COMMERCIAL_SYLLABLE_ORDER)
#: 운수사업용 (buses, taxis): not eligible.
COMMERCIAL_SYLLABLES = frozenset("바사아자")
#: 택배 delivery vans: not eligible.
DELIVERY_SYLLABLES = frozenset("배")
#: 렌터카: not eligible.
RENTAL_SYLLABLES = frozenset("하허호")

PLATE_SYLLABLES = NON_COMMERCIAL_SYLLABLES | COMMERCIAL_SYLLABLES | DELIVERY_SYLLABLES | RENTAL_SYLLABLES

_PLATE_RE = re.compile(
    r"^(?P<region>" + "|".join(PLATE_REGIONS) + r")?"
    r"(?P<front>\d{2,3})(?P<syllable>[가-힣])(?P<serial>\d{4})$"
)


class Plate(BaseModel):
    """A parsed Korean licence plate."""

    model_config = ConfigDict(frozen=True)

    text: str
    region: str | None
    front: str
    syllable: str
    serial: str
    use: PlateUse
    vehicle_class: VehicleClass


def normalize_plate_text(text: str) -> str:
    """Fold what people and OCR type around a plate: spaces, hyphens, full-width digits, NFD Hangul."""
    folded = unicodedata.normalize("NFKC", text)
    return re.sub(r"[\s\-·.]", "", folded)


def _use_of(syllable: str) -> PlateUse:
    if syllable in COMMERCIAL_SYLLABLES:
        return "commercial"
    if syllable in DELIVERY_SYLLABLES:
        return "delivery"
    if syllable in RENTAL_SYLLABLES:
        return "rental"
    return "non_commercial"


def _vehicle_class_of(front: str) -> VehicleClass:
    """The number before the syllable encodes the vehicle class (2006 and 2019 numbering rules)."""
    n = int(front)
    if len(front) == 3:
        if 100 <= n <= 699:
            return "passenger"
        if 700 <= n <= 799:
            return "van"
        if 800 <= n <= 979:
            return "truck"
        if 980 <= n <= 997:
            return "special"
        if 998 <= n <= 999:
            return "emergency"
        raise IdentifierError("plate_invalid_number", f"{front} is not a registration number in use.")
    if 1 <= n <= 69:
        return "passenger"
    if 70 <= n <= 79:
        return "van"
    if 80 <= n <= 97:
        return "truck"
    if 98 <= n <= 99:
        return "special"
    raise IdentifierError("plate_invalid_number", f"{front} is not a registration number in use.")


def parse_plate(text: str) -> Plate:
    """Parse `12가3456`, `123가4567` or the regional `서울12가3456`; raise IdentifierError otherwise."""
    s = normalize_plate_text(text)
    m = _PLATE_RE.match(s)
    if m is None:
        raise IdentifierError(
            "plate_invalid_format",
            "A plate reads like 12가3456, 123가4567 or 서울12가3456.",
        )
    region, front, syllable, serial = m["region"], m["front"], m["syllable"], m["serial"]
    if syllable not in PLATE_SYLLABLES:
        raise IdentifierError("plate_invalid_syllable", f"'{syllable}' is not used on Korean plates.")
    if len(front) == 3 and region is not None:
        raise IdentifierError(
            "plate_invalid_format", "Plates with a three-digit number carry no region name."
        )
    use = _use_of(syllable)
    return Plate(
        text=s,
        region=region,
        front=front,
        syllable=syllable,
        serial=serial,
        use=use,
        vehicle_class=_vehicle_class_of(front),
    )


def plate_key(text: str) -> str:
    """The part of a plate that identifies the car: the region prefix may be dropped on re-issue."""
    p = parse_plate(text)
    return f"{p.front}{p.syllable}{p.serial}"


# ---------------------------------------------------------------------------------------------
# VINs (ISO 3779)
# ---------------------------------------------------------------------------------------------

_VIN_ALPHABET = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_VIN_TRANSLITERATION = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7, "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


class Vin(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    wmi: str
    vds: str
    vis: str
    #: Only North-American VINs must carry a check digit in position 9; Korean domestic VINs need not.
    check_digit_valid: bool


def parse_vin(text: str) -> Vin:
    s = unicodedata.normalize("NFKC", text).strip().upper()
    if len(s) != 17:
        raise IdentifierError("vin_invalid_length", "A VIN has exactly 17 characters.")
    if not _VIN_ALPHABET.match(s):
        raise IdentifierError(
            "vin_invalid_character", "A VIN uses digits and capital letters except I, O and Q."
        )
    total = sum(_VIN_TRANSLITERATION[c] * w for c, w in zip(s, _VIN_WEIGHTS, strict=True))
    expected = "X" if total % 11 == 10 else str(total % 11)
    return Vin(text=s, wmi=s[:3], vds=s[3:9], vis=s[9:], check_digit_valid=s[8] == expected)


# ---------------------------------------------------------------------------------------------
# Emission certificate numbers (배출가스 인증번호), e.g. GMY-HD-21-19
# ---------------------------------------------------------------------------------------------
#
# As the low-emission vehicle guide prints them: three letters (the model-year letter, then two
# letters of the certificate's kind: MY, MV, YM, ...), the maker's code (2–3 letters), two digits
# (the OBD digit and the low-emission class digit) and a serial of 1–4 digits:
# GMY-HD-21-19, GMV-DB-21-03, BMV-HT-12-1, BYM-KM-21-58. An earlier parser accepted only `?MY-`.

# Year letters as in VIN position 10: A=2010 ... (I, O, Q, U, Z unused), repeating every 30 years.
_YEAR_LETTERS = "ABCDEFGHJKLMNPRSTVWXY123456789"
_EMISSION_RE = re.compile(
    r"^(?P<year>[A-Z1-9])(?P<kind>[A-Z]{2})-(?P<maker>[A-Z]{2,3})-(?P<obd>\d)(?P<cls>\d)-(?P<serial>\d{1,4})$"
)
#: The OBD digit: 1 or 2, the two values the guide's numbers use; any other digit is a misreading.
OBD_DIGITS = frozenset({1, 2})
#: The class digit: 1–3 for certified low-emission cars (저공해 1·2·3종), 4 for none.
CLASS_DIGITS = frozenset({1, 2, 3, 4})


class EmissionCertificate(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    model_year: int
    #: The two letters after the model-year letter (MY, MV, YM, ...), kept as printed.
    kind: str
    maker: str
    obd_flag: int
    #: 1–3 for certified low-emission cars (저공해 1·2·3종); None when the class digit is 4 (none).
    low_emission_class: int | None
    serial: str


def parse_emission_certificate(text: str, *, today: date | None = None) -> EmissionCertificate:
    """Model year letters repeat every 30 years; pick the latest year not after next year."""
    s = unicodedata.normalize("NFKC", text).strip().upper()
    s = re.sub(r"\s*-\s*", "-", s)
    m = _EMISSION_RE.match(s)
    if m is None:
        raise IdentifierError(
            "emission_certificate_invalid_format",
            "An emission certificate number reads like GMY-HD-21-19: three letters, the maker's code, "
            "two digits and a serial.",
        )
    if int(m["obd"]) not in OBD_DIGITS:
        raise IdentifierError(
            "emission_certificate_invalid_obd", "The OBD digit (the first of the two digits) is 1 or 2."
        )
    cls = int(m["cls"])
    if cls not in CLASS_DIGITS:
        raise IdentifierError(
            "emission_certificate_invalid_class", "The low-emission class digit is 1, 2, 3 or 4."
        )
    letter = m["year"]
    if letter not in _YEAR_LETTERS:
        raise IdentifierError(
            "emission_certificate_invalid_year", f"'{letter}' is not a model-year letter."
        )
    limit = (today or date.today()).year + 1
    year = 2010 + _YEAR_LETTERS.index(letter)
    while year + 30 <= limit:
        year += 30
    while year > limit:
        year -= 30
    return EmissionCertificate(
        text=s,
        model_year=year,
        kind=m["kind"],
        maker=m["maker"],
        obd_flag=int(m["obd"]),
        low_emission_class=None if cls == 4 else cls,
        serial=m["serial"],
    )
