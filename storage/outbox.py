"""The outbox: messages to other people, committed with their cause and sent by the sender.

A sender claims due rows for a lease, sends each, and records the outcome right away; see
docs/delivery.md. These functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import accounts
from storage.clock import utcnow
from storage.models import Lane, Outbox, OutboxStatus, PlatformAccount

LANE_ORDER = case(
    {Lane.SAFETY.value: 0, Lane.INTERACTIVE.value: 1, Lane.BULK.value: 2},
    value=Outbox.lane,
    else_=3,
)
LANE_RANK = {Lane.SAFETY.value: 0, Lane.INTERACTIVE.value: 1, Lane.BULK.value: 2}
# Transient failures (network, 5xx) before a row is given up as failed: with the default 2 s base
# and the 300 s cap that is about half an hour of trying.
MAX_ATTEMPTS = 12
MAX_BACKOFF = 300.0
# How far back a re-routed copy looks for the same message already queued to the other account.
REROUTE_LOOKBACK = timedelta(minutes=10)


@dataclass(frozen=True)
class Claim:
    """A row a sender holds, with what it needs to send it (no session attached)."""

    id: int
    account_id: int
    lane: str
    payload: dict[str, Any]
    attempts: int
    platform: str
    chat_id: str
    unreachable: bool

    @property
    def rank(self) -> tuple[int, int]:
        """Sort key: safety first, then oldest first."""
        return LANE_RANK.get(self.lane, 3), self.id


QUEUED = "outbox_queued"


async def enqueue(
    session: AsyncSession,
    account_id: int,
    payload: dict[str, Any],
    *,
    lane: Lane = Lane.INTERACTIVE,
    school_id: int | None = None,
    not_before: datetime | None = None,
) -> Outbox:
    row = Outbox(
        account_id=account_id,
        payload=payload,
        lane=lane.value,
        school_id=school_id,
        status=OutboxStatus.PENDING.value,
        not_before=not_before or utcnow(),
        attempts=0,
    )
    session.add(row)
    await session.flush()
    session.info[QUEUED] = True
    return row


# On the table: rows queued by `enqueue_many` are not read back in the transaction that wrote them.
_INSERT = insert(Outbox.__table__)


async def enqueue_many(
    session: AsyncSession,
    messages: Sequence[tuple[int, dict[str, Any]]],
    *,
    lane: Lane = Lane.INTERACTIVE,
    school_id: int | None = None,
    not_before: datetime | None = None,
) -> int:
    """Queue (account id, payload) messages in one statement, without building rows to read back:
    a handover queues one per parent account on the safety path, where every millisecond counts."""
    if not messages:
        return 0
    due = not_before or utcnow()
    await session.execute(
        _INSERT,
        [
            {
                "account_id": account_id,
                "payload": payload,
                "lane": lane.value,
                "school_id": school_id,
                "status": OutboxStatus.PENDING.value,
                "not_before": due,
                "attempts": 0,
            }
            for account_id, payload in messages
        ],
    )
    session.info[QUEUED] = True
    return len(messages)


def queued(session: AsyncSession) -> bool:
    """Whether this session queued a message: the sender is woken after its commit, and only then."""
    return bool(session.info.get(QUEUED))


def _claimable(now: datetime) -> list[Any]:
    """Pending, due, and held by nobody (or by a sender whose lease ran out)."""
    return [
        Outbox.status == OutboxStatus.PENDING.value,
        Outbox.not_before <= now,
        or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now),
    ]


async def claim(
    session: AsyncSession,
    owner: str,
    *,
    lanes: Sequence[Lane | str],
    platforms: Collection[str],
    limit: int,
    lease: float,
    now: datetime | None = None,
) -> list[Claim]:
    """Take up to `limit` due rows of these lanes for `owner` until `now + lease`.

    Lanes are taken in the order given, each earliest due first (then oldest): read in that
    order, the due rows come straight off the index, past any backlog held for later (quiet
    hours, scheduled notices) rather than through it. Safe with several senders: on
    PostgreSQL the candidates are locked and rows another transaction is claiming are skipped
    (FOR UPDATE SKIP LOCKED); on both databases the UPDATE re-checks that each candidate is still
    free (on SQLite under the database's write lock) and only the rows it took are returned.
    """
    now = now or utcnow()
    if limit <= 0 or not platforms:
        return []
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    taken: list[int] = []
    for lane in lanes:
        remaining = limit - len(taken)
        if remaining <= 0:
            break
        lane_value = lane.value if isinstance(lane, Lane) else lane
        query = (
            select(Outbox.id)
            .join(PlatformAccount, PlatformAccount.id == Outbox.account_id)
            .where(Outbox.lane == lane_value, PlatformAccount.platform.in_(platforms), *_claimable(now))
            .order_by(Outbox.not_before, Outbox.id)  # the order of ix_outbox_pending: due rows are one range
            .limit(remaining)
        )
        if postgres:
            query = query.with_for_update(skip_locked=True, of=Outbox)
        # Two statements, not UPDATE ... IN (SELECT ... LIMIT): PostgreSQL may run such a
        # subquery once per row and claim far more than the limit.
        candidates = list(await session.scalars(query))
        if not candidates:
            continue
        result = await session.scalars(
            update(Outbox)
            .where(Outbox.id.in_(candidates), *_claimable(now))
            .values(claimed_by=owner, claimed_until=now + timedelta(seconds=lease))
            .returning(Outbox.id)
            .execution_options(synchronize_session=False)
        )
        taken.extend(result)
    if not taken:
        return []
    rows = await session.execute(
        select(Outbox, PlatformAccount)
        .join(PlatformAccount, PlatformAccount.id == Outbox.account_id)
        .where(Outbox.id.in_(taken))
        .execution_options(populate_existing=True)
    )
    claims = [
        Claim(
            id=row.id,
            account_id=row.account_id,
            lane=row.lane,
            payload=row.payload,
            attempts=row.attempts,
            platform=account.platform,
            chat_id=account.chat_id,
            unreachable=account.unreachable_at is not None,
        )
        for row, account in rows
    ]
    return sorted(claims, key=lambda c: c.rank)


async def renew(session: AsyncSession, owner: str, lease: float, now: datetime | None = None) -> set[int]:
    """Extend the lease of every pending row `owner` still holds; returns their ids.

    A row whose lease already ran out is not renewed: another sender may have taken it.
    """
    now = now or utcnow()
    result = await session.scalars(
        update(Outbox)
        .where(
            Outbox.status == OutboxStatus.PENDING.value,
            Outbox.claimed_by == owner,
            Outbox.claimed_until >= now,
        )
        .values(claimed_until=now + timedelta(seconds=lease))
        .returning(Outbox.id)
        .execution_options(synchronize_session=False)
    )
    return set(result)


async def release(session: AsyncSession, owner: str, ids: Collection[int] | None = None) -> int:
    """Give back pending rows `owner` holds (all, or these), so another sender may take them now."""
    query = update(Outbox).where(Outbox.status == OutboxStatus.PENDING.value, Outbox.claimed_by == owner)
    if ids is not None:
        if not ids:
            return 0
        query = query.where(Outbox.id.in_(list(ids)))
    result = await session.execute(
        query.values(claimed_by=None, claimed_until=None).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def mark_sent(session: AsyncSession, outbox_id: int) -> bool:
    """The platform accepted the message. Final: a sent row is never claimed again.

    Recorded even if the lease ran out meanwhile: it was sent, whoever holds it now.
    """
    now = utcnow()
    result = await session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id, Outbox.status == OutboxStatus.PENDING.value)
        .values(
            status=OutboxStatus.SENT.value, sent_at=now, last_attempt_at=now, error=None, claimed_until=None
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_sent_many(session: AsyncSession, outbox_ids: Collection[int]) -> None:
    """`mark_sent` for several rows in one statement (the sender's group commit)."""
    now = utcnow()
    await session.execute(
        update(Outbox)
        .where(Outbox.id.in_(list(outbox_ids)), Outbox.status == OutboxStatus.PENDING.value)
        .values(
            status=OutboxStatus.SENT.value, sent_at=now, last_attempt_at=now, error=None, claimed_until=None
        )
        .execution_options(synchronize_session=False)
    )


async def mark_failed(session: AsyncSession, outbox_id: int, error: str) -> None:
    """The platform refused this message for good (e.g. 400 Bad Request)."""
    await session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id, Outbox.status == OutboxStatus.PENDING.value)
        .values(
            status=OutboxStatus.FAILED.value,
            error=error[:1000],
            last_attempt_at=utcnow(),
            claimed_until=None,
        )
        .execution_options(synchronize_session=False)
    )


async def mark_unreachable(session: AsyncSession, outbox_id: int, error: str) -> None:
    """The person blocked the bot (403): the row is final and the account is marked unreachable."""
    now = utcnow()
    row = await session.get(Outbox, outbox_id)
    if row is None or row.status != OutboxStatus.PENDING.value:
        return
    row.status = OutboxStatus.UNREACHABLE.value
    row.error = error[:1000]
    row.last_attempt_at = now
    row.claimed_until = None
    account = await session.get(PlatformAccount, row.account_id)
    if account is not None and account.unreachable_at is None:
        account.unreachable_at = now
    await session.flush()


async def retry_later(
    session: AsyncSession,
    outbox_id: int,
    error: str,
    after: float | None = None,
    *,
    base: float = 2.0,
) -> bool:
    """A transient failure: back off exponentially (or as asked) and give the row back.

    Returns True when the row was given up as failed after MAX_ATTEMPTS.
    """
    row = await session.get(Outbox, outbox_id)
    if row is None or row.status != OutboxStatus.PENDING.value:
        return False
    now = utcnow()
    row.attempts += 1
    row.error = error[:1000]
    row.last_attempt_at = now
    row.claimed_until = None
    given_up = row.attempts >= MAX_ATTEMPTS
    if given_up:
        row.status = OutboxStatus.FAILED.value
    else:
        delay = after if after is not None else min(base * 2 ** (row.attempts - 1), MAX_BACKOFF)
        row.not_before = now + timedelta(seconds=delay)
    await session.flush()
    return given_up


async def wait_for_recipient(session: AsyncSession, outbox_id: int, seconds: float = 60) -> None:
    """The recipient has no open connection (a closed web chat): not a failure, no attempt used.

    The row waits; `expedite` makes it due as soon as the recipient is back.
    """
    now = utcnow()
    await session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id, Outbox.status == OutboxStatus.PENDING.value)
        .values(last_attempt_at=now, not_before=now + timedelta(seconds=seconds), claimed_until=None)
        .execution_options(synchronize_session=False)
    )


async def expedite(session: AsyncSession, platform: str, chat_id: str) -> None:
    """Rows of this chat that were tried and are waiting become due now (the recipient came back).

    Rows never tried keep their time: a message scheduled for later stays scheduled.
    """
    now = utcnow()
    await session.execute(
        update(Outbox)
        .where(
            Outbox.account_id.in_(
                select(PlatformAccount.id).where(
                    PlatformAccount.platform == platform, PlatformAccount.chat_id == chat_id
                )
            ),
            Outbox.status == OutboxStatus.PENDING.value,
            Outbox.last_attempt_at.is_not(None),
            Outbox.not_before > now,
        )
        .values(not_before=now)
    )


async def reroute(session: AsyncSession, outbox_id: int) -> list[Outbox]:
    """Queue the message of an unreachable row on the person's reachable accounts on other platforms.

    An account that already has the same message (same payload, queued since shortly before this
    one: `notify` writes to every account of a person) is skipped, so nobody gets it twice.
    The copy keeps the text as rendered for the first account.
    """
    row = await session.get(Outbox, outbox_id)
    if row is None:
        return []
    copies = []
    since = row.created_at - REROUTE_LOOKBACK
    for account in await accounts.other_accounts(session, row.account_id):
        already = await session.scalars(
            select(Outbox.payload).where(Outbox.account_id == account.id, Outbox.created_at >= since)
        )
        if any(payload == row.payload for payload in already):
            continue
        copy = await enqueue(session, account.id, row.payload, lane=Lane(row.lane), school_id=row.school_id)
        copy.rerouted_from_id = row.id
        copies.append(copy)
    await session.flush()
    return copies


async def pending_for(session: AsyncSession, account_id: int) -> list[Outbox]:
    return list(
        await session.scalars(
            select(Outbox)
            .where(Outbox.account_id == account_id, Outbox.status == OutboxStatus.PENDING.value)
            .order_by(Outbox.id)
        )
    )
