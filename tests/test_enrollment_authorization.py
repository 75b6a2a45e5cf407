"""Who may do what with an application: every role against every action, from the database.

Allowed actions change the application; refused ones change nothing and leave an audit row.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.models import Application, AuditLog
from tests.dialog import Chat
from tests.school import load_example_school, parent_code, person_code
from tests.test_enrollment_flow import setup_groups

# (who, how they join): the child is S2026101 in 一年级(1)班 (head teacher T001).
ROLES = {
    "parent": ("parent", "S2026101"),
    "other_parent": ("parent", "S2026201"),
    "head_teacher": ("teacher", "T001"),
    "other_teacher": ("teacher", "T002"),
    "staff": ("staff", "S001"),
    "committee": ("committee", "C001"),
    "admin": ("admin", "A001"),
    "stranger": (None, None),
}
# action: (status the application is in, button payload, status after an allowed press, who may)
ACTIONS = {
    "class_approve": ("submitted", "r:ok:{id}", "class_approved", {"head_teacher", "admin"}),
    "class_approve_unconfirmed": ("submitted", "r:ou:{id}", "class_approved", {"head_teacher", "admin"}),
    "school_approve": ("class_approved", "r:sa:{id}", "approved", {"admin"}),
    "withdraw": ("approved", "w:y:{id}", "withdrawn", {"parent"}),
    "accept_offer": ("offered", "o:y:{id}", "placed", {"parent"}),
    "decline_offer": ("offered", "o:n:{id}", "withdrawn", {"parent"}),
}


async def actor(deps, sessionmaker, role: str) -> Chat:
    kind, number = ROLES[role]
    chat = Chat(deps, user_id=f"u-{role}")
    if kind == "parent":
        await chat.say(f"/start {await parent_code(sessionmaker, number)}")
    elif kind is not None:
        await chat.say(f"/start {await person_code(sessionmaker, kind, number)}")
    return chat


async def application_in(deps, sessionmaker, status: str) -> int:
    parent = Chat(deps, user_id="applicant")
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    await parent.say("/apply")
    for press in ("a:n", "a:n", "a:n", "a:n", "a:w:n", "a:ok"):
        await parent.press(press)
    async with sessionmaker.begin() as session:
        app = (await session.scalars(select(Application))).one()
        app.status = status
        if status == "offered":
            app.group_id = 1
        return app.id


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ACTIONS)
async def test_role_against_action(deps, sessionmaker, role: str, action: str):
    await load_example_school(sessionmaker)
    await setup_groups(sessionmaker)
    before, payload, after, allowed = ACTIONS[action]
    app_id = await application_in(deps, sessionmaker, before)
    chat = await actor(deps, sessionmaker, role)
    replies = await chat.press(payload.format(id=app_id))
    assert replies and replies[0].text
    async with sessionmaker() as session:
        status = await session.scalar(select(Application.status).where(Application.id == app_id))
        refusals = await session.scalar(
            # refused by role (storage.authz) or by scope (the application's own checks)
            select(func.count(AuditLog.id)).where(
                AuditLog.action.in_(["application.refused", "authz.refused"])
            )
        )
    if role in allowed:
        assert status == after
        assert refusals == 0
    else:
        assert status == before, f"{role} changed the application with {action}"
        assert refusals == 1, f"{role}'s refused {action} was not audited"


@pytest.mark.parametrize("role", ROLES)
async def test_admin_commands_are_for_admins(deps, sessionmaker, role: str):
    await load_example_school(sessionmaker)
    await setup_groups(sessionmaker)
    chat = await actor(deps, sessionmaker, role)
    for command in ("/place", "/groups"):
        text = (await chat.say(command))[0].text
        assert ("只有学校管理员" in text) == (role != "admin"), (role, command, text)
