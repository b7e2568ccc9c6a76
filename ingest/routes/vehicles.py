"""Vehicle enrolment and participations: who takes part, under which rule set, until when; and the
operator's check of ownership.

An enrolment is a claim (`pending`) answered the same way whether or not someone else enrolled the
car (no oracle of other members' cars). An operator checks the registration certificate
(`POST /v1/vehicles/{id}/ownership-checks`): only then does the car take part, receive consents
and show readings and results to its member.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import asyncpg
from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ingest.api import ApiError, Reason, path_id, respond
from ingest.auth import Principal, check_owner, require_principal
from ingest.ownership import (
    Actor,
    CertificateNumberInvalid,
    normalize_certificate_no,
    record_refusal,
    record_verification,
)
from ingest.routes import api
from ingest.state import POOL, REQUEST_ID, SETTINGS
from prorate.calendar import seoul_today
from prorate.eligibility import Refusal, check_eligibility
from prorate.errors import ProrateError
from prorate.identifiers import (
    PLATE_REGIONS,
    IdentifierError,
    parse_emission_certificate,
    parse_plate,
    parse_vin,
)
from prorate.rules import RuleSet, RuleSetError, rule_set_for, rule_set_for_season, rule_set_named
from prorate.season import season_enrolment
from prorate.vehicle import SEOUL_DISTRICTS, Fuel, VehicleFacts, VehicleType, VehicleUse
from storage.audit import write_audit
from storage.vehicles import (
    ActiveParticipationExists,
    DuplicateVehicle,
    NewVehicle,
    OwnershipCheckRefused,
    end_participation,
    get_participation,
    get_vehicle,
    insert_participation,
    insert_vehicle,
    list_vehicles,
    own_claim_of,
    participations_of,
    pending_claims,
)

# -- request and response models ------------------------------------------------------------


def _identifier(parse: Any) -> Any:
    def check(value: str) -> str:
        try:
            return str(parse(value).text)
        except IdentifierError as e:
            raise PydanticCustomError(e.code, e.message) from None

    return check


def _not_future(value: date) -> date:
    if value > seoul_today():
        raise PydanticCustomError("date_in_future", "The date lies in the future.")
    return value


PlateText = Annotated[str, Field(max_length=20), AfterValidator(_identifier(parse_plate))]
VinText = Annotated[str, Field(max_length=20), AfterValidator(_identifier(parse_vin))]
EmissionText = Annotated[
    str, Field(max_length=30), AfterValidator(_identifier(parse_emission_certificate))
]
PastDate = Annotated[date, AfterValidator(_not_future)]


class VehicleIn(BaseModel):
    """A car as its registration certificate (자동차등록증) describes it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    owner_id: str | None = Field(
        None, min_length=1, max_length=200, description="Operators only: enrol for this owner."
    )
    plate: PlateText
    vin: VinText
    registration_region: str = Field(description="시·도 of registration, e.g. 서울")
    district: str = Field(min_length=1, max_length=40, description="자치구, e.g. 강남구")
    use: VehicleUse
    vehicle_type: VehicleType
    seats: int = Field(ge=1, le=100)
    fuel: Fuel
    first_registration_date: PastDate
    acquired_date: PastDate | None = None
    acquired_odometer_km: int | None = Field(None, ge=0, le=10_000_000)
    emission_certificate: EmissionText | None = None
    model: str | None = Field(None, max_length=100)
    owner_is_registered_owner: bool

    @model_validator(mode="after")
    def _consistent(self) -> VehicleIn:
        if self.registration_region not in PLATE_REGIONS:
            raise PydanticCustomError(
                "region_unknown", "registration_region must be a 시·도 name such as 서울 or 경기."
            )
        if self.registration_region == "서울" and self.district not in SEOUL_DISTRICTS:
            raise PydanticCustomError("district_unknown", "district must be one of Seoul's 25 자치구.")
        if (self.acquired_date is None) != (self.acquired_odometer_km is None):
            raise PydanticCustomError(
                "acquisition_incomplete",
                "A used car needs both acquired_date and acquired_odometer_km.",
            )
        if self.acquired_date is not None and self.acquired_date < self.first_registration_date:
            raise PydanticCustomError(
                "acquired_before_registration",
                "acquired_date cannot be before first_registration_date.",
            )
        return self


class ParticipationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    program: Literal["annual", "season"] = "annual"
    season_year: int | None = Field(
        None, ge=2000, le=2100, description="Winter season: the year of its December."
    )
    baseline_daily_km: Decimal | None = Field(
        None, ge=0, le=2000, max_digits=10, decimal_places=4, description="Operators only."
    )
    baseline_note: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _season(self) -> ParticipationIn:
        if self.program == "annual" and self.season_year is not None:
            raise PydanticCustomError("season_year_for_annual", "season_year is only for the season.")
        return self


EndReason = Literal["ownership_transfer", "moved_out_of_seoul", "scrapped", "withdrawn"]


class ParticipationEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: EndReason
    date: PastDate | None = Field(None, description="Default: today in Seoul.")


class ParticipationOut(BaseModel):
    id: int
    vehicle_id: int
    program: str
    season_year: int | None
    rule_set: str
    status: str
    enrolled_on: date
    baseline_daily_km: Decimal | None
    ended_on: date | None
    end_reason: str | None


class VehicleOut(BaseModel):
    id: int
    owner_id: str
    plate: str
    vin: str
    registration_region: str
    district: str
    use: str
    vehicle_type: str
    seats: int
    fuel: str
    first_registration_date: date
    acquired_date: date | None
    acquired_odometer_km: int | None
    emission_certificate: str | None
    low_emission_class: int | None
    model: str | None
    status: str = Field(
        description="pending (enrolled, ownership not yet checked), active (checked: takes part), "
        "retired (left the programme) or refused (the check found another owner or a bad document)"
    )
    created_at: datetime
    ownership_checked_at: datetime | None = Field(description="When an operator checked the registration certificate.")
    ownership_refusal: str | None = Field(description="Why the claim was refused.")
    ownership_note: str | None
    ownership_checked_by: str | None = Field(description="Operators and reviewers only.")
    registration_certificate_no: str | None = Field(description="Operators and reviewers only.")
    participations: list[ParticipationOut]


class OwnershipCheckIn(BaseModel):
    """The operator's check of the registration certificate (자동차등록증)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    outcome: Literal["verified", "refused"]
    registration_certificate_no: str | None = Field(
        None, max_length=60, description="verified: the certificate's document number, as printed."
    )
    vin: VinText | None = Field(None, description="verified: the VIN as printed on the certificate.")
    transfer: bool = Field(
        False,
        description="verified: another member's active car with this VIN or plate changed hands; "
        "retire it (its participations end as an ownership transfer).",
    )
    reason: Literal["not_registered_owner", "document_invalid", "vehicle_mismatch", "other"] | None = Field(
        None, description="refused: why."
    )
    note: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _complete(self) -> OwnershipCheckIn:
        if self.outcome == "verified":
            if self.registration_certificate_no is None or self.vin is None:
                raise PydanticCustomError(
                    "certificate_missing", "A verification names the certificate's document number and VIN."
                )
            try:
                self.registration_certificate_no = normalize_certificate_no(self.registration_certificate_no)
            except CertificateNumberInvalid as e:
                raise PydanticCustomError("certificate_no_invalid", str(e)) from None
            if self.reason is not None:
                raise PydanticCustomError("reason_for_verified", "reason is only for a refusal.")
        else:
            if self.reason is None:
                raise PydanticCustomError("reason_missing", "A refusal names its reason.")
            if self.transfer:
                raise PydanticCustomError("transfer_for_refused", "transfer is only for a verification.")
        return self


class OwnershipClaimOut(BaseModel):
    vehicle: VehicleOut
    competing_claims: int = Field(description="Other members' pending claims of the same VIN.")
    held_by_vehicle: int | None = Field(description="Another member's active car with this VIN or plate.")


class OwnershipClaimList(BaseModel):
    claims: list[OwnershipClaimOut]


class VehicleList(BaseModel):
    vehicles: list[VehicleOut]


# -- helpers --------------------------------------------------------------------------------


def _participation_out(r: asyncpg.Record) -> ParticipationOut:
    return ParticipationOut(
        id=r["id"],
        vehicle_id=r["vehicle_id"],
        program=r["program"],
        season_year=r["season_year"],
        rule_set=r["rule_set"],
        status=r["status"],
        enrolled_on=r["enrolled_on"],
        baseline_daily_km=r["baseline_daily_km"],
        ended_on=r["ended_on"],
        end_reason=r["end_reason"],
    )


def _vehicle_out(v: asyncpg.Record, participations: list[asyncpg.Record], staff: bool = False) -> VehicleOut:
    odo = v["acquired_odometer_m"]
    return VehicleOut(
        id=v["id"],
        owner_id=v["owner_id"],
        plate=v["plate"],
        vin=v["vin"],
        registration_region=v["registration_region"],
        district=v["district"],
        use=v["use"],
        vehicle_type=v["vehicle_type"],
        seats=v["seats"],
        fuel=v["fuel"],
        first_registration_date=v["first_registration_date"],
        acquired_date=v["acquired_date"],
        acquired_odometer_km=None if odo is None else odo // 1000,
        emission_certificate=v["emission_certificate"],
        low_emission_class=v["low_emission_class"],
        model=v["model"],
        status=v["status"],
        created_at=v["created_at"],
        ownership_checked_at=v["ownership_checked_at"],
        ownership_refusal=v["ownership_refusal"],
        ownership_note=v["ownership_note"],
        ownership_checked_by=v["ownership_checked_by"] if staff else None,
        registration_certificate_no=v["registration_certificate_no"] if staff else None,
        participations=[_participation_out(p) for p in participations if p["vehicle_id"] == v["id"]],
    )


def _facts(v: VehicleIn | asyncpg.Record) -> VehicleFacts:
    get = (lambda k: getattr(v, k)) if isinstance(v, VehicleIn) else (lambda k: v[k])
    return VehicleFacts(
        plate=get("plate"),
        registration_region=get("registration_region"),
        use=get("use"),
        vehicle_type=get("vehicle_type"),
        seats=get("seats"),
        fuel=get("fuel"),
        owner_is_registered_owner=get("owner_is_registered_owner") if isinstance(v, VehicleIn) else True,
        first_registration_date=get("first_registration_date"),
    )


def require_checked_ownership(vehicle_status: str, principal: Principal) -> None:
    """A member acts on (and sees the data of) a car only once its ownership was verified; staff
    see every car."""
    if principal.role != "citizen":
        return
    if vehicle_status == "pending":
        raise ApiError(
            409,
            "ownership_not_verified",
            "An operator has not yet checked this car's registration certificate; its readings, "
            "results and consents wait for that check.",
        )
    if vehicle_status == "refused":
        raise ApiError(409, "ownership_refused", "The ownership check of this car was refused.")


def _staff(principal: Principal) -> bool:
    return principal.role in ("operator", "reviewer")


def _refused(refusals: list[Refusal], rules: RuleSet) -> ApiError:
    return ApiError(
        422,
        "not_eligible",
        f"The car cannot take part under rule set {rules.name}.",
        [Reason(code=r.code, message=r.message, message_ko=r.message_ko) for r in refusals],
    )


def _rules_for(request: web.Request, on: date) -> RuleSet:
    forced = request.app[SETTINGS].rule_set
    try:
        return rule_set_named(forced) if forced else rule_set_for(on)
    except RuleSetError as e:
        raise ApiError(422, e.code, e.message) from None


def _snapshot(r: asyncpg.Record) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, date | datetime) else str(v) if isinstance(v, Decimal) else v)
            for k, v in dict(r).items()}


# -- operations -----------------------------------------------------------------------------


@api.operation(
    "POST",
    "/v1/vehicles",
    summary="Enrol a car",
    body=VehicleIn,
    responses={201: VehicleOut, 409: None, 422: None},
    roles={"citizen", "operator"},
    tags=["vehicles"],
)
async def create_vehicle(request: web.Request, principal: Principal, body: VehicleIn) -> web.Response:
    """Checks eligibility under today's rule set; a refusal lists every failed rule. The car is
    `pending` until an operator has checked its registration certificate, and the answer is the
    same whether or not other members enrolled it (409 only when this member already did)."""
    if principal.role == "citizen":
        if body.owner_id not in (None, principal.subject):
            raise ApiError(403, "not_your_vehicle", "Citizens enrol their own cars only.")
        owner_id = principal.subject
    else:
        if body.owner_id is None:
            raise ApiError(
                422,
                "invalid_request",
                "Operators name the owner.",
                [Reason(code="missing", message="owner_id is required for operators", field="owner_id")],
            )
        owner_id = body.owner_id
    rules = _rules_for(request, seoul_today())
    refusals = check_eligibility(_facts(body), seoul_today(), rules)
    if refusals:
        raise _refused(refusals, rules)
    plate = parse_plate(body.plate)
    cert = parse_emission_certificate(body.emission_certificate) if body.emission_certificate else None
    new = NewVehicle(
        owner_id=owner_id,
        plate=plate.text,
        plate_key=f"{plate.front}{plate.syllable}{plate.serial}",
        vin=body.vin,
        district=body.district,
        registration_region=body.registration_region,
        use=body.use,
        vehicle_type=body.vehicle_type,
        seats=body.seats,
        fuel=body.fuel,
        first_registration_date=body.first_registration_date,
        acquired_date=body.acquired_date,
        acquired_odometer_m=None if body.acquired_odometer_km is None else body.acquired_odometer_km * 1000,
        emission_certificate=cert.text if cert else None,
        low_emission_class=cert.low_emission_class if cert else None,
        model=body.model,
    )
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            mine = await own_claim_of(conn, owner_id, new.vin, new.plate_key)
            if mine is not None:
                raise DuplicateVehicle(mine)
            row = await insert_vehicle(conn, new)
        except DuplicateVehicle as e:
            raise ApiError(
                409,
                f"{e.field}_already_enrolled",
                f"You have already enrolled a car with this {'VIN' if e.field == 'vin' else 'plate'}.",
            ) from None
        await write_audit(
            conn,
            actor_role=principal.role,
            actor_id=principal.subject,
            action="vehicle.enrol",
            entity="vehicle",
            entity_id=str(row["id"]),
            before=None,
            after=_snapshot(row),
            request_id=request.get(REQUEST_ID),
        )
    return respond(
        _vehicle_out(row, [], _staff(principal)), 201, headers={"Location": f"/v1/vehicles/{row['id']}"}
    )


@api.operation(
    "GET",
    "/v1/vehicles",
    summary="The caller's cars (operators and reviewers: ?owner_id=)",
    responses={200: VehicleList},
    roles={"citizen", "operator", "reviewer"},
    tags=["vehicles"],
)
async def list_own_vehicles(request: web.Request, principal: Principal, body: None) -> web.Response:
    owner_id = principal.subject if principal.role == "citizen" else request.query.get("owner_id", "")
    pool = request.app[POOL]
    vehicles = await list_vehicles(pool, owner_id)
    parts = await participations_of(pool, [v["id"] for v in vehicles])
    return respond(VehicleList(vehicles=[_vehicle_out(v, parts, _staff(principal)) for v in vehicles]))


async def _load_vehicle(request: web.Request, principal: Principal, vehicle_id: int) -> asyncpg.Record:
    v = await get_vehicle(request.app[POOL], vehicle_id)
    if v is None:
        raise ApiError(404, "vehicle_not_found", "No car is enrolled under this id.")
    check_owner(principal, v["owner_id"])
    return v


@api.operation(
    "GET",
    "/v1/vehicles/{id}",
    summary="One car and its participations",
    responses={200: VehicleOut, 404: None},
    roles={"citizen", "operator", "reviewer"},
    tags=["vehicles"],
)
async def show_vehicle(request: web.Request, principal: Principal, body: None) -> web.Response:
    v = await _load_vehicle(request, principal, path_id(request))
    return respond(_vehicle_out(v, await participations_of(request.app[POOL], [v["id"]]), _staff(principal)))


@api.operation(
    "POST",
    "/v1/vehicles/{id}/participations",
    summary="Take part in the annual programme or a winter season",
    body=ParticipationIn,
    responses={201: ParticipationOut, 404: None, 409: None, 422: None},
    roles={"citizen", "operator"},
    tags=["vehicles"],
)
async def create_participation(
    request: web.Request, principal: Principal, body: ParticipationIn
) -> web.Response:
    """The rule set is the one in force on the day the period begins."""
    principal = require_principal(principal)
    v = await _load_vehicle(request, principal, path_id(request))
    if v["status"] == "pending":
        raise ApiError(
            409,
            "ownership_not_verified",
            "An operator checks the car's registration certificate before it takes part.",
        )
    if v["status"] == "refused":
        raise ApiError(409, "ownership_refused", "The ownership check of this car was refused.")
    if v["status"] != "active":
        raise ApiError(409, "vehicle_retired", "The car left the programme; enrol it again.")
    if body.baseline_daily_km is not None and principal.role != "operator":
        raise ApiError(403, "baseline_override_forbidden", "Only operators set an explicit baseline.")
    today = seoul_today()
    season_year = None
    period_start = today
    season_rules: RuleSet | None = None
    if body.program == "season":
        # The season's dates and enrolment deadline are its rule set's ([season] enrol_by).
        season_year = body.season_year if body.season_year is not None else today.year
        try:
            forced = request.app[SETTINGS].rule_set
            season_rules = rule_set_named(forced) if forced else rule_set_for_season(season_year)
            period_start = season_enrolment(season_year, season_rules.season, today).starts
        except (ProrateError, RuleSetError) as e:
            raise ApiError(422, e.code, e.message) from None
    rules = season_rules or _rules_for(request, period_start)
    refusals = check_eligibility(_facts(v), period_start, rules)
    if refusals:
        raise _refused(refusals, rules)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            row = await insert_participation(
                conn,
                vehicle_id=v["id"],
                program=body.program,
                season_year=season_year,
                rule_set=rules.name,
                enrolled_on=today,
                baseline_daily_km=body.baseline_daily_km,
                baseline_note=body.baseline_note,
            )
        except ActiveParticipationExists:
            raise ApiError(
                409, "participation_exists", f"The car already takes part in the {body.program} programme."
            ) from None
        await write_audit(
            conn,
            actor_role=principal.role,
            actor_id=principal.subject,
            action="participation.create",
            entity="participation",
            entity_id=str(row["id"]),
            before=None,
            after=_snapshot(row),
            request_id=request.get(REQUEST_ID),
        )
    return respond(_participation_out(row), 201)


@api.operation(
    "POST",
    "/v1/participations/{id}/end",
    summary="End a participation (ownership transfer, moved out of Seoul, scrapped, withdrawn)",
    body=ParticipationEndIn,
    responses={200: ParticipationOut, 404: None, 409: None},
    roles={"citizen", "operator"},
    tags=["vehicles"],
)
async def end_participation_op(
    request: web.Request, principal: Principal, body: ParticipationEndIn
) -> web.Response:
    pid = path_id(request)
    pool = request.app[POOL]
    p = await get_participation(pool, pid)
    if p is None:
        raise ApiError(404, "participation_not_found", "No participation has this id.")
    check_owner(principal, p["owner_id"])
    ended_on = body.date or seoul_today()
    if ended_on < p["enrolled_on"]:
        raise ApiError(
            422,
            "end_before_start",
            "A participation cannot end before it began.",
            [Reason(code="end_before_start", message="date is before enrolled_on", field="date")],
        )
    async with pool.acquire() as conn, conn.transaction():
        row = await end_participation(conn, pid, body.reason, ended_on)
        if row is None:
            raise ApiError(409, "participation_already_ended", "This participation has already ended.")
        await write_audit(
            conn,
            actor_role=principal.role,
            actor_id=principal.subject,
            action="participation.end",
            entity="participation",
            entity_id=str(pid),
            before={"status": p["status"]},
            after={"status": "ended", "reason": body.reason, "ended_on": ended_on.isoformat()},
            request_id=request.get(REQUEST_ID),
        )
    return respond(_participation_out(row))


# -- ownership checks (operators) -------------------------------------------------------------


def _check_refused(e: OwnershipCheckRefused) -> ApiError:
    status = {"vehicle_not_found": 404, "vin_mismatch": 422}.get(e.code, 409)
    reasons = [Reason(code="held_by_vehicle", message=f"vehicle {i}") for i in e.holders]
    return ApiError(status, e.code, e.message, reasons)


@api.operation(
    "POST",
    "/v1/vehicles/{id}/ownership-checks",
    summary="Record the check of a car's registration certificate: verified or refused",
    body=OwnershipCheckIn,
    responses={200: VehicleOut, 404: None, 409: None, 422: None},
    roles={"operator"},
    tags=["vehicles"],
)
async def check_ownership(request: web.Request, principal: Principal, body: OwnershipCheckIn) -> web.Response:
    """Verified: the certificate (its document number and VIN recorded) names this member; the
    claim becomes active, other members' pending claims of the VIN are refused, and with
    `transfer` another member's active car with this VIN or plate is retired. Refused: the claim
    (or an earlier verification) is refused; an active car's participations end and its consents
    are withdrawn. Who checked, when and against which document is kept and audited."""
    vehicle_id = path_id(request)
    actor = Actor(principal.role, principal.subject, request.get(REQUEST_ID))
    async with request.app[POOL].acquire() as conn:
        try:
            if body.outcome == "verified":
                assert body.registration_certificate_no is not None and body.vin is not None
                done = await record_verification(
                    conn,
                    vehicle_id,
                    certificate_no=body.registration_certificate_no,
                    vin=body.vin,
                    transfer=body.transfer,
                    actor=actor,
                )
                row = done.vehicle
            else:
                assert body.reason is not None
                row = await record_refusal(conn, vehicle_id, reason=body.reason, note=body.note, actor=actor)
        except OwnershipCheckRefused as e:
            raise _check_refused(e) from None
        parts = await participations_of(conn, [vehicle_id])
    return respond(_vehicle_out(row, parts, staff=True))


@api.operation(
    "GET",
    "/v1/ownership-claims",
    summary="Cars waiting for an ownership check, oldest first (?unchecked=1: active cars never checked)",
    responses={200: OwnershipClaimList},
    roles={"operator"},
    tags=["vehicles"],
)
async def list_ownership_claims(request: web.Request, principal: Principal, body: None) -> web.Response:
    rows = await pending_claims(request.app[POOL], unchecked=request.query.get("unchecked") in ("1", "true"))
    return respond(
        OwnershipClaimList(
            claims=[
                OwnershipClaimOut(
                    vehicle=_vehicle_out(r, [], staff=True),
                    competing_claims=r["competing_claims"],
                    held_by_vehicle=r["held_by_vehicle"],
                )
                for r in rows
            ]
        )
    )
