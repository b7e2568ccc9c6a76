"""OpenID Connect relying party for the pages (authorization code flow with PKCE).

The provider is configured by its issuer URL, client id and secret (docs/sign-in.md). Its discovery
document is fetched and cached; its signing keys (JWKS) are cached too and fetched again when an ID
token names a key we do not have, or carries no key id and no cached key verifies it (the provider
rotated), at most once per `oidc_jwks_refetch_s`. An ID token is accepted only with a good signature
(joserfc; asymmetric algorithms only), our issuer, our client id among its audiences, not expired
(a small leeway), not issued in the future and the nonce of this sign-in. Every refusal has a
machine-readable reason.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ingest.settings import Settings

#: Asymmetric signatures only: never "none", never an HMAC keyed with the client secret.
ALLOWED_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: Roles a person may have on the pages (providers are machines, with API tokens).
PAGE_ROLES = ("citizen", "reviewer", "operator")
#: The strongest role wins when a role claim names several.
_RANK = {"citizen": 0, "reviewer": 1, "operator": 2}
DISCOVERY_TTL_S = 3600.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
#: The largest discovery document, JWKS or token response read.
MAX_BODY = 256 * 1024


class OidcError(Exception):
    """A sign-in refused, with a machine-readable reason and the HTTP status of the page."""

    def __init__(self, reason: str, detail: str = "", status: int = 401) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    algorithms: frozenset[str]


def new_pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def role_for(claims: dict[str, Any], owner_id: str, settings: Settings) -> str:
    """A mapped subject first, then the role claim (mapped values, or role names), then the default."""
    if owner_id in settings.oidc_subject_roles:
        return settings.oidc_subject_roles[owner_id]
    found: list[str] = []
    if settings.oidc_role_claim:
        value = claims.get(settings.oidc_role_claim)
        values = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        for v in values:
            if not isinstance(v, str):
                continue
            role = settings.oidc_role_map.get(v, v if v in PAGE_ROLES else None)
            if role is not None:
                found.append(role)
    if found:
        return max(found, key=_RANK.__getitem__)
    return settings.oidc_default_role


def owner_of(claims: dict[str, Any], settings: Settings) -> str:
    value = claims.get(settings.oidc_owner_claim)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # e.g. Kakao's numeric user id
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise OidcError("owner_claim_missing", f"the ID token has no usable {settings.oidc_owner_claim!r} claim", 403)
    return value.strip()


def check_claims(claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str, leeway_s: int, now: float) -> None:
    """The ID token's claims (OpenID Connect Core 3.1.3.7), each refusal with its own reason."""
    if claims.get("iss") != issuer:
        raise OidcError("wrong_issuer", "the ID token was issued by someone else")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        raise OidcError("wrong_audience", "the ID token is not meant for this service")
    if len(audiences) > 1 and claims.get("azp", client_id) != client_id:
        raise OidcError("wrong_audience", "the ID token was issued to another party (azp)")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise OidcError("id_token_expired", "the ID token has no expiry")
    if now > exp + leeway_s:
        raise OidcError("id_token_expired", "the ID token has expired")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or iat > now + leeway_s:
        raise OidcError("id_token_not_yet_valid", "the ID token was issued in the future")
    given = claims.get("nonce")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), nonce.encode()):
        raise OidcError("wrong_nonce", "the ID token does not belong to this sign-in")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise OidcError("owner_claim_missing", "the ID token has no subject")


class RelyingParty:
    """One per service process: the cached discovery document and keys, and an HTTP client."""

    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer and settings.oidc_client_id
        self.settings = settings
        self.issuer: str = settings.oidc_issuer
        self.client_id: str = settings.oidc_client_id
        self._http: aiohttp.ClientSession | None = None
        self._discovery: Discovery | None = None
        self._discovered_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = float("-inf")
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)
        return self._http

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._client().get(url, headers={"Accept": "application/json"}) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                if resp.status != 200 or len(body) > MAX_BODY:
                    raise OidcError("provider_unavailable", f"{url} answered {resp.status}", 502)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OidcError("provider_unavailable", f"{url}: {type(e).__name__}", 502) from e
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise OidcError("provider_unavailable", f"{url} sent no JSON", 502) from e
        if not isinstance(doc, dict):
            raise OidcError("provider_unavailable", f"{url} sent no JSON object", 502)
        return doc

    async def discovery(self) -> Discovery:
        if self._discovery is not None and time.monotonic() - self._discovered_at < DISCOVERY_TTL_S:
            return self._discovery
        async with self._lock:
            if self._discovery is not None and time.monotonic() - self._discovered_at < DISCOVERY_TTL_S:
                return self._discovery
            doc = await self._get_json(self.issuer + "/.well-known/openid-configuration")
            if doc.get("issuer") != self.issuer:
                # OpenID Connect Discovery 4.3: the document must name the issuer it was fetched for
                raise OidcError("wrong_issuer", "the discovery document names another issuer", 502)
            try:
                found = Discovery(
                    issuer=doc["issuer"],
                    authorization_endpoint=str(doc["authorization_endpoint"]),
                    token_endpoint=str(doc["token_endpoint"]),
                    jwks_uri=str(doc["jwks_uri"]),
                    end_session_endpoint=doc.get("end_session_endpoint"),
                    algorithms=frozenset(doc.get("id_token_signing_alg_values_supported") or ["RS256"])
                    & ALLOWED_ALGS,
                )
            except KeyError as e:
                raise OidcError("provider_unavailable", f"the discovery document lacks {e}", 502) from e
            self._discovery, self._discovered_at = found, time.monotonic()
            return found

    async def _key_set(self, *, refresh: bool) -> KeySet:
        """The cached keys; fetched again when asked to and the last fetch is old enough."""
        disc = await self.discovery()
        async with self._lock:
            stale = time.monotonic() - self._keys_at >= self.settings.oidc_jwks_refetch_s
            if self._keys is None or (refresh and stale):
                doc = await self._get_json(disc.jwks_uri)
                try:
                    keys = [k for k in doc.get("keys", []) if isinstance(k, dict) and k.get("use", "sig") == "sig"]
                    self._keys = KeySet.import_key_set({"keys": keys})
                except (JoseError, ValueError, TypeError, KeyError) as e:
                    raise OidcError("provider_unavailable", "the provider's JWKS is unusable", 502) from e
                self._keys_at = time.monotonic()
            return self._keys

    def authorization_url(self, disc: Discovery, *, state: str, nonce: str, challenge: str, redirect_uri: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.settings.oidc_scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        sep = "&" if "?" in disc.authorization_endpoint else "?"
        return disc.authorization_endpoint + sep + query

    def logout_url(self, disc: Discovery, post_logout_redirect_uri: str) -> str | None:
        if not disc.end_session_endpoint or not self.settings.oidc_provider_logout:
            return None
        query = urlencode({"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri})
        sep = "&" if "?" in disc.end_session_endpoint else "?"
        return disc.end_session_endpoint + sep + query

    async def exchange(self, code: str, code_verifier: str, redirect_uri: str) -> str:
        """Trade the code (and the PKCE verifier) for tokens; return the ID token."""
        disc = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
            "client_id": self.client_id,
        }
        headers = {"Accept": "application/json"}
        secret = self.settings.oidc_client_secret.get_secret_value() if self.settings.oidc_client_secret else ""
        if self.settings.oidc_token_auth == "client_secret_basic":
            # RFC 6749 2.3.1: both form-urlencoded before the Basic encoding
            pair = f"{quote(self.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif self.settings.oidc_token_auth == "client_secret_post":
            form["client_secret"] = secret
        try:
            async with self._client().post(disc.token_endpoint, data=form, headers=headers) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OidcError("provider_unavailable", f"token endpoint: {type(e).__name__}", 502) from e
        try:
            doc = json.loads(body) if len(body) <= MAX_BODY else {}
        except ValueError:
            doc = {}
        if status != 200 or not isinstance(doc, dict):
            error = doc.get("error", "") if isinstance(doc, dict) else ""
            raise OidcError("code_refused", f"the provider refused the code ({status} {error})".strip())
        id_token = doc.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcError("no_id_token", "the provider sent no ID token")
        return id_token

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once its signature and claims are checked."""
        disc = await self.discovery()
        try:
            compact = jws.extract_compact(id_token.encode("ascii"))
            header = compact.headers()
        except (JoseError, ValueError, UnicodeError) as e:
            raise OidcError("malformed_id_token", "the ID token is not a signed JWT") from e
        alg = header.get("alg")
        if alg not in disc.algorithms:
            raise OidcError("bad_signature", f"signature algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        payload: bytes | None = None
        for refresh in (False, True):
            keys = await self._key_set(refresh=refresh)
            payload = self._verified_payload(id_token, keys, alg, kid)
            if payload is not None:
                break
        if payload is None:
            raise OidcError("bad_signature", "no key of the provider verifies the ID token")
        try:
            claims = json.loads(payload)
        except ValueError as e:
            raise OidcError("malformed_id_token", "the ID token's claims are not JSON") from e
        if not isinstance(claims, dict):
            raise OidcError("malformed_id_token", "the ID token's claims are not an object")
        check_claims(
            claims,
            issuer=disc.issuer,
            client_id=self.client_id,
            nonce=nonce,
            leeway_s=self.settings.oidc_leeway_s,
            now=time.time(),
        )
        return claims

    @staticmethod
    def _verified_payload(id_token: str, keys: KeySet, alg: str, kid: Any) -> bytes | None:
        candidates = [k for k in keys.keys if kid is None or k.kid == kid]
        for key in candidates:
            try:
                return jws.deserialize_compact(id_token, key, algorithms=[alg]).payload
            except (JoseError, ValueError):
                continue
        return None


#: The service's relying party, present only when OpenID Connect sign-in is configured.
RELYING_PARTY = web.AppKey("oidc_relying_party", RelyingParty)
