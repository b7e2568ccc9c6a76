"""Secrets the service must read back (providers' HMAC secrets), sealed with AES-256-GCM under a
key that never enters the database: a copy of the database (a backup, a replica, a leaked dump)
does not reveal them.

Sealed text is `v1.<base64url(nonce ‖ ciphertext ‖ tag)>`; the caller's context (e.g. the
provider's id) is bound as associated data, so a sealed value moved to another row does not open.
Opening is cached per process (bounded, with a TTL) because every signed HTTP batch needs the
provider's secrets and AES-GCM plus base64 costs microseconds the ingest path does not need to
spend twice.
"""

from __future__ import annotations

import base64
import os
import threading
from functools import lru_cache

from cachetools import TTLCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "v1."
KEY_BYTES = 32
_NONCE_BYTES = 12


class SealedSecretUnreadable(Exception):
    """A sealed value does not open with this key (another key, or altered)."""


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose from the service's master secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=f"carmileage/{purpose}".encode()).derive(
        master
    )


def decode_key(text: str) -> bytes:
    """A key given as base64url (or standard base64) text of exactly 32 bytes."""
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    try:
        key = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (ValueError, TypeError):
        raise ValueError("must be 32 bytes in base64url") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"must be {KEY_BYTES} bytes in base64url, not {len(key)}")
    return key


def new_key_text() -> str:
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip("=")


class SecretBox:
    def __init__(self, key: bytes, *, cache_size: int = 1024, cache_ttl_s: float = 300.0) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a SecretBox key has {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        # sealed text + context -> plain text; bounded, and forgotten after the TTL so a secret
        # revoked long ago does not stay in memory
        self._opened: TTLCache[tuple[str, str], str] = TTLCache(maxsize=cache_size, ttl=cache_ttl_s)
        self._lock = threading.Lock()

    def seal(self, plain: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plain.encode(), context.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, sealed: str, context: str) -> str:
        key = (sealed, context)
        with self._lock:
            hit = self._opened.get(key)
        if hit is not None:
            return hit
        if not sealed.startswith(PREFIX):
            raise SealedSecretUnreadable("not a sealed value")
        body = sealed[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, ValueError) as e:
            raise SealedSecretUnreadable(
                "a sealed secret does not open with this key (CARMILEAGE_PROVIDER_SECRET_KEY or the "
                "service secret changed?)"
            ) from e
        with self._lock:
            self._opened[key] = plain
        return plain

    def cached(self) -> int:
        """How many opened values the cache holds now."""
        with self._lock:
            self._opened.expire()
            return len(self._opened)


@lru_cache(maxsize=8)
def box_for(key: bytes) -> SecretBox:
    """One box (and so one cache) per key per process."""
    return SecretBox(key)
