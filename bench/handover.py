"""Handover latency at a busy gate: from the staff's second tap to the parent's message leaving.

    python -m bench.handover [--children 2000] [--groups 60] [--pace 20] [--rate 30] [--db sqlite|postgres]

A school of N children in G groups, every child placed, signed for and with a grandparent on the
pickup list. Staff hand the children over at `pace` a second (a gate's hour compressed into a few
minutes) through the real dialog core (`h:h:<group>:<child>:<adult>` button events), while the
leader's sender delivers the parents' messages through the Telegram adapter to the fake Bot API in
its own process, which refuses anything over `rate` a second. The first half of the children is
handed over with nothing else queued; the second half while a 10,000-recipient bulk notice drains.
The latency of a child is from the tap to the moment the fake Bot API accepted the parent's
message. The last line is the summary:

    handover children=N p50_ms=A p99_ms=B p99_with_bulk_ms=C lost=L
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import time
from datetime import date, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.broadcast import NOTICE, TOKEN, database, percentile, telegram_elsewhere
from bot.channels import Channel
from bot.config import Settings
from bot.leader import Leadership
from bot.ratelimit import Limits
from bot.sender import Sender
from bot.telegram import TelegramAdapter
from handlers.dialog import Event, Links, Reply
from handlers.dispatch import Deps, handle
from storage.clock import utcnow
from storage.db import create_sessionmaker, migrate
from storage.models import (
    AccountBinding,
    Agreement,
    Application,
    GroupDuty,
    Guardianship,
    Lane,
    Outbox,
    OutboxStatus,
    Person,
    PersonRole,
    PickupAdult,
    PlatformAccount,
    PrivacyConsent,
    School,
    SchoolClass,
    ServiceGroup,
    Student,
    TermsVersion,
    Vetting,
)

PARENT_CHAT = 20_000_000
STAFF_CHAT = 30_000_000
BULK_CHAT = 40_000_000
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_update_ids = itertools.count(1)


async def prepare(
    sessionmaker: async_sessionmaker[AsyncSession], children: int, groups: int
) -> list[tuple[int, int, int, int]]:
    """The school, written in bulk; returns (group, child, adult, staff chat) per child."""
    now = utcnow()
    today = date.today()
    async with sessionmaker.begin() as session:
        school = School(code="bench", name="基准小学", timezone="Asia/Shanghai")
        session.add(school)
        await session.flush()
        terms = TermsVersion(
            school_id=school.id,
            version=1,
            content={
                "school_year": "bench",
                "service_hours": {"afternoon": {"start": "15:40", "end": "23:59"}, "weekdays": ALL_DAYS},
            },
            content_sha256="0" * 64,
            effective_from=now - timedelta(days=1),
        )
        cls = SchoolClass(school_id=school.id, grade="三年级", name="三年级(1)班")
        session.add_all([terms, cls])
        await session.flush()
        group_rows = [
            ServiceGroup(
                school_id=school.id,
                term="bench",
                name=f"组{g}",
                activity_type="homework",
                room=f"R{g}",
                weekdays=ALL_DAYS,
                capacity=children,
            )
            for g in range(groups)
        ]
        staff = [Person(school_id=school.id, person_no=f"T{g}", name=f"老师{g}") for g in range(groups)]
        session.add_all(group_rows + staff)
        await session.flush()
        staff_accounts = [
            PlatformAccount(
                platform="telegram",
                external_id=str(STAFF_CHAT + g),
                chat_id=str(STAFF_CHAT + g),
                locale="zh_CN",
            )
            for g in range(groups)
        ]
        session.add_all(staff_accounts)
        await session.flush()
        for g, person in enumerate(staff):
            session.add_all(
                [
                    PersonRole(school_id=school.id, person_id=person.id, role="staff"),
                    GroupDuty(school_id=school.id, group_id=group_rows[g].id, person_id=person.id),
                    Vetting(
                        school_id=school.id,
                        person_id=person.id,
                        moral_ok=True,
                        health_ok=True,
                        qualification_ok=True,
                        checked_on=today - timedelta(days=30),
                        checked_by="bench",
                        valid_until=today + timedelta(days=300),
                    ),
                    AccountBinding(school_id=school.id, account_id=staff_accounts[g].id, person_id=person.id),
                    PrivacyConsent(school_id=school.id, person_id=person.id, version=1, accepted_at=now),
                ]
            )
        students = [
            Student(school_id=school.id, class_id=cls.id, student_no=f"S{i:05d}", name=f"学生{i}")
            for i in range(children)
        ]
        parents = [
            Person(school_id=school.id, person_no=f"S{i:05d}-G1", name=f"家长{i}") for i in range(children)
        ]
        parent_accounts = [
            PlatformAccount(
                platform="telegram",
                external_id=str(PARENT_CHAT + i),
                chat_id=str(PARENT_CHAT + i),
                locale="zh_CN",
            )
            for i in range(children)
        ]
        session.add_all(students + parents + parent_accounts)
        await session.flush()
        plan = []
        for i, (student, parent, account) in enumerate(zip(students, parents, parent_accounts, strict=True)):
            g = i % groups
            app = Application(
                school_id=school.id,
                student_id=student.id,
                applicant_person_id=parent.id,
                terms_version_id=terms.id,
                term="bench",
                status="placed",
                weekdays=ALL_DAYS,
                applied_at=now,
                group_id=group_rows[g].id,
                placed_at=now,
            )
            adult = PickupAdult(
                school_id=school.id, student_id=student.id, name=f"外婆{i}", relation="外婆", code="1234"
            )
            session.add_all(
                [
                    app,
                    adult,
                    Guardianship(
                        school_id=school.id, student_id=student.id, person_id=parent.id, relation="母亲"
                    ),
                    PersonRole(school_id=school.id, person_id=parent.id, role="parent"),
                    AccountBinding(school_id=school.id, account_id=account.id, person_id=parent.id),
                    PrivacyConsent(school_id=school.id, person_id=parent.id, version=1, accepted_at=now),
                ]
            )
            await session.flush()
            session.add(
                Agreement(
                    school_id=school.id,
                    application_id=app.id,
                    student_id=student.id,
                    terms_version_id=terms.id,
                    signer_person_id=parent.id,
                    platform="telegram",
                    locale="zh_CN",
                    text="bench",
                    sha256="0" * 64,
                    signed_at=now,
                )
            )
            plan.append((group_rows[g].id, student.id, adult.id, STAFF_CHAT + g))
    return plan


async def queue_bulk(sessionmaker: async_sessionmaker[AsyncSession], recipients: int) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            insert(PlatformAccount),
            [
                {
                    "platform": "telegram",
                    "external_id": str(BULK_CHAT + i),
                    "chat_id": str(BULK_CHAT + i),
                    "locale": "zh_CN",
                }
                for i in range(recipients)
            ],
        )
        ids = list(
            await session.scalars(
                select(PlatformAccount.id)
                .where(PlatformAccount.external_id >= str(BULK_CHAT))
                .order_by(PlatformAccount.id)
            )
        )
        await session.execute(
            insert(Outbox),
            [
                {
                    "account_id": a,
                    "lane": Lane.BULK.value,
                    "payload": Reply(NOTICE.format(i=i)).to_payload(),
                    "status": OutboxStatus.PENDING.value,
                    "attempts": 0,
                    "not_before": utcnow(),
                }
                for i, a in enumerate(ids)
            ],
        )


async def pending(sessionmaker: async_sessionmaker[AsyncSession], lane: str) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.lane == lane, Outbox.status == OutboxStatus.PENDING.value)
            )
            or 0
        )


async def hand_over_all(
    deps: Deps, sender: Sender, plan: list[tuple[int, int, int, int]], pace: float
) -> dict[int, float]:
    """Tap each child's adult at `pace` a second; returns the monotonic time of each tap by parent chat."""
    tapped: dict[int, float] = {}
    start = time.monotonic()
    for n, (group_id, student_id, adult_id, staff_chat) in enumerate(plan):
        await asyncio.sleep(max(0.0, start + n / pace - time.monotonic()))
        event = Event(
            "telegram",
            str(staff_chat),
            str(staff_chat),
            button=f"h:h:{group_id}:{student_id}:{adult_id}",
            update_id=next(_update_ids),
        )
        tapped[student_id] = time.monotonic()
        replies = await handle(event, deps)
        if not replies or "已交接" not in replies[0].text:
            raise SystemExit(
                f"handover of child {student_id} failed: {replies[0].text if replies else 'no answer'}"
            )
        sender.wake()
    return tapped


async def run_bench(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    plan = await prepare(sessionmaker, args.children, args.groups)
    async with sessionmaker() as session:
        chat_of = {
            sid: int(chat)
            for sid, chat in (
                await session.execute(
                    select(Guardianship.student_id, PlatformAccount.chat_id)
                    .join(AccountBinding, AccountBinding.person_id == Guardianship.person_id)
                    .join(PlatformAccount, PlatformAccount.id == AccountBinding.account_id)
                )
            ).all()
        }
    deps = Deps(sessionmaker=sessionmaker, links=Links("http://school.example.cn", "afterschool_bench_bot"))
    adapter = TelegramAdapter(settings, deps, wake=lambda: None)
    await adapter.application.initialize()
    channels: dict[str, Channel] = {"telegram": adapter}
    sender = Sender(
        sessionmaker,
        channels,
        limits={"telegram": Limits.telegram(settings)},
        concurrency=settings.send_concurrency,
        poll_interval=settings.send_poll_seconds,
        lease=settings.send_lease_seconds,
    )
    leadership = Leadership(engine, [sender], check_interval=settings.leader_check_seconds)
    await leadership.start()
    while not leadership.is_leader:  # noqa: ASYNC110 - a new leader waits out its predecessor first
        await asyncio.sleep(0.05)
    half = len(plan) // 2
    try:
        quiet = await hand_over_all(deps, sender, plan[:half], args.pace)
        await queue_bulk(sessionmaker, args.bulk)
        sender.wake()
        busy = await hand_over_all(deps, sender, plan[half:], args.pace)
        deadline = time.monotonic() + 120
        while await pending(sessionmaker, Lane.SAFETY.value) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        bulk_left = await pending(sessionmaker, Lane.BULK.value)
    finally:
        await leadership.stop()
        await adapter.stop()
    return {"quiet": quiet, "busy": busy, "chat_of": chat_of, "bulk_left": bulk_left}


def summarise(
    args: argparse.Namespace, result: dict[str, Any], sent: list[tuple[str, float]], refused: int
) -> dict[str, Any]:
    first: dict[int, float] = {}
    for chat, at in sent:
        chat_id = int(chat)
        if PARENT_CHAT <= chat_id < STAFF_CHAT and chat_id not in first:
            first[chat_id] = at

    def latencies(tapped: dict[int, float]) -> list[float]:
        return [
            (first[result["chat_of"][s]] - t) * 1000
            for s, t in tapped.items()
            if result["chat_of"][s] in first
        ]

    quiet, busy = latencies(result["quiet"]), latencies(result["busy"])
    return {
        "children": args.children,
        "quiet": quiet,
        "busy": busy,
        "refused": refused,
        "lost": args.children - len(quiet) - len(busy),
        "bulk_left": result["bulk_left"],
    }


def report(r: dict[str, Any]) -> str:
    rows = [("phase", "children", "p50 ms", "p90 ms", "p99 ms", "max ms")]
    for name, values in (("quiet", r["quiet"]), ("with bulk draining", r["busy"])):
        rows.append(
            (
                name,
                str(len(values)),
                *(f"{percentile(values, q):.0f}" if values else "-" for q in (0.5, 0.9, 0.99, 1.0)),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.append(
        f"429s from the fake Bot API: {r['refused']}; bulk rows still pending at the end: {r['bulk_left']}"
    )
    both = r["quiet"] + r["busy"]
    p50, p99, p99_bulk = percentile(both, 0.5), percentile(r["quiet"], 0.99), percentile(r["busy"], 0.99)
    lines.append(
        f"handover children={r['children']} p50_ms={p50:.0f} p99_ms={p99:.0f} "
        f"p99_with_bulk_ms={p99_bulk:.0f} lost={r['lost']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=60)
    parser.add_argument("--pace", type=float, default=20.0, help="handovers a second")
    parser.add_argument("--rate", type=int, default=30, help="messages a second the fake Bot API allows")
    parser.add_argument(
        "--bulk", type=int, default=10_000, help="recipients of the notice draining meanwhile"
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(
        _env_file=None,
        telegram_bot_token=SecretStr(TOKEN),
        telegram_bot_username="afterschool_bench_bot",
        send_rate_per_second=args.rate,
    )  # type: ignore[call-arg]

    async def go() -> dict[str, Any]:
        with telegram_elsewhere(args.rate) as (url, collect):
            async with database(args.db, args.database_url) as engine:
                result = await run_bench(
                    args, settings.model_copy(update={"telegram_api_base_url": url}), engine
                )
            sent, refused = collect()
        return summarise(args, result, sent, refused)

    print(report(asyncio.run(go())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
