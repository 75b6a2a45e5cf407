"""/mydata's export covers every row that refers to a parent, checked against the schema itself:
a new table or column that refers to a person, an account or a student fails here until
storage/privacy.py exports it or excludes it with a reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, or_, select

from storage import privacy
from storage.clock import utcnow
from storage.models import (
    AccountBinding,
    Base,
    Feedback,
    Guardianship,
    Notice,
    NoticeDelivery,
    PrivacyConsent,
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyQuestion,
    SurveyResponse,
)
from tests.dialog import Chat, payloads
from tests.test_handover import signed_family


def uncovered(metadata: MetaData) -> list[str]:
    """Tables and columns that refer to a person, account or student and are neither exported
    (with that column matched against the right ids) nor excluded with a reason."""
    problems: list[str] = []
    for table in metadata.sorted_tables:
        refs = {
            fk.parent.name: privacy.SUBJECT_TABLES[fk.column.table.name]
            for fk in table.foreign_keys
            if fk.column.table.name in privacy.SUBJECT_TABLES
        }
        if not refs:
            continue
        if table.name in privacy.EXCLUDED:
            if not privacy.EXCLUDED[table.name].strip():
                problems.append(f"{table.name}: excluded without a reason")
            continue
        cover = privacy.REGISTRY.get(table.name)
        if cover is None:
            problems.append(f"{table.name}: refers to {sorted(set(refs.values()))} but is not exported")
            continue
        for column, subject in refs.items():
            if cover.columns.get(column) != subject:
                problems.append(f"{table.name}.{column}: refers to a {subject} but is not matched")
    return problems


def test_every_table_that_refers_to_a_person_is_exported_or_excluded_with_a_reason():
    assert uncovered(Base.metadata) == []
    for name, kind in privacy.SUBJECT_TABLES.items():
        assert privacy.REGISTRY[name].columns == {"id": kind}
    assert set(privacy.REGISTRY) <= set(Base.metadata.tables)
    assert not set(privacy.REGISTRY) & set(privacy.EXCLUDED)


def test_a_new_table_about_a_person_fails_the_check_until_covered():
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    Table(
        "sick_note",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("student_id", ForeignKey("student.id")),
    )
    assert uncovered(metadata) == ["sick_note: refers to ['student'] but is not exported"]


async def rich_parent(deps, sessionmaker) -> Chat:
    """A parent who applied, signed, named a pickup adult, reported an absence; whose child was
    marked present and handed over; who got a notice, answered a named and an anonymous survey,
    sent a named and an anonymous comment and accepted the privacy notice."""
    parent, staff, student = await signed_family(deps, sessionmaker)
    await parent.say("/absent")
    await parent.press("b:d:1")
    await parent.say("看病")
    roster = await staff.say("/today")
    group = next(p for p in payloads(roster) if p.startswith("h:ap:")).split(":")[2]
    await staff.press(f"h:ap:{group}")
    menu = await staff.press(f"h:c:{group}:{student}")
    await staff.press(next(p for p in payloads(menu) if p.startswith("h:h:")))
    now = utcnow()
    async with sessionmaker.begin() as session:
        binding = (
            await session.scalars(
                select(AccountBinding)
                .join(Guardianship, Guardianship.person_id == AccountBinding.person_id)
                .where(Guardianship.student_id == student)
            )
        ).one()
        person, account, school = binding.person_id, binding.account_id, binding.school_id
        notice = Notice(
            school_id=school,
            title="秋游",
            body="周五秋游",
            audience_kind="school",
            status="sent",
            sent_at=now,
        )
        session.add(notice)
        await session.flush()
        session.add(
            NoticeDelivery(
                school_id=school, notice_id=notice.id, account_id=account, status="queued", created_at=now
            )
        )
        for anonymous in (False, True):
            survey = Survey(
                school_id=school,
                title="满意度",
                anonymous=anonymous,
                audience_kind="school",
                opens_at=now,
                closes_at=now + timedelta(days=3),
                status="open",
                created_at=now,
            )
            session.add(survey)
            await session.flush()
            question = SurveyQuestion(survey_id=survey.id, position=1, kind="text", text="建议？")
            session.add(question)
            session.add(
                SurveyInvitation(school_id=school, survey_id=survey.id, person_id=person, responded=True)
            )
            response = SurveyResponse(
                school_id=school,
                survey_id=survey.id,
                person_id=None if anonymous else person,
                respondent_key="k" * 64 if anonymous else None,
                submitted=True,
            )
            session.add(response)
            await session.flush()
            text = "匿名答案" if anonymous else "实名答案"
            session.add(
                SurveyAnswer(survey_id=survey.id, response_id=response.id, question_id=question.id, text=text)
            )
        session.add(Feedback(school_id=school, person_id=person, text="实名意见", received_on=now.date()))
        session.add(Feedback(school_id=school, person_id=None, text="匿名意见", received_on=now.date()))
        # Joining recorded the acceptance of the privacy notice; an earlier version's is kept too.
        session.add(
            PrivacyConsent(school_id=school, person_id=person, account_id=account, version=0, accepted_at=now)
        )
    return parent


async def rows_referring_to(session: Any, who: privacy.Subjects) -> dict[str, set[int]]:
    """Straight from the schema, not the registry: the ids of every row whose foreign key points at
    one of these people, accounts or children (and the subjects' own rows)."""
    found: dict[str, set[int]] = {}
    for table in Base.metadata.sorted_tables:
        conditions = [
            fk.parent.in_(who.ids(privacy.SUBJECT_TABLES[fk.column.table.name]))
            for fk in table.foreign_keys
            if fk.column.table.name in privacy.SUBJECT_TABLES
        ]
        if table.name in privacy.SUBJECT_TABLES:
            conditions.append(table.c.id.in_(who.ids(privacy.SUBJECT_TABLES[table.name])))
        if not conditions or "id" not in table.c:
            continue
        ids = set(await session.scalars(select(table.c.id).where(or_(*conditions))))
        if ids:
            found[table.name] = ids
    return found


async def test_the_export_holds_every_row_that_refers_to_the_parent(deps, sessionmaker):
    parent = await rich_parent(deps, sessionmaker)
    async with sessionmaker() as session:
        account = (
            await session.scalars(
                select(AccountBinding.account_id).join(
                    Guardianship, Guardianship.person_id == AccountBinding.person_id
                )
            )
        ).first()
        data = await privacy.export_person_data(session, account)
        who = privacy.Subjects(**data["subjects"])
        expected = await rows_referring_to(session, who)
    assert parent.user_id == "parent" and who.people and who.students
    tables = data["tables"]
    for name, ids in expected.items():
        if name in privacy.EXCLUDED:
            continue
        exported = {row["id"] for row in tables[name]}
        assert ids <= exported, f"{name}: rows {sorted(ids - exported)} missing from the export"
    for name in (
        "person", "platform_account", "student", "guardianship", "invite_code", "application", "agreement",
        "pickup_adult", "absence", "attendance", "handover", "notice_delivery", "outbox", "survey_invitation",
        "survey_response", "survey_answer", "feedback", "privacy_consent", "audit_log", "school_class",
    ):  # fmt: skip
        assert tables[name], f"{name} is empty: the story did not make a row"
    # Anonymous answers are not linkable, so they are not there; secrets never are.
    assert [r["text"] for r in tables["feedback"]] == ["实名意见"]
    assert [r["text"] for r in tables["survey_answer"]] == ["实名答案"]
    assert all("respondent_key" not in r for r in tables["survey_response"])
    assert all("code" not in r and "used_at" in r for r in tables["invite_code"])
    assert tables["agreement"][0]["sha256"] and "曹若曦" in tables["agreement"][0]["text"]
    assert {r["name"] for r in tables["pickup_adult"]} == {"王秀兰"}
    assert {r["name"] for r in tables["person"]} == {"董静"}
