"""notices: school notices, their deliveries and acknowledgements, preferences, the job store

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The `apscheduler_jobs` table is APScheduler 3's SQLAlchemyJobStore table, created here (exactly as
the job store would create it) so the schema has one owner and a downgrade removes it too.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notice_preference",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("digest_time", sa.String(length=5), nullable=True),
        sa.Column("quiet_hours", sa.String(length=11), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["platform_account.id"],
            name=op.f("fk_notice_preference_account_id_platform_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_notice_preference")),
    )
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=True),
        sa.Column("author_person_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("audience_kind", sa.String(length=16), nullable=False),
        sa.Column("audience_value", sa.String(length=100), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("attachment_name", sa.String(length=200), nullable=True),
        sa.Column("attachment_path", sa.String(length=300), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cron", sa.String(length=100), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_within_hours", sa.Integer(), nullable=True),
        sa.Column("people_count", sa.Integer(), nullable=False),
        sa.Column("not_joined_count", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_person_id"],
            ["person.id"],
            name=op.f("fk_notice_author_person_id_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_notice_school_id_school"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["series_id"], ["notice.id"], name=op.f("fk_notice_series_id_notice"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice")),
        sa.UniqueConstraint("series_id", "scheduled_for", name=op.f("uq_notice_series_id")),
    )
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_series_id"), ["series_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_status"), ["status"], unique=False)

    op.create_table(
        "notice_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("last_reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["platform_account.id"],
            name=op.f("fk_notice_delivery_account_id_platform_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notice.id"], name=op.f("fk_notice_delivery_notice_id_notice"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_notice_delivery_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_delivery")),
        sa.UniqueConstraint("notice_id", "account_id", name=op.f("uq_notice_delivery_notice_id")),
    )
    with op.batch_alter_table("notice_delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_delivery_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_delivery_notice_id"), ["notice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_delivery_outbox_id"), ["outbox_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_delivery_school_id"), ["school_id"], unique=False)

    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apscheduler_jobs")),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_apscheduler_jobs_next_run_time", table_name="apscheduler_jobs")
    op.drop_table("apscheduler_jobs")
    with op.batch_alter_table("notice_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_delivery_school_id"))
        batch_op.drop_index(batch_op.f("ix_notice_delivery_outbox_id"))
        batch_op.drop_index(batch_op.f("ix_notice_delivery_notice_id"))
        batch_op.drop_index(batch_op.f("ix_notice_delivery_account_id"))

    op.drop_table("notice_delivery")
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_status"))
        batch_op.drop_index(batch_op.f("ix_notice_series_id"))
        batch_op.drop_index(batch_op.f("ix_notice_school_id"))

    op.drop_table("notice")
    op.drop_table("notice_preference")
