"""The web chat: the dialog core in a browser, over one WebSocket per open tab.

A browser's identity is an unguessable token in an HttpOnly cookie; it is the Event's user and chat
id on platform "web", so binding (an invite code, or a demo persona) works exactly as on Telegram.
Messages to other people go through the outbox: `deliver()` pushes to every open tab of that chat
and asks for a retry when none is open, and a tab that connects wakes the sender.

When the database is down a message cannot be handled, and nothing on our side keeps it: the
answer is an "unavailable" error frame that hands the message back, and the page sends it again
(with growing pauses) until it is taken.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

import messages
from bot.channels import Delivery, Status
from bot.demo import GROUPS, list_personas
from bot.guard import FailureLimiter, client_ip
from bot.web import page_locale
from handlers.dialog import Attachment, Event, Reply
from handlers.dispatch import Deps, Unavailable, handle
from storage import accounts, agreements, audit, consent, invites, notices, outbox
from storage.clock import utcnow
from storage.models import Person

log = logging.getLogger(__name__)

PLATFORM = "web"
COOKIE = "afterschool_chat"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie; losing it means a new invite
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,64}")
START_CODE_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_FRAME_BYTES = 16 * 1024  # larger frames get an error frame and the socket stays open
HARD_FRAME_BYTES = 4 * MAX_FRAME_BYTES  # larger still: aiohttp closes with 1009 before we read it
MAX_PAYLOAD_CHARS = 256  # ours are at most 64 bytes; longer ones are not worth dispatching
HEARTBEAT_SECONDS = 30.0
STATIC = Path(messages.__file__).parent / "static"
# The page runs only our own script; inline styles come from web/base.html.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # ?start=CODE is an invite: never hand it to the sites the chat links to.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Strings the script shows by itself (everything else comes from the server already localized).
SCRIPT_LABELS = {
    "connecting": "web.chat_connecting",
    "disconnected": "web.chat_disconnected",
    "too_large": "web.chat_error_too_large",
    "persona_error": "web.chat_error_persona",
    "anonymous": "web.chat_anonymous",
    "visitor": "web.persona_group_visitor",
}

_dumps = functools.partial(json.dumps, ensure_ascii=False)
NO_SNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
# Files the page may show inline (as an <img>); anything else is only ever a download, so a file
# that a browser would run (HTML, SVG) never opens on our origin.
INLINE_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
# Wrong invite codes per client address. The per-account limit (storage.invites) alone would not
# do here: a new browser identity is free, so a guesser could make one for every five guesses.
INVITE_FAILURES = 20
INVITE_WINDOW = 3600.0
FILE_LINK = "web-chat-file"  # what the file links' HMAC is for, so it cannot stand for another use


class FrameError(ValueError):
    """A client frame we will not dispatch; `code` names the error frame sent back."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def parse_frame(data: str) -> tuple[str, str]:
    """("text", text) or ("button", payload) from a client frame, or FrameError."""
    if len(data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameError("too_large")
    try:
        frame = json.loads(data)
    except ValueError:
        raise FrameError("malformed") from None
    if not isinstance(frame, dict):
        raise FrameError("malformed")
    kind = frame.get("type")
    if kind == "text":
        text = frame.get("text")
        if isinstance(text, str) and text.strip():
            return "text", text.strip()
    elif kind == "button":
        payload = frame.get("payload")
        if isinstance(payload, str) and 0 < len(payload) <= MAX_PAYLOAD_CHARS:
            return "button", payload
    raise FrameError("malformed")


def _resend_count(data: str) -> int:
    """How often the page has sent this message again after an outage ("resend"); 0 the first time."""
    frame = json.loads(data)  # parse_frame has read it already
    count = frame.get("resend")
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < 10_000:
        return count
    return 0


def _invite_attempt(event: Event) -> bool:
    """`/start CODE`, or a typed text shaped like a code: the only messages that can redeem one."""
    if event.command == "start":
        return bool(event.args)
    return event.command is None and invites.looks_like_code(event.text)


def new_chat_id() -> str:
    return secrets.token_urlsafe(32)


@dataclass(eq=False)
class _Socket:
    """One open tab; the lock keeps a delivery and a reply from interleaving their frames."""

    ws: web.WebSocketResponse
    client: str  # the address wrong invite codes are counted under
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WebChat:
    """The "web" channel: chat page, WebSocket, outbox delivery and (in demo mode) personas."""

    platform = PLATFORM

    def __init__(
        self, deps: Deps, wake: Callable[[], None], demo: bool, data_dir: Path | None = None
    ) -> None:
        self.deps = deps
        self.wake = wake
        self.demo = demo
        self.data_dir = data_dir  # attachments are files under DATA_DIR
        self._sockets: dict[str, set[_Socket]] = {}
        self.invite_guard = FailureLimiter(INVITE_FAILURES, INVITE_WINDOW)
        script = (STATIC / "chat.js").read_bytes()
        self._script_url = f"/chat/static/chat.js?v={hashlib.sha256(script).hexdigest()[:12]}"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/chat", self.page)
        app.router.add_get("/chat/ws", self.socket)
        app.router.add_static("/chat/static/", STATIC)
        app.router.add_get("/chat/files/{signature}/{path:.+}", self.download)
        if self.demo:
            app.router.add_get("/chat/personas", self.personas)
            app.router.add_post("/chat/persona", self.choose_persona)
        app.on_shutdown.append(self._close_all)

    # --- the outbox channel ---

    async def deliver(self, chat_id: str, reply: Reply) -> Delivery:
        """Push to every open tab of the chat; with none open the row waits in the outbox."""
        frame = self._frame(chat_id, reply)
        sent = False
        for sock in list(self._sockets.get(chat_id, ())):
            sent = await self._send(sock, frame) or sent
        return Delivery(Status.SENT) if sent else Delivery(Status.OFFLINE, "no open web chat")

    # --- HTTP ---

    async def page(self, request: web.Request) -> web.Response:
        locale = page_locale(request)
        chat_id = self._chat_id(request)
        fresh = chat_id is None
        current = None
        if self.demo and chat_id is not None:
            current = await self._bound_name(chat_id)
        start = request.query.get("start", "").strip()
        config = {
            "locale": locale,
            "demo": self.demo,
            "start": start if START_CODE_RE.fullmatch(start) else None,
            # A new visitor is greeted as Telegram greets: by sending /start for them.
            "greet": fresh and not self.demo,
            "current": current,
            "labels": {key: messages.label(name, locale) for key, name in SCRIPT_LABELS.items()},
        }
        html = messages.render_page(
            "chat", locale, demo=self.demo, config=config, script_url=self._script_url
        )
        response = web.Response(text=html, content_type="text/html", headers=PAGE_HEADERS)
        if chat_id is None:
            self._set_cookie(response, request, new_chat_id())
        return response

    async def personas(self, request: web.Request) -> web.Response:
        """Demo only: who the visitor may pretend to be, grouped, in the page's language."""
        locale = page_locale(request)
        async with self.deps.sessionmaker() as session:
            found = await list_personas(session, locale)
        groups = [
            {
                "group": group,
                "title": messages.label(f"web.persona_group_{group}", locale),
                "people": [{"id": p.person_id, "label": p.label} for p in found if p.group == group],
            }
            for group in GROUPS
        ]
        return web.json_response({"groups": [g for g in groups if g["people"]]}, dumps=_dumps)

    async def choose_persona(self, request: web.Request) -> web.Response:
        """Demo only: a fresh chat identity bound straight to a person (or to nobody: a visitor).

        Requiring a JSON body makes a cross-site form unable to switch someone's identity.
        """
        if request.content_type != "application/json":
            return web.json_response({"error": "expected application/json"}, status=415)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "malformed JSON"}, status=400)
        person_id = body.get("person_id", "missing") if isinstance(body, dict) else "missing"
        if person_id is not None and (not isinstance(person_id, int) or isinstance(person_id, bool)):
            return web.json_response({"error": "person_id must be an integer or null"}, status=400)
        chat_id = new_chat_id()
        name = None
        async with self.deps.sessionmaker.begin() as session:
            person = await session.get(Person, person_id) if person_id is not None else None
            if person_id is not None and person is None:
                return web.json_response({"error": "no such person"}, status=404)
            account = await accounts.get_or_create_account(
                session, PLATFORM, chat_id, chat_id, page_locale(request)
            )
            if person is not None:
                await accounts.bind_account(session, account, person)
                # The demo's picker stands in for the invite and the notice alike (fictional people);
                # /privacy shows the notice.
                await consent.accept(session, [person.id], account.id, utcnow())
                await audit.record(
                    session,
                    "demo.bound",
                    school_id=person.school_id,
                    actor_account_id=account.id,
                    actor_person_id=person.id,
                    target_type="person",
                    target_id=person.id,
                )
                name = person.name
        response = web.json_response({"ok": True, "name": name}, dumps=_dumps)
        self._set_cookie(response, request, chat_id)
        return response

    async def download(self, request: web.Request) -> web.StreamResponse:
        """A file named in a message to this browser's chat, and only for that chat: the link is
        signed for the chat and the path, so the page cannot ask for any other file. A notice's
        attachment or an agreement's copy also still needs its own rule (a recipient of the notice,
        a guardian of the child, as of now). Whatever the link, the file must lie under DATA_DIR."""
        signature, path = request.match_info["signature"], request.match_info["path"]
        chat_id = self._chat_id(request)
        if chat_id is None or self.data_dir is None:
            raise web.HTTPNotFound()
        if not hmac.compare_digest(signature.encode(), self._file_signature(chat_id, path).encode()):
            raise web.HTTPNotFound()
        if path.startswith("attachments/") and not await self._may_open_attachment(chat_id, path):
            raise web.HTTPNotFound()
        try:
            file = Attachment(PurePosixPath(path).name, path).resolve(self.data_dir)
        except ValueError:
            raise web.HTTPNotFound() from None
        if not file.is_file():
            raise web.HTTPNotFound()
        image = INLINE_IMAGES.get(file.suffix.lower())
        disposition = f"{'inline' if image else 'attachment'}; filename*=UTF-8''{quote(file.name)}"
        headers = {"Content-Disposition": disposition, **NO_SNIFF}
        if image:
            headers["Content-Type"] = image
        return web.FileResponse(file, headers=headers)

    async def _may_open_attachment(self, chat_id: str, path: str) -> bool:
        """The rule for files under attachments/: the notice was delivered to this account, or the
        agreement is about a child this account's person is a guardian of."""
        async with self.deps.sessionmaker() as session:
            account = await accounts.find_account(session, PLATFORM, chat_id)
            return account is not None and (
                await notices.attachment_visible_to(session, account.id, path)
                or await agreements.document_visible_to(session, account.id, path)
            )

    # --- WebSocket ---

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        if not self._same_origin(request):
            raise web.HTTPForbidden(text="cross-origin WebSocket refused")
        locale = page_locale(request)
        ws = web.WebSocketResponse(max_msg_size=HARD_FRAME_BYTES, heartbeat=HEARTBEAT_SECONDS)
        chat_id = self._chat_id(request)
        if chat_id is None:  # e.g. cookies were cleared while the page stayed open
            chat_id = new_chat_id()
            self._set_cookie(ws, request, chat_id)
        await ws.prepare(request)
        sock = _Socket(ws, client_ip(request))
        self._sockets.setdefault(chat_id, set()).add(sock)
        try:
            await self._expedite(chat_id)
            self.wake()
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._receive(sock, chat_id, msg.data, locale)
                elif msg.type is WSMsgType.BINARY:
                    await self._send_error(sock, "malformed", locale)
                elif msg.type is WSMsgType.ERROR:
                    log.info("web chat socket closed on error: %s", ws.exception())
                    break
        finally:
            tabs = self._sockets.get(chat_id)
            if tabs is not None:
                tabs.discard(sock)
                if not tabs:
                    del self._sockets[chat_id]
        return ws

    async def _receive(self, sock: _Socket, chat_id: str, data: str, locale: str) -> None:
        try:
            kind, value = parse_frame(data)
        except FrameError as exc:
            await self._send_error(sock, exc.code, locale)
            return
        if kind == "text":
            event = Event.from_text(PLATFORM, chat_id, chat_id, value, language=locale)
        else:
            event = Event(PLATFORM, chat_id, chat_id, button=value, language=locale)
        guessing = kind == "text" and _invite_attempt(event)
        if guessing and self.invite_guard.blocked(sock.client):
            text = messages.render("invite_refused", locale, outcome=invites.Outcome.RATE_LIMITED.value)
            await self._send(sock, self._frame(chat_id, Reply(text)))
            return
        started = utcnow()
        try:
            replies = await handle(event, self.deps)
        except Unavailable:
            # Nothing was kept: the page holds the message and sends it again (see chat.js).
            key = "text" if kind == "text" else "payload"
            unsent = {"type": kind, key: value, "resend": _resend_count(data)}
            text = messages.render("unavailable", locale)
            await self._send(sock, {"type": "error", "code": "unavailable", "text": text, "unsent": unsent})
            return
        if guessing:
            await self._count_invite_failures(sock.client, chat_id, started)
        for reply in replies:
            await self._send(sock, self._frame(chat_id, reply))

    async def _count_invite_failures(self, client: str, chat_id: str, since: datetime) -> None:
        """Wrong codes the message just cost this chat count against its address as well."""
        try:
            async with self.deps.sessionmaker() as session:
                wrong = await invites.failures_since(session, PLATFORM, chat_id, since)
        except Exception:  # the reply matters more; the per-account limit still holds
            log.exception("could not count wrong invite codes")
            return
        for _ in range(wrong):
            self.invite_guard.failed(client)

    async def _send_error(self, sock: _Socket, code: str, locale: str) -> None:
        text = messages.label(f"web.chat_error_{code}", locale)
        await self._send(sock, {"type": "error", "code": code, "text": text})

    @staticmethod
    async def _send(sock: _Socket, frame: dict[str, Any]) -> bool:
        if sock.ws.closed:
            return False
        try:
            async with sock.lock:
                await sock.ws.send_json(frame, dumps=_dumps)
        except (ConnectionError, RuntimeError):  # the tab went away mid-send
            return False
        return True

    async def _close_all(self, _app: web.Application) -> None:
        """Close open tabs on shutdown, or the server would wait for them to leave."""
        for tabs in list(self._sockets.values()):
            for sock in list(tabs):
                await sock.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # --- helpers ---

    def _frame(self, chat_id: str, reply: Reply) -> dict[str, Any]:
        """A reply for the page. A document becomes a download link and a photo an image link,
        both to our file route and signed for this chat (the page never names a file itself)."""
        frame: dict[str, Any] = {"type": "reply", **reply.to_payload()}
        for kind in ("document", "photo"):
            file = frame.pop(kind, None)
            if file:
                frame[kind] = {"name": file["filename"], "url": self.file_url(chat_id, str(file["path"]))}
        return frame

    def file_url(self, chat_id: str, path: str) -> str:
        """Where this chat's page gets the file at `path` (relative to DATA_DIR)."""
        return f"/chat/files/{self._file_signature(chat_id, path)}/{quote(path)}"

    def _file_signature(self, chat_id: str, path: str) -> str:
        """An HMAC of the chat and the path under the deployment's secret: unguessable, and the
        same in every worker that shares the secret, so nothing about sent files is stored."""
        message = "\0".join((FILE_LINK, chat_id, path)).encode("utf-8", "surrogatepass")
        digest = hmac.new(self.deps.secret_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def _same_origin(self, request: web.Request) -> bool:
        """Refuse pages of other sites (cross-site WebSocket hijacking); non-browsers send no Origin."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        netloc = urlsplit(origin).netloc
        return netloc in {request.host, urlsplit(self.deps.links.web_base).netloc}

    @staticmethod
    def _chat_id(request: web.Request) -> str | None:
        value = request.cookies.get(COOKIE)
        return value if value and TOKEN_RE.fullmatch(value) else None

    @staticmethod
    def _set_cookie(response: web.StreamResponse, request: web.Request, chat_id: str) -> None:
        secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
        response.set_cookie(
            COOKIE,
            chat_id,
            max_age=COOKIE_MAX_AGE,
            path="/chat",
            httponly=True,
            samesite="Lax",
            secure=secure,
        )

    async def _bound_name(self, chat_id: str) -> str | None:
        """The name this browser speaks as, if it is bound (shown by the demo's identity bar)."""
        async with self.deps.sessionmaker() as session:
            account = await accounts.find_account(session, PLATFORM, chat_id)
            if account is None:
                return None
            identity = await accounts.load_identity(session, account)
        return identity.person.name if identity.person else None

    async def _expedite(self, chat_id: str) -> None:
        """Messages that waited while no tab was open are due now that one is."""
        try:
            async with self.deps.sessionmaker.begin() as session:
                await outbox.expedite(session, PLATFORM, chat_id)
        except Exception:  # the chat still works; the sender will get there on its own
            log.exception("could not make pending web messages due")
