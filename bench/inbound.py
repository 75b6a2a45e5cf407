"""Inbound updates through the webhook of a real `afterschool run --workers W` process tree.

    python -m bench.inbound --updates N --db sqlite|postgres --workers W [--rate R] [--concurrency C]

What runs is what production runs: `python -m bot run --workers W` as a subprocess (the supervisor
and its workers, or one process for W=1) on a fresh database (a SQLite file, or a database of its
own on PostgreSQL from --database-url / TEST_DATABASE_URL / DATABASE_URL) holding the example
school plus 10,000 Telegram accounts bound to guardians of its roster. The fake Bot API
(tests/fakebotapi.py) runs in a process of its own, as Telegram is on another machine.

N updates are POSTed to the webhook with the secret header, as Telegram would: a mix of the menu
(`/start`, `/help`), `/terms`, a step of the apply flow (a weekday button of a parent's draft) and
a handover confirmation by the member of staff on duty (`h:h:<group>:<child>:<adult>`). First at
a steady offered rate R a second (open loop: a slow answer does not slow the offer), then N more
at full speed with C posts in flight (Telegram's default max_connections is 40). The latency of
an update is from its POST to its 200: the webhook answers only after the update's effects are
committed and its reply sent.

Checked after the run: errors (answers other than 200), lost (updates answered 200 whose
processed-update row or reply is missing, or a handover not recorded) and duplicates (replies
beyond one per update, handover messages beyond one per parent account). The last line:

    inbound updates=N db=D workers=W throughput=X/s p50_ms=A p99_ms=B rss_mb=M errors=E lost=L duplicates=D
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import random
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.broadcast import TOKEN, percentile
from bot.config import normalise_database_url
from storage.clock import utcnow
from storage.consent import PRIVACY_NOTICE_VERSION
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import (
    AccountBinding,
    Agreement,
    Application,
    ConversationState,
    GroupDuty,
    Guardianship,
    Handover,
    Lane,
    Outbox,
    Person,
    PersonRole,
    PickupAdult,
    PlatformAccount,
    PrivacyConsent,
    ProcessedUpdate,
    School,
    SchoolClass,
    ServiceGroup,
    Student,
    TermsVersion,
    Vetting,
)
from storage.terms import WEEKDAY_ORDER
from tests.fakebotapi import FakeBotApi
from tests.school import load_example_school

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-inbound-Secret_0123456789"
BOT_USERNAME = "afterschool_bench_bot"
ACCOUNTS = 10_000  # bound parent accounts: two guardians for each of 5,000 children
PARENT_CHAT = 60_000_000
STAFF_CHAT = 70_000_000
STAFF = 100  # one member of staff on duty per handover group
KINDS = ("start", "help", "terms", "apply", "handover")
# Of every 20 updates: 3 /start, 2 /help, 5 /terms, 6 apply steps, 4 handovers.
MIX = ("start",) * 3 + ("help",) * 2 + ("terms",) * 5 + ("apply",) * 6 + ("handover",) * 4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


# -- the fake Bot API, in a process of its own ----------------------------------------------------


def fake_bot_api(pipe: Connection) -> None:
    """The child process: serve the fake Bot API; build updates and report when asked."""

    async def serve() -> None:
        async with FakeBotApi(token=TOKEN, username=BOT_USERNAME) as fake:
            pipe.send(fake.url)
            loop = asyncio.get_running_loop()
            while True:
                command, arg = await loop.run_in_executor(None, pipe.recv)
                if command == "webhooks":
                    pipe.send(len(fake.calls_of("setWebhook")))
                elif command == "updates":
                    # Built here so the callback query ids are ones this fake will accept answers to.
                    pipe.send(
                        [
                            fake.push_text(chat, payload)
                            if kind != "button"
                            else fake.push_callback(chat, payload, message_id=1)
                            for kind, chat, payload in arg
                        ]
                    )
                elif command == "report":
                    replies = [(str(c.params.get("chat_id")), c.at) for c in fake.calls_of("sendMessage")]
                    pipe.send(
                        ([s.chat_id for s in fake.sent], Counter(c.method for c in fake.calls), replies)
                    )
                else:
                    return

    for name in PROXIES:
        os.environ.pop(name, None)
    asyncio.run(serve())


class Telegram:
    """The handle on the fake Bot API process."""

    def __init__(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.pipe, child = spawn.Pipe()
        self.process = spawn.Process(target=fake_bot_api, args=(child,), daemon=True)
        self.process.start()
        self.url: str = self.pipe.recv()

    async def ask(self, command: str, arg: Any = None) -> Any:
        def call() -> Any:
            self.pipe.send((command, arg))
            return self.pipe.recv()

        return await asyncio.get_running_loop().run_in_executor(None, call)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send(("stop", None))
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


# -- the database ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(kind: str, url: str | None) -> AsyncIterator[str]:
    """A fresh, empty database the bot process can open by URL: a SQLite file, or a PostgreSQL
    database of its own (not a schema: DATABASE_URL cannot name one)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-inbound-") as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / 'bench.sqlite3'}"
        return
    url = url or os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("--db postgres needs --database-url, TEST_DATABASE_URL or DATABASE_URL")
    url = normalise_database_url(url)
    name = f"bench_inbound_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


@dataclass
class Prepared:
    """Who can do what in the prepared school: chats of parents, and (staff chat, button) handovers."""

    parents: list[int]  # chats of parents whose drafts of an application wait at the weekday step
    handovers: list[tuple[int, str]]
    guardian_chats: set[int]  # chats of the handed-over children's parents (they get the outbox)
    weekdays: list[str]


async def prepare(sessionmaker: async_sessionmaker[AsyncSession], children_for_handover: int) -> Prepared:
    """The example school plus 5,000 children, each with two guardians bound to a Telegram account.

    The first `children_for_handover` children are placed in one of 100 groups (every weekday),
    signed for and with a grandmother on the pickup list, their groups' staff vetted and on duty.
    Every other parent has a draft application waiting at the weekday step. Bulk inserts: the
    point is the inbound path, not the set-up. PostgreSQL is then analysed.
    """
    await load_example_school(sessionmaker)
    now, today = utcnow(), date.today()
    children = ACCOUNTS // 2
    if children_for_handover > children // 2:
        raise SystemExit(f"at most {children // 2} handovers fit (one per child and day)")
    async with sessionmaker.begin() as session:
        school = (await session.scalars(select(School))).one()
        terms = (await session.scalars(select(TermsVersion).where(TermsVersion.school_id == school.id))).one()
        classes = list(
            await session.scalars(select(SchoolClass.id).where(SchoolClass.school_id == school.id))
        )
        sid = school.id
        await session.execute(
            insert(Student),
            [
                {
                    "school_id": sid,
                    "class_id": classes[i % len(classes)],
                    "student_no": f"B{i:05d}",
                    "name": f"学生{i}",
                }
                for i in range(children)
            ],
        )
        students = dict(
            (
                await session.execute(select(Student.student_no, Student.id).where(Student.school_id == sid))
            ).all()
        )
        await session.execute(
            insert(Person),
            [
                {"school_id": sid, "person_no": f"B{i:05d}-G{g}", "name": f"家长{i}-{g}"}
                for i in range(children)
                for g in (1, 2)
            ]
            + [{"school_id": sid, "person_no": f"BT{s:03d}", "name": f"值班老师{s}"} for s in range(STAFF)],
        )
        people = dict(
            (await session.execute(select(Person.person_no, Person.id).where(Person.school_id == sid))).all()
        )
        await session.execute(
            insert(PlatformAccount),
            [
                {"platform": "telegram", "external_id": str(c), "chat_id": str(c), "locale": "zh_CN"}
                for c in [PARENT_CHAT + n for n in range(ACCOUNTS)] + [STAFF_CHAT + s for s in range(STAFF)]
            ],
        )
        accounts = dict(
            (await session.execute(select(PlatformAccount.external_id, PlatformAccount.id))).all()
        )

        def parent_no(n: int) -> str:  # account n speaks for guardian (n % 2 + 1) of child n // 2
            return f"B{n // 2:05d}-G{n % 2 + 1}"

        await session.execute(
            insert(Guardianship),
            [
                {
                    "school_id": sid,
                    "student_id": students[f"B{n // 2:05d}"],
                    "person_id": people[parent_no(n)],
                    "relation": "母亲" if n % 2 == 0 else "父亲",
                    "position": n % 2 + 1,
                }
                for n in range(ACCOUNTS)
            ],
        )
        await session.execute(
            insert(PersonRole),
            [{"school_id": sid, "person_id": people[parent_no(n)], "role": "parent"} for n in range(ACCOUNTS)]
            + [{"school_id": sid, "person_id": people[f"BT{s:03d}"], "role": "staff"} for s in range(STAFF)],
        )
        await session.execute(
            insert(AccountBinding),
            [
                {
                    "school_id": sid,
                    "account_id": accounts[str(PARENT_CHAT + n)],
                    "person_id": people[parent_no(n)],
                }
                for n in range(ACCOUNTS)
            ]
            + [
                {
                    "school_id": sid,
                    "account_id": accounts[str(STAFF_CHAT + s)],
                    "person_id": people[f"BT{s:03d}"],
                }
                for s in range(STAFF)
            ],
        )
        # Everyone bound has accepted the privacy notice (as at binding), or each update would
        # only show them the notice.
        await session.execute(
            insert(PrivacyConsent),
            [
                {"school_id": sid, "person_id": person, "version": PRIVACY_NOTICE_VERSION, "accepted_at": now}
                for number, person in people.items()
                if number.startswith(("B", "BT"))
            ],
        )
        handovers, guardian_chats = await _handover_set(
            session, sid, terms, students, people, children_for_handover, now, today
        )
        weekdays = list(terms.content["service_hours"]["weekdays"])
        parents = [n for n in range(ACCOUNTS) if n // 2 >= children_for_handover]
        await session.execute(
            insert(ConversationState),
            [
                {
                    "account_id": accounts[str(PARENT_CHAT + n)],
                    "flow": "apply",
                    "step": "days",
                    "data": {
                        "terms": terms.id,
                        "student": students[f"B{n // 2:05d}"],
                        "child": f"学生{n // 2}",
                        "days": weekdays,
                        "noon": False,
                        "lunch": False,
                        "activities": [],
                        "priority": [],
                        "waiver": False,
                        "note": "",
                    },
                }
                for n in parents
            ],
        )
    if session.get_bind().dialect.name == "postgresql":
        # Statistics, as autovacuum gathers within a minute or two of a load: a deployment that has
        # been running has them, and without them every lookup below scanned whole tables.
        async with sessionmaker() as session:
            await session.execute(text("ANALYZE"))
            await session.commit()
    return Prepared([PARENT_CHAT + n for n in parents], handovers, guardian_chats, weekdays)


async def _handover_set(
    session: AsyncSession,
    sid: int,
    terms: TermsVersion,
    students: dict[str, int],
    people: dict[str, int],
    count: int,
    now: Any,
    today: date,
) -> tuple[list[tuple[int, str]], set[int]]:
    """Groups, staff on duty, and `count` children placed, signed for, with an adult to hand to."""
    await session.execute(
        insert(ServiceGroup),
        [
            {
                "school_id": sid,
                "term": "bench",
                "name": f"基准组{g}",
                "activity_type": "homework",
                "room": f"R{g}",
                "weekdays": list(WEEKDAY_ORDER),
                "capacity": 1000,
            }
            for g in range(STAFF)
        ],
    )
    groups = list(
        await session.scalars(
            select(ServiceGroup.id).where(ServiceGroup.term == "bench").order_by(ServiceGroup.id)
        )
    )
    await session.execute(
        insert(GroupDuty),
        [{"school_id": sid, "group_id": groups[s], "person_id": people[f"BT{s:03d}"]} for s in range(STAFF)],
    )
    await session.execute(
        insert(Vetting),
        [
            {
                "school_id": sid,
                "person_id": people[f"BT{s:03d}"],
                "moral_ok": True,
                "health_ok": True,
                "qualification_ok": True,
                "checked_on": today - timedelta(days=30),
                "checked_by": "bench",
                "valid_until": today + timedelta(days=300),
            }
            for s in range(STAFF)
        ],
    )
    if not count:
        return [], set()
    await session.execute(
        insert(Application),
        [
            {
                "school_id": sid,
                "student_id": students[f"B{i:05d}"],
                "applicant_person_id": people[f"B{i:05d}-G1"],
                "terms_version_id": terms.id,
                "term": "bench",
                "status": "placed",
                "weekdays": list(WEEKDAY_ORDER),
                "applied_at": now,
                "group_id": groups[i % STAFF],
                "placed_at": now,
            }
            for i in range(count)
        ],
    )
    applications = dict(
        (
            await session.execute(
                select(Application.student_id, Application.id).where(Application.term == "bench")
            )
        ).all()
    )
    await session.execute(
        insert(Agreement),
        [
            {
                "school_id": sid,
                "application_id": applications[students[f"B{i:05d}"]],
                "student_id": students[f"B{i:05d}"],
                "terms_version_id": terms.id,
                "signer_person_id": people[f"B{i:05d}-G1"],
                "platform": "telegram",
                "locale": "zh_CN",
                "text": "bench",
                "sha256": "0" * 64,
                "signed_at": now,
            }
            for i in range(count)
        ],
    )
    await session.execute(
        insert(PickupAdult),
        [
            {
                "school_id": sid,
                "student_id": students[f"B{i:05d}"],
                "name": f"外婆{i}",
                "relation": "外婆",
                "code": "1234",
            }
            for i in range(count)
        ],
    )
    adults = dict(
        (
            await session.execute(
                select(PickupAdult.student_id, PickupAdult.id).where(PickupAdult.relation == "外婆")
            )
        ).all()
    )
    handovers = []
    for i in range(count):
        student = students[f"B{i:05d}"]
        button = f"h:h:{groups[i % STAFF]}:{student}:{adults[student]}"
        handovers.append((STAFF_CHAT + i % STAFF, button))
    guardian_chats = {PARENT_CHAT + 2 * i + g for i in range(count) for g in (0, 1)}
    return handovers, guardian_chats


# -- the plan of updates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    kind: str
    chat: int
    update: dict[str, Any]

    @property
    def update_id(self) -> int:
        return int(self.update["update_id"])


def mix(only: frozenset[str]) -> tuple[str, ...]:
    return tuple(kind for kind in MIX if kind in only) or MIX


def plan(
    school: Prepared,
    count: int,
    seed: int,
    parents: Iterator[int],
    handovers: Iterator[tuple[int, str]],
    kinds_in_mix: tuple[str, ...] = MIX,
) -> list[tuple[str, int, str]]:
    """`count` (kind, chat, text or button) in the mix; the chats come from the iterators given, so
    across phases each parent's chat is used once while there are enough of them."""
    rng = random.Random(seed)
    kinds = [kinds_in_mix[i % len(kinds_in_mix)] for i in range(count)]
    rng.shuffle(kinds)
    items: list[tuple[str, int, str]] = []
    for kind in kinds:
        if kind == "handover":
            chat, button = next(handovers)
            items.append(("button", chat, button))
        elif kind == "apply":
            items.append(("button", next(parents), f"a:d:{rng.choice(school.weekdays)}"))
        else:
            items.append(("text", next(parents), f"/{kind}"))
    return items


# -- the bot as a process tree --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(root: int) -> list[int]:
    """The root process and its children (the supervisor and its workers)."""
    found = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == root:
                    found.append(int(entry))
    return found


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time these processes have used so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used (from /proc/stat): how loaded it was."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # not idle, not iowait
    return busy / CLOCK_TICKS


@dataclass
class Memory:
    """Peak resident memory of the workers (their sum, sampled), and of the supervisor."""

    workers_peak: float = 0.0
    supervisor_peak: float = 0.0
    per_worker_peak: float = 0.0

    def sample(self, root: int, supervised: bool) -> None:
        pids = tree(root)
        workers = pids[1:] if supervised else pids[:1]
        sizes = [rss_mb(p) for p in workers]
        self.workers_peak = max(self.workers_peak, sum(sizes))
        self.per_worker_peak = max([self.per_worker_peak, *sizes])
        if supervised:
            self.supervisor_peak = max(self.supervisor_peak, rss_mb(root))


@dataclass
class Bot:
    process: asyncio.subprocess.Process
    webhook: str
    workers: int
    log: Path
    memory: Memory = field(default_factory=Memory)
    bench_pids: list[int] = field(default_factory=list)
    _sampler: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.memory.sample(self.process.pid, self.workers > 1)
            await asyncio.sleep(0.2)

    async def accounted(self, phase: Awaitable[Result]) -> Result:
        """Run a phase and note the CPU time the bot, the bench (this process and the fake Bot
        API) and the whole machine used meanwhile: on a shared machine the figures need them."""
        pids, bench = tree(self.process.pid), [os.getpid(), *self.bench_pids]
        cpu, own, machine = cpu_seconds(pids), cpu_seconds(bench), machine_busy()
        result = await phase
        result.cpu = cpu_seconds(pids) - cpu
        result.bench = cpu_seconds(bench) - own
        result.machine = machine_busy() - machine
        return result

    def start_sampling(self) -> None:
        self._sampler = asyncio.create_task(self._sample())

    async def stop(self) -> int:
        if self._sampler is not None:
            self._sampler.cancel()
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()


@contextlib.asynccontextmanager
async def running_bot(
    telegram: Telegram, database_url: str, workers: int, folder: Path, profile: Path | None = None
) -> AsyncIterator[Bot]:
    """`python -m bot run --workers W` pointed at the fake, until every worker set its webhook."""
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/telegram/webhook"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "WEBHOOK_", "DATABASE_URL", "SEND_", "LEADER_", "HTTP_"))
        and k not in PROXIES
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        DATA_DIR=str(folder / "data"),
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=telegram.url,
        TELEGRAM_BOT_USERNAME=BOT_USERNAME,
        WEBHOOK_URL=webhook,
        WEBHOOK_SECRET=SECRET,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        PUBLIC_BASE_URL="https://school.example.cn",
        SECRET_KEY="bench-inbound-secret-key",
        DEFAULT_LOCALE="zh_CN",
    )
    before = await telegram.ask("webhooks")
    profiling = ["-m", "cProfile", "-o", str(profile)] if profile else []
    log = folder / f"bot-{workers}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *profiling,
            "-m",
            "bot",
            "run",
            "--workers",
            str(workers),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    bot = Bot(process, webhook, workers, log, bench_pids=[telegram.process.pid or 0])
    try:
        deadline = time.monotonic() + 120
        while await telegram.ask("webhooks") < before + workers:
            if process.returncode is not None or time.monotonic() > deadline:
                raise SystemExit(f"the bot did not start:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(0.2)
        bot.start_sampling()
        yield bot
    finally:
        code = await bot.stop()
        if code != 0:
            print(f"the bot exited with {code}:\n{log.read_text()[-3000:]}", file=sys.stderr)


# -- posting --------------------------------------------------------------------------------------


@dataclass
class Result:
    """What came back for each update: HTTP status (0: no answer) and seconds from POST to answer."""

    statuses: dict[int, int] = field(default_factory=dict)
    latency: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float, str, int]] = field(default_factory=list)  # sent, answered, kind, chat
    started: float = 0.0
    finished: float = 0.0
    late: list[float] = field(default_factory=list)  # how far behind its schedule each POST left
    cpu: float = 0.0  # CPU seconds the bot's processes used meanwhile
    bench: float = 0.0  # CPU seconds of the bench itself: the posting client and the fake Bot API
    machine: float = 0.0  # CPU seconds the whole machine used meanwhile (other work included)
    # Bot API calls made in the webhook's answer (Telegram makes them): answerCallbackQuery.
    answered_in_reply: Counter[str] = field(default_factory=Counter)

    @property
    def elapsed(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def throughput(self) -> float:
        return len(self.latency) / self.elapsed if self.latency else 0.0


def poster(
    http: aiohttp.ClientSession, webhook: str, result: Result
) -> Callable[[Planned], Coroutine[Any, Any, None]]:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}

    async def post(item: Planned) -> None:
        start = time.perf_counter()
        try:
            async with http.post(webhook, json=item.update, headers=headers) as answer:
                body = await answer.read()
                status = answer.status
            if status == 200 and body.startswith(b"{"):
                result.answered_in_reply[str(json.loads(body).get("method"))] += 1
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        end = time.perf_counter()
        result.statuses[item.update_id] = status
        result.latency.append(end - start)
        result.timeline.append((start, end, item.kind, item.chat))
        result.finished = max(result.finished, end)

    return post


async def offered(http: aiohttp.ClientSession, webhook: str, items: list[Planned], rate: float) -> Result:
    """Open loop: POST i leaves at start + i / rate, whether or not earlier ones were answered."""
    result = Result()
    post = poster(http, webhook, result)
    tasks: list[asyncio.Task[None]] = []
    result.started = start = time.perf_counter()
    for i, item in enumerate(items):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        result.late.append(max(0.0, time.perf_counter() - due))
        tasks.append(asyncio.create_task(post(item)))
    await asyncio.gather(*tasks)
    return result


async def flat_out(
    http: aiohttp.ClientSession, webhook: str, items: list[Planned], concurrency: int
) -> Result:
    """Closed loop: `concurrency` posts in flight, each followed at once by the next."""
    result = Result()
    post = poster(http, webhook, result)
    queue = iter(items)

    async def lane() -> None:
        for item in queue:
            await post(item)

    result.started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return result


# -- checking -------------------------------------------------------------------------------------


@dataclass
class Check:
    errors: int
    lost: int
    duplicates: int
    handovers: int
    handover_messages: Counter[str]
    notes: list[str]


async def check(
    database_url: str, items: list[Planned], statuses: dict[int, int], sent: list[str], school: Prepared
) -> Check:
    """Compare what was posted with the database and with what the fake Bot API received."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            processed = Counter(
                (
                    await conn.execute(
                        select(ProcessedUpdate.update_id).where(ProcessedUpdate.platform == "telegram")
                    )
                )
                .scalars()
                .all()
            )
            handed = Counter((await conn.execute(select(Handover.student_id))).scalars().all())
            outbox = (
                await conn.execute(
                    select(PlatformAccount.chat_id, Outbox.status, func.count())
                    .join(PlatformAccount, PlatformAccount.id == Outbox.account_id)
                    .where(Outbox.lane == Lane.SAFETY.value)
                    .group_by(PlatformAccount.chat_id, Outbox.status)
                )
            ).all()
    finally:
        await engine.dispose()
    errors = sum(1 for s in statuses.values() if s != 200)
    replies = Counter(int(chat) for chat in sent)
    by_chat: dict[int, list[Planned]] = {}
    for item in items:
        by_chat.setdefault(item.chat, []).append(item)
    lost = duplicates = 0
    notes = []
    for chat, posted in by_chat.items():
        if any(statuses.get(p.update_id) != 200 for p in posted):
            continue  # an error, counted as such: Telegram would post it again
        not_processed = sum(1 for p in posted if not processed[p.update_id])
        got = replies[chat]
        lost += max(not_processed, len(posted) - got, 0)
        duplicates += max(0, got - len(posted))
    duplicates += sum(n - 1 for n in processed.values() if n > 1)
    handovers = sum(1 for item in items if item.kind == "handover" and statuses.get(item.update_id) == 200)
    if len(handed) < handovers:
        notes.append(f"handovers recorded {len(handed)} < confirmed {handovers}")
        lost += handovers - len(handed)
    per_account: Counter[str] = Counter()
    statuses_out: Counter[str] = Counter()
    for chat_id, status, n in outbox:
        per_account[chat_id] += n
        statuses_out[status] += n
    duplicates += sum(n - 1 for n in per_account.values() if n > 1)
    told = sum(n for chat, n in per_account.items() if int(chat) in school.guardian_chats)
    if told < 2 * len(handed):  # both guardians of every child handed over have an account
        notes.append(f"handover messages queued {told} < {2 * len(handed)}")
        lost += 2 * len(handed) - told
    return Check(errors, lost, duplicates, len(handed), statuses_out, notes)


# -- one run --------------------------------------------------------------------------------------


@dataclass
class Run:
    db: str
    workers: int
    updates: int
    rate: float
    concurrency: int
    steady: Result
    full: Result
    memory: Memory
    check: Check
    kinds: Counter[str]
    prepare_seconds: float


async def measure(args: argparse.Namespace, workers: int, rates: list[float] | None = None) -> list[Run]:
    """Prepare, start the bot, post a warm-up, then one steady phase per rate and one flat-out phase."""
    rates = rates or [args.rate]
    warmup = min(200, max(20, args.updates // 10))
    sizes = [warmup] + [args.updates] * (len(rates) + 1)
    kinds = mix(args.kinds)
    handover_count = sum(sum(1 for i in range(n) if kinds[i % len(kinds)] == "handover") for n in sizes)
    telegram = Telegram()
    try:
        async with database(args.db, args.database_url) as url:
            started = time.monotonic()
            engine = create_engine(url)
            try:
                await migrate(engine)
                school = await prepare(create_sessionmaker(engine), handover_count)
            finally:
                await engine.dispose()
            prepared = time.monotonic() - started
            handovers = iter(school.handovers)
            parents = itertools.cycle(random.Random(0).sample(school.parents, len(school.parents)))
            phases = [plan(school, n, seed, parents, handovers, kinds) for seed, n in enumerate(sizes)]
            flat = [x for phase in phases for x in phase]
            built = await telegram.ask("updates", flat)
            items, at = [], 0
            for phase in phases:
                items.append(
                    [
                        Planned(
                            "handover" if p.startswith("h:") else "apply" if p.startswith("a:") else p[1:],
                            chat,
                            u,
                        )
                        for (_, chat, p), u in zip(phase, built[at : at + len(phase)], strict=True)
                    ]
                )
                at += len(phase)
            with tempfile.TemporaryDirectory(prefix="bench-inbound-bot-") as folder:
                async with running_bot(telegram, url, workers, Path(folder), args.profile) as bot:
                    connector = aiohttp.TCPConnector(limit=args.concurrency)
                    timeout = aiohttp.ClientTimeout(total=60)
                    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                        warm = await flat_out(http, bot.webhook, items[0], min(8, args.concurrency))
                        steady = [
                            await bot.accounted(offered(http, bot.webhook, phase, rate))
                            for phase, rate in zip(items[1:-1], rates, strict=True)
                        ]
                        full = await bot.accounted(flat_out(http, bot.webhook, items[-1], args.concurrency))
                    memory = bot.memory
            statuses = {**warm.statuses}
            for r in [*steady, full]:
                statuses.update(r.statuses)
            sent, methods, replies = await telegram.ask("report")
            for r in [warm, *steady, full]:
                methods.update(r.answered_in_reply)
            if args.dump:
                write_timeline(args.dump, [("steady", r) for r in steady] + [("full", full)], replies)
            everything = [x for phase in items for x in phase]
            checked = await check(url, everything, statuses, sent, school)
            if methods.get("answerCallbackQuery", 0) < sum(
                1 for x in everything if x.update.get("callback_query")
            ):
                checked.notes.append("some button presses were not answered (answerCallbackQuery)")
    finally:
        telegram.close()
    posted = Counter(x.kind for x in everything)
    return [
        Run(
            args.db, workers, args.updates, rate, args.concurrency, s, full, memory, checked, posted, prepared
        )
        for s, rate in zip(steady, rates, strict=True)
    ]


def write_timeline(path: Path, phases: list[tuple[str, Result]], replies: list[tuple[str, float]]) -> None:
    """One line per update: phase, kind, when it was posted (s from the phase's start), its latency,
    and when its reply reached the fake Bot API (ms after the post; both read the same monotonic
    clock; empty where the chat had several updates)."""
    by_chat: dict[str, list[float]] = {}
    for chat, at in replies:
        by_chat.setdefault(chat, []).append(at)
    with path.open("w", encoding="utf-8") as out:
        out.write("phase,kind,posted_s,latency_ms,reply_ms\n")
        for name, result in phases:
            for sent, answered, kind, chat_id in sorted(result.timeline):
                times = by_chat.get(str(chat_id), [])
                reply = f"{(times[0] - sent) * 1000:.2f}" if len(times) == 1 else ""
                out.write(
                    f"{name},{kind},{sent - result.started:.4f},{(answered - sent) * 1000:.2f},{reply}\n"
                )


def _cpu(r: Result) -> str:
    return f"{r.cpu / len(r.latency) * 1000:.1f} ms" if r.latency else "-"


def _ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000 if values else float("nan")


def report(run: Run) -> str:
    s, f, m, c = run.steady, run.full, run.memory, run.check
    rows = [
        ("database", run.db),
        ("workers", str(run.workers)),
        ("accounts bound to roster guardians", f"{ACCOUNTS} (+{STAFF} staff)"),
        ("update mix", ", ".join(f"{k} {run.kinds[k]}" for k in KINDS)),
        ("database prepared in", f"{run.prepare_seconds:.1f} s"),
        ("", ""),
        (f"steady: offered {run.rate:g}/s, updates", str(len(s.latency))),
        ("  achieved", f"{s.throughput:.1f}/s"),
        (
            "  latency p50 / p90 / p99 / max",
            " / ".join(f"{_ms(s.latency, q):.1f}" for q in (0.5, 0.9, 0.99, 1.0)) + " ms",
        ),
        ("  posts behind schedule p99 (client)", f"{_ms(s.late, 0.99):.1f} ms"),
        ("  bot CPU per update", _cpu(s)),
        (f"full speed: {run.concurrency} in flight, updates", str(len(f.latency))),
        ("  throughput", f"{f.throughput:.1f}/s"),
        (
            "  latency p50 / p99 / max",
            " / ".join(f"{_ms(f.latency, q):.1f}" for q in (0.5, 0.99, 1.0)) + " ms",
        ),
        ("  bot CPU per update", _cpu(f)),
        (
            "  cores busy: bot / bench / whole machine",
            f"{f.cpu / f.elapsed:.2f} / {f.bench / f.elapsed:.2f} / {f.machine / f.elapsed:.2f}"
            f" of {os.cpu_count()}",
        ),
        ("", ""),
        ("peak RSS, workers summed", f"{m.workers_peak:.0f} MB"),
        ("peak RSS, largest worker", f"{m.per_worker_peak:.0f} MB"),
        ("peak RSS, supervisor", f"{m.supervisor_peak:.0f} MB" if run.workers > 1 else "- (one process)"),
        ("errors (non-200)", str(c.errors)),
        ("lost", str(c.lost)),
        ("duplicates", str(c.duplicates)),
        ("handovers recorded", str(c.handovers)),
        (
            "parents' handover messages (outbox)",
            ", ".join(f"{k} {v}" for k, v in sorted(c.handover_messages.items())),
        ),
        *(("note", n) for n in c.notes),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{k.ljust(width)}  {v}" if k else "" for k, v in rows]
    lines.append(summary(run))
    return "\n".join(lines)


def summary(run: Run) -> str:
    c = run.check
    return (
        f"inbound updates={run.updates} db={run.db} workers={run.workers} "
        f"throughput={run.full.throughput:.0f}/s "
        f"p50_ms={_ms(run.steady.latency, 0.5):.1f} p99_ms={_ms(run.steady.latency, 0.99):.1f} "
        f"rss_mb={run.memory.workers_peak:.0f} errors={c.errors} lost={c.lost} duplicates={c.duplicates}"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.inbound", description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=2000, help="updates in each phase (steady, full speed)")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--database-url", default=None, help="PostgreSQL server to create a scratch database on")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rate", type=float, default=100.0, help="offered updates a second in the steady phase")
    p.add_argument("--concurrency", type=int, default=40, help="posts in flight at full speed")
    p.add_argument(
        "--kinds",
        type=lambda value: frozenset(value.split(",")),
        default=frozenset(KINDS),
        help=f"only these kinds of update, keeping their share in the mix (default: {','.join(KINDS)})",
    )
    p.add_argument("--dump", type=Path, default=None, help="write each update's latency to this CSV")
    p.add_argument("--profile", type=Path, default=None, help="run the bot under cProfile, write stats here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in PROXIES:
        os.environ.pop(name, None)  # everything is on 127.0.0.1
    print(
        f"inbound: {args.updates} updates at {args.rate:g}/s, then at full speed ({args.concurrency} in "
        f"flight), {args.workers} worker(s) on {args.db} ...",
        flush=True,
    )
    (run,) = asyncio.run(measure(args, args.workers))
    print(report(run))
    c = run.check
    return 0 if c.errors == c.lost == c.duplicates == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
