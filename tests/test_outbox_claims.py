"""The outbox's storage functions on SQLite and PostgreSQL: claims, leases, outcomes, re-routing.

Senders are named by their owner string; two of them are two sessions here, racing for real.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import time_machine
from sqlalchemy import insert, select

from storage import accounts, outbox
from storage.clock import utcnow
from storage.db import migrate
from storage.models import AccountBinding, Lane, Outbox, OutboxStatus, Person, PlatformAccount, School
from tests.delivery_helpers import add_accounts, queue


async def test_two_senders_claiming_at_once_never_get_the_same_row(sessionmaker):
    chats = await add_accounts(sessionmaker, range(1, 101))
    await queue(sessionmaker, chats.values(), Lane.BULK)

    async def claim(owner: str) -> list[int]:
        async with sessionmaker.begin() as session:
            claims = await outbox.claim(
                session, owner, lanes=(Lane.BULK,), platforms=["telegram"], limit=60, lease=30
            )
            await asyncio.sleep(0.05)  # hold the transaction open while the other one claims
            return [c.id for c in claims]

    a, b = await asyncio.gather(claim("a"), claim("b"))
    assert not set(a) & set(b)
    # PostgreSQL skips the rows the other is locking (60 + 40); SQLite's second UPDATE finds its
    # candidates taken and gets none this round. Either way the next round takes the rest.
    b += await claim("b")
    assert not set(a) & set(b) and len(a) + len(b) == 100
    async with sessionmaker() as session:
        owners = dict((await session.execute(select(Outbox.id, Outbox.claimed_by))).all())
    assert {i for i, o in owners.items() if o == "a"} == set(a)


async def test_a_claim_is_a_lease_that_another_sender_takes_over_when_it_runs_out(sessionmaker):
    chats = await add_accounts(sessionmaker, [1, 2])
    await queue(sessionmaker, chats.values(), Lane.SAFETY)
    async with sessionmaker.begin() as session:
        held = await outbox.claim(
            session, "dead", lanes=(Lane.SAFETY,), platforms=["telegram"], limit=1, lease=10
        )
    async with sessionmaker.begin() as session:
        other = await outbox.claim(
            session, "next", lanes=(Lane.SAFETY,), platforms=["telegram"], limit=5, lease=60
        )
    assert [c.id for c in other] != [c.id for c in held] and len(other) == 1  # only the free one

    with time_machine.travel(utcnow() + timedelta(seconds=11), tick=False):
        async with sessionmaker.begin() as session:
            taken = await outbox.claim(
                session, "next", lanes=(Lane.SAFETY,), platforms=["telegram"], limit=5, lease=10
            )
            assert [c.id for c in taken] == [held[0].id]  # the dead sender's row, once its lease ran out
            assert await outbox.renew(session, "dead", 10) == set()  # and it cannot get it back
            assert await outbox.renew(session, "next", 10) == {held[0].id, other[0].id}


async def test_only_due_rows_of_the_senders_platforms_are_claimed_safety_first(sessionmaker):
    telegram = await add_accounts(sessionmaker, [1, 2, 3, 4])
    web = await add_accounts(sessionmaker, ["w1"], platform="web")
    t = list(telegram.values())
    await queue(sessionmaker, [t[0]], Lane.BULK, "bulk")
    await queue(sessionmaker, [t[1]], Lane.INTERACTIVE, "interactive")
    await queue(sessionmaker, [t[2]], Lane.SAFETY, "safety")
    await queue(sessionmaker, web.values(), Lane.SAFETY, "web")
    async with sessionmaker.begin() as session:
        later = await outbox.enqueue(
            session, t[3], {"text": "tomorrow"}, not_before=utcnow() + timedelta(days=1)
        )
    async with sessionmaker.begin() as session:
        claims = await outbox.claim(
            session,
            "me",
            lanes=(Lane.SAFETY, Lane.INTERACTIVE, Lane.BULK),
            platforms=["telegram"],
            limit=10,
            lease=5,
        )
    assert [c.payload["text"].split(" ")[0] for c in claims] == ["safety", "interactive", "bulk"]
    assert later.id not in {c.id for c in claims}
    assert {c.platform for c in claims} == {"telegram"}


async def test_outcomes_are_final_and_a_released_row_is_free_at_once(sessionmaker):
    chats = await add_accounts(sessionmaker, [1, 2, 3, 4])
    await queue(sessionmaker, chats.values(), Lane.INTERACTIVE)
    lanes = (Lane.INTERACTIVE,)
    async with sessionmaker.begin() as session:
        one, two, three, four = await outbox.claim(
            session, "me", lanes=lanes, platforms=["telegram"], limit=4, lease=60
        )
        assert await outbox.mark_sent(session, one.id)
        await outbox.mark_failed(session, two.id, "Bad Request: chat not found")
        await outbox.mark_unreachable(session, three.id, "Forbidden: bot was blocked by the user")
        assert await outbox.release(session, "me") == 1  # only `four` was still held
    with time_machine.travel(utcnow() + timedelta(hours=1), tick=False):
        async with sessionmaker.begin() as session:
            again = await outbox.claim(
                session, "other", lanes=lanes, platforms=["telegram"], limit=4, lease=60
            )
            assert [c.id for c in again] == [four.id]  # nothing final is ever claimed again
            assert not await outbox.mark_sent(session, one.id)  # and "sent" is recorded once
    async with sessionmaker() as session:
        statuses = dict((await session.execute(select(Outbox.id, Outbox.status))).all())
        blocked = await session.get(PlatformAccount, three.account_id)
    assert statuses == {
        one.id: OutboxStatus.SENT.value,
        two.id: OutboxStatus.FAILED.value,
        three.id: OutboxStatus.UNREACHABLE.value,
        four.id: OutboxStatus.PENDING.value,
    }
    assert blocked is not None and blocked.unreachable_at is not None


async def test_transient_failures_back_off_and_give_up_after_the_last_attempt(sessionmaker):
    chats = await add_accounts(sessionmaker, [1])
    await queue(sessionmaker, chats.values(), Lane.BULK)
    async with sessionmaker() as session:
        row_id = (await session.scalars(select(Outbox.id))).one()
    waits = []
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        async with sessionmaker.begin() as session:
            given_up = await outbox.retry_later(session, row_id, "Bad Gateway", base=2.0)
            row = await session.get(Outbox, row_id)
            assert row is not None
            waits.append(round((row.not_before - row.last_attempt_at).total_seconds()))  # type: ignore[operator]
        assert given_up == (attempt == outbox.MAX_ATTEMPTS)
    assert waits[:6] == [2, 4, 8, 16, 32, 64] and max(waits[:-1]) == outbox.MAX_BACKOFF
    assert row.status == OutboxStatus.FAILED.value and row.claimed_until is None


async def test_an_unreachable_message_is_rerouted_to_the_same_persons_other_accounts(sessionmaker):
    async with sessionmaker.begin() as session:
        school = School(code="s", name="阳光实验小学")
        session.add(school)
        await session.flush()
        mother = Person(school_id=school.id, person_no="S1-G1", name="董静")
        other_parent = Person(school_id=school.id, person_no="S2-G1", name="王磊")
        session.add_all([mother, other_parent])
        await session.flush()
        ids = {}
        for key, platform, person in (
            ("tg", "telegram", mother),
            ("web", "web", mother),
            ("web-old", "web", mother),
            ("tg2", "telegram", mother),
            ("stranger", "web", other_parent),
        ):
            account = PlatformAccount(platform=platform, external_id=key, chat_id=key, locale="zh_CN")
            session.add(account)
            await session.flush()
            session.add(AccountBinding(school_id=school.id, account_id=account.id, person_id=person.id))
            ids[key] = account.id
        await session.flush()
        (await session.get(PlatformAccount, ids["web-old"])).unreachable_at = utcnow()  # type: ignore[union-attr]
        found = await accounts.other_accounts(session, ids["tg"])
        assert [a.id for a in found] == [ids["web"]]  # another platform, reachable, same person
        blocked = await outbox.enqueue(
            session, ids["tg"], {"text": "接送提醒"}, lane=Lane.SAFETY, school_id=school.id
        )

    async with sessionmaker.begin() as session:
        await outbox.mark_unreachable(session, blocked.id, "Forbidden: bot was blocked by the user")
        (copy,) = await outbox.reroute(session, blocked.id)
    assert (copy.account_id, copy.lane, copy.rerouted_from_id) == (ids["web"], Lane.SAFETY.value, blocked.id)
    assert copy.payload == {"text": "接送提醒"} and copy.school_id == school.id

    # A message already queued for every account of the person (as `notify` does) is not doubled.
    async with sessionmaker.begin() as session:
        first = await outbox.enqueue(session, ids["tg"], {"text": "家长会通知"})
        await outbox.enqueue(session, ids["web"], {"text": "家长会通知"})
    async with sessionmaker.begin() as session:
        assert await outbox.reroute(session, first.id) == []


async def test_the_delivery_migration_keeps_the_rows_already_queued(tmp_path):
    from storage.db import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}")
    await migrate(engine, "0001")
    async with engine.begin() as conn:
        await conn.execute(
            insert(PlatformAccount.__table__),
            [{"platform": "telegram", "external_id": "1", "chat_id": "1", "locale": "zh_CN"}],
        )
        await conn.execute(
            insert(Outbox.__table__).values(
                account_id=1,
                lane="safety",
                payload={"text": "x"},
                status="pending",
                attempts=0,
                not_before=utcnow(),
            )
        )
    await migrate(engine)
    async with engine.connect() as conn:
        row = (await conn.execute(select(Outbox.status, Outbox.claimed_by, Outbox.rerouted_from_id))).one()
    await engine.dispose()
    assert tuple(row) == ("pending", None, None)
