"""The enrollment rules on both databases: who may decide, in which order, and what is recorded."""

from __future__ import annotations

from datetime import date, timedelta

import yaml
from sqlalchemy import func, select

from storage import enrollment, groups, terms, vetting
from storage.clock import utcnow
from storage.enrollment import Options, Outcome
from storage.models import Application, AuditLog, Person, School, Student
from tests.school import EXAMPLES, load_example_school

TODAY = date(2026, 9, 1)


async def person(session, number: str) -> Person:
    return (await session.scalars(select(Person).where(Person.person_no == number))).one()


async def student(session, number: str) -> Student:
    return (await session.scalars(select(Student).where(Student.student_no == number))).one()


async def vet_and_group(sessionmaker) -> None:
    async with sessionmaker.begin() as session:
        for number in ("T005", "S001", "S002"):
            await vetting.record(
                session,
                await person(session, number),
                moral_ok=True,
                health_ok=True,
                qualification_ok=True,
                checked_on=date(2026, 8, 1),
                checked_by="周校长",
                valid_until=date(2027, 7, 31),
            )
        school = (await session.scalars(select(School))).one()
        spec = groups.parse_groups(yaml.safe_load((EXAMPLES / "groups.yaml").read_text("utf-8")))
        await groups.import_groups(session, school, spec.term or "", spec, TODAY)


async def apply(sessionmaker, student_no: str, **options) -> enrollment.Result:
    async with sessionmaker.begin() as session:
        child = await student(session, student_no)
        guardian = await person(session, f"{student_no}-G1")
        current = await terms.current_terms(session, child.school_id)
        opts = Options(weekdays=options.pop("weekdays", ("mon", "wed")), **options)
        return await enrollment.submit(
            session,
            people=[guardian.id],
            account_id=None,
            student_id=child.id,
            terms=current,
            options=opts,
            now=utcnow(),
        )


async def test_apply_review_approve_place_withdraw(sessionmaker):
    await load_example_school(sessionmaker)
    await vet_and_group(sessionmaker)
    first = await apply(sessionmaker, "S2026101", priority_claimed=("migrant",), waiver_requested=True)
    assert first.ok
    assert (await apply(sessionmaker, "S2026101")).outcome is Outcome.ALREADY_APPLIED
    app_id = first.application.id

    async with sessionmaker.begin() as session:
        other_teacher = await person(session, "T002")
        refused = await enrollment.class_review(
            session, app_id, [other_teacher.id], None, approve=True, now=utcnow()
        )
        assert refused.outcome is Outcome.FORBIDDEN
        head = await person(session, "T001")
        assert first.tell_reviewers == [head.id]
        no_reason = await enrollment.class_review(
            session, app_id, [head.id], None, approve=False, now=utcnow()
        )
        assert no_reason.outcome is Outcome.REASON_REQUIRED
        ok = await enrollment.class_review(session, app_id, [head.id], None, approve=True, now=utcnow())
        assert ok.ok and ok.application.priority_confirmed == ["migrant"]
        replay = await enrollment.class_review(session, app_id, [head.id], None, approve=True, now=utcnow())
        assert replay.outcome is Outcome.STALE

    async with sessionmaker.begin() as session:
        admin = await person(session, "A001")
        decided = await enrollment.school_decide(
            session, app_id, [admin.id], None, approve=True, now=utcnow()
        )
        assert decided.ok and decided.application.waiver == "granted"
        proposal = await enrollment.propose_placement(
            session, admin.school_id, first.application.term, [admin.id], utcnow()
        )
        assert proposal is not None and [p[0] for p in proposal.placements] == [app_id]
        confirmed = await enrollment.confirm_proposal(session, proposal.id, [admin.id], utcnow())
        assert [a.id for a in confirmed.placed] == [app_id]

    async with sessionmaker.begin() as session:
        guardian2 = await person(session, "S2026101-G2")
        withdrawn = await enrollment.withdraw(session, app_id, [guardian2.id], None, utcnow())
        assert withdrawn.ok and withdrawn.application.status == "withdrawn"

    async with sessionmaker() as session:
        refused_rows = await session.scalar(
            select(func.count(AuditLog.id)).where(AuditLog.action == "application.refused")
        )
        assert refused_rows == 2  # the other class's teacher, and the replayed approval


async def test_a_freed_place_is_offered_to_the_next_waiting_child(sessionmaker):
    await load_example_school(sessionmaker)
    await vet_and_group(sessionmaker)
    # 二年级经典阅读 has 10 seats on mon/wed/fri; the other groups fit too, so shrink them away.
    async with sessionmaker.begin() as session:
        for g in await groups.groups_of_term(session, 1, "2026—2027学年第一学期"):
            g.capacity = 1 if g.name == "一年级作业辅导" else 0
    ids = []
    for number in ("S2026102", "S2026103"):
        result = await apply(sessionmaker, number, weekdays=("mon",))
        ids.append(result.application.id)
    async with sessionmaker.begin() as session:
        admin = await person(session, "A001")
        for app_id in ids:
            app = await session.get(Application, app_id)
            app.status = "approved"
        proposal = await enrollment.propose_placement(
            session, admin.school_id, app.term, [admin.id], utcnow()
        )
        confirmed = await enrollment.confirm_proposal(session, proposal.id, [admin.id], utcnow())
        assert [a.id for a in confirmed.placed] == [ids[0]]
        assert await enrollment.waiting_position(session, confirmed.waiting[0]) == 1
    async with sessionmaker.begin() as session:
        parent = await person(session, "S2026102-G1")
        result = await enrollment.withdraw(session, ids[0], [parent.id], None, utcnow())
        assert [a.id for a in result.offers] == [ids[1]]
    async with sessionmaker.begin() as session:
        parent = await person(session, "S2026103-G1")
        late = utcnow() + timedelta(hours=1)
        accepted = await enrollment.answer_offer(session, ids[1], [parent.id], None, True, late)
        assert accepted.ok and accepted.application.status == "placed"


async def test_unvetted_staff_cannot_be_put_on_duty(sessionmaker):
    await load_example_school(sessionmaker)
    spec = groups.parse_groups(yaml.safe_load((EXAMPLES / "groups.yaml").read_text("utf-8")))
    async with sessionmaker.begin() as session:
        school = (await session.scalars(select(School))).one()
        try:
            await groups.import_groups(session, school, "t", spec, TODAY)
            raise AssertionError("unvetted staff were put on duty")
        except groups.GroupProblem as problem:
            assert problem.key == "staff_not_vetted"
