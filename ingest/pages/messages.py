"""What citizens and reviewers read: statuses and reason codes in Korean and English.

One catalogue for the API (each reason carries `message` and `message_ko`) and the pages, so a
code never reaches a person without a sentence.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["ko", "en"]

STATUSES: dict[str, tuple[str, str]] = {
    "processing": ("Being checked — this takes a few seconds.", "확인 중입니다. 잠시만 기다려 주세요."),
    "accepted": ("Accepted: the reading is verified.", "승인되었습니다. 주행거리가 확인되었습니다."),
    "in_review": ("A reviewer will check your photos.", "담당자가 사진을 검토할 예정입니다."),
    "rejected": ("Rejected.", "반려되었습니다."),
    "retake": ("Please take the photos again and resend them.", "사진을 다시 촬영하여 등록해 주세요."),
}

REASONS: dict[str, tuple[str, str]] = {
    # the machine's reasons
    "plate_unread": ("The licence plate could not be read.", "번호판을 읽을 수 없습니다."),
    "plate_not_confirmed": (
        "The plate could not be confirmed as your enrolled car's.",
        "번호판이 등록된 차량과 일치하는지 확인할 수 없습니다.",
    ),
    "plate_mismatch": ("The plate in the photo is not your enrolled car's.", "사진의 번호판이 등록된 차량과 다릅니다."),
    "odometer_unread": ("The odometer could not be read.", "계기판의 누적 주행거리를 읽을 수 없습니다."),
    "odometer_not_confirmed": (
        "The dashboard photo could not confirm the distance you entered.",
        "계기판 사진으로 입력하신 주행거리를 확인할 수 없습니다.",
    ),
    "odometer_differs_from_claim": (
        "The odometer shows a different distance from the one you entered.",
        "계기판의 주행거리가 입력하신 값과 다릅니다.",
    ),
    "same_photo_for_dashboard_and_plate": (
        "The same photo was sent for the dashboard and the plate.",
        "계기판과 번호판에 같은 사진을 보냈습니다.",
    ),
    "capture_time_missing": ("The photo carries no capture time.", "사진에 촬영 시각 정보가 없습니다."),
    "captured_in_future": ("The photo's capture time lies in the future.", "사진의 촬영 시각이 현재보다 늦습니다."),
    "captured_too_long_before_upload": (
        "The photo was taken too long before it was uploaded.",
        "촬영 후 등록 기한(기본 30일)이 지난 사진입니다.",
    ),
    "captured_before_start": (
        "The photo was taken before the start reading.",
        "시작 주행거리 등록일 이전에 촬영된 사진입니다.",
    ),
    "end_window_not_open": ("End photos are not accepted yet.", "아직 종료 사진 등록 기간이 아닙니다."),
    "end_window_closed": ("The period for registering end photos has closed.", "종료 사진 등록 기간이 지났습니다."),
    "season_rules_missing": ("No winter season applies to this participation.", "적용되는 계절관리제 기간이 없습니다."),
    "reused_photo": ("This photo was uploaded before.", "이미 등록된 적이 있는 사진입니다."),
    "similar_to_earlier_photo": (
        "This photo closely resembles one uploaded before.",
        "이전에 등록된 사진과 매우 비슷합니다.",
    ),
    "stage_already_verified": (
        "This stage already has a verified reading.",
        "이 단계의 주행거리는 이미 확인되었습니다.",
    ),
    "ocr_failed": ("The photos could not be processed automatically.", "사진을 자동으로 처리하지 못했습니다."),
    "dashboard_unusable": ("The dashboard photo cannot be used.", "계기판 사진을 사용할 수 없습니다."),
    "plate_photo_unusable": ("The plate photo cannot be used.", "번호판 사진을 사용할 수 없습니다."),
    # the telematics order-free checks (telematics/checks.py)
    "odometer_decreased": (
        "The distance is lower than an earlier verified reading of this car.",
        "이 차량의 이전 확인 주행거리보다 작습니다.",
    ),
    "conflicting_reading": (
        "Another reading was recorded at the same moment with a different distance.",
        "같은 시각에 다른 주행거리가 이미 기록되어 있습니다.",
    ),
    "speed_implausible": (
        "The distance since the neighbouring reading implies an implausible speed.",
        "인접 기록과 비교해 불가능한 속도에 해당하는 주행거리입니다.",
    ),
    "distance_per_day_implausible": (
        "The distance since the neighbouring reading is implausible for the days between.",
        "인접 기록과 비교해 하루 주행거리가 비정상적으로 큽니다.",
    ),
    "unit_jump": ("The value looks like it was given in the wrong unit.", "단위가 잘못 입력된 값으로 보입니다."),
    "recorded_in_future": ("The reading's time lies in the future.", "기록 시각이 현재보다 늦습니다."),
    # reviewers' rejection reasons
    "unreadable": ("The photo is unreadable.", "사진을 판독할 수 없습니다."),
    "trip_instead_of_odo": (
        "The photo shows the trip meter, not the total distance (ODO).",
        "누적 주행거리(ODO)가 아닌 구간 주행거리(TRIP)가 촬영되었습니다.",
    ),
    "other_car": ("The photos show another car.", "다른 차량의 사진입니다."),
    "out_of_window": ("The photo was not taken within the registration period.", "등록 기간 내에 촬영된 사진이 아닙니다."),
    "suspected_tampering": ("The photo appears to have been altered.", "사진이 변조된 것으로 보입니다."),
    # upload refusals
    "not_an_image": ("The file is not a JPEG, PNG or HEIC photo.", "JPEG, PNG, HEIC 형식의 사진이 아닙니다."),
    "too_many_pixels": ("The photo has more than 40 megapixels.", "사진 해상도가 4천만 화소를 넘습니다."),
    "photo_too_large": ("The photo is larger than 15 MB.", "사진 파일이 15MB를 넘습니다."),
    "missing_part": ("A required part of the form is missing.", "필수 항목이 빠졌습니다."),
    "invalid_stage": ("Choose start, mid or end.", "시작, 중간, 종료 중 하나를 선택해 주세요."),
    "invalid_claimed_km": (
        "Enter the total distance as whole kilometres (0 to 9,999,999).",
        "누적 주행거리를 km 단위 정수(0~9,999,999)로 입력해 주세요.",
    ),
}

_PHOTO_PREFIXES = (("dashboard_", "dashboard_unusable"), ("plate_photo_", "plate_photo_unusable"))


def reason_text(code: str, lang: Lang = "en") -> str:
    """A sentence for a reason code; codes from other checks fall back to a generic sentence."""
    pair = REASONS.get(code)
    if pair is None:
        for prefix, general in _PHOTO_PREFIXES:
            if code.startswith(prefix):
                pair = REASONS[general]
                break
    if pair is None:
        pair = (f"A check on the reading did not pass ({code}).", f"주행거리 검증을 통과하지 못했습니다 ({code}).")
    return pair[0] if lang == "en" else pair[1]


def status_text(status: str, lang: Lang = "en") -> str:
    pair = STATUSES.get(status, (status, status))
    return pair[0] if lang == "en" else pair[1]


#: Words on the pages: key -> (English, Korean).
UI: dict[str, tuple[str, str]] = {
    "app.title": ("Car-mileage", "승용차마일리지"),
    "lang.other": ("한국어", "English"),
    "sign_in.title": ("Sign in", "로그인"),
    "sign_in.token": ("Access token", "접속 토큰"),
    "sign_in.help": (
        "Paste the access token you were given. This browser keeps a session of its own, which ends "
        "when you sign out or after a while without use.",
        "발급받은 접속 토큰을 붙여 넣으세요. 이 브라우저에는 별도의 세션이 보관되며, 로그아웃하거나 "
        "일정 시간 사용하지 않으면 끝납니다.",
    ),
    "sign_in.submit": ("Sign in", "로그인"),
    "sign_in.bad": ("This token is unknown, revoked or expired.", "알 수 없거나 만료된 토큰입니다."),
    "sign_in.expired": (
        "This token has expired. Ask your district office for a new one.",
        "이 토큰은 만료되었습니다. 구청에 새 토큰을 요청하세요.",
    ),
    "sign_in.revoked": ("This token was revoked.", "이 토큰은 폐기되었습니다."),
    "sign_out": ("Sign out", "로그아웃"),
    "sign_in.oidc": ("Sign in with", "다음으로 로그인:"),
    "sign_in.or_token": ("Or sign in with an access token", "또는 접속 토큰으로 로그인"),
    "oidc.refused": ("Sign-in was refused.", "로그인이 거부되었습니다."),
    "oidc.reason": ("Reason:", "사유:"),
    "oidc.again": ("Sign in again", "다시 로그인"),
    "oidc.signed_in": ("You are signed in.", "로그인되었습니다."),
    "oidc.continue": ("Continue", "계속"),
    "oidc.signed_out": (
        "You are signed out here; now signing out at the identity provider.",
        "로그아웃되었습니다. 인증 제공자에서도 로그아웃합니다.",
    ),
    "oidc.not_configured": (
        "Sign-in with an identity provider is not set up here; use an access token.",
        "외부 인증 로그인이 설정되어 있지 않습니다. 접속 토큰을 사용하세요.",
    ),
    "oidc.state_unknown": ("This sign-in was not started here.", "여기서 시작된 로그인이 아닙니다."),
    "oidc.state_replayed": ("This sign-in was already used.", "이미 사용된 로그인입니다."),
    "oidc.state_expired": ("This sign-in took too long.", "로그인 시간이 초과되었습니다."),
    "csrf.bad": (
        "The form expired or did not come from this site. Reload the page and try again.",
        "양식이 만료되었거나 이 사이트에서 보낸 것이 아닙니다. 페이지를 새로 고친 뒤 다시 시도해 주세요.",
    ),
    "forbidden": ("This page is not for your account.", "이 계정으로는 볼 수 없는 페이지입니다."),
    "not_found": ("There is nothing here.", "페이지를 찾을 수 없습니다."),
    "upload.title": ("Register odometer photos", "주행거리 사진 등록"),
    "upload.intro": (
        "Take one photo of the dashboard showing the total distance (ODO) and one of the licence plate.",
        "누적 주행거리(ODO)가 보이는 계기판 사진과 번호판 사진을 각각 한 장씩 촬영해 주세요.",
    ),
    "upload.car": ("Car and programme", "차량 및 참여 프로그램"),
    "upload.no_car": (
        "You have no active participation. Enrol your car first.",
        "진행 중인 참여가 없습니다. 먼저 차량을 등록해 주세요.",
    ),
    "upload.stage": ("Which reading", "등록 구분"),
    "program.annual": ("annual", "연간"),
    "program.season": ("winter season", "겨울철 계절관리제"),
    "stage.start": ("Start", "시작"),
    "stage.mid": ("Interim", "중간"),
    "stage.end": ("End", "종료"),
    "upload.claimed": ("Total distance shown (km)", "계기판 누적 주행거리 (km)"),
    "upload.dashboard": ("Dashboard photo (odometer)", "계기판 사진 (누적 주행거리)"),
    "upload.plate": ("Licence-plate photo", "번호판 사진"),
    "upload.take": ("Take or choose a photo", "사진 촬영 또는 선택"),
    "upload.submit": ("Send", "등록하기"),
    "upload.sending": ("Sending…", "전송 중…"),
    "upload.sent": ("Received. Checking your photos…", "접수되었습니다. 사진을 확인하고 있습니다…"),
    "upload.failed": ("Sending failed. Check your connection and try again.", "전송에 실패했습니다. 연결을 확인하고 다시 시도해 주세요."),
    "upload.need_both": ("Choose both photos and enter the distance.", "사진 두 장을 선택하고 주행거리를 입력해 주세요."),
    "upload.recent": ("Your recent photos", "최근 등록 내역"),
    "results.title": ("Your results", "평가 결과"),
    "results.period": ("Period", "평가 기간"),
    "results.days": ("days", "일"),
    "results.driven": ("Driven", "주행거리"),
    "results.baseline": ("Baseline", "기준 주행거리"),
    "results.reduction": ("Reduction", "감축"),
    "results.points": ("Points", "인센티브"),
    "results.special": ("Season special points", "계절관리제 특별포인트"),
    "results.round": ("Round", "평가 차수"),
    "upload.limits": ("JPEG, PNG or HEIC, up to 15 MB each.", "JPEG, PNG, HEIC 형식, 장당 15MB 이하."),
    "submission.title": ("Photo registration", "사진 등록 결과"),
    "submission.back": ("Register other photos", "다른 사진 등록하기"),
    "submission.reasons": ("Why", "사유"),
    "review.queue": ("Review queue", "검토 대기열"),
    "review.open": ("open", "건 대기"),
    "review.filter": ("Filter", "필터"),
    "review.reason": ("Reason", "사유"),
    "review.district": ("District", "자치구"),
    "review.min_age": ("Older than (hours)", "경과 시간 (시간 이상)"),
    "review.any": ("any", "전체"),
    "review.claim_next": ("Claim next (N)", "다음 건 가져오기 (N)"),
    "review.empty": ("Nothing to review for these filters.", "조건에 맞는 검토 대상이 없습니다."),
    "review.resolved": ("Resolved dispute", "처리 완료"),
    "review.age": ("Waiting", "대기 시간"),
    "review.held_by": ("Held by", "담당자"),
    "review.kind": ("Kind", "유형"),
    "review.dispute": ("Dispute", "검토 건"),
    "review.claim_this": ("Claim this dispute", "이 건 가져오기"),
    "review.held_other": ("Another reviewer holds this dispute.", "다른 검토자가 처리 중인 건입니다."),
    "review.lease": ("Your claim lasts until", "담당 유지 시각"),
    "review.lease_lost": (
        "Your claim on this dispute has lapsed; another reviewer may hold it now.",
        "이 건의 담당이 해제되었습니다. 다른 검토자가 가져갔을 수 있습니다.",
    ),
    "review.claimed_km": ("Claimed by the citizen", "시민 입력값"),
    "review.ocr_value": ("Read by OCR", "OCR 판독값"),
    "review.confidence": ("confidence", "신뢰도"),
    "review.candidates": ("Candidates", "후보"),
    "review.enrolled_plate": ("Enrolled plate", "등록 번호판"),
    "review.plate_read": ("Plate read", "번호판 판독"),
    "review.timeline": ("This car's verified readings", "이 차량의 확인된 주행거리"),
    "review.no_readings": ("No verified readings yet.", "확인된 주행거리가 아직 없습니다."),
    "review.accept": ("Accept OCR value (A)", "OCR 값 승인 (A)"),
    "review.correct": ("Correct to (C)", "값 수정 (C)"),
    "review.reject": ("Reject (R)", "반려 (R)"),
    "review.note": ("Note (optional)", "메모 (선택)"),
    "review.release": ("Give back to the queue", "대기열로 돌려보내기"),
    "review.shortcuts": (
        "Keys: A accept · C correct · R reject · Z zoom · N next · Esc back",
        "단축키: A 승인 · C 수정 · R 반려 · Z 확대 · N 다음 · Esc 목록",
    ),
    "review.zoom_in": ("Zoom in", "확대"),
    "review.zoom_out": ("Zoom out", "축소"),
    "review.zoom_reset": ("Fit", "맞춤"),
    "review.decision": ("Machine's findings", "자동 판정 내역"),
    "review.reuse": ("Matches earlier submission", "이전 등록과 일치"),
    "review.stage": ("Stage", "구분"),
    "review.resolution": ("Resolution", "처리 결과"),
    "review.photo_missing": ("No photo", "사진 없음"),
    "review.quarantined": ("Quarantined reading", "격리된 주행거리"),
    # the operator dashboard
    "op.title": ("Operator dashboard", "운영 현황"),
    "op.nothing": ("Nothing yet.", "아직 없습니다."),
    "op.members": ("Members", "참여 회원"),
    "op.verified_readings": ("Verified readings", "확인된 주행거리"),
    "op.start_verified": ("Start verified", "시작 확인"),
    "op.end_verified": ("End verified", "종료 확인"),
    "op.auto_accept": ("OCR auto-accept rate", "OCR 자동 승인율"),
    "op.backlog": ("Review backlog", "검토 대기"),
    "op.oldest": ("Oldest waiting", "최장 대기"),
    "op.dead": ("Undeliverable events", "전송 실패 이벤트"),
    "op.by_district": ("By district", "자치구별"),
    "op.by_round": ("Reductions and points by round", "평가 차수별 감축량과 인센티브"),
    "op.results": ("Results", "결과"),
    "op.all": ("all districts", "전체"),
    "op.ingestion": ("Ingestion", "주행거리 수집"),
    "op.per_day": ("Readings per day", "일별 수집 건수"),
    "op.accepted": ("stored", "저장"),
    "op.duplicates": ("duplicates", "중복"),
    "op.quarantined": ("quarantined", "격리"),
    "op.quarantine_reasons": ("Quarantine reasons", "격리 사유"),
    "op.ocr_review": ("OCR and review", "OCR 및 검토"),
    "op.uploaded": ("Photo submissions", "사진 등록"),
    "op.decided": ("decided by the machine", "자동 판정"),
    "op.auto_accepted": ("accepted without review", "검토 없이 승인"),
    "op.processing": ("being read", "판독 중"),
    "op.held": ("held by reviewers", "검토 중"),
    "op.backlog_age": ("Open disputes by waiting time", "대기 시간별 검토 대기 건"),
    "op.outbox": ("Delivery to the reward calculator", "인센티브 산정 시스템 전송"),
    "op.pending": ("pending", "대기"),
    "op.due": ("due now", "즉시 전송"),
    "op.delivered": ("delivered", "전송 완료"),
    "op.oldest_pending": ("oldest pending", "최장 대기"),
    "op.dead_letters": ("Dead letters", "전송 실패"),
    "op.kind": ("Kind", "유형"),
    "op.attempts": ("Attempts", "시도"),
    "op.dead_at": ("Given up at", "실패 시각"),
    "op.last_error": ("Last error", "마지막 오류"),
    "op.retry": ("Retry", "다시 전송"),
    "op.retry_all": ("Retry every dead letter", "실패 건 모두 다시 전송"),
    "op.retried": ("Due again now: event", "다시 전송 예정:"),
    "op.retried_all": ("Events due again now", "다시 전송 예정 건수"),
    "op.retry_none": ("That event is not a dead letter (any more); nothing was changed.", "전송 실패 상태가 아니어서 변경하지 않았습니다."),
    "op.no_dead": ("No dead letters.", "전송 실패 건이 없습니다."),
}


def ui_text(key: str, lang: Lang = "en") -> str:
    pair = UI.get(key, (key, key))
    return pair[0] if lang == "en" else pair[1]
