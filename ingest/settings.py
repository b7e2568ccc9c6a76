"""Configuration from CARMILEAGE_* environment variables (or a .env file), validated at start."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARMILEAGE_",
        # The project broker's service credentials (written by `carmileage broker start`), then .env.
        env_file=(".var/broker/service.env", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: str = "postgresql://postgres@127.0.0.1:5432/carmileage"
    database_pool_min: int = Field(2, ge=1, le=100)
    database_pool_max: int = Field(10, ge=1, le=200)

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_client_id: str = "carmileage-ingest"
    mqtt_share_group: str = "carmileage"
    mqtt_enabled: bool = True

    # -- telematics ingestion (docs/providers.md, docs/scaling.md) --
    #: A worker removed for good leaves the shared subscription when it stops (else the broker
    #: keeps queuing its share for it until its session expires).
    mqtt_leave_on_stop: bool = False
    #: The project's own Mosquitto instance: password file, ACL and pid file (`carmileage broker`).
    mqtt_broker_dir: Path = Path(".var/broker")
    #: Plausibility limits of the order-free checks (DESIGN.md, Readings).
    max_speed_kmh: int = Field(250, ge=1, le=2000)
    max_km_per_day: int = Field(2000, ge=1, le=50_000)
    clock_skew_s: int = Field(300, ge=0, le=86_400)
    odometer_resolution_m: int = Field(1000, ge=0, le=100_000)
    #: MQTT micro-batches: at most this many readings, or this many milliseconds after the first.
    ingest_batch_size: int = Field(1000, ge=1, le=10_000)
    ingest_batch_ms: int = Field(50, ge=1, le=10_000)
    #: Messages received but not yet committed; beyond it the MQTT network thread waits.
    ingest_queue_bound: int = Field(20_000, ge=10, le=1_000_000)
    #: Batches written concurrently (each on its own pooled connection).
    ingest_writers: int = Field(2, ge=1, le=16)
    #: Readiness fails when received readings have waited this long without any being committed.
    ingest_stall_s: float = Field(30.0, gt=0, le=3600)

    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    public_url: str | None = None

    data_dir: Path = Path(".var/data")
    #: Signs CSRF tokens and our webhooks; generated once under data_dir when not given.
    secret_key: SecretStr | None = None

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

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be an mqtt://host:port URL")
        return v

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


class SettingsError(SystemExit):
    """Raised with one clear line naming the bad setting."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise SettingsError(
            f"carmileage: bad setting CARMILEAGE_{field.upper()}: {err['msg']}"
        ) from None
