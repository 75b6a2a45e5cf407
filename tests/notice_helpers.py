"""What the notice tests share: the example school with a few people in the chat, and what each
person's chat received (the outbox rows written for their account)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.dialog import Reply
from handlers.dispatch import Deps
from storage import accounts
from storage.models import AuditLog, Outbox, OutboxStatus
from tests.dialog import Chat
from tests.school import load_example_school, parent_code, person_code

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0, month: int = 9) -> datetime:
    """A wall-clock time at the example school (2026, Asia/Shanghai)."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


@dataclass
class People:
    admin: Chat  # 周校长 (A001)
    mother: Chat  # 董静, mother of 曹若曦, 一年级(1)班
    other: Chat  # 冯丽娟, mother of 高佳怡, 一年级(1)班
    class2: Chat  # 曾芳, mother of 胡晨阳, 一年级(2)班
    teacher: Chat  # 李红梅, head teacher of 一年级(1)班


async def school_with_people(
    deps: Deps, sessionmaker: async_sessionmaker[AsyncSession], admin_language: str = "zh-hans"
) -> People:
    await load_example_school(sessionmaker)
    people = People(
        admin=Chat(deps, user_id="9001", language=admin_language),
        mother=Chat(deps, user_id="1001"),
        other=Chat(deps, user_id="1002"),
        class2=Chat(deps, user_id="1003"),
        teacher=Chat(deps, user_id="2001"),
    )
    await people.admin.say(f"/start {await person_code(sessionmaker, 'admin', 'A001')}")
    await people.mother.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    await people.other.say(f"/start {await parent_code(sessionmaker, 'S2026102')}")
    await people.class2.say(f"/start {await parent_code(sessionmaker, 'S2026201')}")
    await people.teacher.say(f"/start {await person_code(sessionmaker, 'teacher', 'T001')}")
    return people


async def account_id(sessionmaker: async_sessionmaker[AsyncSession], chat: Chat) -> int:
    async with sessionmaker() as session:
        account = await accounts.find_account(session, chat.platform, chat.user_id)
    assert account is not None
    return account.id


async def inbox(sessionmaker: async_sessionmaker[AsyncSession], chat: Chat) -> list[Outbox]:
    """Messages queued for this person by others (notices, reminders, digests), oldest first."""
    account = await account_id(sessionmaker, chat)
    async with sessionmaker() as session:
        return list(
            await session.scalars(select(Outbox).where(Outbox.account_id == account).order_by(Outbox.id))
        )


def reply_of(row: Outbox) -> Reply:
    return Reply.from_payload(row.payload)


def button(replies: list[Reply], label: str) -> str:
    """The payload of the button with this label in the replies."""
    for reply in replies:
        for row in reply.buttons:
            for b in row:
                if b.label == label and b.payload:
                    return b.payload
    raise AssertionError(
        f"no button {label!r} in {[b.label for r in replies for row in r.buttons for b in row]}"
    )


async def delivered(sessionmaker: async_sessionmaker[AsyncSession], when: datetime) -> None:
    """The sender delivered everything queued (as it would, at `when`)."""
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Outbox)
            .where(Outbox.status == OutboxStatus.PENDING.value)
            .values(status=OutboxStatus.SENT.value, sent_at=when)
        )


async def audits(sessionmaker: async_sessionmaker[AsyncSession], action: str) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))
        return [{"target_id": r.target_id, "actor": r.actor_account_id, **r.detail} for r in rows]
