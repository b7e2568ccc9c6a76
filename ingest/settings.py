"""Configuration from CARMILEAGE_* environment variables (or a .env file), validated at start."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.secret_box import SecretBox, box_for, decode_key, derive_key


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARMILEAGE_",
        # The project broker's service credentials (written by `carmileage broker start`; under
        # CARMILEAGE_BROKER_DIR when that is set, see `load_settings`) and the project database's
        # roles (written by scripts/setup.sh), then .env.
        env_file=(".var/broker/service.env", ".var/db/service.env", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: str = "postgresql://postgres@127.0.0.1:5432/carmileage"
    #: The role that owns the schema: `carmileage migrate` (and `serve`, when given) apply
    #: migrations as it and grant the service's role (database_url's user) only what it needs.
    #: Unset: migrations run as database_url's user. Must name the same database.
    migration_database_url: str | None = None
    database_pool_min: int = Field(2, ge=1, le=100)
    database_pool_max: int = Field(10, ge=1, le=200)

    # -- telematics ingestion (docs/providers.md, docs/scaling.md) --
    #: The broker's AMQP side, where workers consume the providers' readings: one amqp:// URL per
    #: node of the cluster, comma-separated (tried in turn). Default: the project broker's, from
    #: `<broker_dir>/service.env` once `carmileage broker start` ran.
    broker_url: str = "amqp://127.0.0.1:5673/"
    #: The durable (quorum) queue the providers' topics are bound to.
    broker_queue: str = "carmileage.readings"
    #: The management API (`http://user:password@host:port`) through which `carmileage providers`
    #: gives providers their broker users; unset: provider credentials are only printed.
    broker_admin_url: str | None = None
    #: Where providers connect (mqtt://host:port, comma-separated for several nodes), for what
    #: `carmileage providers add` prints.
    broker_mqtt_url: str = "mqtt://127.0.0.1:1884"
    #: Consume the providers' MQTT readings (off: HTTP ingestion only).
    mqtt_enabled: bool = True
    #: The project's own broker nodes: configuration, data, credentials (`carmileage broker`).
    broker_dir: Path = Path(".var/broker")
    #: Plausibility limits of the order-free checks (DESIGN.md, Readings).
    max_speed_kmh: int = Field(250, ge=1, le=2000)
    max_km_per_day: int = Field(2000, ge=1, le=50_000)
    clock_skew_s: int = Field(300, ge=0, le=86_400)
    odometer_resolution_m: int = Field(1000, ge=0, le=100_000)
    #: MQTT micro-batches: at most this many readings, or this many milliseconds after the first.
    #: Under load a batch fills before its time is up (full batches cost PostgreSQL and the worker
    #: less a reading, docs/scaling.md); a provider's PUBACK never waits for it (the broker's).
    ingest_batch_size: int = Field(1000, ge=1, le=10_000)
    ingest_batch_ms: int = Field(200, ge=1, le=10_000)
    #: Deliveries a worker holds uncommitted (the AMQP prefetch window; the broker keeps the rest).
    ingest_queue_bound: int = Field(20_000, ge=10, le=65_535)
    #: Batches written concurrently (each on its own pooled connection).
    ingest_writers: int = Field(2, ge=1, le=16)
    #: Readiness fails when received readings have waited this long without any being committed.
    ingest_stall_s: float = Field(30.0, gt=0, le=3600)

    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    public_url: str | None = None
    # -- the HTTP server's guards against slow and greedy clients (docs/deploy.md) --
    #: A request head must be complete this many seconds after the connection opened (or after
    #: the first byte of a later request on it); else the connection is closed (408).
    http_head_timeout_s: float = Field(10.0, gt=0, le=600)
    #: Reading a request body may stall at most this long, and the whole body may take this
    #: long plus one second per `http_body_min_rate` bytes received; else 408.
    http_body_timeout_s: float = Field(20.0, gt=0, le=3600)
    http_body_min_rate: int = Field(32 * 1024, ge=1, le=1 << 30)
    #: An idle keep-alive connection is closed after this long.
    http_keepalive_timeout_s: float = Field(75.0, gt=0, le=3600)
    #: Open connections at most (keep it under the process's file limit); more are answered 503.
    http_max_connections: int = Field(1000, ge=1, le=1_000_000)
    #: After an early answer (413, 408) the rest of an unread body is read and dropped for at
    #: most this long, so that the client sees the answer before the connection closes.
    http_lingering_s: float = Field(2.0, ge=0, le=60)

    data_dir: Path = Path(".var/data")
    #: Signs CSRF tokens and our webhooks; generated once under data_dir when not given.
    secret_key: SecretStr | None = None
    #: Encrypts providers' HMAC secrets at rest (32 bytes, base64url; `python -c "from
    #: storage.secret_box import new_key_text; print(new_key_text())"`). Unset: derived from the
    #: service secret. Losing it means rotating every provider's HTTP secret.
    provider_secret_key: SecretStr | None = None
    #: API tokens made by `carmileage tokens create` expire after this many days (unless
    #: --expires-in says otherwise).
    token_ttl_days: int = Field(90, ge=1, le=3650)
    #: A page session ends after this long without a request (sliding) ...
    session_idle_s: int = Field(1800, ge=60, le=86_400)
    #: ... and at the latest this long after sign-in (absolute).
    session_max_s: int = Field(12 * 3600, ge=300, le=7 * 86_400)

    # -- OpenID Connect sign-in for the pages (docs/sign-in.md); unset: token sign-in only --
    #: The identity provider's issuer URL (its discovery document is `<issuer>/.well-known/openid-configuration`).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    #: Where the provider sends the browser back; default `<public_url or this host>/auth/callback`.
    oidc_redirect_url: str | None = None
    oidc_scopes: str = "openid"
    #: How the token request authenticates: client_secret_basic, client_secret_post or none (PKCE only).
    oidc_token_auth: str = Field("client_secret_basic", pattern="^(client_secret_basic|client_secret_post|none)$")
    #: The ID-token claim whose value is the citizen's owner id (and a staff member's subject).
    oidc_owner_claim: str = "sub"
    #: A claim (string or list) naming roles, e.g. "roles" or "groups"; its values are mapped by
    #: `oidc_role_map` (JSON, value -> role), and a value that is itself a role name stands for it.
    oidc_role_claim: str | None = None
    oidc_role_map: dict[str, str] = Field(default_factory=dict)
    #: JSON owner id -> role, for providers that carry no role claim (e.g. social logins).
    oidc_subject_roles: dict[str, str] = Field(default_factory=dict)
    #: Who signs in without a staff role is a citizen.
    oidc_default_role: str = Field("citizen", pattern="^(citizen|reviewer|operator)$")
    #: Clock leeway for exp/iat, seconds.
    oidc_leeway_s: int = Field(60, ge=0, le=600)
    #: A started sign-in (state, nonce, PKCE verifier) must come back within this long.
    oidc_login_ttl_s: int = Field(600, ge=30, le=3600)
    #: Refetch the provider's JWKS (for an unknown key) at most this often, seconds.
    oidc_jwks_refetch_s: float = Field(5.0, ge=0, le=3600)
    #: At sign-out, also end the session at the provider when it has an end_session_endpoint.
    oidc_provider_logout: bool = True
    #: The sign-in button's words, e.g. "Seoul ID", "Kakao".
    oidc_label: str = "Seoul ID"

    #: Force one rule set by name (default: chosen by the period's dates).
    rule_set: str | None = None

    reward_calculator_url: str | None = None
    #: Outbox delivery to the reward calculator (ingest/outbox_sender.py).
    outbox_batch_size: int = Field(20, ge=1, le=1000)
    outbox_concurrency: int = Field(4, ge=1, le=64)
    outbox_timeout_s: float = Field(10.0, gt=0, le=300)
    outbox_lease_s: float = Field(60.0, gt=0, le=3600)
    outbox_backoff_base_s: float = Field(2.0, gt=0, le=3600)
    outbox_backoff_max_s: float = Field(3600.0, gt=0, le=86400)
    outbox_poll_interval_s: float = Field(1.0, gt=0, le=60)
    #: How often the review-backlog and outbox gauges on /metrics are read from the database
    #: (docs/ops.md); 0 turns them off.
    backlog_metrics_interval_s: float = Field(15.0, ge=0, le=3600)

    # -- photos and review (docs/photos.md, docs/review.md) --
    #: Where photo bytes live: "local" (files under data_dir/blobs) or "s3" (needs the s3 extra).
    blob_store: str = Field("local", pattern=r"^(local|s3)$")
    s3_bucket: str | None = None
    s3_prefix: str = "photos/"
    #: An S3-compatible endpoint (MinIO, Ceph, ...); credentials come from the usual AWS chain.
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    #: OCR worker processes (0: as many as CPU cores).
    ocr_workers: int = Field(0, ge=0, le=64)
    #: A job whose worker vanished is retried once its lease ran out (renewed while it runs).
    ocr_lease_s: float = Field(30.0, gt=0, le=3600)
    #: A photo that fails (or crashes a worker) this many times goes to review: no endless retry.
    ocr_max_attempts: int = Field(3, ge=1, le=20)
    #: One OCR run taking longer than this is killed and counts as a failed attempt.
    ocr_task_timeout_s: float = Field(60.0, gt=0, le=3600)
    #: Photos whose perceptual hashes differ in at most this many of 64 bits count as a reuse.
    photo_reuse_max_distance: int = Field(8, ge=0, le=32)
    #: A capture time this far past the upload time is still taken as the same moment.
    photo_clock_skew_s: int = Field(300, ge=0, le=86400)
    #: A reviewer's claim on a dispute; the dispute page renews it while it is open.
    review_lease_s: int = Field(600, ge=30, le=86400)
    #: At most this many photo uploads are read into memory at once (each holds up to 30 MB).
    upload_concurrency: int = Field(16, ge=1, le=1024)

    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: str = Field("json", pattern=r"^(json|text)$")
    shutdown_grace_s: float = Field(20.0, ge=0, le=600)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        return v

    @field_validator("migration_database_url", mode="before")
    @classmethod
    def _migration_database_url(cls, v: object, info: ValidationInfo) -> object:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        if not isinstance(v, str) or urlsplit(v).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        service = info.data.get("database_url")
        if service and urlsplit(v).path.lstrip("/") != urlsplit(service).path.lstrip("/"):
            raise ValueError("must name the same database as CARMILEAGE_DATABASE_URL")
        return v

    @field_validator("provider_secret_key")
    @classmethod
    def _provider_secret_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            decode_key(v.get_secret_value())
        return v

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        urls = [u.strip() for u in v.split(",") if u.strip()]
        if not urls or any(urlsplit(u).scheme not in ("amqp", "amqps") or not urlsplit(u).hostname for u in urls):
            raise ValueError("must be one or more amqp://user:password@host:port/ URLs, comma-separated")
        return v

    @field_validator("oidc_issuer", "oidc_redirect_url")
    @classmethod
    def _oidc_url(cls, v: str | None) -> str | None:
        if v is not None and (urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname):
            raise ValueError("must be an http(s):// URL")
        return v

    @field_validator("oidc_role_map", "oidc_subject_roles")
    @classmethod
    def _oidc_roles(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted({r for r in v.values() if r not in ("citizen", "reviewer", "operator")})
        if bad:
            raise ValueError(f"roles must be citizen, reviewer or operator, not {', '.join(bad)}")
        return v

    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @field_validator("reward_calculator_url", "public_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must be an http(s):// URL")
        return v

    def secret_bytes(self) -> bytes:
        """The service secret, created and kept under data_dir on first use when not configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip().encode()

    _provider_box: SecretBox | None = PrivateAttr(None)

    def provider_box(self) -> SecretBox:
        """Seals and opens providers' HMAC secrets (one per process and key, with its cache)."""
        if self._provider_box is None:
            if self.provider_secret_key is not None:
                key = decode_key(self.provider_secret_key.get_secret_value())
            else:
                key = derive_key(self.secret_bytes(), "provider-secrets")
            self._provider_box = box_for(key)
        return self._provider_box


class SettingsError(SystemExit):
    """Raised with one clear line naming the bad setting."""


def env_files() -> tuple[Path, ...]:
    """The files settings are read from: the broker directory's `service.env` (the directory
    named by CARMILEAGE_BROKER_DIR, in the environment or .env), the database's, then .env."""
    broker_dir = os.environ.get("CARMILEAGE_BROKER_DIR")
    if broker_dir is None and Path(".env").is_file():
        broker_dir = dotenv_values(".env").get("CARMILEAGE_BROKER_DIR")
    return (Path(broker_dir or ".var/broker") / "service.env", Path(".var/db/service.env"), Path(".env"))


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(_env_file=env_files(), **overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise SettingsError(
            f"carmileage: bad setting CARMILEAGE_{field.upper()}: {err['msg']}"
        ) from None
