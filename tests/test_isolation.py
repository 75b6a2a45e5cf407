"""One deployment, two schools: what belongs to one school never shows in, or changes from, the other.

The story: 阳光实验小学 (A, examples/roster.csv) and 河畔小学 (B, RIVERSIDE below) share one
database. B reuses A's class names, student numbers and staff numbers on purpose (a district's
schools do), but none of A's people. Each school has a placed child with a signed agreement and a
pickup adult, applications waiting at each step, an offer, a group on duty with an unlisted adult
waiting at the gate, a notice asking for 「已阅」, an open survey, a comment and a placement
proposal.

Then B's parent, head teacher, staff on duty, committee member and admin press every kind of
button A's people were sent, naming A's ids (B never got those buttons: they are forged), and
type on wherever a press opened a step. Not one reply may name anything of A, and nothing of A
may change: every row of A, and every row anywhere that points at something of A, is compared
before and after (the audit log aside: refused attempts are recorded there on purpose).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import time_machine
import yaml
from sqlalchemy import Table, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import admin
from bot.config import normalise_database_url
from handlers.dialog import Links, Reply
from handlers.dispatch import Deps
from handlers.survey import TEXTS as SURVEY_TEXTS
from storage import feedback, groups, surveys, vetting
from storage.clock import utcnow
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import (
    AccountBinding,
    Agreement,
    Application,
    Base,
    ConversationState,
    Feedback,
    HandoverRequest,
    Notice,
    NoticeDelivery,
    Outbox,
    Person,
    PickupAdult,
    PlacementProposal,
    PlatformAccount,
    School,
    ServiceGroup,
    Student,
    Survey,
    SurveyInvitation,
    TermsVersion,
)
from tests.dialog import Chat, payloads, text_of
from tests.parts import postgres_url, require
from tests.school import EXAMPLES
from tests.test_agreements import read_all
from tests.test_dashboard import serve_dashboard, sign_in

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Wednesday in term (groups run Monday to Friday), mid-morning at the schools.
WEDNESDAY = datetime(2026, 12, 2, 9, 30, tzinfo=SHANGHAI)

A, B = "sunshine", "riverside"
RIVERSIDE = """\
kind,grade,class,number,name,phone,roles,guardian1_name,guardian1_relation,guardian1_phone,guardian2_name,guardian2_relation,guardian2_phone
student,一年级,一年级(1)班,S2026101,欧阳明月,,,欧阳志远,父亲,1111,慕容秋水,母亲,2222
student,一年级,一年级(1)班,S2026102,司马青云,,,司马长风,父亲,3333,,,
student,一年级,一年级(1)班,S2026103,上官雨桐,,,上官飞燕,母亲,4444,,,
student,一年级,一年级(1)班,S2026104,南宫星河,,,南宫月影,母亲,4545,,,
student,一年级,一年级(2)班,S2026201,诸葛安然,,,诸葛文渊,父亲,5555,,,
student,二年级,二年级(1)班,S2026301,东方晓岚,,,东方未明,父亲,6666,,,
person,,一年级(1)班,T001,皇甫若兰,7001,teacher,,,,,,
person,,一年级(2)班,T002,令狐清扬,7002,teacher,,,,,,
person,,,T005,公孙策远,7005,teacher;staff,,,,,,
person,,,S001,独孤晴川,7006,staff,,,,,,
person,,,S002,尉迟景行,7007,staff,,,,,,
person,,,A001,宇文校长,7008,admin,,,,,,
person,,,C001,长孙婉清,7009,committee,,,,,,
"""
# What each school writes in its own words (titles, comments, names typed in chat).
WORDS = {
    A: {
        "name": "阳光实验小学",
        "groups": ["一年级作业辅导", "二年级经典阅读", "阳光体育", "艺术社团"],
        "signer": "董静",
        "pickup": "王秀兰",
        "at_gate": "钱多多",
        "notice": ("阳光秋游通知", "周五去植物园秋游，请带水壶。"),
        "survey": "阳光课后服务满意度问卷",
        "comment": "阳光的点心很好吃",
    },
    B: {
        "name": "河畔小学",
        "groups": ["河畔书法", "河畔围棋", "河畔足球", "河畔合唱"],
        "signer": "欧阳志远",
        "pickup": "慕容老伯",
        "at_gate": "赫连铁树",
        "notice": ("河畔运动会通知", "下周三开运动会，请穿运动鞋。"),
        "survey": "河畔课后服务满意度问卷",
        "comment": "河畔的图书角很棒",
    },
}
# What the chat types after a forged press, in case the press opened a step.
FOLLOW_UPS = ("无名氏", "邻居", "13900001234")


# -- the district --------------------------------------------------------------------------------


@dataclass
class Side:
    """One school of the district: its chats and the ids its people were sent buttons for."""

    code: str
    school_id: int = 0
    chats: dict[str, Chat] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)


@dataclass
class District:
    deps: Deps
    a: Side
    b: Side
    secrets: set[str]  # what only A holds: no reply to B may contain any of it

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self.deps.sessionmaker


@pytest.fixture
def wednesday() -> Iterator[None]:
    """The clock on a school day in term, ticking (the roster, handovers and surveys need one)."""
    with time_machine.travel(WEDNESDAY, tick=True):
        yield


def group_file(code: str) -> dict[str, Any]:
    """examples/groups.yaml, under the school's own group names."""
    data = yaml.safe_load((EXAMPLES / "groups.yaml").read_text("utf-8"))
    for group, name in zip(data["groups"], WORDS[code]["groups"], strict=True):
        group["name"] = name
    return data


async def join(deps: Deps, user: str, code: str) -> Chat:
    chat = Chat(deps, user_id=user)
    assert "绑定" in text_of(await chat.say(f"/start {code}")), user
    return chat


async def invite(deps: Deps, school: str, role: str, number: str) -> Chat:
    """A chat bound through a real invite code (a parent: the first guardian of the student)."""
    request = (
        admin.InviteRequest(role=role, student=number)
        if role == "parent"
        else admin.InviteRequest(role=role, person=number)
    )
    issued = await admin.issue_invites(deps.sessionmaker, request, school_code=school)
    return await join(deps, f"{school}-{role}-{number}", issued[0].code)


async def application_of(sessionmaker: async_sessionmaker[AsyncSession], school_id: int, number: str) -> int:
    async with sessionmaker() as session:
        found = await session.scalar(
            select(Application.id)
            .join(Student, Student.id == Application.student_id)
            .where(Student.school_id == school_id, Student.student_no == number)
            .order_by(Application.id.desc())
        )
    assert found is not None, (school_id, number)
    return found


async def apply(parent: Chat) -> None:
    """All five days, nothing extra, no priority, no waiver: submitted."""
    await parent.say("/apply")
    for press in ("a:n", "a:n", "a:n", "a:n", "a:w:n"):
        await parent.press(press)
    await parent.press("a:ok")


async def open_school(deps: Deps, tmp: Path, code: str) -> Side:
    """Roster, terms, vetted staff and groups, then every kind of thing A's people get buttons for."""
    words, maker = WORDS[code], deps.sessionmaker
    roster, terms = EXAMPLES / "roster.csv", EXAMPLES / "terms.yaml"
    if code == B:  # B's own roster, and the example terms under B's title and contact
        roster, terms = tmp / "riverside.csv", tmp / "riverside.yaml"
        roster.write_text(RIVERSIDE, encoding="utf-8")
        content = yaml.safe_load((EXAMPLES / "terms.yaml").read_text("utf-8"))
        content["title"] = f"{words['name']}课后服务实施方案"
        content["contacts"] = [{"name": "宇文校长", "role": "课后服务负责人", "phone": "0571-7777 0001"}]
        terms.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    school, _ = await admin.import_roster_file(maker, roster, school_code=code, school_name=words["name"])
    await admin.publish_terms_file(maker, terms, school_code=code)
    async with maker.begin() as session:
        for number in ("T005", "S001", "S002"):
            person = await session.scalar(
                select(Person).where(Person.school_id == school.id, Person.person_no == number)
            )
            assert person is not None
            await vetting.record(
                session,
                person,
                moral_ok=True,
                health_ok=True,
                qualification_ok=True,
                checked_on=date(2026, 8, 1),
                checked_by="校长",
                valid_until=date(2027, 7, 31),
            )
        spec = groups.parse_groups(group_file(code))
        school_row = await session.get(School, school.id)
        assert school_row is not None
        await groups.import_groups(session, school_row, spec.term or "", spec, date(2026, 9, 1))

    side = Side(code, school.id)
    chats = side.chats
    chats["admin"] = await invite(deps, code, "admin", "A001")
    chats["head"] = await invite(deps, code, "teacher", "T001")
    chats["staff"] = await invite(deps, code, "teacher", "T005")
    chats["committee"] = await invite(deps, code, "committee", "C001")
    for n, number in enumerate(("S2026101", "S2026102", "S2026103", "S2026104"), start=1):
        chats[f"parent{n}"] = await invite(deps, code, "parent", number)
        await apply(chats[f"parent{n}"])
    app = {n: await application_of(maker, school.id, f"S202610{n}") for n in (1, 2, 3, 4)}

    # 1: approved by the class and the school, placed, signed, with a pickup adult.
    await chats["head"].press(f"r:ok:{app[1]}")
    await chats["admin"].press(f"r:sa:{app[1]}")
    proposal = await chats["admin"].say("/place")
    await chats["admin"].press(next(p for p in payloads(proposal) if p.startswith("q:ok:")))
    parent = chats["parent1"]
    await read_all(parent, app[1])
    await parent.press(f"g:s:{app[1]}")
    assert "已签署" in text_of(await parent.say(words["signer"]))
    listed = await parent.say("/pickup")
    await parent.press(next(p for p in payloads(listed) if p.startswith("k:add:")))
    for typed in (words["pickup"], "外婆", "13812345678"):
        await parent.say(typed)
    # 3: approved by the class; 4: offered a freed place; 2 stays submitted.
    await chats["head"].press(f"r:ok:{app[3]}")
    async with maker() as session:
        group_id = await session.scalar(select(Application.group_id).where(Application.id == app[1]))
    async with maker.begin() as session:
        await session.execute(
            update(Application)
            .where(Application.id == app[4])
            .values(status="offered", group_id=group_id, offer_expires_at=utcnow() + timedelta(hours=48))
        )

    # Staff on duty: an adult not on the list is at the gate for child 1.
    roster_today = await chats["staff"].say("/today")
    child = next(p for p in payloads(roster_today) if p.startswith("h:c:"))
    _, _, group, student = child.split(":")
    await chats["staff"].press(f"h:n:{group}:{student}")
    await chats["staff"].say(words["at_gate"])
    assert "家长" in text_of(await chats["staff"].say("表舅"))
    # ... who is sent away; the grandmother collects the child (the request stays unanswered).
    menu = await chats["staff"].press(child)
    assert "已交接" in text_of(
        await chats["staff"].press(next(p for p in payloads(menu) if p.startswith("h:h:")))
    )

    # A notice to the whole school asking for 「已阅」, and a comment.
    title, body = words["notice"]
    for step in ("/notice", title, body):
        await chats["admin"].say(step)
    for press in ("n:t:school", "n:w:now", "n:h:24", "n:u:0"):
        await chats["admin"].press(press)
    await chats["admin"].press("n:y:go")
    await parent.say("/feedback")
    await parent.press("f:n")
    await parent.say(words["comment"])
    # A placement proposal waiting for the admin.
    await chats["admin"].say("/place")

    async with maker() as session:
        ids = side.ids
        ids.update({f"app{n}": app[n] for n in app})
        ids["group"], ids["student"] = int(group), int(student)
        ids["adult"] = await session.scalar(
            select(PickupAdult.id).where(PickupAdult.student_id == int(student))
        )
        ids["request"] = await session.scalar(
            select(HandoverRequest.id).where(HandoverRequest.student_id == int(student))
        )
        ids["agreement"] = await session.scalar(
            select(Agreement.id).where(Agreement.application_id == app[1])
        )
        ids["notice"] = await session.scalar(select(Notice.id).where(Notice.school_id == school.id))
        ids["delivery"] = await session.scalar(
            select(NoticeDelivery.id)
            .join(PlatformAccount, PlatformAccount.id == NoticeDelivery.account_id)
            .where(PlatformAccount.external_id == parent.user_id)
        )
        ids["proposal"] = await session.scalar(
            select(PlacementProposal.id)
            .where(PlacementProposal.school_id == school.id, PlacementProposal.status == "proposed")
            .order_by(PlacementProposal.id.desc())
        )
        statuses = {
            n: await session.scalar(select(Application.status).where(Application.id == app[n])) for n in app
        }
    assert all(ids.values()), ids
    assert statuses == {1: "placed", 2: "submitted", 3: "class_approved", 4: "offered"}, statuses
    return side


async def schedule_survey(
    sessionmaker: async_sessionmaker[AsyncSession], code: str, title: str, audience: str = "school"
) -> int:
    """A named survey of three questions, open now until Friday (stored as the CLI stores one)."""
    local = utcnow().astimezone(SHANGHAI)
    spec = surveys.parse_spec(
        {
            "title": title,
            "anonymous": False,
            "audience": audience,
            "opens": local.strftime("%Y-%m-%d %H:%M"),
            "closes": (local + timedelta(days=2)).strftime("%Y-%m-%d %H:%M"),
            "questions": [
                {"text": "您对课后服务满意吗？", "type": "single", "options": ["满意", "一般"]},
                {"text": "请为看护质量打分", "type": "rating"},
                {"text": "其他建议", "type": "text", "required": False},
            ],
        }
    )
    async with sessionmaker.begin() as session:
        school = await session.scalar(select(School).where(School.code == code))
        assert school is not None
        survey = await surveys.schedule_survey(session, school, spec, utcnow())
        return survey.id


async def open_surveys(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as session:
        await surveys.open_due(session, utcnow() + timedelta(minutes=1), SURVEY_TEXTS)


def _words_of_the_product() -> str:
    """Every template and label: a string of A found in these is no proof of a leak."""
    found = [
        p.read_text("utf-8")
        for p in (ROOT / "messages").rglob("*")
        if p.is_file() and p.suffix in (".yaml", ".txt", ".html")
    ]
    return "\n".join(found)


async def secrets_of(sessionmaker: async_sessionmaker[AsyncSession], a: Side, b: Side) -> set[str]:
    """Names, titles and texts that only A holds, and the path of A's agreement copy."""
    async with sessionmaker() as session:

        async def strings(school_id: int) -> set[str]:
            found: set[str] = set()
            for column, owner in (
                (Student.name, Student.school_id),
                (Person.name, Person.school_id),
                (ServiceGroup.name, ServiceGroup.school_id),
                (PickupAdult.name, PickupAdult.school_id),
                (HandoverRequest.adult_name, HandoverRequest.school_id),
                (Notice.title, Notice.school_id),
                (Notice.body, Notice.school_id),
                (Survey.title, Survey.school_id),
                (Feedback.text, Feedback.school_id),
                (School.name, School.id),
            ):
                found |= set(await session.scalars(select(column).where(owner == school_id)))
            return found

        mine, theirs = await strings(a.school_id), await strings(b.school_id)
        # B published the example terms too: their activity names are B's words as well.
        theirs |= {
            str(c)
            for c in await session.scalars(
                select(TermsVersion.content).where(TermsVersion.school_id == b.school_id)
            )
        }
        agreement = await session.get(Agreement, a.ids["agreement"])
        assert agreement is not None
    product = _words_of_the_product()
    kept = {s for s in mine if not any(s in t for t in theirs) and s not in product}
    assert len(kept) > 60, "the story should give A plenty to leak"
    return kept | {f"agreement-{agreement.id}-{agreement.sha256[:16]}"}


@pytest.fixture
async def district(deps: Deps, tmp_path: Path, wednesday: None) -> District:
    return await build_district(deps, tmp_path)


async def build_district(deps: Deps, tmp: Path) -> District:
    a = await open_school(deps, tmp, A)
    b = await open_school(deps, tmp, B)
    for side in (a, b):
        side.ids["survey"] = await schedule_survey(deps.sessionmaker, side.code, WORDS[side.code]["survey"])
    await open_surveys(deps.sessionmaker)
    return District(deps, a, b, await secrets_of(deps.sessionmaker, a, b))


# -- what belongs to A, row by row ---------------------------------------------------------------


async def footprint(sessionmaker: async_sessionmaker[AsyncSession], school_id: int) -> dict[str, set[str]]:
    """Every row of the school, and every row of any table that points at one of its rows or
    accounts (a row B wrote about A's child counts too). The audit log is left out."""
    tables = [t for t in Base.metadata.sorted_tables if t.name != "audit_log"]
    owned: dict[str, set[Any]] = {}
    async with sessionmaker() as session:
        for table in tables:
            if "school_id" in table.c and "id" in table.c:
                owned[table.name] = set(
                    await session.scalars(select(table.c.id).where(table.c.school_id == school_id))
                )
        owned["platform_account"] = set(
            await session.scalars(
                select(AccountBinding.account_id).where(AccountBinding.school_id == school_id)
            )
        )
        found: dict[str, set[str]] = {}
        for table in tables:
            rows = (await session.execute(select(table))).all()
            found[table.name] = {repr(tuple(row)) for row in rows if _belongs(table, row, school_id, owned)}
    return found


def _belongs(table: Table, row: Any, school_id: int, owned: dict[str, set[Any]]) -> bool:
    values = row._mapping
    if "school_id" in table.c and values["school_id"] == school_id:
        return True
    for column in table.c:
        for fk in column.foreign_keys:
            if values[column.name] in owned.get(fk.column.table.name, ()):
                return True
    # A's accounts themselves (platform rows carry no school).
    return table.name == "platform_account" and values["id"] in owned[table.name]


def what_b_sees(replies: list[Reply]) -> str:
    """Everything a reply shows or carries: text, button labels, links and payloads, files."""
    parts = []
    for reply in replies:
        parts.append(reply.text)
        parts += [f"{b.label} {b.url or ''} {b.payload or ''}" for row in reply.buttons for b in row]
        parts += [f"{f.filename} {f.path}" for f in (reply.document, reply.photo) if f is not None]
    return "\n".join(parts)


def leaks(district: District, replies: list[Reply], what: str) -> list[str]:
    """What of A the replies show, as one line naming the action; empty when nothing."""
    seen = what_b_sees(replies)
    leaked = sorted(s for s in district.secrets if s in seen)
    return [f"{what} showed {leaked}: {seen!r}"] if leaked else []


def assert_nothing_of_a(district: District, replies: list[Reply], what: str) -> None:
    found = leaks(district, replies, what)
    assert not found, found[0]


# -- (a) the chat --------------------------------------------------------------------------------


def forged(a: dict[str, int], b: dict[str, int]) -> list[str]:
    """Every button payload kind that names an id, filled with A's ids (and, where a payload names
    two things, B's own group with A's child or A's adult: a mix B's staff could type)."""
    sub, ca, placed, off = a["app2"], a["app3"], a["app1"], a["app4"]
    st, adult, req, ag, bg, bst = a["student"], a["adult"], a["request"], a["group"], b["group"], b["student"]
    sv = a["survey"]
    return [
        *(f"r:{x}:{sub}" for x in ("ok", "ou", "no")),
        *(f"r:{x}:{ca}" for x in ("sa", "sw", "sr")),
        *(f"w:{x}:{placed}" for x in ("a", "y", "n")),
        f"o:y:{off}",
        f"o:n:{off}",
        f"n:a:{a['delivery']}",
        f"n:o:{a['delivery']}",
        f"n:v:{a['notice']}",
        f"n:x:{a['notice']}",
        *(f"g:{x}:{placed}" for x in ("r", "s", "d", "dy")),
        f"g:p:{placed}:2",
        f"g:c:{a['agreement']}",
        *(f"k:{x}:{st}" for x in ("s", "add", "one", "al", "ay", "ar")),
        f"k:rm:{adult}",
        f"k:ok:{req}",
        f"k:no:{req}",
        f"b:s:{st}",
        f"h:ap:{ag}",
        f"h:ro:{ag}",
        *(f"h:{x}:{g}:{st}" for g in (ag, bg) for x in ("c", "ab", "n", "al")),
        *(f"h:h:{g}:{s}:{adult}" for g, s in ((ag, st), (bg, st), (bg, bst))),
        *(f"h:r:{g}:{st}:{req}" for g in (ag, bg)),
        f"q:ok:{a['proposal']}",
        f"q:x:{a['proposal']}",
        f"v:o:{sv}",
        f"v:x:{sv}",
        f"v:q:{sv}:1",
        f"v:n:{sv}:1",
        f"v:s:{sv}:3",
        f"v:a:{sv}:1:0",
        f"v:a:{sv}:2:5",
        f"v:t:{sv}:1:1",
        f"f:g:n:{ag}",
        f"f:g:a:{ag}",
        "d:new",
    ]


async def in_a_step(sessionmaker: async_sessionmaker[AsyncSession], chat: Chat) -> bool:
    async with sessionmaker() as session:
        account = select(PlatformAccount.id).where(
            PlatformAccount.platform == chat.platform, PlatformAccount.external_id == chat.user_id
        )
        return (
            await session.scalar(
                select(ConversationState.flow).where(ConversationState.account_id.in_(account))
            )
            is not None
        )


ACTORS = ("parent1", "head", "staff", "committee", "admin")


async def test_b_pressing_a_buttons_sees_nothing_and_changes_nothing(district: District):
    before = await footprint(district.sessionmaker, district.a.school_id)
    problems: list[str] = []
    for role in ACTORS:
        chat = district.b.chats[role]
        for payload in forged(district.a.ids, district.b.ids):
            replies = await chat.press(payload)
            assert replies, (role, payload)
            problems += leaks(district, replies, f"B's {role} pressing {payload}")
            if await in_a_step(district.sessionmaker, chat):
                for typed in FOLLOW_UPS:
                    problems += leaks(district, await chat.say(typed), f"B's {role} typing after {payload}")
                await chat.say("/cancel")
    after = await footprint(district.sessionmaker, district.a.school_id)
    problems += [f"{t} of A changed: {before[t] ^ after[t]}" for t in before if before[t] != after[t]]
    assert not problems, "\n".join(problems)


async def test_b_joining_with_an_a_invite_is_refused(district: District):
    issued = await admin.issue_invites(
        district.sessionmaker, admin.InviteRequest(role="parent", student="S2026105"), school_code=A
    )
    before = await footprint(district.sessionmaker, district.a.school_id)
    replies = await district.b.chats["parent1"].say(f"/start {issued[0].code}")
    assert "另一所学校" in text_of(replies)
    assert_nothing_of_a(district, replies, "B's parent using A's invite")
    assert await footprint(district.sessionmaker, district.a.school_id) == before


COMMANDS = {
    "parent1": (
        "/status",
        "/notices",
        "/agreement",
        "/pickup",
        "/survey",
        "/withdraw",
        "/feedback",
        "/absent",
    ),
    "head": ("/pending", "/notices", "/survey"),
    "staff": ("/today", "/notices"),
    "committee": ("/survey", "/notices", "/dashboard"),
    "admin": ("/pending", "/groups", "/notices", "/place", "/today", "/survey", "/help"),
}


async def test_b_commands_list_only_b(district: District):
    """/status, /notices, /agreement, /today, /groups, /survey and the rest name B's things only,
    and do name them (an empty answer would prove nothing)."""
    b_words = WORDS[B]
    seen: dict[tuple[str, str], str] = {}
    for role, commands in COMMANDS.items():
        chat = district.b.chats[role]
        for command in commands:
            replies = await chat.say(command)
            assert_nothing_of_a(district, replies, f"B's {role} sending {command}")
            seen[role, command] = what_b_sees(replies)
            await chat.say("/cancel")
    assert "欧阳明月" in seen["parent1", "/status"]
    assert b_words["notice"][0] in seen["parent1", "/notices"]
    assert b_words["notice"][0] in seen["admin", "/notices"]
    assert "欧阳明月" in seen["parent1", "/agreement"]
    assert b_words["pickup"] in seen["parent1", "/pickup"]
    assert b_words["survey"] in seen["parent1", "/survey"]
    assert "欧阳明月" in seen["staff", "/today"] and b_words["groups"][0] in seen["staff", "/today"]
    assert all(name in seen["admin", "/groups"] for name in b_words["groups"])
    assert "司马青云" in seen["head", "/pending"] and "上官雨桐" in seen["admin", "/pending"]


# -- (d) notices and surveys ---------------------------------------------------------------------


async def accounts_of(sessionmaker: async_sessionmaker[AsyncSession], school_id: int) -> set[int]:
    async with sessionmaker() as session:
        return set(
            await session.scalars(
                select(AccountBinding.account_id).where(AccountBinding.school_id == school_id)
            )
        )


async def send_notice(chat: Chat, title: str, audience: list[str]) -> None:
    for step in ("/notice", title, "正文"):
        await chat.say(step)
    for press in [*audience, "n:w:now", "n:h:0", "n:u:1", "n:y:go"]:
        await chat.press(press)


async def test_b_notices_and_surveys_reach_only_b(district: District):
    """Notices of B to its parents, the whole school, a class and a grade whose names A has too;
    surveys of B to the same audiences and to a group; B's feedback round: only B's people."""
    maker = district.sessionmaker
    b_accounts = await accounts_of(maker, district.b.school_id)
    before = await footprint(maker, district.a.school_id)
    async with maker() as session:
        first_outbox = int(await session.scalar(select(func.max(Outbox.id))) or 0)
        # 一年级(1)班 of B (A has a class of that name, in a grade of the same name, too).
        b_class = await session.scalar(
            select(Student.class_id).where(
                Student.school_id == district.b.school_id, Student.student_no == "S2026101"
            )
        )
    b_admin = district.b.chats["admin"]
    titles = {
        "河畔家长会通知": ["n:t:role", "n:r:parent"],
        "河畔全校通知": ["n:t:school"],
        "河畔一班通知": ["n:t:class", f"n:c:{b_class}"],
        "河畔年级通知": ["n:t:grade", f"n:g:{b_class}"],
    }
    for title, audience in titles.items():
        await send_notice(b_admin, title, audience)
    audiences = (
        "school",
        "role:parent",
        "class:一年级(1)班",
        "grade:一年级",
        f"group:{WORDS[B]['groups'][0]}",
    )
    for audience in audiences:
        await schedule_survey(maker, B, f"河畔问卷 {audience}", audience)
    async with maker.begin() as session:
        school = await session.get(School, district.b.school_id)
        assert school is not None
        rounds = await feedback.start_rounds(
            session, school, utcnow(), days=7, anonymous=True, rating_text=str, comment_text="意见"
        )
    assert rounds, "B has a child placed: its group gets a round"
    await open_surveys(maker)

    async with maker() as session:
        b_notices = list(await session.scalars(select(Notice.id).where(Notice.title.in_(titles))))
        delivered = set(
            await session.scalars(
                select(NoticeDelivery.account_id).where(NoticeDelivery.notice_id.in_(b_notices))
            )
        )
        b_surveys = list(
            await session.scalars(
                select(Survey.id).where(Survey.school_id == district.b.school_id, Survey.status == "open")
            )
        )
        invited = set(
            await session.scalars(
                select(SurveyInvitation.person_id).where(SurveyInvitation.survey_id.in_(b_surveys))
            )
        )
        invited_schools = set(await session.scalars(select(Person.school_id).where(Person.id.in_(invited))))
        queued = set(await session.scalars(select(Outbox.account_id).where(Outbox.id > first_outbox)))
    assert len(b_notices) == len(titles) and len(b_surveys) == 1 + len(audiences) + len(rounds)
    assert delivered and delivered <= b_accounts
    assert invited and invited_schools == {district.b.school_id}
    assert queued and queued <= b_accounts, "a notice or survey of B was queued to an account outside B"
    assert await footprint(maker, district.a.school_id) == before


# -- (b) the dashboard ---------------------------------------------------------------------------


async def test_b_dashboard_pages_and_downloads_hold_nothing_of_a(
    sessionmaker, tmp_path: Path, wednesday: None
):
    """Survey pages, charts and survey downloads of another school answer 404 (test_dashboard.py);
    here: the overview, the feedback page and its downloads, and the survey form of B."""
    async with serve_dashboard(sessionmaker) as site:
        district = await build_district(site.deps, tmp_path)
        replies = await district.b.chats["committee"].say("/dashboard")
        url = next(b.url for r in replies for row in r.buttons for b in row if b.url)
        browser = await sign_in(site, url)
        for path in (
            "/dashboard",
            "/dashboard/feedback",
            "/dashboard/feedback.csv",
            "/dashboard/surveys/new",
        ):
            async with browser.get(f"{site.base}{path}") as r:
                assert r.status == 200, path
                page = await r.text()
            leaked = sorted(s for s in district.secrets if s in page)
            assert not leaked, f"{path} showed {leaked} of school A"
        async with browser.get(f"{site.base}/dashboard/feedback") as r:
            assert WORDS[B]["comment"] in await r.text()
        async with browser.get(f"{site.base}/dashboard/feedback.xlsx") as r:
            assert r.status == 200
            book = openpyxl.load_workbook(io.BytesIO(await r.read()))
        cells = "\n".join(str(c) for sheet in book for row in sheet.iter_rows(values_only=True) for c in row)
        assert WORDS[B]["comment"] in cells
        assert not sorted(s for s in district.secrets if s in cells)
        async with browser.get(f"{site.base}/dashboard/surveys/{district.a.ids['survey']}") as r:
            assert r.status == 404


# -- (c) the command line ------------------------------------------------------------------------


@dataclass
class CliDatabase:
    url: str  # as an operator would set DATABASE_URL
    data_dir: Path


@pytest.fixture(params=["sqlite", "postgres"])
async def cli_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CliDatabase]:
    """A database the console script can open by DATABASE_URL: a SQLite file, or a fresh
    PostgreSQL database (a schema on the search path cannot be named in a URL for asyncpg)."""
    data = tmp_path / "data"
    if request.param == "sqlite":
        yield CliDatabase(f"sqlite:///{data / 'afterschool.sqlite3'}", data)
        return
    base = postgres_url()
    require(base is not None, "TEST_DATABASE_URL is not set (PostgreSQL tests need it)")
    assert base is not None
    name = f"t_{uuid.uuid4().hex[:12]}"
    server = create_engine(normalise_database_url(base), isolation_level="AUTOCOMMIT")
    async with server.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield CliDatabase(base.rsplit("/", 1)[0] + f"/{name}", data)
    finally:
        async with server.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await server.dispose()


def afterschool(db: CliDatabase, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_USERNAME")}
    # PYTHONPATH: this tree's code, even where another checkout is the installed one.
    env.update(DATABASE_URL=db.url, DATA_DIR=str(db.data_dir), DEFAULT_LOCALE="zh_CN", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


async def test_cli_exports_for_b_hold_nothing_of_a(
    cli_database: CliDatabase, tmp_path: Path, wednesday: None
):
    """The console script as a district's operator runs it: `--school` picks the school, and its
    lists, the agreement records and the notice report's CSV hold nothing of the other."""
    engine = create_engine(normalise_database_url(cli_database.url))
    try:
        await migrate(engine)
        maker = create_sessionmaker(engine)
        district = await build_district(
            Deps(sessionmaker=maker, links=Links("http://school.test", "bot")), tmp_path
        )
        async with maker() as session:
            b_agreements = set(
                await session.scalars(select(Agreement.id).where(Agreement.school_id == district.b.school_id))
            )
    finally:
        await engine.dispose()

    def run(*args: str) -> str:
        done = afterschool(cli_database, tmp_path, *args)
        assert done.returncode == 0, (args, done.stderr)
        leaked = sorted(s for s in district.secrets if s in done.stdout)
        assert not leaked, f"{args} printed {leaked} of school A"
        return done.stdout

    # Without --school the commands refuse to guess between the two schools.
    for args in (("agreements", "export"), ("survey", "list"), ("groups", "list")):
        refused = afterschool(cli_database, tmp_path, *args)
        assert refused.returncode == 2 and "--school" in refused.stderr, (args, refused.stderr)

    assert WORDS[B]["survey"] in run("survey", "list", "--school", B)
    assert WORDS[B]["groups"][0] in run("groups", "list", "--school", B)
    run("agreements", "export", "--school", B, "--dir", "records")
    records = tmp_path / "records"
    with (records / "index.csv").open(encoding="utf-8-sig") as fh:
        index = list(csv.DictReader(fh))
    assert {int(r["id"]) for r in index} == b_agreements
    for page in records.iterdir():
        content = page.read_text("utf-8")
        leaked = sorted(s for s in district.secrets if s in content)
        assert not leaked, f"{page.name} holds {leaked} of school A"
    assert any(WORDS[B]["signer"] in p.read_text("utf-8") for p in records.glob("*.html"))

    run("notice", "report", str(district.b.ids["notice"]), "--csv", "report.csv")
    report = (tmp_path / "report.csv").read_text("utf-8-sig")
    assert WORDS[B]["signer"] in report and "司马长风" in report
    leaked = sorted(s for s in district.secrets if s in report)
    assert not leaked, f"the report of B's notice names {leaked} of school A"
