"""A local fake of the Telegram Bot API for end-to-end tests: real HTTP on 127.0.0.1, every call
recorded, updates injected by the test.

Usage::

    async with FakeBotApi(token=TOKEN) as fake:
        settings = Settings(telegram_bot_token=TOKEN, telegram_api_base_url=fake.url, ...)
        ...
        fake.push_text(1001, "/start")
        texts = await fake.wait_for_messages(1001, 1)

It serves `/bot<token>/<method>` with JSON, form-encoded or multipart bodies (PTB sends forms with
JSON-encoded values) and answers like Telegram: `{"ok": true, "result": ...}`, or
`{"ok": false, "error_code": ..., "description": ...}` with the same HTTP status. It checks what
Telegram checks where our code could get it wrong (message length, HTML tags, button data and
URLs, command lists) so a bug fails here instead of in production.

Every call is recorded (with its time), then goes through `rules` (callables that may refuse it
with an `ApiError`) before its method runs. `fail_next()` adds such a rule; a rate limit is one
more, for example::

    def one_per_second(call: Call) -> ApiError | None:
        earlier = [c for c in fake.calls_of("sendMessage") if c is not call]
        if call.method == "sendMessage" and earlier and call.at - earlier[-1].at < 1:
            return ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        return None

    fake.rules.append(one_per_second)

`block(chat_id)` makes sends to that chat fail with 403, as when a person blocks the bot.

Files sent by upload (sendPhoto, sendDocument) are kept: `fake.sent[i].photo` (or `.document`) is an
`Upload` with the multipart filename and the bytes, so a test can check the very file that went out.
An uploaded photo must be an image (PNG, JPEG, GIF or WebP), as Telegram's image processing requires.

Telegram's flood limits are a rule you switch on: `flood = fake.enforce_limits(per_second=30)`
answers 429 with `parameters.retry_after` to every message over a limit (per bot per second, per
private chat, per group chat: a negative chat id) and to every message during the wait it asked
for, and records each in `flood.violations`. A sender that keeps the limits sees none.

To stop a sender at a chosen point: `hold_sends()` keeps message requests waiting before Telegram
accepts them (a request whose client died meanwhile is then dropped, never delivered), and
`hold_answers()` accepts them but keeps the answer back; `release()` lets them go. `drop_next()`
closes the connection without an answer (a network error).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

Params = dict[str, Any]
Method = Callable[[Params], Awaitable[Any]]

MESSAGE_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
# Form fields PTB sends JSON-encoded; everything else stays a string, as Telegram would parse it.
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "allowed_updates",
        "commands",
        "scope",
        "link_preview_options",
        "entities",
        "caption_entities",
        "reply_parameters",
        "media",
        "results",
    }
)
# The tags Telegram's HTML parse mode accepts.
HTML_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
        "tg-emoji", "code", "pre", "blockquote",
    }
)  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)\b[^<>]*>")
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
# How the image formats Telegram takes as a photo start.
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF")  # RIFF: WebP
# Methods that send a message to a chat: what Telegram's flood limits count.
SEND_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "sendDocument", "sendAudio", "sendVideo", "sendVoice", "sendMediaGroup"}
)


class ApiError(Exception):
    """An error answer: Telegram's error_code, description and optional ResponseParameters."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            data["parameters"] = self.parameters
        return data


@dataclass(frozen=True)
class Call:
    """One request the bot made: the method (as Telegram spells it) and its decoded parameters."""

    method: str
    params: Params
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Upload:
    """A file that came as a multipart upload: its filename and its bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Sent:
    """A message the bot sent: `text` is what the person sees (tags stripped), `html` what was sent;
    for sendPhoto / sendDocument the text is the caption and the uploaded file is kept."""

    chat_id: str
    message_id: int
    text: str
    html: str
    reply_markup: dict[str, Any] | None
    method: str = "sendMessage"
    at: float = field(default_factory=time.monotonic)  # when Telegram accepted it
    photo: Upload | None = None  # None also when the photo was a file_id or a URL
    document: Upload | None = None

    @property
    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


Rule = Callable[[Call], ApiError | None]


@dataclass(frozen=True)
class Violation:
    """A message Telegram would have refused: which limit, for which chat, and when."""

    limit: str
    chat_id: str
    at: float


class FloodControl:
    """Telegram's limits held strictly, each a sliding window: at most `per_second` messages in
    any second for the whole bot, `per_chat` = (count, seconds) for a private chat, `per_group`
    for a group. A message over a limit, or sent during the wait a 429 asked for, is refused with
    429 and `retry_after`, and recorded as a violation. Refused messages do not count."""

    def __init__(
        self,
        per_second: int = 30,
        per_chat: tuple[int, float] = (3, 3.0),
        per_group: tuple[int, float] = (20, 60.0),
    ) -> None:
        self.per_second = per_second
        self.per_chat = per_chat
        self.per_group = per_group
        self.violations: list[Violation] = []
        self.accepted = 0
        self.penalty_until = 0.0
        self._bot: deque[float] = deque()
        self._chats: dict[str, deque[float]] = {}

    def admit(self, chat_id: str, now: float) -> None:
        """Count one message, or raise the 429 Telegram would answer."""
        if now < self.penalty_until:
            self._refuse("retry_after", chat_id, now, self.penalty_until - now)
        count, seconds = self.per_group if chat_id.startswith("-") else self.per_chat
        chat = self._chats.setdefault(chat_id, deque())
        for times, limit, window, name in (
            (self._bot, self.per_second, 1.0, "per_bot"),
            (chat, count, seconds, "per_group" if chat_id.startswith("-") else "per_chat"),
        ):
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                self._refuse(name, chat_id, now, times[0] + window - now)
        self._bot.append(now)
        chat.append(now)
        self.accepted += 1

    def penalise(self, seconds: float, now: float) -> None:
        """A 429 asked the whole bot to wait this long."""
        self.penalty_until = max(self.penalty_until, now + seconds)

    def _refuse(self, limit: str, chat_id: str, now: float, wait: float) -> None:
        self.violations.append(Violation(limit, chat_id, now))
        retry_after = max(1, math.ceil(wait))
        self.penalise(retry_after, now)
        raise ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


class FakeBotApi:
    """The fake server. `token=None` accepts any token; otherwise a wrong one gets 401."""

    def __init__(
        self,
        token: str | None = None,
        *,
        bot_id: int = 7000000001,
        username: str = "afterschool_test_bot",
    ) -> None:
        self.token = token
        self.bot_user = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "课后服务助手",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.url = ""
        self.calls: list[Call] = []
        self.sent: list[Sent] = []
        self.webhook: dict[str, Any] = {"url": ""}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.rules: list[Rule] = []
        self.blocked: set[str] = set()
        self.flood: FloodControl | None = None
        self.held = 0  # message requests waiting at a hold (see hold_sends / hold_answers)
        self.dropped = 0  # held requests whose client was gone when released
        self._send_gate: asyncio.Event | None = None
        self._answer_gate: asyncio.Event | None = None
        self._drops: dict[str, int] = {}
        self.methods: dict[str, Method] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getMyCommands": self._get_my_commands,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "close": self._true,
            "logOut": self._true,
        }
        self._by_lower = {name.lower(): name for name in self.methods}
        self._pending: list[dict[str, Any]] = []
        self._allowed_updates: list[str] = []
        self._update_ids = itertools.count(500_000_001)
        self._message_ids = itertools.count(1)
        self._query_ids = itertools.count(9_000_001)
        self._open_queries: set[str] = set()
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> FakeBotApi:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        # No access log: the request paths contain the bot token.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        self._closing = True
        self._bump()  # long polls return at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotApi:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- injecting updates ------------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (not while a webhook is set: the test POSTs it then)."""
        update.setdefault("update_id", next(self._update_ids))
        if not self.webhook["url"]:
            self._pending.append(update)
            self._bump()
        return update

    def push_text(self, user_id: int, text: str, language_code: str | None = "zh-hans") -> dict[str, Any]:
        message = self._user_message(user_id, language_code, text=text)
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": _units(command)}]
        return self.push({"message": message})

    def push_sticker(self, user_id: int, language_code: str | None = "zh-hans") -> dict[str, Any]:
        sticker = {
            "file_id": f"CAACAgIAAxkBAAE{next(self._message_ids)}",
            "file_unique_id": "AgADsticker",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "👍",
            "set_name": "HotCherry",
            "file_size": 23456,
        }
        return self.push({"message": self._user_message(user_id, language_code, sticker=sticker)})

    def push_photo(
        self, user_id: int, caption: str | None = None, language_code: str | None = "zh-hans"
    ) -> dict[str, Any]:
        sizes = [
            {
                "file_id": f"AgACAgUAAxkBAAI{side}",
                "file_unique_id": f"AQAD{side}",
                "width": side,
                "height": side * 3 // 4,
                "file_size": side * 100,
            }
            for side in (90, 320, 800)
        ]
        extra: dict[str, Any] = {"photo": sizes}
        if caption is not None:
            extra["caption"] = caption
        return self.push({"message": self._user_message(user_id, language_code, **extra)})

    def push_callback(
        self,
        user_id: int,
        data: str,
        language_code: str | None = "zh-hans",
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """A button press under the bot's last message to this user (or a made-up one)."""
        previous = [s for s in self.sent if s.chat_id == str(user_id)]
        if message_id is None and previous:
            message_id = previous[-1].message_id
        message = {
            "message_id": message_id or next(self._message_ids),
            "from": self.bot_user,
            "chat": self._private_chat(user_id),
            "date": int(time.time()) - 5,
            "text": previous[-1].text if previous else "…",
        }
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": self._user(user_id, language_code),
            "message": message,
            "chat_instance": f"-{user_id}00042",
            "data": data,
        }
        return self.push({"callback_query": query})

    # -- reading what happened --------------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages_to(self, chat_id: int | str) -> list[str]:
        """The texts the bot sent to this chat, in order, as the person sees them."""
        return [s.text for s in self.sent if s.chat_id == str(chat_id)]

    def sent_to(self, chat_id: int | str) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == str(chat_id)]

    async def wait_for(self, condition: Callable[[], Any] | int, timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        """Wait until `condition()` is truthy (or, given a number, until that many messages were
        sent in all) and return its value; AssertionError with the last calls on timeout."""
        if isinstance(condition, int):
            count = condition
            predicate: Callable[[], Any] = lambda: len(self.sent) >= count  # noqa: E731
        else:
            predicate = condition
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    result = predicate()
                    if result:
                        return result
                    await changed.wait()
        except TimeoutError:
            recent = "\n".join(f"  {c.method} {_short(c.params)}" for c in self.calls[-15:])
            raise AssertionError(
                f"fake Bot API: condition not met within {timeout}s; last calls:\n{recent}"
            ) from None

    async def wait_for_messages(self, chat_id: int | str, count: int, timeout: float = 10.0) -> list[str]:  # noqa: ASYNC109
        """The texts sent to this chat once there are at least `count` of them."""
        await self.wait_for(lambda: len(self.messages_to(chat_id)) >= count, timeout)
        return self.messages_to(chat_id)

    # -- programming failures ---------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        code: int,
        description: str,
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` fail with this error (e.g. 429 with retry_after)."""
        remaining = [times]
        parameters = {"retry_after": retry_after} if retry_after is not None else None

        def rule(call: Call) -> ApiError | None:
            if call.method != method or remaining[0] <= 0:
                return None
            remaining[0] -= 1
            return ApiError(code, description, parameters)

        self.rules.append(rule)

    def block(self, chat_id: int | str) -> None:
        """This person blocked the bot: sending to them gets 403 from now on."""
        self.blocked.add(str(chat_id))

    def enforce_limits(
        self,
        per_second: int = 30,
        per_chat: tuple[int, float] = (3, 3.0),
        per_group: tuple[int, float] = (20, 60.0),
    ) -> FloodControl:
        """Switch Telegram's flood limits on; the returned object counts violations."""
        self.flood = FloodControl(per_second, per_chat, per_group)
        return self.flood

    def hold_sends(self) -> None:
        """Message requests from now on wait, not yet accepted, until `release()`."""
        self._send_gate = self._send_gate or asyncio.Event()

    def hold_answers(self) -> None:
        """Message requests from now on are accepted (delivered), but answered only at `release()`."""
        self._answer_gate = self._answer_gate or asyncio.Event()

    def release(self) -> None:
        for gate in (self._send_gate, self._answer_gate):
            if gate is not None:
                gate.set()
        self._send_gate = self._answer_gate = None

    def drop_next(self, method: str, times: int = 1) -> None:
        """The next `times` calls of `method` get no answer: the connection just closes."""
        self._drops[method] = self._drops.get(method, 0) + times

    # -- HTTP -------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if self.token is not None and request.match_info["token"] != self.token:
            return _answer(ApiError(401, "Unauthorized"))
        name = self._by_lower.get(request.match_info["method"].lower())
        try:
            params = await _params(request)
        except ValueError as exc:
            return _answer(ApiError(400, f"Bad Request: {exc}"))
        call = Call(name or request.match_info["method"], params)
        self.calls.append(call)
        self._bump()
        if self._drops.get(call.method):
            self._drops[call.method] -= 1
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        sending = call.method in SEND_METHODS
        gate = self._send_gate if sending else None
        if gate is not None and not await self._wait_at(gate, request):
            self.dropped += 1
            return web.Response(status=500)  # never accepted: the client is gone
        try:
            for rule in list(self.rules):
                if (error := rule(call)) is not None:
                    raise error
            if name is None:
                raise ApiError(404, "Not Found")
            if sending and self.flood is not None:
                self.flood.admit(str(params.get("chat_id", "")), time.monotonic())
            result = await self.methods[name](params)
        except ApiError as error:
            retry_after = (error.parameters or {}).get("retry_after")
            if error.code == 429 and retry_after and self.flood is not None:
                self.flood.penalise(float(retry_after), time.monotonic())
            return _answer(error)
        finally:
            self._bump()
        if sending and self._answer_gate is not None:
            await self._wait_at(self._answer_gate, request)
        return web.json_response({"ok": True, "result": result})

    async def _wait_at(self, gate: asyncio.Event, request: web.Request) -> bool:
        """Wait for `release()`; False as soon as the client goes away (it stops counting as held)."""
        self.held += 1
        self._bump()
        try:
            while True:
                if request.transport is None or request.transport.is_closing():
                    return False
                if gate.is_set():
                    return True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.02):
                        await gate.wait()
        finally:
            self.held -= 1
            self._bump()

    def _bump(self) -> None:
        """Wake everyone waiting for a change (long polls and wait_for)."""
        self._changed.set()
        self._changed = asyncio.Event()

    # -- methods ----------------------------------------------------------------------------------

    async def _true(self, _params: Params) -> bool:
        return True

    async def _get_me(self, _params: Params) -> dict[str, Any]:
        return self.bot_user

    async def _get_updates(self, params: Params) -> list[dict[str, Any]]:
        if self.webhook["url"]:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 50.0)
        limit = min(int(params.get("limit") or 100), 100)
        if "allowed_updates" in params:
            self._allowed_updates = list(params["allowed_updates"] or [])
        if offset > 0:  # confirms every update before it
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        try:
            async with asyncio.timeout(timeout):
                while not self._closing:
                    changed = self._changed
                    self._drop_unwanted()
                    if self._pending:
                        break
                    await changed.wait()
        except TimeoutError:
            pass
        self._drop_unwanted()
        return self._pending[:limit]

    def _drop_unwanted(self) -> None:
        """Telegram never delivers kinds left out of allowed_updates."""
        if self._allowed_updates:
            self._pending = [u for u in self._pending if _kind(u) in self._allowed_updates]

    async def _send_message(self, params: Params) -> dict[str, Any]:
        chat_id = _chat_id(params)
        text = str(params.get("text", ""))
        visible = _visible(text, params.get("parse_mode"))
        if not visible.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if _units(visible) > MESSAGE_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        markup = _check_markup(params.get("reply_markup"))
        self._check_reachable(chat_id)
        return self._record(chat_id, "sendMessage", visible, text, markup)

    async def _edit_message_text(self, params: Params) -> dict[str, Any]:
        chat_id = _chat_id(params)
        message_id = int(params.get("message_id") or 0)
        for i, sent in enumerate(self.sent):
            if sent.chat_id == chat_id and sent.message_id == message_id:
                text = str(params.get("text", ""))
                visible = _visible(text, params.get("parse_mode"))
                if _units(visible) > MESSAGE_LIMIT:
                    raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
                markup = _check_markup(params.get("reply_markup"))
                if visible == sent.text and markup == sent.reply_markup:
                    raise ApiError(
                        400,
                        "Bad Request: message is not modified: specified new message content and "
                        "reply markup are exactly the same as a current content and reply markup "
                        "of the message",
                    )
                self.sent[i] = Sent(chat_id, message_id, visible, text, markup, sent.method)
                return self._message_json(self.sent[i])
        raise ApiError(400, "Bad Request: message to edit not found")

    async def _send_photo(self, params: Params) -> dict[str, Any]:
        return self._send_file(params, "photo")

    async def _send_document(self, params: Params) -> dict[str, Any]:
        return self._send_file(params, "document")

    def _send_file(self, params: Params, kind: str) -> dict[str, Any]:
        chat_id = _chat_id(params)
        if not params.get(kind):
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        caption = str(params.get("caption", ""))
        visible = _visible(caption, params.get("parse_mode"))
        if _units(visible) > 1024:
            raise ApiError(400, "Bad Request: message caption is too long")
        markup = _check_markup(params.get("reply_markup"))
        file = params[kind]
        upload = Upload(str(file["filename"]), file["data"]) if isinstance(file, dict) else None
        if kind == "photo" and upload is not None and not upload.data.startswith(IMAGE_MAGIC):
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        self._check_reachable(chat_id)
        method = "sendPhoto" if kind == "photo" else "sendDocument"
        return self._record(chat_id, method, visible, caption, markup, **{kind: upload})

    async def _answer_callback_query(self, params: Params) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._open_queries:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self._open_queries.discard(query_id)
        return True

    async def _set_my_commands(self, params: Params) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100 BotCommand")
        for command in commands:
            name = str(command.get("command", ""))
            description = str(command.get("description", ""))
            if not _COMMAND.fullmatch(name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[_commands_key(params)] = commands
        return True

    async def _delete_my_commands(self, params: Params) -> bool:
        self.commands.pop(_commands_key(params), None)
        return True

    async def _get_my_commands(self, params: Params) -> list[dict[str, Any]]:
        return self.commands.get(_commands_key(params), [])

    async def _set_webhook(self, params: Params) -> bool:
        url = str(params.get("url", ""))
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ApiError(400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
        if params.get("drop_pending_updates") in (True, "true", "True"):
            self._pending.clear()
        self.webhook = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": params.get("allowed_updates"),
        }
        return True

    async def _delete_webhook(self, params: Params) -> bool:
        if params.get("drop_pending_updates") in (True, "true", "True"):
            self._pending.clear()
        self.webhook = {"url": ""}
        return True

    async def _get_webhook_info(self, _params: Params) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook["url"],
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    # -- building JSON ----------------------------------------------------------------------------

    def _check_reachable(self, chat_id: str) -> None:
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    def _record(
        self,
        chat_id: str,
        method: str,
        visible: str,
        raw: str,
        markup: dict[str, Any] | None,
        *,
        photo: Upload | None = None,
        document: Upload | None = None,
    ) -> dict[str, Any]:
        sent = Sent(
            chat_id, next(self._message_ids), visible, raw, markup, method, photo=photo, document=document
        )
        self.sent.append(sent)
        return self._message_json(sent)

    def _message_json(self, sent: Sent) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "from": self.bot_user,
            "chat": self._private_chat(sent.chat_id),
            "date": int(time.time()),
        }
        if sent.method == "sendMessage":
            message["text"] = sent.text
        else:
            if sent.text:
                message["caption"] = sent.text
            if sent.method == "sendPhoto":
                message["photo"] = [
                    {"file_id": "AgACphoto", "file_unique_id": "AQADphoto", "width": 800, "height": 600}
                ]
            else:
                message["document"] = {"file_id": "BQACdoc", "file_unique_id": "AgADdoc"}
        if sent.reply_markup:
            message["reply_markup"] = sent.reply_markup
        return message

    def _user(self, user_id: int | str, language_code: str | None) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": int(user_id),
            "is_bot": False,
            "first_name": f"User{user_id}",
            "username": f"user{user_id}",
        }
        if language_code:
            user["language_code"] = language_code
        return user

    def _private_chat(self, chat_id: int | str) -> dict[str, Any]:
        return {
            "id": int(chat_id),
            "type": "private",
            "first_name": f"User{chat_id}",
            "username": f"user{chat_id}",
        }

    def _user_message(self, user_id: int, language_code: str | None, **content: Any) -> dict[str, Any]:
        return {
            "message_id": next(self._message_ids),
            "from": self._user(user_id, language_code),
            "chat": self._private_chat(user_id),
            "date": int(time.time()),
            **content,
        }


# -- helpers --------------------------------------------------------------------------------------


def _answer(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.code)


async def _params(request: web.Request) -> Params:
    """Decode the parameters however they were sent: query string, JSON, form or multipart."""
    params: Params = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except json.JSONDecodeError as exc:
            raise ValueError("can't parse JSON body") from exc
        if not isinstance(data, dict):
            raise ValueError("JSON body must be an object")
        params.update(data)
        return params
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            data = value.file.read()
            params[key] = {"filename": value.filename, "size": len(data), "data": data}
        elif key in JSON_FIELDS:
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"can't parse {key} JSON object") from exc
        else:
            params[key] = value
    return params


def _chat_id(params: Params) -> str:
    chat_id = str(params.get("chat_id", "")).strip()
    if not chat_id:
        raise ApiError(400, "Bad Request: chat_id is empty")
    if not chat_id.lstrip("-").isdigit():
        raise ApiError(400, "Bad Request: chat not found")
    return chat_id


def _visible(text: str, parse_mode: Any) -> str:
    """What the person sees: for HTML, the tags checked as Telegram does and then removed."""
    if str(parse_mode or "").upper() != "HTML":
        return text
    stack: list[str] = []
    for match in _TAG.finditer(text):
        closing, name = match.group(1), match.group(2).lower()
        if name not in HTML_TAGS:
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unsupported start tag "{name}"')
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unexpected end tag "{name}"')
    if stack:
        raise ApiError(
            400, "Bad Request: can't parse entities: Can't find end tag corresponding to start tag"
        )
    stripped = _TAG.sub("", text)
    if "<" in stripped:
        raise ApiError(400, "Bad Request: can't parse entities: Unsupported start tag")
    return html.unescape(stripped)


def _check_markup(markup: Any) -> dict[str, Any] | None:
    """An inline keyboard as Telegram checks it: data up to 64 bytes, public http(s) URLs only."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard", []):
        for button in row:
            if not button.get("text"):
                raise ApiError(400, "Bad Request: BUTTON_TEXT_INVALID")
            data, url = button.get("callback_data"), button.get("url")
            if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            if url is not None and not _public_url(str(url)):
                raise ApiError(
                    400, f"Bad Request: inline keyboard button URL '{url}' is invalid: Wrong HTTP URL"
                )
            if data is None and url is None:
                raise ApiError(400, "Bad Request: can't parse inline keyboard button")
    return markup


def _public_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "tg":
        return True
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or host == "localhost":
        return False
    try:
        return ip_address(host).is_global
    except ValueError:
        return "." in host


def _commands_key(params: Params) -> tuple[str, str]:
    scope = params.get("scope") or {"type": "default"}
    return str(scope.get("type", "default")), str(params.get("language_code") or "")


def _kind(update: dict[str, Any]) -> str:
    return next((k for k in update if k != "update_id"), "")


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _short(params: Params) -> str:
    text = json.dumps(params, ensure_ascii=False, default=str)
    return text if len(text) <= 160 else text[:157] + "..."
