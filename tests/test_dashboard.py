"""The committee dashboard: one-time links, sessions, school scoping, pages, exports and the form.

Real HTTP against the real routes (bot.dashboard mounted as bot.app.build_web_app mounts it), on
SQLite and PostgreSQL; links come from the real chat flow wherever a chat is the natural source.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import openpyxl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import admin, dashboard
from bot import web as web_pages
from handlers.dialog import Links, Reply
from handlers.dispatch import Deps
from storage import dashboard as dash
from storage import surveys
from storage.clock import utcnow
from storage.models import (
    AuditLog,
    DashboardLink,
    DashboardSession,
    Feedback,
    Person,
    PersonRole,
    School,
    ServiceGroup,
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyResponse,
)
from tests.dialog import Chat, text_of
from tests.school import EXAMPLES, load_example_school

SCHOOL_A, SCHOOL_B = "sunshine", "riverside"
# (class, choice of question 1, rating of question 2, text of question 3) per respondent
ANSWERS = [
    ("一年级(1)班", 0, 5, "老师很耐心"),
    ("一年级(1)班", 0, 4, ""),
    ("一年级(1)班", 1, 3, "希望多些户外活动"),
    ("一年级(2)班", 2, 2, ""),
    ("一年级(2)班", 0, 5, ""),
]
INVITED = 8


# -- the app and the data ------------------------------------------------------------------------


def dashboard_app(deps: Deps) -> web.Application:
    """The web app as bot.app.build_web_app assembles it: public pages, then the dashboard."""
    app = web.Application()
    app[web_pages.SESSIONMAKER] = deps.sessionmaker
    app[web_pages.DEFAULT_LOCALE] = deps.default_locale
    web_pages.add_routes(app)
    dashboard.add_routes(app, deps)
    return app


@dataclass
class Site:
    """The dashboard served on a free port; `browser()` gives a client with its own cookies."""

    deps: Deps
    base: str
    clients: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self.deps.sessionmaker

    def browser(self) -> aiohttp.ClientSession:
        client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.clients.append(client)
        return client


@contextlib.asynccontextmanager
async def serve_dashboard(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Site]:
    """Serve until the block ends; the chat's links point at this server (Links is mutable)."""
    links = Links("http://127.0.0.1", "afterschool_test_bot")
    deps = Deps(sessionmaker=sessionmaker, links=links, default_locale="zh_CN")
    server = TestServer(dashboard_app(deps), host="127.0.0.1")
    await server.start_server()
    links.web_base = str(server.make_url("")).rstrip("/")
    site = Site(deps, links.web_base)
    try:
        yield site
    finally:
        for client in site.clients:
            await client.close()
        await server.close()


@pytest.fixture
async def site(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Site]:
    """Two schools from the example roster (A with its terms), served."""
    await load_example_school(sessionmaker)
    await admin.import_roster_file(
        sessionmaker, EXAMPLES / "roster.csv", school_code=SCHOOL_B, school_name="河畔小学"
    )
    async with serve_dashboard(sessionmaker) as served:
        yield served


async def school_of(session: AsyncSession, code: str) -> School:
    found = await session.scalar(select(School).where(School.code == code))
    assert found is not None, code
    return found


async def person_of(sessionmaker: async_sessionmaker[AsyncSession], school: str, person_no: str) -> Person:
    async with sessionmaker() as session:
        found = await session.scalar(
            select(Person)
            .join(School, School.id == Person.school_id)
            .where(School.code == school, Person.person_no == person_no)
        )
    assert found is not None, (school, person_no)
    return found


async def chat_as(site: Site, role: str, person_no: str, school: str = SCHOOL_A, user: str = "") -> Chat:
    """A chat bound to a roster person through a real invite code (a parent: by student number,
    as the first guardian)."""
    request = (
        admin.InviteRequest(role=role, student=person_no)
        if role == "parent"
        else admin.InviteRequest(role=role, person=person_no)
    )
    issued = await admin.issue_invites(site.sessionmaker, request, school_code=school)
    chat = Chat(site.deps, user_id=user or f"{school}-{person_no}")
    assert "绑定" in text_of(await chat.say(f"/start {issued[0].code}"))
    return chat


def url_buttons(replies: list[Reply]) -> list[str]:
    return [b.url for r in replies for row in r.buttons for b in row if b.url]


async def link_from_chat(chat: Chat) -> str:
    """The sign-in URL the bot's reply to /dashboard carries."""
    urls = url_buttons(await chat.say("/dashboard"))
    assert len(urls) == 1, urls
    return urls[0]


async def issue(site: Site, school: str, person_no: str, now: datetime | None = None) -> str:
    """A link issued straight from storage (for times the chat cannot choose)."""
    person = await person_of(site.sessionmaker, school, person_no)
    async with site.sessionmaker.begin() as session:
        token = await dash.issue_link(
            session, person.school_id, person.id, site.deps.secret_key, now or utcnow()
        )
    return f"{site.base}/dashboard/login?token={token}"


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


async def sign_in(site: Site, url: str) -> aiohttp.ClientSession:
    browser = site.browser()
    async with browser.get(url) as r:
        assert r.status == 200, await r.text()
        assert r.url.path == "/dashboard"
    return browser


async def seed_survey(
    sessionmaker: async_sessionmaker[AsyncSession],
    school_code: str = SCHOOL_A,
    *,
    title: str = "课后服务满意度调查",
    anonymous: bool = False,
    answers: list[tuple[str, int, int, str]] = ANSWERS,
) -> int:
    """A survey scheduled through storage.surveys, opened, and answered by writing the rows an
    answering parent's chat would write (submitted responses, counted answers)."""
    async with sessionmaker.begin() as session:
        school = await school_of(session, school_code)
        now = utcnow()
        local = now.astimezone(ZoneInfo(school.timezone))
        spec = surveys.parse_spec(
            {
                "title": title,
                "anonymous": anonymous,
                "audience": "school",
                "opens": (local + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"),
                "closes": (local + timedelta(days=3)).strftime("%Y-%m-%d %H:%M"),
                "questions": [
                    {"text": "您对课后服务满意吗？", "type": "single", "options": ["满意", "一般", "不满意"]},
                    {"text": "请为看护质量打分", "type": "rating"},
                    {"text": "其他建议", "type": "text", "required": False},
                ],
            }
        )
        survey = await surveys.schedule_survey(session, school, spec, now)
        survey.status = "open"
        guardians = list(
            await session.scalars(
                select(Person.id)
                .where(Person.school_id == school.id, Person.person_no.like("%-G1"))
                .order_by(Person.id)
                .limit(INVITED)
            )
        )
        survey.invited_people = len(guardians)
        q1, q2, q3 = (q.id for q in survey.questions)
        for n, person_id in enumerate(guardians):
            answered = n < len(answers)
            session.add(
                SurveyInvitation(
                    school_id=school.id, survey_id=survey.id, person_id=person_id, responded=answered
                )
            )
            if not answered:
                continue
            segment, choice, rating, text = answers[n]
            response = SurveyResponse(
                school_id=school.id,
                survey_id=survey.id,
                respondent_key=f"seed-{n}",
                person_id=None if anonymous else person_id,
                segment=segment,
                submitted=True,
                submitted_at=None if anonymous else now,
            )
            session.add(response)
            await session.flush()
            rows = [(q1, choice, None), (q2, rating, None)] + ([(q3, None, text)] if text else [])
            for question_id, value, words in rows:
                session.add(
                    SurveyAnswer(
                        survey_id=survey.id,
                        response_id=response.id,
                        question_id=question_id,
                        choice=value,
                        text=words,
                        segment=segment,
                        counted=True,
                    )
                )
        return survey.id


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


# -- the chat command ----------------------------------------------------------------------------


async def test_committee_member_gets_a_link_button_not_a_link_in_the_text(site: Site):
    chat = await chat_as(site, "committee", "C001")
    replies = await chat.say("/dashboard")
    urls = url_buttons(replies)
    assert len(urls) == 1 and urls[0].startswith(f"{site.base}/dashboard/login?token=")
    assert "15" in text_of(replies) and "郑晓燕" in text_of(replies)
    assert "token=" not in text_of(replies)  # chat apps would fetch a preview and use the link up
    # "New link" issues another one; both are stored only as hashes.
    again = url_buttons(await chat.press("d:new"))
    assert len(again) == 1 and again != urls
    async with site.sessionmaker() as session:
        hashes = list(await session.scalars(select(DashboardLink.secret_hash)))
    assert len(hashes) == 2
    assert all(token_of(u).split(".")[1] not in hashes for u in urls + again)


async def test_teacher_parent_and_stranger_are_refused_in_chat(site: Site):
    teacher = await chat_as(site, "teacher", "T001")
    parent = await chat_as(site, "parent", "S2026101")
    stranger = Chat(site.deps, user_id="nobody", language="en")
    for chat in (teacher, parent):
        replies = await chat.say("/dashboard")
        assert "家委会成员和学校管理员" in text_of(replies) and not url_buttons(replies)
        assert not url_buttons(await chat.press("d:new"))  # the button re-checks the role
    replies = await stranger.say("/dashboard")
    assert "committee members and administrators only" in text_of(replies)
    assert "no longer valid" in text_of(await stranger.press("d:zzz"))
    async with site.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(DashboardLink)) == 0


async def test_an_admin_gets_a_link_too(site: Site):
    chat = await chat_as(site, "admin", "A001")
    assert len(url_buttons(await chat.say("/dashboard"))) == 1


# -- links ---------------------------------------------------------------------------------------


async def test_link_signs_in_once_with_a_strict_cookie(site: Site):
    survey_id = await seed_survey(site.sessionmaker)
    url = await link_from_chat(await chat_as(site, "committee", "C001"))
    browser = site.browser()
    async with browser.get(url, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/dashboard"
        cookie = r.headers["Set-Cookie"]
        assert r.headers["Referrer-Policy"] == "same-origin" and r.headers["Cache-Control"] == "no-store"
    assert cookie.startswith("dash=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # http base URL (a https WEB base gets Secure: see below)
    async with browser.get(f"{site.base}/dashboard") as r:
        html = await r.text()
        assert r.status == 200
        assert "课后服务满意度调查" in html and f"/dashboard/surveys/{survey_id}" in html
        assert "5 / 8" in html and "62%" in html
        assert "阳光实验小学 · 郑晓燕" in html
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]

    again = site.browser()
    async with again.get(url) as r:
        assert r.status == 403
        assert "已经使用过" in await r.text()
    async with again.get(f"{site.base}/dashboard") as r:
        assert r.status == 401
    async with site.sessionmaker() as session:
        actions = list(
            await session.scalars(select(AuditLog.action).where(AuditLog.action.like("dashboard.%")))
        )
    assert actions.count("dashboard.sign_in") == 1 and actions.count("dashboard.link_refused") == 1


async def test_cookie_is_secure_behind_an_https_base_url(site: Site):
    site.deps.links.web_base = "https://school.example"  # what the deployment says it is
    url = await issue(site, SCHOOL_A, "C001")
    async with site.browser().get(url, allow_redirects=False) as r:
        assert r.status == 303 and "Secure" in r.headers["Set-Cookie"]


async def test_link_expires_at_15_minutes(site: Site):
    person = await person_of(site.sessionmaker, SCHOOL_A, "C001")
    key, t0 = site.deps.secret_key, utcnow()
    async with site.sessionmaker.begin() as session:
        early = await dash.issue_link(session, person.school_id, person.id, key, t0)
        late = await dash.issue_link(session, person.school_id, person.id, key, t0)
    async with site.sessionmaker.begin() as session:
        assert isinstance(
            await dash.redeem_link(session, early, key, t0 + timedelta(minutes=14, seconds=59)), dash.SignIn
        )
        assert await dash.redeem_link(session, late, key, t0 + timedelta(minutes=15)) == dash.Refused(
            "expired"
        )
    # Over HTTP: a link issued 16 minutes ago is refused with its own reason.
    url = await issue(site, SCHOOL_A, "C001", now=utcnow() - timedelta(minutes=16))
    async with site.browser().get(url) as r:
        assert r.status == 403 and "已过期" in await r.text()
    async with site.browser().get(url + "&lang=en") as r:
        assert r.status == 403 and "has expired" in await r.text()


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # signature changed
        lambda t: "9" + t,  # another link id under the same signature
        lambda t: t.rsplit(".", 1)[0],  # no signature
        lambda t: t.split(".")[0] + ".AAAA." + t.rsplit(".", 1)[1],  # another secret
        lambda t: "",
        lambda t: "x" * 5000,
        lambda t: "１２.abc.def",  # full-width digits
        lambda t: "../../etc/passwd",
    ],
)
async def test_forged_links_are_refused(site: Site, forge: Any):
    token = token_of(await issue(site, SCHOOL_A, "C001"))
    async with site.browser().get(f"{site.base}/dashboard/login", params={"token": forge(token)}) as r:
        assert r.status == 403 and "无效" in await r.text()
    async with site.sessionmaker() as session:  # garbage costs no database writes
        refused = select(func.count()).where(AuditLog.action == "dashboard.link_refused")
        assert await session.scalar(refused) == 0
    # The genuine link was not spent by the forgeries.
    await sign_in(site, f"{site.base}/dashboard/login?token={token}")


async def test_guessing_links_is_stopped_per_address_with_a_429_page(site: Site):
    """Ten refused links from one address, and that address gets a 429 page in its language
    without the database being asked; another address, and the genuine link, still work."""
    url = await issue(site, SCHOOL_A, "C001")
    genuine = token_of(url)
    guesser, other = {"X-Real-IP": "203.0.113.7"}, {"X-Real-IP": "198.51.100.9"}
    browser = site.browser()
    for n in range(dashboard.SIGN_IN_FAILURES):
        forged = f"{n + 1}.guess{n}.{'0' * 64}"
        login = f"{site.base}/dashboard/login"
        async with browser.get(login, params={"token": forged}, headers=guesser) as r:
            assert r.status == 403
    async with browser.get(url, headers=guesser) as r:  # even the right link: the address waits
        assert r.status == 429 and int(r.headers["Retry-After"]) == int(dashboard.SIGN_IN_WINDOW)
        assert "尝试过多" in await r.text()
    async with browser.get(f"{url}&lang=en", headers=guesser) as r:
        assert r.status == 429 and "Too many sign-in attempts" in await r.text()
    # Nothing of this spent the link: from another address it signs in.
    async with site.browser().get(f"{site.base}/dashboard/login?token={genuine}", headers=other) as r:
        assert r.status == 200 and r.url.path == "/dashboard"


def test_failure_limiter_forgets_old_failures_and_counts_per_address():
    """The window slides: failures older than it no longer count; one address never blocks another."""
    from bot.guard import FailureLimiter

    now = [0.0]
    guard = FailureLimiter(3, 60.0, clock=lambda: now[0])
    for _ in range(3):
        assert not guard.blocked("a")
        guard.failed("a")
        now[0] += 10
    assert guard.blocked("a") and not guard.blocked("b")
    now[0] = 61.0  # the first failure (at 0) is out of the window
    assert not guard.blocked("a")


async def test_a_link_signed_with_another_key_is_refused(site: Site):
    person = await person_of(site.sessionmaker, SCHOOL_A, "C001")
    async with site.sessionmaker.begin() as session:
        token = await dash.issue_link(session, person.school_id, person.id, b"another deployment", utcnow())
        assert await dash.redeem_link(session, token, site.deps.secret_key, utcnow()) == dash.Refused(
            "invalid"
        )


async def test_two_browsers_racing_with_one_link_cannot_both_win(site: Site):
    token = token_of(await issue(site, SCHOOL_A, "C001"))

    async def redeem() -> dash.SignIn | dash.Refused:
        async with site.sessionmaker.begin() as session:
            return await dash.redeem_link(session, token, site.deps.secret_key, utcnow())

    outcomes = await asyncio.gather(*(redeem() for _ in range(4)))
    assert sum(isinstance(o, dash.SignIn) for o in outcomes) == 1, outcomes
    assert [o for o in outcomes if not isinstance(o, dash.SignIn)] == [dash.Refused("used")] * 3
    async with site.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(DashboardSession)) == 1


async def test_a_link_is_refused_when_the_role_went_before_it_was_used(site: Site):
    url = await issue(site, SCHOOL_A, "C001")
    person = await person_of(site.sessionmaker, SCHOOL_A, "C001")
    async with site.sessionmaker.begin() as session:
        await session.execute(delete(PersonRole).where(PersonRole.person_id == person.id))
    async with site.browser().get(url) as r:
        assert r.status == 403 and "只对本校家委会成员和学校管理员开放" in await r.text()


# -- sessions ------------------------------------------------------------------------------------


async def test_session_ends_after_30_idle_minutes_and_slides_while_used(site: Site):
    person = await person_of(site.sessionmaker, SCHOOL_A, "C001")
    key, t0 = site.deps.secret_key, utcnow()
    async with site.sessionmaker.begin() as session:
        token = await dash.issue_link(session, person.school_id, person.id, key, t0)
        signed = await dash.redeem_link(session, token, key, t0)
    assert isinstance(signed, dash.SignIn)
    t = t0
    for _ in range(3):  # used every 29 minutes: still signed in after 87
        t += timedelta(minutes=29)
        async with site.sessionmaker.begin() as session:
            viewer = await dash.session_for(session, signed.cookie, t)
        assert viewer is not None and viewer.person_id == person.id and viewer.school_id == person.school_id
    async with site.sessionmaker.begin() as session:
        assert await dash.session_for(session, signed.cookie, t + timedelta(minutes=30, seconds=1)) is None
    async with site.sessionmaker.begin() as session:  # ended for good, not just this once
        assert await dash.session_for(session, signed.cookie, t + timedelta(minutes=31)) is None
        assert (await session.get(DashboardSession, signed.session_id)).ended_at is not None  # type: ignore[union-attr]


async def test_idle_session_is_refused_over_http(site: Site):
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C001"))
    async with site.sessionmaker.begin() as session:
        await session.execute(update(DashboardSession).values(last_seen_at=utcnow() - timedelta(minutes=31)))
    async with browser.get(f"{site.base}/dashboard") as r:
        assert r.status == 401 and "/dashboard" in await r.text()


async def test_losing_the_role_ends_the_session_at_the_next_request(site: Site):
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C002"))
    person = await person_of(site.sessionmaker, SCHOOL_A, "C002")
    async with site.sessionmaker.begin() as session:
        await session.execute(delete(PersonRole).where(PersonRole.person_id == person.id))
    async with browser.get(f"{site.base}/dashboard") as r:
        assert r.status == 401


async def test_sign_out_ends_the_session_even_if_the_cookie_is_kept(site: Site):
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C001"))
    cookie = next(c.value for c in browser.cookie_jar if c.key == "dash")
    async with browser.get(f"{site.base}/dashboard") as r:
        token = csrf_of(await r.text())
    async with browser.post(f"{site.base}/dashboard/logout", data={"csrf": token}) as r:
        assert r.status == 200 and "已退出登录" in await r.text()
    replay = site.browser()
    async with replay.get(f"{site.base}/dashboard", headers={"Cookie": f"dash={cookie}"}) as r:
        assert r.status == 401


async def test_pages_need_a_session(site: Site):
    survey_id = await seed_survey(site.sessionmaker)
    browser = site.browser()
    for path in (
        "/dashboard",
        f"/dashboard/surveys/{survey_id}",
        "/dashboard/feedback",
        "/dashboard/surveys/new",
    ):
        async with browser.get(f"{site.base}{path}") as r:
            assert r.status == 401, path
            assert "/dashboard" in await r.text()
    for path in (f"/dashboard/surveys/{survey_id}/q1.png", f"/dashboard/surveys/{survey_id}.xlsx"):
        async with browser.get(f"{site.base}{path}") as r:
            assert r.status == 401, path
    async with browser.get(f"{site.base}/dashboard", headers={"Cookie": "dash=made-up"}) as r:
        assert r.status == 401


# -- one school's data only ----------------------------------------------------------------------


async def test_committee_of_another_school_sees_only_its_own(site: Site):
    a_survey = await seed_survey(site.sessionmaker, SCHOOL_A, title="阳光学校的问卷")
    b_survey = await seed_survey(site.sessionmaker, SCHOOL_B, title="河畔学校的问卷")
    url = await link_from_chat(await chat_as(site, "committee", "C001", school=SCHOOL_B))
    browser = await sign_in(site, url)
    async with browser.get(f"{site.base}/dashboard") as r:
        html = await r.text()
    assert "河畔学校的问卷" in html and "阳光学校的问卷" not in html and "河畔小学" in html
    for suffix in ("", "/q1.png", ".xlsx", ".csv"):
        async with browser.get(f"{site.base}/dashboard/surveys/{a_survey}{suffix}") as r:
            assert r.status == 404, suffix
        async with browser.get(f"{site.base}/dashboard/surveys/{b_survey}{suffix}") as r:
            assert r.status == 200, suffix
    async with browser.get(f"{site.base}/dashboard/surveys/999999") as r:
        assert r.status == 404


async def test_a_person_of_school_b_holding_a_role_row_for_school_a_is_refused(site: Site):
    """A role row pointing at another school (bad data) opens neither school."""
    b_person = await person_of(site.sessionmaker, SCHOOL_B, "T001")
    async with site.sessionmaker.begin() as session:
        a_school = await school_of(session, SCHOOL_A)
        session.add(PersonRole(school_id=a_school.id, person_id=b_person.id, role="committee"))
    async with site.sessionmaker.begin() as session:
        assert await dash.eligible_person(session, [b_person.id]) is None
        token = await dash.issue_link(session, a_school.id, b_person.id, site.deps.secret_key, utcnow())
        assert await dash.redeem_link(session, token, site.deps.secret_key, utcnow()) == dash.Refused(
            "not_allowed"
        )


# -- results, charts, exports --------------------------------------------------------------------


async def test_survey_page_chart_and_exports(site: Site):
    survey_id = await seed_survey(site.sessionmaker)
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C001"))
    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}") as r:
        html = await r.text()
    assert r.status == 200
    assert "5 / 8 (62%)" in html
    assert f'src="/dashboard/surveys/{survey_id}/q1.png"' in html
    assert f'src="/dashboard/surveys/{survey_id}/q2.png"' in html
    assert "q3.png" not in html  # free text has no chart
    assert "3.8" in html  # the rating's mean
    assert "希望多些户外活动" in html and "老师很耐心" in html
    assert "一年级(1)班" in html and 'class="hidden-row"' in html  # 一年级(2)班 has 2: hidden
    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}/q1.png") as r:
        assert r.status == 200 and r.content_type == "image/png"
        assert (await r.read()).startswith(b"\x89PNG")
    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}/q3.png") as r:
        assert r.status == 404
    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}/q9.png") as r:
        assert r.status == 404

    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}.xlsx") as r:
        assert r.status == 200 and r.headers["Content-Disposition"].startswith("attachment;")
        book = openpyxl.load_workbook(io.BytesIO(await r.read()))
    values = [c.value for row in book.worksheets[0].iter_rows() for c in row]
    assert "课后服务满意度调查" in values and 5 in values and INVITED in values
    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}.csv") as r:
        assert r.status == 200 and r.charset == "utf-8"
        assert r.headers["Content-Disposition"].startswith("attachment;")
        body = await r.read()
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    text = body.decode("utf-8-sig")
    assert "希望多些户外活动" in text and len(text.strip().splitlines()) == 1 + len(ANSWERS)
    async with site.sessionmaker() as session:
        exported = list(await session.scalars(select(AuditLog).where(AuditLog.action == "dashboard.export")))
    assert [(e.target_id, e.detail["format"]) for e in exported] == [(survey_id, "xlsx"), (survey_id, "csv")]


async def test_anonymous_survey_with_two_answers_is_withheld_everywhere(site: Site):
    survey_id = await seed_survey(site.sessionmaker, anonymous=True, answers=ANSWERS[:2])
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C001"))
    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}") as r:
        html = await r.text()
    assert 'id="withheld"' in html and ".png" not in html and "老师很耐心" not in html
    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}/q1.png") as r:
        assert r.status == 404
    async with browser.get(f"{site.base}/dashboard/surveys/{survey_id}.csv") as r:
        assert "老师很耐心" not in (await r.read()).decode("utf-8-sig")


async def test_feedback_page_shows_trends_and_comments(site: Site):
    round_id = await seed_survey(site.sessionmaker, title="十二月反馈")
    small_id = await seed_survey(site.sessionmaker, title="十二月反馈", answers=ANSWERS[:2])
    parent = await person_of(site.sessionmaker, SCHOOL_A, "S2026101-G1")
    async with site.sessionmaker.begin() as session:
        school = await school_of(session, SCHOOL_A)
        groups = []
        for name in ("阳光体育", "艺术社团"):
            group = ServiceGroup(
                school_id=school.id,
                term="2026",
                name=name,
                activity_type="sports",
                weekdays=["mon"],
                capacity=10,
            )
            session.add(group)
            groups.append(group)
        await session.flush()
        for survey_id, group in ((round_id, groups[0]), (small_id, groups[1])):
            await session.execute(
                update(Survey).where(Survey.id == survey_id).values(kind="feedback", group_id=group.id)
            )
        today = utcnow().date()
        session.add(
            Feedback(school_id=school.id, person_id=parent.id, text="接孩子时门口太挤", received_on=today)
        )
        session.add(Feedback(school_id=school.id, person_id=None, text="作业辅导很有帮助", received_on=today))
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C001"))
    async with browser.get(f"{site.base}/dashboard/feedback") as r:
        html = await r.text()
    assert r.status == 200
    trends = html[html.index('id="trends"') : html.index("</table>", html.index('id="trends"'))]
    assert "阳光体育" in trends and "艺术社团" in trends
    assert "<b>3.8</b>" in trends and "(5)" in trends  # five answers: the mean shows
    assert "&lt; 3" in trends  # two answers: no mean
    assert "接孩子时门口太挤" in html and parent.name in html
    assert "作业辅导很有帮助" in html and "匿名" in html

    # The same figures leave as XLSX (trends and comments) and CSV (trends), audited.
    async with browser.get(f"{site.base}/dashboard/feedback.xlsx") as r:
        assert r.status == 200 and r.headers["Content-Disposition"].startswith("attachment;")
        book = openpyxl.load_workbook(io.BytesIO(await r.read()))
    trend_rows = list(book.worksheets[0].iter_rows(values_only=True))[1:]
    assert sorted((row[1], row[2]) for row in trend_rows) == [("艺术社团", 2), ("阳光体育", 5)]
    assert next(row[3] for row in trend_rows if row[1] == "阳光体育") == pytest.approx(3.8)
    assert isinstance(next(row[3] for row in trend_rows if row[1] == "艺术社团"), str)  # a note, no mean
    comment_rows = list(book.worksheets[1].iter_rows(values_only=True))[1:]
    assert {(row[2], row[3]) for row in comment_rows} == {
        (parent.name, "接孩子时门口太挤"),
        ("匿名", "作业辅导很有帮助"),
    }
    async with browser.get(f"{site.base}/dashboard/feedback.csv") as r:
        body = (await r.read()).decode("utf-8-sig")
    assert "阳光体育" in body and "门口太挤" not in body


# -- the new-survey form -------------------------------------------------------------------------


def form_data(csrf: str, **overrides: str) -> dict[str, str]:
    local = utcnow().astimezone(ZoneInfo("Asia/Shanghai"))
    data = {
        "csrf": csrf,
        "title": "午餐满意度",
        "intro": "请花一分钟回答",
        "audience": "grade:一年级",
        "opens": (local + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "closes": (local + timedelta(days=4)).strftime("%Y-%m-%dT%H:%M"),
        "reminder1": "24",
        "reminder2": "",
        "q1_type": "single",
        "q1_text": "午餐分量够吗？",
        "q1_options": "够\n不够\n\n",
        "q1_required": "1",
        "q2_type": "rating",
        "q2_text": "口味打分",
        "q2_options": "",
        "q3_type": "text",
        "q3_text": "",
        "q3_options": "",
    }
    data.update(overrides)
    return data


async def test_form_schedules_a_survey(site: Site):
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C001"))
    async with browser.get(f"{site.base}/dashboard/surveys/new") as r:
        html = await r.text()
    assert 'value="grade:一年级"' in html and 'value="role:parent"' in html and "家长" in html
    async with browser.post(f"{site.base}/dashboard/surveys/new", data=form_data(csrf_of(html))) as r:
        assert r.status == 200 and r.url.path.startswith("/dashboard/surveys/")
        assert "问卷已安排" in await r.text()
    person = await person_of(site.sessionmaker, SCHOOL_A, "C001")
    async with site.sessionmaker() as session:
        survey = (await session.scalars(select(Survey))).one()
        assert survey.title == "午餐满意度" and survey.created_by_person_id == person.id
        assert (survey.audience_kind, survey.audience_value) == ("grade", "一年级")
        assert survey.reminder_hours == [24] and survey.status == "scheduled"
        assert [(q.kind, q.options, q.required) for q in survey.questions] == [
            ("single", ["够", "不够"], True),
            ("rating", [], False),
        ]


async def test_form_errors_are_shown_in_the_page_language_and_keep_what_was_typed(site: Site):
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C001"))
    async with browser.get(f"{site.base}/dashboard/surveys/new?lang=en") as r:
        token = csrf_of(await r.text())
    bad = form_data(token, q1_options="only one", title="Lunch <b>&")
    async with browser.post(f"{site.base}/dashboard/surveys/new?lang=en", data=bad) as r:
        html = await r.text()
        assert r.status == 422
    assert 'id="form-errors"' in html and "Please correct" in html and "Question 1" in html
    assert 'value="Lunch &lt;b&gt;&amp;"' in html and "only one</textarea>" in html
    assert 'value="grade:一年级" selected' in html

    # Question blocks left empty are skipped, yet the error names the block the person sees.
    gap = form_data(token, q1_text="", q1_options="", q2_type="single", q2_options="甲")
    async with browser.post(f"{site.base}/dashboard/surveys/new", data=gap) as r:
        html = await r.text()
        assert r.status == 422 and "第 2 题" in html and "至少要有两个选项" in html
    zh = form_data(token, reminder1="abc")
    async with browser.post(f"{site.base}/dashboard/surveys/new", data=zh) as r:
        assert r.status == 422 and "提醒时间须为整数小时" in await r.text()
    past = utcnow().astimezone(ZoneInfo("Asia/Shanghai")) - timedelta(days=1)
    closed = form_data(token, closes=past.strftime("%Y-%m-%dT%H:%M"))
    async with browser.post(f"{site.base}/dashboard/surveys/new", data=closed) as r:
        assert r.status == 422 and 'id="form-errors"' in await r.text()
    async with site.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Survey)) == 0


async def test_forms_without_the_session_token_are_refused(site: Site):
    browser = await sign_in(site, await issue(site, SCHOOL_A, "C001"))
    other = await sign_in(site, await issue(site, SCHOOL_A, "C002"))
    async with other.get(f"{site.base}/dashboard") as r:
        other_token = csrf_of(await r.text())
    for token in ("", "0" * 64, other_token):  # none, made up, another session's
        async with browser.post(f"{site.base}/dashboard/surveys/new", data=form_data(token)) as r:
            assert r.status == 403 and "表单已失效" in await r.text()
        async with browser.post(f"{site.base}/dashboard/logout", data={"csrf": token}) as r:
            assert r.status == 403
    async with browser.get(f"{site.base}/dashboard") as r:
        token = csrf_of(await r.text())
    evil = {"Origin": "https://evil.example"}
    async with browser.post(f"{site.base}/dashboard/surveys/new", data=form_data(token), headers=evil) as r:
        assert r.status == 403
    async with site.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Survey)) == 0
    async with browser.get(f"{site.base}/dashboard") as r:
        assert r.status == 200  # still signed in: the refused sign-outs did nothing
