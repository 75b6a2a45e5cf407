"""Settings from the environment and `.env`; built once in `main()` and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'afterschool.sqlite3').resolve()}"

    def base_url(self) -> str:
        """Where people reach our web pages (terms, web chat)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        if self.webhook_url:
            from urllib.parse import urlsplit

            parts = urlsplit(self.webhook_url)
            return f"{parts.scheme}://{parts.netloc}"
        return f"http://{self.http_host}:{self.http_port}"


def normalise_database_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://, sqlite:///) and pick async drivers."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url
