"""A real OpenID provider for the tests: `oidc-provider-mock` from PyPI (Flask + authlib's
authorization server: discovery, authorization code flow, token endpoint, JWKS, end_session), run
in a thread on `localhost` (another site than the service's 127.0.0.1, as a real provider is).

What the package (0.3.4, the last for Python 3.11) cannot do by itself is added here, at its front
door, in plain sight:
- PKCE: the package ignores `code_challenge`; the front door records the challenge of every code
  it issues and refuses a token request whose `code_verifier` does not hash to it (S256 only), so
  a relying party that skipped or botched PKCE fails the tests.
- Key rotation: `rotate_key()` replaces the provider's signing key (its JWKS then lists only the
  new one), through the package's own storage.
- Crafted ID tokens (wrong `aud`, expired, wrong `nonce`, a foreign key): `tamper_next(...)` lets
  the provider run its real flow and then rewrites the claims of the next ID token it returns at
  the token endpoint, signed again with the provider's own current key (or a foreign one), so
  only the named claim is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import werkzeug.serving
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "carmileage-test"


@dataclass
class Provider:
    issuer: str
    app: Any
    _store: Any = None
    #: code -> (code_challenge, method), as the front door saw them issued.
    challenges: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: token requests refused for PKCE.
    pkce_refusals: int = 0
    token_requests: int = 0
    jwks_requests: int = 0
    _tamper: dict[str, Any] | None = None
    _foreign_key: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def storage(self) -> Any:
        if self._store is None:
            with self.app.test_request_context():
                self.app.preprocess_request()
                self._store = flask.g.oidc_provider_mock_storage
        return self._store

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        from oidc_provider_mock import User

        self.storage().store_user(User(sub=sub, claims=claims))

    def rotate_key(self) -> str:
        """A new signing key; returns its key id (a JWK thumbprint, as the provider's JWKS says)."""
        from authlib import jose

        store = self.storage()
        store.jwk = jose.RSAKey.generate_key(is_private=True)
        return str(store.jwk.thumbprint())

    def current_kid(self) -> str:
        return str(self.storage().jwk.thumbprint())

    def tamper_next(self, *, foreign_key: bool = False, **claims: Any) -> None:
        """The next ID token gets these claims (None removes one), and is signed with a foreign key
        when asked."""
        with self._lock:
            self._tamper = claims
            self._foreign_key = foreign_key

    # -- the front door -------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/jwks":
            self.jwks_requests += 1
        if path == "/oauth2/token" and method == "POST":
            return self._token(environ, start_response)
        if path == "/oauth2/authorize" and method == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            challenge = (query.get("code_challenge") or [""])[0]
            challenge_method = (query.get("code_challenge_method") or ["plain"])[0]

            def recording_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                for name, value in headers:
                    if name.lower() == "location":
                        code = (parse_qs(urlsplit(value).query).get("code") or [""])[0]
                        if code:
                            self.challenges[code] = (challenge, challenge_method)
                return start_response(status, headers, exc_info)

            return self.app(environ, recording_start)
        return self.app(environ, start_response)

    def _token(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.token_requests += 1
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        form = parse_qs(body.decode())
        code = (form.get("code") or [""])[0]
        verifier = (form.get("code_verifier") or [""])[0]
        challenge, challenge_method = self.challenges.pop(code, ("", ""))
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge_method != "S256" or not challenge or not verifier or expected != challenge:
            self.pkce_refusals += 1
            payload = json.dumps({"error": "invalid_grant", "error_description": "PKCE verification failed"})
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [payload.encode()]
        environ["wsgi.input"] = io.BytesIO(body)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = b"".join(self.app(environ, capture))
        with self._lock:
            tamper, foreign, self._tamper, self._foreign_key = self._tamper, self._foreign_key, None, False
        if tamper is not None and captured["status"].startswith("200"):
            doc = json.loads(chunks)
            doc["id_token"] = self._resign(doc["id_token"], tamper, foreign)
            chunks = json.dumps(doc).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(chunks))))
        start_response(captured["status"], headers)
        return [chunks]

    def _resign(self, id_token: str, changes: dict[str, Any], foreign: bool) -> str:
        own = RSAKey.import_key(self.storage().jwk.as_dict(is_private=True))
        claims = jwt.decode(id_token, own).claims
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        key = RSAKey.generate_key(2048) if foreign else own
        return jwt.encode({"alg": "RS256", "typ": "JWT"}, claims, key)


@contextmanager
def running_provider(**options: Any) -> Iterator[Provider]:
    """The provider on a free port of `localhost`, stopped at the end."""
    from oidc_provider_mock import app as provider_app

    flask_app = provider_app(require_nonce=True, **options)
    server = werkzeug.serving.make_server("localhost", 0, None, threaded=True)  # type: ignore[arg-type]
    provider = Provider(issuer=f"http://localhost:{server.server_port}", app=flask_app)
    server.app = provider
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def oidc_env(provider: Provider) -> dict[str, str]:
    """The service's configuration for this provider, as the tests use it."""
    return {
        "CARMILEAGE_OIDC_ISSUER": provider.issuer,
        "CARMILEAGE_OIDC_CLIENT_ID": CLIENT_ID,
        "CARMILEAGE_OIDC_CLIENT_SECRET": "s3cret",
        # the citizen's owner id is a claim of its own, not the provider's subject
        "CARMILEAGE_OIDC_OWNER_CLAIM": "owner_id",
        "CARMILEAGE_OIDC_ROLE_CLAIM": "roles",
        "CARMILEAGE_OIDC_ROLE_MAP": json.dumps({"mileage-reviewers": "reviewer"}),
        "CARMILEAGE_OIDC_SUBJECT_ROLES": json.dumps({"ops-kim": "operator"}),
        # the tests rotate keys between sign-ins a moment apart
        "CARMILEAGE_OIDC_JWKS_REFETCH_S": "0",
    }


def person(provider: Provider, owner_id: str | None = None, **claims: Any) -> str:
    """A user at the provider, with an owner id claim; returns its subject there."""
    sub = f"u-{uuid.uuid4().hex[:10]}"
    provider.set_user(sub, {"owner_id": owner_id or f"owner-{uuid.uuid4().hex[:8]}", **claims})
    return sub
