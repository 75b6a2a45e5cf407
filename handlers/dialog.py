"""The platform-neutral dialog core: events in, replies out.

Channel adapters (bot/telegram.py, bot/webchat.py) turn platform updates into an `Event` and send
the `Reply` objects back. Flows never see a platform SDK.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

import messages
from storage import accounts, authz, conversations, outbox
from storage.accounts import Identity
from storage.authz import Action
from storage.models import ConversationState, Lane
from storage.retention import RetentionPolicy

MAX_TEXT = 4000
MAX_PAYLOAD_BYTES = 64  # Telegram's callback_data limit
MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database
# What no database stores as text: a lone surrogate (JSON's "\ud800" escape decodes to one, in a
# Telegram webhook body or a web chat frame) and NUL (PostgreSQL refuses it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Event:
    """One thing a person did in a chat."""

    platform: str
    user_id: str
    chat_id: str
    text: str = ""
    command: str | None = None
    args: str = ""
    button: str | None = None
    media: str | None = None
    language: str | None = None
    update_id: int | None = None

    def storable(self) -> Event:
        """This event with U+FFFD for each character no database can store."""
        changed = {
            f.name: _UNSTORABLE.sub("\ufffd", value)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), str) and _UNSTORABLE.search(value)
        }
        return replace(self, **changed) if changed else self

    @classmethod
    def from_text(cls, platform: str, user_id: str, chat_id: str, text: str, **kw: Any) -> Event:
        """Split `/cmd@bot args` into command and args; anything else is plain text."""
        command, args = parse_command(text)
        return cls(platform, user_id, chat_id, text=text, command=command, args=args, **kw)


def parse_command(text: str) -> tuple[str | None, str]:
    if not text.startswith("/") or len(text) < 2:
        return None, ""
    head, _, args = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    if not name or not name.replace("_", "").isalnum() or len(name) > 32:
        return None, ""
    return name, args.strip()


@dataclass(frozen=True)
class Button:
    label: str
    payload: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if self.payload is not None and len(self.payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"button payload over {MAX_PAYLOAD_BYTES} bytes: {self.payload!r}")


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message: its name as shown, and where it lies under DATA_DIR."""

    filename: str
    path: str  # relative to DATA_DIR, e.g. attachments/<token>/menu.pdf

    def resolve(self, data_dir: Path) -> Path:
        """The file on disk; refuses a path that would leave DATA_DIR."""
        root = data_dir.resolve()
        found = (root / self.path).resolve()
        if not found.is_relative_to(root) or found == root:
            raise ValueError(f"attachment path outside DATA_DIR: {self.path!r}")
        return found


@dataclass(frozen=True)
class Reply:
    """A message: Telegram-HTML text, optional rows of buttons and at most one file: a document
    (downloaded) or a photo (shown inline, e.g. a survey chart as PNG)."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    document: Attachment | None = None
    photo: Attachment | None = None

    def __post_init__(self) -> None:
        # Telegram sends one file per message, and the channels place the text around that one.
        if self.document is not None and self.photo is not None:
            raise ValueError("a reply carries a document or a photo, not both")

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "text": self.text,
            "buttons": [
                [{"label": b.label, "payload": b.payload, "url": b.url} for b in row] for row in self.buttons
            ],
        }
        if self.document is not None:
            payload["document"] = {"filename": self.document.filename, "path": self.document.path}
        if self.photo is not None:
            payload["photo"] = {"filename": self.photo.filename, "path": self.photo.path}
        return payload

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Reply:
        rows = tuple(
            tuple(Button(b["label"], b.get("payload"), b.get("url")) for b in row)
            for row in data.get("buttons", [])
        )
        doc, pic = data.get("document"), data.get("photo")  # rows written before photos have no "photo"
        document = Attachment(str(doc["filename"]), str(doc["path"])) if doc else None
        photo = Attachment(str(pic["filename"]), str(pic["path"])) if pic else None
        return cls(str(data["text"]), rows, document, photo)


@dataclass
class Links:
    """Where people are sent: the public web pages and the bot's deep links.

    Mutable on purpose: the Telegram adapter fills in the bot's username from getMe at start-up.
    """

    web_base: str
    bot_username: str | None = None

    def terms(self, version: int | None = None) -> str:
        return f"{self.web_base}/terms" + (f"/{version}" if version else "")

    def invite(self, code: str) -> str:
        if self.bot_username:
            return f"https://t.me/{self.bot_username}?start={code}"
        return f"{self.web_base}/chat?start={code}"


@dataclass
class Context:
    """Everything a flow step needs, loaded fresh from the database for this event."""

    event: Event
    session: AsyncSession
    identity: Identity
    state: ConversationState | None
    locale: str
    links: Links
    files_dir: Path | None = None
    secret_key: bytes = b""
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)  # quoted in the privacy notice

    @property
    def account_id(self) -> int:
        return self.identity.account.id

    async def may(self, action: Action) -> bool:
        """Whether this account's roles allow the action (storage.authz); a refusal is audited."""
        return await authz.allowed(self.session, self.identity, action)

    def text(self, template: str, **context: Any) -> str:
        return messages.render(template, self.locale, **context)

    def label(self, key: str) -> str:
        return messages.label(key, self.locale)

    def reply(self, template: str, buttons: Any = (), **context: Any) -> Reply:
        return Reply(self.text(template, **context), tuple(tuple(row) for row in buttons))

    async def set_state(self, flow: str, step: str, data: dict[str, Any] | None = None) -> None:
        self.state = await conversations.set_state(self.session, self.account_id, flow, step, data)

    async def clear_state(self) -> bool:
        self.state = None
        return await conversations.clear_state(self.session, self.account_id)

    async def notify(
        self,
        person_id: int,
        template: str,
        *,
        lane: Lane = Lane.INTERACTIVE,
        buttons: ButtonsFor | None = None,
        **context: Any,
    ) -> int:
        """Queue a message to every account of a person, each in its own language."""
        return await self.notify_all([person_id], template, lane=lane, buttons=buttons, **context)

    async def notify_all(
        self,
        person_ids: Sequence[int],
        template: str,
        *,
        lane: Lane = Lane.INTERACTIVE,
        buttons: ButtonsFor | None = None,
        **context: Any,
    ) -> int:
        """The same message to every account of each of these people (say, both parents)."""
        school_id = self.identity.school.id if self.identity.school else None
        return await notify_people(
            self.session, person_ids, template, lane=lane, buttons=buttons, school_id=school_id, **context
        )


ButtonsFor = Callable[[str], list[list["Button"]]]
"""Buttons for a message to someone else: built per recipient locale, so labels are theirs."""


async def notify_person(
    session: AsyncSession,
    person_id: int,
    template: str,
    *,
    lane: Lane = Lane.INTERACTIVE,
    buttons: ButtonsFor | None = None,
    school_id: int | None = None,
    **context: Any,
) -> int:
    """Queue a message to every account of a person through the outbox, in each account's language."""
    return await notify_people(
        session, [person_id], template, lane=lane, buttons=buttons, school_id=school_id, **context
    )


async def notify_people(
    session: AsyncSession,
    person_ids: Sequence[int],
    template: str,
    *,
    lane: Lane = Lane.INTERACTIVE,
    buttons: ButtonsFor | None = None,
    school_id: int | None = None,
    **context: Any,
) -> int:
    """One message per account of each person (a shared account gets one per person it speaks
    for), rendered once per language, queued in one statement."""
    payloads: dict[str, dict[str, Any]] = {}
    queued = []
    for _person, account_id, locale in await accounts.accounts_of_people(session, person_ids):
        if locale not in payloads:
            text = messages.render(template, locale, **context)
            rows = buttons(locale) if buttons else []
            payloads[locale] = Reply(text, tuple(tuple(row) for row in rows)).to_payload()
        queued.append((account_id, payloads[locale]))
    return await outbox.enqueue_many(session, queued, lane=lane, school_id=school_id)


Step = Callable[[Context], Awaitable[list[Reply]]]
ButtonStep = Callable[[Context, str], Awaitable[list[Reply]]]


@dataclass(frozen=True)
class Flow:
    """A conversation flow: the commands that start it, its button key, and its steps.

    `on_button` gets the payload after `key:`; it must re-check everything against the database.
    `on_message` gets text or media while the chat's stored state names this flow.
    `before_consent`: reachable by a bound person who has not accepted the current privacy notice
    (leaving, help, the terms, the language, one's own data); every other flow waits for consent.
    """

    name: str
    key: str
    commands: tuple[str, ...] = ()
    on_command: Step | None = None
    on_button: ButtonStep | None = None
    on_message: Step | None = None
    menu_commands: tuple[str, ...] = field(default=())
    before_consent: bool = False
