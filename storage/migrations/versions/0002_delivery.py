"""delivery: outbox claims, rate-limit bookkeeping and leader election

Outbox rows get a lease (`claimed_by`, `claimed_until`) so a sender can hold them and another can
take them over when it dies, a link from a re-routed copy to the row that proved unreachable, and
an index for claiming one lane in id order. Leader election needs no table (a PostgreSQL advisory
lock, or a lock file beside the SQLite database); rate limits live in the sender's memory.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rerouted_from_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_rerouted_from_id_outbox"),
            "outbox",
            ["rerouted_from_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_outbox_claim", ["status", "lane", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_claim")
        batch_op.drop_constraint(batch_op.f("fk_outbox_rerouted_from_id_outbox"), type_="foreignkey")
        batch_op.drop_column("rerouted_from_id")
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
