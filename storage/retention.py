"""How long data is kept, and the purge that deletes what has outlived its purpose.

Periods come from the settings (RETENTION_*); what is only a technical trace (sign-in links, wrong
invite codes, update ids) goes after a fixed short time. Records the school must be able to show
(signed agreements, consents, applications, the audit log of ids) are not purged here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Absence,
    Attendance,
    ConversationState,
    DashboardLink,
    DashboardSession,
    DaySummary,
    Handover,
    HandoverRequest,
    InviteCode,
    InviteFailure,
    LateAlert,
    Notice,
    NoticeDelivery,
    Outbox,
    OutboxStatus,
    PickupAdult,
    ProcessedUpdate,
)

log = logging.getLogger(__name__)

# Technical traces: the invite limit looks back an hour, a dashboard link lives 15 minutes and a
# session at most 12 hours; a day later none of them can matter.
TRACE_GRACE = timedelta(days=1)
# An unused invite code is answered "expired" rather than "unknown" for this long after expiry.
EXPIRED_INVITE_GRACE = timedelta(days=30)
# Generated files under DATA_DIR that are copies of what the database holds (survey charts and
# spreadsheets sent to the committee): regenerated on demand, not kept.
GENERATED_DIRS = ("surveys",)


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind of data is kept (the RETENTION_* settings; docs/privacy.md says why)."""

    attendance_days: int = 365
    draft_days: int = 7
    update_ids_days: int = 7
    outbox_days: int = 30
    pickup_days: int = 30
    files_days: int = 30


def _rules(now: datetime, policy: RetentionPolicy) -> list[tuple[str, Any, Any]]:
    """(kind, table, condition) in a safe order: rows pointing at others go first."""
    day_cutoff = (now - timedelta(days=policy.attendance_days)).date()
    pickup_cutoff = now - timedelta(days=policy.pickup_days)
    outbox_cutoff = now - timedelta(days=policy.outbox_days)
    # A sent notice still waiting for acknowledgements needs its outbox rows (when it reached people).
    awaited = (
        select(NoticeDelivery.outbox_id)
        .join(Notice, Notice.id == NoticeDelivery.notice_id)
        .where(Notice.ack_deadline > now, NoticeDelivery.outbox_id.is_not(None))
    )
    return [
        ("attendance", Attendance, Attendance.day < day_cutoff),
        ("handover", Handover, Handover.day < day_cutoff),
        ("handover_request", HandoverRequest, HandoverRequest.day < day_cutoff),
        ("late_alert", LateAlert, LateAlert.day < day_cutoff),
        ("day_summary", DaySummary, DaySummary.day < day_cutoff),
        ("absence", Absence, Absence.last_day < day_cutoff),
        (
            "pickup_adult",
            PickupAdult,
            or_(PickupAdult.removed_at < pickup_cutoff, PickupAdult.only_on < pickup_cutoff.date()),
        ),
        (
            "conversation_state",
            ConversationState,
            ConversationState.updated_at < now - timedelta(days=policy.draft_days),
        ),
        (
            "processed_update",
            ProcessedUpdate,
            ProcessedUpdate.processed_at < now - timedelta(days=policy.update_ids_days),
        ),
        (
            "outbox",
            Outbox,
            (Outbox.status == OutboxStatus.SENT.value)
            & (Outbox.sent_at < outbox_cutoff)
            & Outbox.id.not_in(awaited),
        ),
        ("invite_failure", InviteFailure, InviteFailure.at < now - TRACE_GRACE),
        (
            "invite_code",
            InviteCode,
            InviteCode.used_at.is_(None) & (InviteCode.expires_at < now - EXPIRED_INVITE_GRACE),
        ),
        ("dashboard_link", DashboardLink, DashboardLink.expires_at < now - TRACE_GRACE),
        (
            "dashboard_session",
            DashboardSession,
            or_(
                DashboardSession.ended_at < now - TRACE_GRACE,
                DashboardSession.last_seen_at < now - TRACE_GRACE,
                DashboardSession.created_at < now - 2 * TRACE_GRACE,
            ),
        ),
    ]


async def purge_expired(
    session: AsyncSession,
    now: datetime,
    policy: RetentionPolicy,
    *,
    data_dir: Path | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete (or with `dry_run` only count) what the policy no longer keeps; counts per kind.

    The caller owns the transaction. Files are removed only when not a dry run, and only after
    the rows: a failed transaction leaves at worst a file that would have been deleted anyway.
    """
    counts: dict[str, int] = {}
    for kind, table, condition in _rules(now, policy):
        if dry_run:
            found = await session.scalar(select(func.count()).select_from(table).where(condition))
        else:
            result = await session.execute(
                delete(table).where(condition).execution_options(synchronize_session=False)
            )
            found = result.rowcount  # type: ignore[attr-defined]
        counts[kind] = int(found or 0)
    counts["files"] = sweep_files(data_dir, now, policy.files_days, dry_run=dry_run) if data_dir else 0
    return counts


def sweep_files(data_dir: Path, now: datetime, days: int, *, dry_run: bool = False) -> int:
    """Generated files under DATA_DIR older than `days` (by modification time); empty folders go too."""
    cutoff = (now - timedelta(days=days)).timestamp()
    removed = 0
    for name in GENERATED_DIRS:
        root = data_dir / name
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*"), reverse=True):  # children before their folders
            if path.is_symlink() or path.is_file():
                if path.lstat().st_mtime < cutoff:
                    removed += 1
                    if not dry_run:
                        path.unlink(missing_ok=True)
            elif path.is_dir() and not dry_run and not any(path.iterdir()):
                path.rmdir()
    return removed
