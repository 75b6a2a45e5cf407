"""Logging set-up. Secrets never reach a log line: the deployment's own (the bot token, the webhook
secret, SECRET_KEY, the database password) are masked wherever they appear, and so is anything
shaped like a one-time secret we hand out (dashboard sign-in tokens, `token=` and `start=` values)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import SecretStr

MASK = "***"
# One-time secrets made at run time, so no list can name them: a dashboard link's token
# (`<id>.<secret>.<hex HMAC>`, storage/dashboard.py) and any `token=` or `start=` (an invite code)
# in a URL.
_SHAPES = (
    re.compile(r"\b\d{1,12}\.[A-Za-z0-9_-]{16,}\.[0-9a-f]{64}\b"),
    re.compile(r"(?<=[?&]token=)[^&\s\"'<>]+"),
    re.compile(r"(?<=[?&]start=)[^&\s\"'<>]+"),
)

# Loggers that log data rather than events below this level (see setup_logging).
_DATA_LOGGERS = {
    "telegram": logging.INFO,
    "aiosqlite": logging.INFO,
    "sqlalchemy.engine": logging.WARNING,  # statements at INFO, their parameters too
    "sqlalchemy.pool": logging.WARNING,
}


class RedactSecrets(logging.Filter):
    """Masks each secret, and every one-time secret's shape, in the message, its arguments, the
    traceback and the stack; attached to handlers and loggers alike."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for shape in _SHAPES:
            text = shape.sub(MASK, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the record, shown as written
            message = f"{record.msg} {record.args}"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def secrets_of(
    token: SecretStr | None,
    webhook_secret: SecretStr | None,
    secret_key: SecretStr | None,
    database_url: str | None,
) -> list[str]:
    """The deployment's secrets as logged text could hold them: the token's secret half is
    masked on its own too (URL-encoded or cut from its bot id), and the database password."""
    found = [s.get_secret_value() for s in (token, webhook_secret, secret_key) if s is not None]
    if token is not None and ":" in token.get_secret_value():
        found.append(token.get_secret_value().split(":", 1)[1])
    if database_url:
        try:
            password = urlsplit(database_url).password
        except ValueError:
            password = None
        if password:
            found.append(password)
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info or record.exc_text:
            # The filter has put the masked traceback in exc_text: never format exc_info again.
            data["traceback"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL, and Telegram's URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # At DEBUG these log data, not events: PTB every Bot API call's parameters and answer (what
    # parents wrote, what we sent them: sign-in links, invite codes), aiosqlite and SQLAlchemy every
    # statement with its parameters. Even at LOG_LEVEL=DEBUG they stay quiet.
    for name, floor in _DATA_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
