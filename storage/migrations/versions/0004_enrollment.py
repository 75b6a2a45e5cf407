"""school care

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 02:01:05.997351
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=60), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("activity_type", sa.String(length=32), nullable=False),
        sa.Column("room", sa.String(length=100), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_service_group_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_group")),
        sa.UniqueConstraint("school_id", "term", "name", name=op.f("uq_service_group_school_id")),
    )
    with op.batch_alter_table("service_group", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_group_school_id"), ["school_id"], unique=False)

    op.create_table(
        "day_summary",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["service_group.id"],
            name=op.f("fk_day_summary_group_id_service_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_day_summary_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_day_summary")),
        sa.UniqueConstraint("group_id", "day", name=op.f("uq_day_summary_group_id")),
    )
    with op.batch_alter_table("day_summary", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_day_summary_school_id"), ["school_id"], unique=False)

    op.create_table(
        "group_duty",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column(
            "assigned_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["service_group.id"],
            name=op.f("fk_group_duty_group_id_service_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_group_duty_person_id_person"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_group_duty_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_duty")),
        sa.UniqueConstraint("group_id", "person_id", name=op.f("uq_group_duty_group_id")),
    )
    with op.batch_alter_table("group_duty", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_group_duty_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_group_duty_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_group_duty_school_id"), ["school_id"], unique=False)

    op.create_table(
        "placement_proposal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=60), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("placements", sa.JSON(), nullable=False),
        sa.Column("waiting", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["person.id"],
            name=op.f("fk_placement_proposal_created_by_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["school.id"],
            name=op.f("fk_placement_proposal_school_id_school"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_placement_proposal")),
    )
    with op.batch_alter_table("placement_proposal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_placement_proposal_school_id"), ["school_id"], unique=False)

    op.create_table(
        "vetting",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("moral_ok", sa.Boolean(), nullable=False),
        sa.Column("health_ok", sa.Boolean(), nullable=False),
        sa.Column("qualification_ok", sa.Boolean(), nullable=False),
        sa.Column("checked_on", sa.Date(), nullable=False),
        sa.Column("checked_by", sa.String(length=100), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("expiry_warned_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_vetting_person_id_person"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_vetting_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vetting")),
    )
    with op.batch_alter_table("vetting", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vetting_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_vetting_school_id"), ["school_id"], unique=False)

    op.create_table(
        "absence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("reported_by", sa.Integer(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reported_by"], ["person.id"], name=op.f("fk_absence_reported_by_person"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_absence_school_id_school"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["student_id"], ["student.id"], name=op.f("fk_absence_student_id_student"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_absence")),
    )
    with op.batch_alter_table("absence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_absence_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_absence_student_id"), ["student_id"], unique=False)

    op.create_table(
        "application",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("applicant_person_id", sa.Integer(), nullable=False),
        sa.Column("terms_version_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("noon_care", sa.Boolean(), nullable=False),
        sa.Column("lunch", sa.Boolean(), nullable=False),
        sa.Column("activities", sa.JSON(), nullable=False),
        sa.Column("priority_claimed", sa.JSON(), nullable=False),
        sa.Column("priority_confirmed", sa.JSON(), nullable=True),
        sa.Column("waiver_requested", sa.Boolean(), nullable=False),
        sa.Column("waiver_note", sa.String(length=300), nullable=False),
        sa.Column("waiver", sa.String(length=16), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("class_reviewed_by", sa.Integer(), nullable=True),
        sa.Column("class_reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("school_decided_by", sa.Integer(), nullable=True),
        sa.Column("school_decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reject_reason", sa.String(length=500), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offer_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sign_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sign_reminders", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["applicant_person_id"], ["person.id"], name=op.f("fk_application_applicant_person_id_person")
        ),
        sa.ForeignKeyConstraint(
            ["class_reviewed_by"],
            ["person.id"],
            name=op.f("fk_application_class_reviewed_by_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["service_group.id"],
            name=op.f("fk_application_group_id_service_group"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["school_decided_by"],
            ["person.id"],
            name=op.f("fk_application_school_decided_by_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_application_school_id_school"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["student_id"], ["student.id"], name=op.f("fk_application_student_id_student"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["terms_version_id"],
            ["terms_version.id"],
            name=op.f("fk_application_terms_version_id_terms_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_application")),
    )
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_application_applicant_person_id"), ["applicant_person_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_application_group_id"), ["group_id"], unique=False)
        batch_op.create_index("ix_application_queue", ["school_id", "term", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_application_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_application_student_id"), ["student_id"], unique=False)

    op.create_table(
        "attendance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("marked_by", sa.Integer(), nullable=True),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["service_group.id"],
            name=op.f("fk_attendance_group_id_service_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["marked_by"], ["person.id"], name=op.f("fk_attendance_marked_by_person"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_attendance_school_id_school"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["student_id"], ["student.id"], name=op.f("fk_attendance_student_id_student"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attendance")),
        sa.UniqueConstraint("student_id", "day", name=op.f("uq_attendance_student_id")),
    )
    with op.batch_alter_table("attendance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attendance_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_attendance_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_attendance_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_attendance_student_id"), ["student_id"], unique=False)

    op.create_table(
        "go_home_alone_consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["platform_account.id"],
            name=op.f("fk_go_home_alone_consent_account_id_platform_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_go_home_alone_consent_person_id_person")
        ),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["school.id"],
            name=op.f("fk_go_home_alone_consent_school_id_school"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["student_id"],
            ["student.id"],
            name=op.f("fk_go_home_alone_consent_student_id_student"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_go_home_alone_consent")),
    )
    with op.batch_alter_table("go_home_alone_consent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_go_home_alone_consent_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_go_home_alone_consent_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_go_home_alone_consent_student_id"), ["student_id"], unique=False)

    op.create_table(
        "handover_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("adult_name", sa.String(length=100), nullable=False),
        sa.Column("relation", sa.String(length=32), nullable=False),
        sa.Column("staff_person_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["person.id"],
            name=op.f("fk_handover_request_decided_by_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["service_group.id"],
            name=op.f("fk_handover_request_group_id_service_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["school.id"],
            name=op.f("fk_handover_request_school_id_school"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_person_id"], ["person.id"], name=op.f("fk_handover_request_staff_person_id_person")
        ),
        sa.ForeignKeyConstraint(
            ["student_id"],
            ["student.id"],
            name=op.f("fk_handover_request_student_id_student"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handover_request")),
    )
    with op.batch_alter_table("handover_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handover_request_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_handover_request_student_id"), ["student_id"], unique=False)

    op.create_table(
        "late_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("last_alert_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_late_alert_school_id_school"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["student_id"], ["student.id"], name=op.f("fk_late_alert_student_id_student"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_late_alert")),
        sa.UniqueConstraint("student_id", "day", name=op.f("uq_late_alert_student_id")),
    )
    with op.batch_alter_table("late_alert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_late_alert_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_late_alert_student_id"), ["student_id"], unique=False)

    op.create_table(
        "pickup_adult",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("relation", sa.String(length=32), nullable=False),
        sa.Column("phone_tail", sa.String(length=4), nullable=True),
        sa.Column("code", sa.String(length=4), nullable=False),
        sa.Column("only_on", sa.Date(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["person.id"], name=op.f("fk_pickup_adult_created_by_person"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_pickup_adult_school_id_school"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["student_id"],
            ["student.id"],
            name=op.f("fk_pickup_adult_student_id_student"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pickup_adult")),
    )
    with op.batch_alter_table("pickup_adult", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pickup_adult_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pickup_adult_student_id"), ["student_id"], unique=False)

    op.create_table(
        "agreement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("terms_version_id", sa.Integer(), nullable=False),
        sa.Column("signer_person_id", sa.Integer(), nullable=False),
        sa.Column("signer_account_id", sa.Integer(), nullable=True),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"], ["application.id"], name=op.f("fk_agreement_application_id_application")
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_agreement_school_id_school"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["signer_account_id"],
            ["platform_account.id"],
            name=op.f("fk_agreement_signer_account_id_platform_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["signer_person_id"], ["person.id"], name=op.f("fk_agreement_signer_person_id_person")
        ),
        sa.ForeignKeyConstraint(["student_id"], ["student.id"], name=op.f("fk_agreement_student_id_student")),
        sa.ForeignKeyConstraint(
            ["terms_version_id"],
            ["terms_version.id"],
            name=op.f("fk_agreement_terms_version_id_terms_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement")),
    )
    with op.batch_alter_table("agreement", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agreement_application_id"), ["application_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agreement_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agreement_signer_person_id"), ["signer_person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agreement_student_id"), ["student_id"], unique=False)

    op.create_table(
        "handover",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("adult_id", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("adult_name", sa.String(length=100), nullable=False),
        sa.Column("relation", sa.String(length=32), nullable=False),
        sa.Column("code_verified", sa.Boolean(), nullable=False),
        sa.Column("staff_person_id", sa.Integer(), nullable=False),
        sa.Column("handed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adult_id"],
            ["pickup_adult.id"],
            name=op.f("fk_handover_adult_id_pickup_adult"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["service_group.id"],
            name=op.f("fk_handover_group_id_service_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["handover_request.id"],
            name=op.f("fk_handover_request_id_handover_request"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_handover_school_id_school"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["staff_person_id"], ["person.id"], name=op.f("fk_handover_staff_person_id_person")
        ),
        sa.ForeignKeyConstraint(
            ["student_id"], ["student.id"], name=op.f("fk_handover_student_id_student"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handover")),
        sa.UniqueConstraint("student_id", "day", name=op.f("uq_handover_student_id")),
    )
    with op.batch_alter_table("handover", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handover_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_handover_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_handover_school_id"), ["school_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_handover_student_id"), ["student_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("handover", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handover_student_id"))
        batch_op.drop_index(batch_op.f("ix_handover_school_id"))
        batch_op.drop_index(batch_op.f("ix_handover_group_id"))
        batch_op.drop_index(batch_op.f("ix_handover_day"))

    op.drop_table("handover")
    with op.batch_alter_table("agreement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreement_student_id"))
        batch_op.drop_index(batch_op.f("ix_agreement_signer_person_id"))
        batch_op.drop_index(batch_op.f("ix_agreement_school_id"))
        batch_op.drop_index(batch_op.f("ix_agreement_application_id"))

    op.drop_table("agreement")
    with op.batch_alter_table("pickup_adult", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pickup_adult_student_id"))
        batch_op.drop_index(batch_op.f("ix_pickup_adult_school_id"))

    op.drop_table("pickup_adult")
    with op.batch_alter_table("late_alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_late_alert_student_id"))
        batch_op.drop_index(batch_op.f("ix_late_alert_school_id"))

    op.drop_table("late_alert")
    with op.batch_alter_table("handover_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handover_request_student_id"))
        batch_op.drop_index(batch_op.f("ix_handover_request_school_id"))

    op.drop_table("handover_request")
    with op.batch_alter_table("go_home_alone_consent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_go_home_alone_consent_student_id"))
        batch_op.drop_index(batch_op.f("ix_go_home_alone_consent_school_id"))
        batch_op.drop_index(batch_op.f("ix_go_home_alone_consent_person_id"))

    op.drop_table("go_home_alone_consent")
    with op.batch_alter_table("attendance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attendance_student_id"))
        batch_op.drop_index(batch_op.f("ix_attendance_school_id"))
        batch_op.drop_index(batch_op.f("ix_attendance_group_id"))
        batch_op.drop_index(batch_op.f("ix_attendance_day"))

    op.drop_table("attendance")
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_application_student_id"))
        batch_op.drop_index(batch_op.f("ix_application_school_id"))
        batch_op.drop_index("ix_application_queue")
        batch_op.drop_index(batch_op.f("ix_application_group_id"))
        batch_op.drop_index(batch_op.f("ix_application_applicant_person_id"))

    op.drop_table("application")
    with op.batch_alter_table("absence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_absence_student_id"))
        batch_op.drop_index(batch_op.f("ix_absence_school_id"))

    op.drop_table("absence")
    with op.batch_alter_table("vetting", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vetting_school_id"))
        batch_op.drop_index(batch_op.f("ix_vetting_person_id"))

    op.drop_table("vetting")
    with op.batch_alter_table("placement_proposal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_placement_proposal_school_id"))

    op.drop_table("placement_proposal")
    with op.batch_alter_table("group_duty", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_duty_school_id"))
        batch_op.drop_index(batch_op.f("ix_group_duty_person_id"))
        batch_op.drop_index(batch_op.f("ix_group_duty_group_id"))

    op.drop_table("group_duty")
    with op.batch_alter_table("day_summary", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_day_summary_school_id"))

    op.drop_table("day_summary")
    with op.batch_alter_table("service_group", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_group_school_id"))

    op.drop_table("service_group")
