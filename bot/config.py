"""Settings from the environment and `.env`; built once in `main()` and passed down."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.retention import RetentionPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; empty means SQLite in DATA_DIR"
    )
    data_dir: Path = Path("data")
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_bot_username: str | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_base_url: str | None = None
    default_locale: str = "zh_CN"
    timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"
    log_format: str = "text"
    invite_ttl_days: int = 30
    # Delivery (docs/delivery.md). Telegram's documented limits: about 30 messages a second per bot,
    # one a second per private chat (short bursts allowed), 20 a minute per group.
    send_rate_per_second: float = Field(default=30.0, gt=0)
    send_per_chat_per_second: float = Field(default=1.0, gt=0)
    send_per_chat_burst: int = Field(default=3, ge=1)
    send_per_group_per_minute: int = Field(default=20, ge=1)
    send_concurrency: int = Field(default=16, ge=1)  # messages in flight at once
    send_poll_seconds: float = Field(default=0.15, gt=0)  # how often rows of other processes are looked for
    send_lease_seconds: float = Field(default=10.0, gt=0)  # how long a claimed row is held
    send_retry_base_seconds: float = Field(default=2.0, gt=0)  # first back-off after a transient error
    leader_check_seconds: float = Field(default=1.0, gt=0)  # leader re-check and standby retry
    # PostgreSQL connections per process (SQLite keeps SQLAlchemy's defaults): up to pool size +
    # overflow each, so workers × (size + overflow) + the leader's lock and job store must stay under
    # the server's max_connections (docs/deploy.md). Waiting longer than the timeout for a
    # connection fails the event fast, instead of piling requests up behind a saturated pool.
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    # Signs dashboard links and keys anonymous survey answers. Never stored in the database; when
    # unset, one is made once in DATA_DIR/secret.key. Several workers must share one: set it.
    secret_key: SecretStr | None = None
    # Periodic feedback rounds (crontab line in the school's time zone; empty: none) and how long
    # each round stays open.
    feedback_rounds_cron: str = "0 18 1 * *"
    feedback_round_days: int = Field(default=7, ge=1, le=31)
    # Retention (docs/privacy.md): days each kind of data is kept, and when the nightly purge runs
    # (crontab line in the school's time zone; empty: never, e.g. when `afterschool purge` is run
    # from the system's cron instead).
    retention_attendance_days: int = Field(default=365, ge=1)
    retention_draft_days: int = Field(default=7, ge=1)
    retention_update_ids_days: int = Field(default=7, ge=2)  # Telegram re-delivers for up to a day
    retention_outbox_days: int = Field(default=30, ge=1)
    retention_pickup_days: int = Field(default=30, ge=0)
    retention_files_days: int = Field(default=30, ge=1)
    retention_cron: str = "30 3 * * *"

    def retention_policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            attendance_days=self.retention_attendance_days,
            draft_days=self.retention_draft_days,
            update_ids_days=self.retention_update_ids_days,
            outbox_days=self.retention_outbox_days,
            pickup_days=self.retention_pickup_days,
            files_days=self.retention_files_days,
        )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'afterschool.sqlite3').resolve()}"

    def secret_key_bytes(self) -> bytes:
        """The deployment's secret: SECRET_KEY, else DATA_DIR/secret.key (made once, owner-only)."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return hashlib.sha256(self.secret_key.get_secret_value().encode()).digest()
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32))
        return hashlib.sha256(path.read_text().strip().encode()).digest()

    def base_url(self) -> str:
        """Where people reach our web pages (terms, web chat)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        if self.webhook_url:
            from urllib.parse import urlsplit

            parts = urlsplit(self.webhook_url)
            return f"{parts.scheme}://{parts.netloc}"
        return f"http://{self.http_host}:{self.http_port}"


def engine_options(settings: Settings) -> dict[str, Any]:
    """The pool keywords for storage.db.create_engine (which applies them to PostgreSQL only)."""
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
    }


def normalise_database_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://, sqlite:///) and pick async drivers."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


def sync_database_url(url: str) -> str:
    """The same database for a synchronous driver (APScheduler 3's job store): psycopg or sqlite3."""
    url = normalise_database_url(url)
    if url.startswith("postgresql+asyncpg://"):
        return "postgresql+psycopg://" + url[len("postgresql+asyncpg://") :]
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    return url
