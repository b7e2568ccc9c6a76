"""Signed HTTP batches: `X-Carmileage-Signature: sha256=<hex HMAC-SHA256(secret, ts + "." + body)>`.

The timestamp (`X-Carmileage-Timestamp`, Unix seconds) is inside the signed text, so a captured
request cannot be re-dated; a request more than `MAX_SKEW_S` off our clock is refused, and the
service refuses the same signature twice within that window (replays). Two secrets may be active
per provider while it rotates; each is compared in constant time.

Aggregators sign their webhook deliveries with schemes of their own: Smartcar's `SC-Signature`
(below) is checked here too, by our own code, and tested against Smartcar's SDK.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Carmileage-Signature"
TIMESTAMP_HEADER = "X-Carmileage-Timestamp"
MAX_SKEW_S = 300
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP = re.compile(r"\d{1,12}")


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The header value a provider sends for `body` at `timestamp`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    code: str = ""
    message: str = ""
    #: The verified digest (raw bytes), the key for replay detection.
    digest: bytes = b""


def verify(
    secrets: Sequence[str],
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    max_skew_s: int = MAX_SKEW_S,
) -> Verdict:
    """Check a request's timestamp and signature against every active secret of its provider."""
    if not timestamp:
        return Verdict(False, "timestamp_missing", f"Send {TIMESTAMP_HEADER} (Unix seconds).")
    if not _TIMESTAMP.fullmatch(timestamp):
        return Verdict(False, "timestamp_invalid", f"{TIMESTAMP_HEADER} must be Unix seconds.")
    if abs(int(timestamp) - now) > max_skew_s:
        return Verdict(
            False, "timestamp_stale", f"{TIMESTAMP_HEADER} is more than {max_skew_s} s from our clock."
        )
    if not signature_header:
        return Verdict(False, "signature_missing", f"Send {SIGNATURE_HEADER}: sha256=<hex>.")
    m = _SIGNATURE.fullmatch(signature_header.strip())
    if m is None:
        return Verdict(False, "signature_malformed", f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>.")
    sent = bytes.fromhex(m.group(1))
    signed = timestamp.encode() + b"." + body
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, sent)
    if not matched:
        return Verdict(False, "signature_invalid", "The signature does not match the body and timestamp.")
    return Verdict(True, digest=sent)


# -- aggregator webhooks: Smartcar ---------------------------------------------------------------
#
# Smartcar signs each delivery with `SC-Signature`: the hex HMAC-SHA256 of the exact body, keyed
# with the application's Application Management Token (AMT); its SDK's `verify_payload(amt,
# signature, body)` is `hash_challenge(amt, body) == signature`, and `hash_challenge(amt,
# challenge)` is the hex HMAC-SHA256 of the challenge. The scheme has no timestamp, so a captured
# delivery can be sent again: what makes that harmless is the event id (a resend is a duplicate).

SMARTCAR_SIGNATURE_HEADER = "SC-Signature"
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
#: A challenge we answer unsigned: a plain token. The answer is the HMAC of the challenge under the
#: AMT, the very function that signs deliveries; a challenge that could be a JSON object (any text
#: with "{") would turn the answer into a valid signature for a body of the caller's choosing.
_CHALLENGE = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")


def smartcar_signature(key: str, body: bytes) -> str:
    """The `SC-Signature` value of `body` (what Smartcar sends)."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def smartcar_challenge_answer(key: str, challenge: str) -> str:
    """The answer to Smartcar's VERIFY challenge: hex HMAC-SHA256(AMT, challenge)."""
    return hmac.new(key.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def challenge_is_token(challenge: str) -> bool:
    """True when a challenge may be answered without a signature (see `_CHALLENGE`)."""
    return _CHALLENGE.fullmatch(challenge) is not None


def verify_smartcar(keys: Sequence[str], signature_header: str | None, body: bytes) -> Verdict:
    """Check `SC-Signature` against the raw body under each of the provider's keys, each compared
    in constant time."""
    if not signature_header:
        return Verdict(False, "signature_missing", f"Send {SMARTCAR_SIGNATURE_HEADER}: the hex HMAC-SHA256 of the body.")
    sent_hex = signature_header.strip()
    if not _HEX_SHA256.fullmatch(sent_hex):
        return Verdict(False, "signature_malformed", f"{SMARTCAR_SIGNATURE_HEADER} must be 64 hex digits.")
    sent = bytes.fromhex(sent_hex)
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(hmac.new(key.encode(), body, hashlib.sha256).digest(), sent)
    if not matched:
        return Verdict(False, "signature_invalid", "The signature does not match the body.")
    return Verdict(True, digest=sent)
