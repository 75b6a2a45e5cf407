"""The Telegram channel: Bot API updates in, neutral events to the dialog core, replies out.

PTB is used for its Bot API client only (requests and their error mapping, getUpdates, the
webhook and command set-up, file uploads): no handlers, no Updater, no ConversationHandler and no
PTB persistence, because conversation state lives in our database and every flow is
platform-neutral. On the hot path (an update in, its replies out) the JSON is read and written as
it is, without PTB's object trees, which cost more CPU than answering most updates.

Long polling by default, by our own loop that confirms an update to Telegram only after it is
processed; with WEBHOOK_URL set, Telegram posts updates to our own aiohttp server and gets its
200 only after the update's effects are committed. Either way an update that
meets a database outage is given back to Telegram (503, or an offset not moved past it) and comes
again: see docs/delivery.md, "Crashes and outages on the way in".
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import BotCommand, InlineKeyboardMarkup, Update
from telegram.constants import ChatType, ParseMode, UpdateType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application
from telegram.warnings import PTBDeprecationWarning

import messages
from bot.channels import Delivery, Status
from bot.config import Settings
from bot.logs import RedactSecrets
from bot.telegram_http import AiohttpRequest, JsonData
from handlers.dialog import Button, Event, Reply
from handlers.dispatch import Deps, Unavailable, handle
from handlers.registry import command_menu

log = logging.getLogger(__name__)

PLATFORM = "telegram"
MESSAGE_LIMIT = 4096  # Telegram's limit for one message, in UTF-16 code units after HTML parsing
CAPTION_LIMIT = 1024  # the same for a photo's or a document's caption
MAX_WEBHOOK_BODY = 1024 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
POLL_TIMEOUT = timedelta(seconds=30)
# Pauses between attempts while getUpdates fails (doubling up to the cap), and while the database is
# unavailable in polling mode (the update at the head waits; a short cap: people are waiting).
POLL_RETRY = (1.0, 30.0)
OUTAGE_RETRY = (0.5, 10.0)
STOP_TIMEOUT = 15.0  # how long stop() lets the update in hand finish before cutting it off
# Update ids whose sender was already told of an outage, so Telegram's re-deliveries (and our own
# re-fetches) do not repeat the notice. Per process: another worker may tell once more.
TOLD_MEMORY = 10_000
# Only what the dialog core understands; edits, channel posts and member updates are not asked for.
ALLOWED_UPDATES = [UpdateType.MESSAGE.value, UpdateType.CALLBACK_QUERY.value]
# Telegram's rule for setWebhook's secret_token.
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
# PTB loggers that print URLs containing the bot token (the Bot logs its API URL at DEBUG, httpx
# logs every request URL at INFO). A filter on the logger itself masks the token whatever the
# handlers are, so no deployment or test log can leak it.
_TOKEN_LOGGERS = ("telegram.Bot", "telegram.ext.ExtBot", "httpx", "aiohttp.client", __name__, "bot.sender")
# Message attributes checked in order; the first one set names the media kind of the event.
# (Animations also carry `document` and venues also carry `location`, so they come first.)
_MEDIA_KINDS = (
    "sticker",
    "photo",
    "voice",
    "video_note",
    "video",
    "animation",
    "audio",
    "document",
    "venue",
    "location",
    "contact",
    "poll",
    "dice",
)


class TelegramAdapter:
    """Runs the bot on Telegram and delivers outbox rows to Telegram chats."""

    platform = PLATFORM

    def __init__(self, settings: Settings, deps: Deps, wake: Callable[[], None]) -> None:
        if settings.telegram_bot_token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        token = settings.telegram_bot_token.get_secret_value()
        self.deps = deps
        self.wake = wake
        self.default_locale = settings.default_locale
        self.data_dir = settings.data_dir  # attachments are files under DATA_DIR
        self.webhook_url = settings.webhook_url or ""
        self.webhook_secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        if self.webhook_url:
            if not self.webhook_secret:
                raise ValueError(
                    "WEBHOOK_URL is set but WEBHOOK_SECRET is empty: without a secret anyone who "
                    "finds the webhook address could post forged updates. Set WEBHOOK_SECRET, or "
                    "leave WEBHOOK_URL empty to use long polling."
                )
            if not _SECRET_TOKEN.fullmatch(self.webhook_secret):
                raise ValueError(
                    "WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and - "
                    "(Telegram's rule for the webhook secret token)"
                )
        self._redact = RedactSecrets([token, self.webhook_secret])
        for name in _TOKEN_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)
        # Opt in to PTB's coming time-period type (timedelta) now: otherwise PTB warns each time a
        # RetryAfter is built, and we read the value both ways anyway (see `_retry_seconds`).
        os.environ.setdefault("PTB_TIMEDELTA", "true")
        base = settings.telegram_api_base_url.rstrip("/")
        # Our own request objects, so stop() can close their connection pools even when start()
        # failed before PTB considered the bot initialized.
        self._requests = (
            AiohttpRequest(connection_pool_size=64),
            AiohttpRequest(connection_pool_size=1),
        )
        builder = (
            Application.builder()
            .token(token)
            .base_url(f"{base}/bot")
            .base_file_url(f"{base}/file/bot")
            .request(self._requests[0])
            .get_updates_request(self._requests[1])
            .job_queue(None)
        )
        # No PTB Updater: it confirms fetched updates before they are processed (see `_poll`).
        self.application = builder.updater(None).build()
        self._ready = False
        self._chat_locks: dict[str, asyncio.Lock] = {}
        self._chat_lock_users: dict[str, int] = {}
        self._told: OrderedDict[int, None] = OrderedDict()
        self._polling: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token (getMe), publish the command list, then poll or register the webhook."""
        app = self.application
        try:
            await app.initialize()  # calls getMe: a wrong token fails here, loudly
        except InvalidToken:
            # PTB's own message quotes the token, and this one ends up in a traceback.
            raise InvalidToken(
                "Telegram refused TELEGRAM_BOT_TOKEN at getMe: check the token (and TELEGRAM_API_BASE_URL)"
            ) from None
        username = app.bot.username
        if not self.deps.links.bot_username:
            self.deps.links.bot_username = username
        await self._publish_commands()
        await app.start()
        self._ready = True
        if self.webhook_url:
            await app.bot.set_webhook(
                self.webhook_url,
                secret_token=self.webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
            )
            log.info("telegram: @%s receives updates by webhook at %s", username, self.webhook_url)
            return
        # Telegram refuses getUpdates while a webhook is set. Pending updates are kept: those that
        # arrived while we were down are still answered.
        await self._delete_webhook()
        self._stopping.clear()
        self._polling = asyncio.create_task(self._poll(), name="telegram-polling")
        log.info("telegram: @%s receives updates by long polling", username)

    async def stop(self) -> None:
        """Stop polling and PTB; safe to call twice or after a start() that failed halfway."""
        self._ready = False
        app = self.application
        try:
            await self._stop_polling()
            if app.running:
                await app.stop()
            await app.shutdown()
        except Exception:
            log.exception("telegram: error while stopping")
        finally:
            for request in self._requests:
                with contextlib.suppress(Exception):
                    await request.shutdown()
            for name in _TOKEN_LOGGERS:
                logging.getLogger(name).removeFilter(self._redact)

    async def _delete_webhook(self, attempts: int = 3) -> None:
        """Polling needs no webhook set; a network hiccup at start-up gets two more tries."""
        for attempt in range(1, attempts + 1):
            try:
                await self.application.bot.delete_webhook(drop_pending_updates=False)
                return
            except NetworkError:
                if attempt == attempts:
                    raise
                await asyncio.sleep(1.0)

    async def _publish_commands(self) -> None:
        """The "/" menu in each of our languages, plus a default for every other language.

        Cosmetic, so a refusal is logged and the bot runs on without it.
        """
        bot = self.application.bot
        menus: list[tuple[str, str | None]] = [
            (locale, locale.split("_")[0].lower()) for locale in messages.LOCALES
        ]
        menus.append((self.default_locale, None))
        for locale, language_code in menus:
            commands = [BotCommand(name, text) for name, text in command_menu(locale)]
            try:
                await bot.set_my_commands(commands, language_code=language_code)
            except TelegramError:
                log.warning("telegram: setMyCommands for %s failed", locale, exc_info=True)

    # -- incoming ---------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Serve the webhook on the path of WEBHOOK_URL; nothing in polling mode."""
        if self.webhook_url:
            app.router.add_post(urlsplit(self.webhook_url).path or "/", self._webhook)

    async def _webhook(self, request: web.Request) -> web.Response:
        """Telegram's POST: check the secret, bound the body, process, and only then answer 200."""
        given = request.headers.get(SECRET_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), self.webhook_secret.encode()):
            return web.Response(status=403)
        if request.content_length is not None and request.content_length > MAX_WEBHOOK_BODY:
            return web.Response(status=413)
        body = await _read_at_most(request, MAX_WEBHOOK_BODY)
        if body is None:
            return web.Response(status=413)
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not an Update")
            event = event_for(data)
        except (ValueError, RecursionError):  # JSONDecodeError included; nesting too deep
            return web.Response(status=400)
        if not self._ready:
            return web.Response(status=503)  # starting or stopping: Telegram will send it again
        try:
            await self._process(data["update_id"], event)
        except Unavailable:
            # The database is down and nothing was committed: Telegram sends the update again
            # (backing off), and it is processed once the database is back.
            return web.Response(status=503)
        query = data.get("callback_query")
        if isinstance(query, dict) and isinstance(query.get("id"), str):
            # Stop the button's spinner in the webhook's answer: Telegram makes the call for us,
            # which saves a round trip per button (its result was never used).
            return web.json_response({"method": "answerCallbackQuery", "callback_query_id": query["id"]})
        return web.Response(status=200)

    async def _poll(self) -> None:
        """Long polling that confirms an update to Telegram only after it has been processed.

        PTB's Updater confirms a batch with its very next getUpdates, while the batch still waits
        in memory, and an error in processing only reaches an error handler: an update whose
        processing met a database outage, or was cut short by a crash, would never come again.
        Here the offset passes an update only once its effects are committed and its reply sent.
        On `Unavailable` the update (and the rest of its batch) stays unconfirmed and is fetched
        again after a pause; any other error was answered or logged, and the update is done.
        """
        offset: int | None = None
        fetch_pause = outage_pause = 0.0
        while not self._stopping.is_set():
            try:
                updates = await self._fetch(offset)
            except TimedOut:
                continue  # a long poll the network cut short: just ask again
            except RetryAfter as exc:
                await self._pause(_retry_seconds(exc))
                continue
            except Exception as exc:  # network, a webhook or another poller (409), a revoked token
                fetch_pause = _next_pause(fetch_pause, POLL_RETRY)
                log.warning("telegram: getUpdates failed (%s); again in %.1f s", exc, fetch_pause)
                await self._pause(fetch_pause)
                continue
            fetch_pause = 0.0
            for number, update in enumerate(updates):
                if self._stopping.is_set():
                    break
                try:
                    await self._process(update.update_id, await self._polled_event(update))
                except Unavailable:
                    await self._tell_waiting(updates[number + 1 :])
                    outage_pause = _next_pause(outage_pause, OUTAGE_RETRY)
                    log.warning(
                        "telegram: database unavailable; update %s is fetched again in %.1f s",
                        update.update_id,
                        outage_pause,
                    )
                    await self._pause(outage_pause)
                    break
                outage_pause = 0.0
                offset = update.update_id + 1
        if offset is not None:
            await self._confirm(offset)

    async def _fetch(self, offset: int | None) -> Sequence[Update]:
        """One long poll; nothing when stop() came first (the poll is abandoned, nothing confirmed)."""
        fetch = asyncio.ensure_future(
            self.application.bot.get_updates(
                offset=offset, timeout=POLL_TIMEOUT, allowed_updates=ALLOWED_UPDATES
            )
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, TelegramError):
                await fetch
            return ()
        return fetch.result()

    async def _confirm(self, offset: int) -> None:
        """Tell Telegram what was processed, so a restart does not fetch it again (it would only be
        skipped as already processed)."""
        try:
            await self.application.bot.get_updates(offset=offset, timeout=0, allowed_updates=ALLOWED_UPDATES)
        except TelegramError as exc:
            log.info("telegram: could not confirm updates before %s on stopping: %s", offset, exc)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once for stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _stop_polling(self) -> None:
        """Let the update in hand finish (effects and reply), then confirm what was processed."""
        task, self._polling = self._polling, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT)
        except TimeoutError:
            log.warning("telegram: polling did not stop within %.0f s; cut off", STOP_TIMEOUT)
        except Exception:
            log.exception("telegram: polling ended with an error")

    async def _polled_event(self, update: Update) -> Event | None:
        """The event of a fetched update; a button's spinner is stopped first (by webhook, the
        answer to Telegram's POST does it)."""
        try:
            event = event_for(update.to_dict())
        except Exception:  # one unreadable update must not stop polling
            log.warning("telegram: update %s could not be read", update.update_id, exc_info=True)
            return None
        if update.callback_query is not None:
            # A re-delivered query may be too old to answer: nothing lost but the spinner.
            try:
                await self._call("answerCallbackQuery", {"callback_query_id": update.callback_query.id})
            except TelegramError as exc:
                log.debug("telegram: answerCallbackQuery failed: %s", exc)
        return event

    async def _process(self, update_id: int, event: Event | None) -> None:
        """Handle one update and send its replies; raises `Unavailable` (after telling the person,
        once) when the database is down. Any other error is logged: one bad update must not stop
        the bot, and its effects, if any, are committed, so it is done with."""
        if event is None:
            return
        try:
            async with self._chat_lock(event.chat_id):
                try:
                    replies = await handle(event, self.deps)  # wakes the sender if it queued messages
                except Unavailable:
                    await self._tell_unavailable(update_id, event)
                    raise
                for reply in replies:
                    await self._send(event.chat_id, reply)
        except Unavailable:
            raise
        except Exception:
            log.exception("telegram: update %s failed", update_id)

    async def _tell_unavailable(self, update_id: int, event: Event) -> None:
        """Best effort, once per update: the service is down and the message will be processed when
        it is back. In the person's Telegram language (their saved one is in the database)."""
        if update_id in self._told:
            return
        self._told[update_id] = None
        while len(self._told) > TOLD_MEMORY:
            self._told.popitem(last=False)
        locale = messages.normalise_locale(event.language, self.default_locale)
        try:
            await self._send(event.chat_id, Reply(messages.render("unavailable", locale)))
        except Exception as exc:  # the 503 or the unmoved offset is what keeps the update
            log.warning("telegram: could not tell chat %s about the outage: %s", event.chat_id, exc)

    async def _tell_waiting(self, updates: Sequence[Update]) -> None:
        """Polling: the rest of a batch waits behind the update that met the outage; tell them too."""
        for update in updates:
            try:
                event = event_for(update.to_dict())
            except Exception:
                log.warning("telegram: update %s could not be read", update.update_id, exc_info=True)
                continue
            if event is not None:
                await self._tell_unavailable(update.update_id, event)

    @contextlib.asynccontextmanager
    async def _chat_lock(self, chat_id: str) -> AsyncIterator[None]:
        """One update at a time per chat, so a quick second message sees the first one's state."""
        lock = self._chat_locks.setdefault(chat_id, asyncio.Lock())
        self._chat_lock_users[chat_id] = self._chat_lock_users.get(chat_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._chat_lock_users[chat_id] -= 1
            if not self._chat_lock_users[chat_id]:
                del self._chat_lock_users[chat_id], self._chat_locks[chat_id]

    # -- outgoing ---------------------------------------------------------------------------------

    async def deliver(self, chat_id: str, reply: Reply) -> Delivery:
        """Send one outbox row and say what the sender should do with it."""
        try:
            await self._send(chat_id, reply)
        except (OSError, ValueError) as exc:  # the attachment is missing or outside DATA_DIR
            return Delivery(Status.FAILED, f"attachment: {exc}")
        except Forbidden as exc:  # blocked the bot, or deactivated
            return Delivery(Status.UNREACHABLE, exc.message)
        except RetryAfter as exc:
            return Delivery(Status.RETRY, exc.message, retry_after=_retry_seconds(exc))
        except BadRequest as exc:  # before NetworkError: BadRequest is a subclass of it
            return Delivery(Status.FAILED, exc.message)
        except NetworkError as exc:  # includes TimedOut
            return Delivery(Status.RETRY, exc.message)
        except ChatMigrated as exc:
            return Delivery(Status.FAILED, exc.message)
        except TelegramError as exc:  # e.g. a revoked token: the message itself is fine
            return Delivery(Status.RETRY, exc.message)
        return Delivery(Status.SENT)

    async def _send(self, chat_id: str, reply: Reply) -> None:
        """Send a reply, split at Telegram's limit; the buttons go under the last part, and a file
        (checked before anything is sent) follows. A photo whose text fits a caption carries the
        text and the buttons itself, so a chart and what it shows stay one message."""
        attachment = reply.photo or reply.document
        file = attachment.resolve(self.data_dir) if attachment else None
        if file is not None and not file.is_file():
            raise FileNotFoundError(file.name)
        markup = _keyboard(reply.buttons)
        bot = self.application.bot
        if reply.photo is not None and file is not None and caption_fits(reply.text):
            with file.open("rb") as fh:
                await bot.send_photo(
                    chat_id=chat_id,
                    photo=fh,
                    filename=reply.photo.filename,
                    caption=reply.text or None,
                    parse_mode=ParseMode.HTML,
                    reply_markup=InlineKeyboardMarkup.de_json(markup, bot) if markup else None,
                )
            return
        parts = split_message(reply.text)
        for number, part in enumerate(parts, start=1):
            params: dict[str, Any] = {"chat_id": chat_id, "text": part, "parse_mode": ParseMode.HTML.value}
            if markup and number == len(parts):
                params["reply_markup"] = markup
            await self._call("sendMessage", params)
        if file is not None and attachment is not None:
            with file.open("rb") as fh:
                if reply.photo is not None:
                    await bot.send_photo(chat_id=chat_id, photo=fh, filename=attachment.filename)
                else:
                    await bot.send_document(chat_id=chat_id, document=fh, filename=attachment.filename)

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        """One Bot API call with JSON parameters, through PTB's request layer (its error mapping:
        Forbidden, RetryAfter, BadRequest ...) but without building PTB objects of the parameters
        or of the answer: replies are most of our calls, and their answers are never read."""
        return await self._requests[0].post(f"{self.application.bot.base_url}/{method}", JsonData(params))


def event_for(update: dict[str, Any]) -> Event | None:
    """The neutral event of a Bot API update (its JSON), or None for what the bot does not answer.

    Read from the JSON as Telegram sends it rather than through PTB's object tree: this runs for
    every update, and building the tree cost more CPU than answering most of them. ValueError:
    a part the bot reads is missing or of the wrong kind.
    """
    query = update.get("callback_query")
    message = query.get("message") if isinstance(query, dict) else update.get("message")
    if query is not None and not isinstance(query, dict):
        raise ValueError("callback_query is not an object")
    if message is not None and not isinstance(message, dict):
        raise ValueError("message is not an object")
    if query is not None and not isinstance(query.get("from"), dict):
        raise ValueError("a callback_query without from")
    if message is not None and not isinstance(message.get("chat"), dict):
        raise ValueError("a message without chat")
    user = (query or message or {}).get("from")
    chat = message.get("chat") if message else None
    if user is None or chat is None:
        return None  # a channel post has no sender, a button under an inline message no chat
    if not isinstance(user, dict):
        raise ValueError("from is not an object")
    user_id, chat_id, chat_type = user.get("id"), chat.get("id"), chat.get("type")
    if not isinstance(user_id, int) or not isinstance(chat_id, int) or not isinstance(chat_type, str):
        raise ValueError("a user or chat without an id or type")
    if chat_type != ChatType.PRIVATE:
        # Replies name children and classes; never post them in a group. (Answering in a group
        # would also move the account's chat_id, and with it the outbox, to the group.)
        log.debug("telegram: ignoring update %s from a %s chat", update.get("update_id"), chat_type)
        return None
    language = user.get("language_code")
    common: dict[str, Any] = {
        "language": language if isinstance(language, str) else None,
        "update_id": update.get("update_id"),
    }
    if query is not None:
        return Event(PLATFORM, str(user_id), str(chat_id), button=_text(query.get("data")), **common)
    assert message is not None
    text = message.get("text")
    if text is not None:
        return Event.from_text(PLATFORM, str(user_id), str(chat_id), _text(text), **common)
    caption = _text(message.get("caption"))
    return Event(PLATFORM, str(user_id), str(chat_id), text=caption, media=_media_kind(message), **common)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("a text that is not a string")
    return value


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past `limit` (a chunked body has no length)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _media_kind(message: dict[str, Any]) -> str:
    for kind in _MEDIA_KINDS:
        if message.get(kind):
            return kind
    return "other"


def _keyboard(rows: tuple[tuple[Button, ...], ...]) -> dict[str, Any] | None:
    """The inline keyboard as the Bot API's JSON (`reply_markup`), or None without buttons."""
    keyboard = [[b for b in (_button(button) for button in row) if b] for row in rows]
    keyboard = [row for row in keyboard if row]
    return {"inline_keyboard": keyboard} if keyboard else None


def _button(button: Button) -> dict[str, str] | None:
    if button.url:
        if not _public_url(button.url):
            # Telegram refuses the whole message ("Wrong HTTP URL") for a button to localhost or a
            # private address, as in a local set-up; the link is in the text as well.
            return None
        return {"text": button.label, "url": button.url}
    if button.payload is not None:
        return {"text": button.label, "callback_data": button.payload}
    return None


def _public_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "tg":
        return True
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or host == "localhost":
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." in host and not host.endswith((".localhost", ".local", ".internal"))
    return address.is_global


def _next_pause(current: float, bounds: tuple[float, float]) -> float:
    """The first pause, then double the last, up to the cap."""
    first, cap = bounds
    return first if current <= 0 else min(current * 2, cap)


def _retry_seconds(exc: RetryAfter) -> float:
    """RetryAfter.retry_after is an int or a timedelta depending on PTB_TIMEDELTA; accept both."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# -- splitting long messages ----------------------------------------------------------------------

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)\b[^<>]*>")


def caption_fits(text: str) -> bool:
    """Whether the text fits Telegram's caption limit, counted (as Telegram does) after parsing."""
    return _units(unescape(_TAG.sub("", text))) <= CAPTION_LIMIT


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut a Telegram-HTML text into parts of at most `limit` UTF-16 units.

    Cuts at the last paragraph break ("\\n\\n") that fits, else the last line break, else hard (but
    never inside a tag or an entity). The separator at a cut is dropped. A tag still open at a cut
    is closed at the end of the part and opened again at the start of the next, so every part is
    valid HTML on its own.
    """
    if _units(text) <= limit:
        return [text]
    parts: list[str] = []
    rest, reopen = text, ""
    while _units(reopen + rest) > limit:
        budget = limit - _units(reopen)
        while True:
            if budget < limit // 2:  # absurdly deep nesting: cut without keeping the tags
                reopen, budget = "", limit
                cut, skip = _cut(rest, budget)
                head, still_open, close = rest[:cut], [], ""
                break
            cut, skip = _cut(rest, budget)
            head = reopen + rest[:cut]
            still_open = _open_tags(head)
            close = "".join(f"</{name}>" for name, _ in reversed(still_open))
            over = _units(head + close) - limit
            if over <= 0:
                break
            budget -= over
        parts.append(head + close)
        rest = rest[cut + skip :]
        if skip:
            rest = rest.lstrip("\n")
        reopen = "".join(tag for _, tag in still_open)
    parts.append(reopen + rest)
    visible = [p for p in parts if _TAG.sub("", p).strip()]
    return visible or parts[:1]


def _units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _fit(text: str, budget: int) -> int:
    """The largest i with _units(text[:i]) <= budget, but at least 1 (always make progress)."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > budget:
            return max(i, 1)
    return len(text)


def _cut(text: str, budget: int) -> tuple[int, int]:
    """Where to cut `text` so the head fits `budget`, and how many separator characters to drop."""
    end = _fit(text, budget)
    window = text[:end]
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator)
        if at > 0:
            return at, len(separator)
    cut = end
    if window.rfind("<") > window.rfind(">"):  # inside a tag
        cut = window.rfind("<")
    amp = window.rfind("&", 0, cut)
    if amp != -1 and ";" not in window[amp:cut] and cut - amp <= 12:  # inside an entity
        cut = amp
    return (cut if cut > 0 else end), 0


def _open_tags(html: str) -> list[tuple[str, str]]:
    """Tags opened and not yet closed at the end of `html`: (name, the opening tag as written)."""
    stack: list[tuple[str, str]] = []
    for match in _TAG.finditer(html):
        closing, name = match.group(1), match.group(2).lower()
        if not closing:
            stack.append((name, match.group(0)))
            continue
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == name:
                del stack[i]
                break
    return stack
