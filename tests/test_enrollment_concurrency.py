"""Races on PostgreSQL: two admins and one last seat; a withdrawal racing an approval."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from storage import enrollment
from storage.clock import utcnow
from storage.enrollment import Outcome
from storage.models import Application, Person, ServiceGroup
from tests.school import load_example_school
from tests.test_enrollment_authorization import application_in
from tests.test_enrollment_flow import setup_groups

# Row locks are what is tested here; SQLite serialises every writer anyway, so PostgreSQL only.
pytestmark = pytest.mark.parametrize("engine", ["postgres"], indirect=True)


async def admin_ids(sessionmaker) -> list[int]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Person.id).where(Person.person_no.in_(["A001", "A002"]))))


async def test_two_admins_placing_into_the_last_seat_place_one_child(deps, sessionmaker):
    await load_example_school(sessionmaker)
    await setup_groups(sessionmaker, capacity=1)
    first = await application_in(deps, sessionmaker, "approved")
    async with sessionmaker.begin() as session:  # a second child, approved too
        other = Application(
            **{
                c.name: getattr(await session.get(Application, first), c.name)
                for c in Application.__table__.columns
                if c.name != "id"
            }
        )
        other.student_id += 1
        session.add(other)
        await session.flush()
        second = other.id
        group_id = (await session.scalars(select(ServiceGroup.id).where(ServiceGroup.capacity == 1))).one()
    admin_a, admin_b = await admin_ids(sessionmaker)
    go = asyncio.Event()

    async def place(app_id: int, admin: int) -> Outcome:
        async with sessionmaker.begin() as session:
            await go.wait()
            result = await enrollment.place(session, app_id, group_id, [admin], utcnow())
            await asyncio.sleep(0.05)  # hold the lock a moment, so the other really waits
            return result.outcome

    tasks = [asyncio.create_task(place(first, admin_a)), asyncio.create_task(place(second, admin_b))]
    await asyncio.sleep(0.05)
    go.set()
    outcomes = sorted(o.value for o in await asyncio.gather(*tasks))
    assert outcomes == ["full", "ok"]
    async with sessionmaker() as session:
        placed = list(await session.scalars(select(Application).where(Application.status == "placed")))
    assert len(placed) == 1


@pytest.mark.parametrize("attempt", range(5))
async def test_a_withdrawal_racing_an_approval_leaves_it_withdrawn(deps, sessionmaker, attempt):
    await load_example_school(sessionmaker)
    await setup_groups(sessionmaker)
    app_id = await application_in(deps, sessionmaker, "class_approved")
    admin = (await admin_ids(sessionmaker))[0]
    async with sessionmaker() as session:
        parent = (await session.scalars(select(Person.id).where(Person.person_no == "S2026101-G1"))).one()

    async def approve() -> Outcome:
        async with sessionmaker.begin() as session:
            return (
                await enrollment.school_decide(session, app_id, [admin], None, approve=True, now=utcnow())
            ).outcome

    async def withdraw() -> Outcome:
        async with sessionmaker.begin() as session:
            return (await enrollment.withdraw(session, app_id, [parent], None, utcnow())).outcome

    order = [approve(), withdraw()] if attempt % 2 else [withdraw(), approve()]
    outcomes = await asyncio.gather(*order)
    assert Outcome.OK in outcomes
    async with sessionmaker() as session:
        app = await session.get(Application, app_id)
        assert app is not None and app.status == "withdrawn" and app.group_id is None
