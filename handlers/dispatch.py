"""Route one event to its flow inside one transaction; no error escapes except `Unavailable`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import messages
from handlers import fallback, start
from handlers.dialog import MAX_ID, MAX_TEXT, Context, Event, Flow, Links, Reply
from handlers.registry import BY_COMMAND, BY_KEY, BY_NAME, FALLBACK
from storage import accounts, consent, outbox, updates
from storage.availability import is_unavailable
from storage.retention import RetentionPolicy

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The database could not be reached: the event was not handled and must be offered again.

    Raised instead of an answer so the channel can give the event back (Telegram: 503, or an offset
    not moved past it) rather than let it be acknowledged and lost. Retrying is always safe: if a
    commit did reach the server before the connection died, the update id was committed with it
    and the retry is skipped.
    """


@dataclass(frozen=True)
class Deps:
    """What the dialog core needs from the runtime; built once in bot.app."""

    sessionmaker: async_sessionmaker[AsyncSession]
    links: Links
    default_locale: str = messages.DEFAULT_LOCALE
    # Where flows may write files they send (under DATA_DIR); None where nothing is written.
    files_dir: Path | None = None
    # The deployment's secret (dashboard links, anonymous answers); tests get a fresh random one.
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    # Called after an event's commit if it queued messages to other people (wakes the sender).
    on_queued: Callable[[], None] | None = None


async def handle(event: Event, deps: Deps) -> list[Reply]:
    """Answer one event. Its effects, its outbox rows and its update id commit together.

    Any error rolls all of it back. A database outage raises `Unavailable`; every other error is
    logged and answered with the generic apology (retrying a bug would only fail again).
    """
    event = event.storable()
    locale = messages.normalise_locale(event.language, deps.default_locale)
    try:
        async with deps.sessionmaker.begin() as session:
            if event.update_id is not None and not await updates.claim_update(
                session, event.platform, event.update_id
            ):
                log.info("update %s/%s already processed", event.platform, event.update_id)
                return []
            opened = await accounts.open_account(
                session, event.platform, event.user_id, event.chat_id, locale
            )
            ctx = Context(
                event=event,
                session=session,
                identity=opened.identity,
                state=opened.state,
                locale=opened.identity.account.locale,
                links=deps.links,
                files_dir=deps.files_dir,
                secret_key=deps.secret_key,
                retention=deps.retention,
            )
            replies = await route(ctx)
        if deps.on_queued is not None and outbox.queued(session):
            deps.on_queued()
        return replies
    except Exception as exc:
        if is_unavailable(exc):
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning(
                "database unavailable, event from %s/%s not handled: %s",
                event.platform,
                event.user_id,
                reason,
            )
            raise Unavailable(reason) from exc
        log.exception("event from %s/%s failed", event.platform, event.user_id)
        return [Reply(messages.render("error", locale))]


def ids_fit(data: str) -> bool:
    """Every number in a payload fits an id column. Flows test parts with `str.isdigit()`, which
    also takes "²" (int() then raises) and "99999999999999999999" (the database then raises)."""
    return all(
        not part.isdigit() or (part.isascii() and len(part) <= 10 and int(part) <= MAX_ID)
        for part in data.split(":")
    )


async def route(ctx: Context) -> list[Reply]:
    event = ctx.event
    if len(event.text) > MAX_TEXT:
        return await fallback.too_long(ctx)
    if event.button is not None:
        key, _, data = event.button.partition(":")
        flow = BY_KEY.get(key)
        if flow is None or flow.on_button is None or not ids_fit(data):
            return await fallback.invalid_button(ctx, data)
        if _waits_for_consent(ctx, flow):
            return await start.ask_consent(ctx)
        return await flow.on_button(ctx, data)
    if event.command is not None:
        flow = BY_COMMAND.get(event.command, FALLBACK)
        assert flow.on_command is not None
        if _waits_for_consent(ctx, flow):
            return await start.ask_consent(ctx)
        return await flow.on_command(ctx)
    current: Flow | None = BY_NAME.get(ctx.state.flow) if ctx.state else None
    if _waits_for_consent(ctx, current or FALLBACK):
        return await start.ask_consent(ctx)
    if current is not None and current.on_message is not None:
        return await current.on_message(ctx)
    return await fallback.anything(ctx)


def _waits_for_consent(ctx: Context, flow: Flow) -> bool:
    """A bound person who has not accepted the current privacy notice is asked before anything else."""
    if flow.before_consent or not ctx.identity.bound:
        return False
    return not consent.accepted_by(ctx.identity)
