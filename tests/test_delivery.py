"""The outbox sender against the fake Bot API with Telegram's flood limits switched on.

Each test is a story of a school's messages: who got what, how often, and what Telegram would
have refused (nothing). The sender, the Telegram adapter and the database are the real ones; the
network edge is the fake, over real HTTP.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import serve
from bot.ratelimit import Limits, Window
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import Lane, Outbox, OutboxStatus, PlatformAccount
from tests.delivery_helpers import (
    TOKEN,
    add_accounts,
    count_by_status,
    eventually,
    queue,
    received,
    settings_for,
    telegram_sender,
)
from tests.fakebotapi import FakeBotApi
from tests.school import load_example_school, parent_code

pytestmark = pytest.mark.e2e

PARENT = 1001
TELEGRAM_LIKE = Limits(per_bot=Window(30, 1.0), per_chat=Window(3, 3.0), per_group=Window(20, 60.0))


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with FakeBotApi(token=TOKEN) as api:
        yield api


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def rows(sessionmaker) -> list[Outbox]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Outbox).order_by(Outbox.id)))


async def test_a_notice_replies_and_a_group_all_arrive_once_within_every_limit(sessionmaker, fake, tmp_path):
    # Limits scaled down so the story takes seconds: 50 a second, 2 a second per person, 3 every
    # two seconds per group. The fake refuses anything over them.
    flood = fake.enforce_limits(per_second=50, per_chat=(2, 1.0), per_group=(3, 2.0))
    limits = Limits(per_bot=Window(50, 1.0), per_chat=Window(2, 1.0), per_group=Window(3, 2.0))
    parents = await add_accounts(sessionmaker, range(100001, 100151))
    teacher = await add_accounts(sessionmaker, [2001])
    group = await add_accounts(sessionmaker, [-1001234567890])
    await queue(sessionmaker, parents.values(), Lane.BULK)  # a notice to 150 parents
    await queue(sessionmaker, [teacher["2001"]] * 5, Lane.INTERACTIVE, "新的申请待审核")
    await queue(sessionmaker, [group["-1001234567890"]] * 5, Lane.SAFETY, "班级群：今日放学时间调整")

    async with telegram_sender(fake, sessionmaker, tmp_path, limits):
        await eventually(lambda: _all_sent(sessionmaker, 160))

    got = received(fake)
    assert all(got[chat] == 1 for chat in parents)
    assert got["2001"] == 5 and got["-1001234567890"] == 5
    assert sum(got.values()) == 160
    assert flood.violations == []
    # The teacher's five replies arrived in the order they were written.
    assert [t.split("#")[1] for t in fake.messages_to(2001)] == ["0", "1", "2", "3", "4"]


async def _all_sent(sessionmaker, total: int) -> bool:
    return (await count_by_status(sessionmaker))[OutboxStatus.SENT.value] == total


async def test_a_safety_message_overtakes_thousands_of_pending_notices(sessionmaker, fake, tmp_path):
    fake.enforce_limits(per_second=30)
    parents = await add_accounts(sessionmaker, range(300001, 302001))
    await queue(sessionmaker, parents.values(), Lane.BULK)
    pickup = await add_accounts(sessionmaker, [777])

    async with telegram_sender(fake, sessionmaker, tmp_path, TELEGRAM_LIKE, concurrency=4) as sender:
        await fake.wait_for(20)  # the notice is going out
        # Telegram stops answering for a moment: every send in flight waits there.
        fake.hold_sends()
        await fake.wait_for(lambda: fake.held == 4)
        # Meanwhile another process records a late pickup: a safety message, no wake-up call.
        await queue(sessionmaker, [pickup["777"]], Lane.SAFETY, "接送提醒：曹若曦尚未被接走")
        await eventually(lambda: _claimed(sessionmaker, pickup["777"]))
        before = len(fake.calls_of("sendMessage"))
        fake.release()
        await fake.wait_for_messages(777, 1)
        stats = sender.stats

    following = fake.calls_of("sendMessage")[before:]
    assert following[0].params["chat_id"] == "777", "the next message after the held ones is the safety one"
    pending = (await count_by_status(sessionmaker))[OutboxStatus.PENDING.value]
    assert pending > 1500  # thousands of notices were still waiting
    assert stats.sent == len(fake.sent)


async def _claimed(sessionmaker, account_id: int) -> bool:
    async with sessionmaker() as session:
        found = await session.scalar(
            select(Outbox.claimed_by).where(Outbox.account_id == account_id, Outbox.lane == Lane.SAFETY.value)
        )
    return found is not None


async def test_retry_after_pauses_the_whole_bot_then_everything_arrives_once(sessionmaker, fake, tmp_path):
    flood = fake.enforce_limits(per_second=30)
    parents = await add_accounts(sessionmaker, range(400001, 400011))
    await queue(sessionmaker, parents.values(), Lane.BULK)
    # Telegram's flood control answers the first message with "retry after 1": from then on the
    # fake counts any message within that second, to any chat, as a violation.
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)

    # One send at a time, so none is already on its way when the 429 comes back: a message in
    # flight then would be refused too (the sender would queue it again), but it would be counted.
    async with telegram_sender(fake, sessionmaker, tmp_path, TELEGRAM_LIKE, concurrency=1) as sender:
        await eventually(lambda: _all_sent(sessionmaker, 10))
        stats = sender.stats

    assert flood.violations == []
    assert stats.rate_limited == 1
    assert received(fake) == {str(chat): 1 for chat in parents}
    assert all(row.attempts == 0 for row in await rows(sessionmaker))  # a 429 is not the message's fault


async def test_a_bad_request_is_recorded_as_failed_and_the_rest_go_on(sessionmaker, fake, tmp_path):
    fake.enforce_limits(per_second=30)
    parents = await add_accounts(sessionmaker, [500001, 500002, 500003])
    await queue(sessionmaker, parents.values(), Lane.INTERACTIVE)
    fake.fail_next("sendMessage", 400, 'Bad Request: can\'t parse entities: Unsupported start tag "x"')

    async with telegram_sender(fake, sessionmaker, tmp_path, TELEGRAM_LIKE):
        await eventually(lambda: _settled(sessionmaker, 3))

    first, *others = await rows(sessionmaker)
    assert first.status == OutboxStatus.FAILED.value
    assert first.error == 'Can\'t parse entities: unsupported start tag "x"'
    assert first.attempts == 0  # refused for good: never tried again
    assert [r.status for r in others] == [OutboxStatus.SENT.value] * 2
    assert len(fake.calls_of("sendMessage")) == 3


async def _settled(sessionmaker, total: int) -> bool:
    counts = await count_by_status(sessionmaker)
    return counts[OutboxStatus.PENDING.value] == 0 and sum(counts.values()) == total


async def test_server_errors_and_lost_connections_are_retried_until_sent(sessionmaker, fake, tmp_path):
    flood = fake.enforce_limits(per_second=30)
    parent = await add_accounts(sessionmaker, [600001])
    await queue(sessionmaker, parent.values(), Lane.SAFETY, "接送提醒")
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    fake.drop_next("sendMessage")  # then the connection closes with no answer at all

    async with telegram_sender(fake, sessionmaker, tmp_path, TELEGRAM_LIKE) as sender:
        await eventually(lambda: _all_sent(sessionmaker, 1))
        stats = sender.stats

    (row,) = await rows(sessionmaker)
    assert row.attempts == 2 and row.status == OutboxStatus.SENT.value
    assert stats.retried == 2
    assert len(fake.calls_of("sendMessage")) == 3
    assert fake.messages_to(600001) == ["接送提醒 #0"]
    assert flood.violations == []


async def test_lanes_go_safety_first_then_interactive_then_bulk(sessionmaker, fake, tmp_path):
    """With everything due at once, the order of sending is the order of the lanes."""
    chats = await add_accounts(sessionmaker, range(700001, 700031))
    ids = list(chats.values())
    await queue(sessionmaker, ids[:10], Lane.BULK, "bulk")
    await queue(sessionmaker, ids[10:20], Lane.INTERACTIVE, "interactive")
    await queue(sessionmaker, ids[20:], Lane.SAFETY, "safety")

    async with telegram_sender(fake, sessionmaker, tmp_path, TELEGRAM_LIKE, concurrency=1):
        await eventually(lambda: _all_sent(sessionmaker, 30))

    lanes = [s.text.split(" ")[0] for s in fake.sent]
    assert lanes == ["safety"] * 10 + ["interactive"] * 10 + ["bulk"] * 10


async def test_a_parent_who_blocked_the_bot_gets_the_pickup_message_in_the_web_chat(fake, tmp_path):
    """403: the Telegram account is marked unreachable, the row gets its own final status, and the
    message goes to the same parent's web chat instead; once they write again, Telegram is back."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}"
    engine = create_engine(url)
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    await load_example_school(sessionmaker)
    port = free_port()
    settings = settings_for(fake, tmp_path, database_url=url, http_port=port, send_poll_seconds=0.05)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop=stop))
    browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        await fake.wait_for(lambda: fake.calls_of("getUpdates") or server.done())
        async with browser.get(f"http://127.0.0.1:{port}/chat") as page:
            assert page.status == 200
        async with browser.ws_connect(f"http://127.0.0.1:{port}/chat/ws") as web:
            # The mother joins in the web chat, and with a second slip on Telegram.
            code = await parent_code(sessionmaker, "S2026101", notice_accepted=True)
            await web.send_json({"type": "text", "text": f"/start {code}"})
            assert "董静" in (await web.receive_json(timeout=10))["text"]
            code = await parent_code(sessionmaker, "S2026101", notice_accepted=True)
            fake.push_text(PARENT, f"/start {code}")
            assert "董静" in (await fake.wait_for_messages(PARENT, 1))[0]

            fake.block(PARENT)  # she blocks the bot on Telegram
            telegram_account = await _account_id(sessionmaker, "telegram", str(PARENT))
            await queue(sessionmaker, [telegram_account], Lane.SAFETY, "接送提醒：曹若曦已由外婆接走")
            pushed = await web.receive_json(timeout=10)
            assert pushed["type"] == "reply" and "曹若曦已由外婆接走" in pushed["text"]

            await eventually(lambda: _all_settled(sessionmaker))  # "sent" commits just after the push
            first, copy = await rows(sessionmaker)
            assert first.status == OutboxStatus.UNREACHABLE.value and "blocked" in (first.error or "")
            assert copy.rerouted_from_id == first.id and copy.status == OutboxStatus.SENT.value
            assert await _unreachable(sessionmaker, telegram_account)

            # The next message does not even try Telegram: it goes straight to the web chat.
            tried = len(fake.calls_of("sendMessage"))
            await queue(sessionmaker, [telegram_account], Lane.SAFETY, "接送提醒：明天提前放学")
            assert "明天提前放学" in (await web.receive_json(timeout=10))["text"]
            assert len(fake.calls_of("sendMessage")) == tried

            # She unblocks the bot and writes to it: Telegram is her channel again.
            fake.blocked.discard(str(PARENT))
            fake.push_text(PARENT, "/help")
            await fake.wait_for_messages(PARENT, 2)
            assert not await _unreachable(sessionmaker, telegram_account)
    finally:
        await browser.close()
        stop.set()
        await asyncio.wait_for(server, 15)
        await engine.dispose()


async def _all_settled(sessionmaker) -> bool:
    return not (await count_by_status(sessionmaker))[OutboxStatus.PENDING.value]


async def _account_id(sessionmaker, platform: str, external_id: str) -> int:
    async with sessionmaker() as session:
        found = await session.scalar(
            select(PlatformAccount.id).where(
                PlatformAccount.platform == platform, PlatformAccount.external_id == external_id
            )
        )
    assert found is not None
    return int(found)


async def _unreachable(sessionmaker, account_id: int) -> bool:
    async with sessionmaker() as session:
        account = await session.get(PlatformAccount, account_id)
    assert account is not None
    return account.unreachable_at is not None
