"""The parent-committee dashboard: survey results, charts, exports, feedback trends, new surveys.

Sign-in is by the one-time link the bot sends (/dashboard, handlers/dashboard.py). Every request
looks its session up in the database (storage.dashboard.session_for re-checks the role) and every
query is scoped to that session's school: a survey id of another school is a 404, whoever asks.
The cookie holds only a random secret (HttpOnly, SameSite=Lax, Path=/dashboard, Secure on https);
forms carry a token derived from it (CSRF).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.ext.asyncio import AsyncSession

import messages
from bot.guard import FailureLimiter, client_ip
from bot.web import page_locale
from handlers.dispatch import Deps
from messages import charts, exports
from storage import audit, authz, dashboard, surveys
from storage.authz import Action
from storage.clock import utcnow
from storage.dashboard import Refused, Viewer
from storage.models import School, Survey

DEPS = web.AppKey("dashboard_deps", Deps)
SIGN_IN_GUARD = web.AppKey("dashboard_sign_in_guard", FailureLimiter)
# Refused sign-in links per client address before /dashboard/login answers 429 for a while. A
# person with a stale link fails once or twice; nginx slows everyone down as well (30 a minute).
SIGN_IN_FAILURES = 10
SIGN_IN_WINDOW = 15 * 60.0
COOKIE = "dash"
COOKIE_PATH = "/dashboard"
MAX_QUESTIONS = 10
MAX_REMINDERS = 2
OPEN_BLOCKS = 3  # question blocks shown unfolded on a fresh form
_ID = r"{id:\d{1,9}}"
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send `Origin: null` on POST
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def add_routes(app: web.Application, deps: Deps) -> None:
    """Mount the dashboard on the app (called where the web app is built)."""
    app[DEPS] = deps
    app[SIGN_IN_GUARD] = FailureLimiter(SIGN_IN_FAILURES, SIGN_IN_WINDOW)
    app.on_response_prepare.append(_security_headers)
    r = app.router
    r.add_get("/dashboard/login", login)
    r.add_get("/dashboard", index)
    r.add_post("/dashboard/logout", logout)
    r.add_get("/dashboard/feedback", feedback)
    r.add_get("/dashboard/feedback.xlsx", feedback_xlsx)
    r.add_get("/dashboard/feedback.csv", feedback_csv)
    r.add_get("/dashboard/surveys/new", new_survey)
    r.add_post("/dashboard/surveys/new", create_survey)
    r.add_get(f"/dashboard/surveys/{_ID}", survey_page)
    r.add_get(f"/dashboard/surveys/{_ID}/q{{n:\\d{{1,3}}}}.png", chart)
    r.add_get(f"/dashboard/surveys/{_ID}.xlsx", export_xlsx)
    r.add_get(f"/dashboard/surveys/{_ID}.csv", export_csv)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Dashboard pages hold personal data: never cached, framed, or leaked through Referer."""
    if request.path == COOKIE_PATH or request.path.startswith(COOKIE_PATH + "/"):
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)


# -- helpers -------------------------------------------------------------------------------------


def _lang_query(request: web.Request) -> str:
    """`?lang=xx` when the page language was chosen explicitly, so links keep it."""
    wanted = request.query.get("lang")
    return f"?lang={wanted}" if wanted in messages.LOCALES else ""


def _page(
    request: web.Request, name: str, *, status: int = 200, viewer: Viewer | None = None, **context: Any
) -> web.Response:
    locale = page_locale(request)
    deps = request.app[DEPS]
    csrf = ""
    cookie = request.cookies.get(COOKIE)
    if viewer is not None and cookie:
        csrf = dashboard.csrf_token(deps.secret_key, cookie)
    html = messages.render_page(name, locale, viewer=viewer, lq=_lang_query(request), csrf=csrf, **context)
    return web.Response(text=html, content_type="text/html", status=status)


def _message(request: web.Request, key: str, status: int, viewer: Viewer | None = None) -> web.Response:
    """A page that only says something (refused link, signed out, not found, form expired)."""
    return _page(request, "dashboard_message", status=status, viewer=viewer, key=key)


async def _viewer(request: web.Request, session: AsyncSession) -> Viewer | None:
    return await dashboard.session_for(session, request.cookies.get(COOKIE), utcnow())


async def _may(session: AsyncSession, viewer: Viewer, action: Action) -> bool:
    """The role table's answer for this signed-in person (storage.authz); a refusal is audited."""
    return await authz.viewer_allowed(session, viewer.school_id, viewer.person_id, viewer.roles, action)


def _local(value: datetime | None, tz: str) -> str:
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if value else ""


def _percent(part: int, whole: int) -> int | None:
    return round(100 * part / whole) if whole else None


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin on POST; one from elsewhere is refused even before the CSRF token."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc
    return netloc in {request.host, urlsplit(request.app[DEPS].links.web_base).netloc}


async def _survey(session: AsyncSession, viewer: Viewer, request: web.Request) -> Survey | None:
    """The survey in the URL if it belongs to the viewer's school."""
    return await surveys.get_survey(session, viewer.school_id, int(request.match_info["id"]))


# -- sign in and out -----------------------------------------------------------------------------


async def login(request: web.Request) -> web.StreamResponse:
    """Redeem the link, set the session cookie and go to the overview (the token leaves the URL)."""
    deps = request.app[DEPS]
    guard, client = request.app[SIGN_IN_GUARD], client_ip(request)
    if guard.blocked(client):  # before any query: guessing costs us nothing more
        response = _message(request, "too_many", 429)
        response.headers["Retry-After"] = str(int(SIGN_IN_WINDOW))
        return response
    now = utcnow()
    async with deps.sessionmaker.begin() as session:
        outcome = await dashboard.redeem_link(session, request.query.get("token", ""), deps.secret_key, now)
        if not isinstance(outcome, Refused):
            # This browser's previous session, if any, ends: one browser, one session.
            await dashboard.end_session(session, request.cookies.get(COOKIE), now)
    if isinstance(outcome, Refused):
        if outcome.reason != "not_allowed":  # a genuine link of someone who lost the role: no guess
            guard.failed(client)
        return _message(request, f"refused_{outcome.reason}", 403)
    redirect = web.HTTPSeeOther(f"{COOKIE_PATH}{_lang_query(request)}")
    redirect.set_cookie(
        COOKIE,
        outcome.cookie,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=deps.links.web_base.startswith("https://") or request.secure,
    )
    raise redirect


async def logout(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    cookie = request.cookies.get(COOKIE)
    form = await request.post()
    async with deps.sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is not None and not _csrf_ok(request, form):
            return _message(request, "csrf", 403, viewer)
        await dashboard.end_session(session, cookie, utcnow())
    response = _message(request, "signed_out", 200)
    response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _csrf_ok(request: web.Request, form: MultiDictProxy[Any]) -> bool:
    cookie = request.cookies.get(COOKIE, "")
    given = form.get("csrf")
    return (
        _same_origin(request)
        and isinstance(given, str)
        and dashboard.csrf_ok(request.app[DEPS].secret_key, cookie, given)
    )


# -- pages ---------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    """Every survey and feedback round of the school, newest first, with its response rate."""
    async with request.app[DEPS].sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is None:
            return _message(request, "need_sign_in", 401)
        if not await _may(session, viewer, Action.VIEW_DASHBOARD):
            return _message(request, "refused_not_allowed", 403, viewer)
        counts = await dashboard.survey_counts(session, viewer.school_id)
        rows = []
        for s in await surveys.list_surveys(session, viewer.school_id):
            invited, answered = counts.get(s.id, (0, 0))
            rows.append(
                {
                    "id": s.id,
                    "title": s.title,
                    "kind": s.kind,
                    "status": s.status,
                    "anonymous": s.anonymous,
                    "opens": _local(s.opens_at, viewer.school_timezone),
                    "closes": _local(s.closes_at, viewer.school_timezone),
                    "invited": invited,
                    "respondents": answered,
                    "rate": _percent(answered, invited),
                }
            )
    return _page(request, "dashboard", viewer=viewer, surveys=rows)


async def survey_page(request: web.Request) -> web.Response:
    """One survey's results: a chart and counts per question, free texts, the class breakdown."""
    async with request.app[DEPS].sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is None:
            return _message(request, "need_sign_in", 401)
        if not await _may(session, viewer, Action.VIEW_DASHBOARD):
            return _message(request, "refused_not_allowed", 403, viewer)
        survey = await _survey(session, viewer, request)
        if survey is None:
            return _message(request, "not_found", 404, viewer)
        results = await surveys.results(session, survey)
    questions = [
        {
            "q": q,
            "chart": not results.withheld and charts.chartable(q),
            "percents": [_percent(o.count, q.answered) for o in q.options],
        }
        for q in results.questions
    ]
    ratings = [q for q in results.questions if q.kind == "rating"]
    return _page(
        request,
        "dashboard_survey",
        viewer=viewer,
        survey=survey,
        results=results,
        questions=questions,
        ratings=ratings,
        rate=_percent(results.respondents, results.invited),
        opens=_local(survey.opens_at, viewer.school_timezone),
        closes=_local(survey.closes_at, viewer.school_timezone),
        created=request.query.get("created") == "1",
        min_group=surveys.MIN_GROUP,
    )


async def chart(request: web.Request) -> web.Response:
    """A question's bar chart as PNG, drawn in a worker thread (matplotlib is CPU work)."""
    locale = page_locale(request)
    async with request.app[DEPS].sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is None:  # returned, not raised: an ended session is committed as ended
            return web.Response(status=401)
        if not await _may(session, viewer, Action.VIEW_DASHBOARD):
            return web.Response(status=403)
        survey = await _survey(session, viewer, request)
        if survey is None:
            return web.Response(status=404)
        results = await surveys.results(session, survey)
    position = int(request.match_info["n"])
    question = next((q for q in results.questions if q.position == position), None)
    if question is None or results.withheld or not charts.chartable(question):
        return web.Response(status=404)
    png = await asyncio.to_thread(charts.question_chart, question, locale)
    return web.Response(body=png, content_type="image/png")


async def _export(request: web.Request, kind: str) -> web.Response:
    locale = page_locale(request)
    async with request.app[DEPS].sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is None:
            return _message(request, "need_sign_in", 401)
        if not await _may(session, viewer, Action.EXPORT_RESULTS):
            return _message(request, "refused_not_allowed", 403, viewer)
        survey = await _survey(session, viewer, request)
        if survey is None:
            return _message(request, "not_found", 404, viewer)
        results = await surveys.results(session, survey)
        # Withheld (an anonymous survey with too few answers): no answer leaves, in any form.
        rows = [] if results.withheld else await surveys.answer_rows(session, survey)
        await audit.record(  # answers leave the system: who took them, and which
            session,
            "dashboard.export",
            school_id=viewer.school_id,
            actor_person_id=viewer.person_id,
            target_type="survey",
            target_id=survey.id,
            format=kind,
            rows=len(rows),
        )
    name = f"survey-{survey.id}-{utcnow():%Y%m%d}.{kind}"
    if kind == "xlsx":
        return _download(name, await asyncio.to_thread(exports.survey_xlsx, results, rows, locale))
    return _download(name, await asyncio.to_thread(exports.survey_csv, results, rows, locale))


def _download(name: str, content: bytes | str) -> web.Response:
    """An XLSX (bytes) or a CSV (text) as a file to save. CSV is UTF-8 with a byte-order mark:
    Excel then opens Chinese text correctly."""
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if isinstance(content, bytes):
        mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return web.Response(body=content, content_type=mime, headers=headers)
    return web.Response(
        body=content.encode("utf-8-sig"), content_type="text/csv", charset="utf-8", headers=headers
    )


async def export_xlsx(request: web.Request) -> web.Response:
    return await _export(request, "xlsx")


async def export_csv(request: web.Request) -> web.Response:
    return await _export(request, "csv")


async def feedback(request: web.Request) -> web.Response:
    """Feedback per month and per service group (a month × group table) and the comments."""
    async with request.app[DEPS].sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is None:
            return _message(request, "need_sign_in", 401)
        if not await _may(session, viewer, Action.VIEW_DASHBOARD):
            return _message(request, "refused_not_allowed", 403, viewer)
        trends = await surveys.feedback_trends(session, viewer.school_id)
        comments = await surveys.feedback_comments(session, viewer.school_id)
    months = sorted({t.month for t in trends}, reverse=True)
    groups = sorted({t.group for t in trends})
    cells = {(t.month, t.group): t for t in trends}
    return _page(
        request,
        "dashboard_feedback",
        viewer=viewer,
        months=months,
        groups=groups,
        cells=cells,
        comments=comments,
        min_group=surveys.MIN_GROUP,
    )


async def _feedback_export(request: web.Request, kind: str) -> web.Response:
    locale = page_locale(request)
    async with request.app[DEPS].sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is None:
            return _message(request, "need_sign_in", 401)
        if not await _may(session, viewer, Action.EXPORT_RESULTS):
            return _message(request, "refused_not_allowed", 403, viewer)
        trends = await surveys.feedback_trends(session, viewer.school_id)
        comments = await surveys.feedback_comments(session, viewer.school_id, limit=100_000)
        await audit.record(
            session,
            "dashboard.export",
            school_id=viewer.school_id,
            actor_person_id=viewer.person_id,
            target_type="feedback",
            format=kind,
            rows=len(trends) + (len(comments) if kind == "xlsx" else 0),
        )
    name = f"feedback-{utcnow():%Y%m%d}.{kind}"
    if kind == "xlsx":
        return _download(name, await asyncio.to_thread(exports.feedback_xlsx, trends, comments, locale))
    return _download(name, exports.feedback_csv(trends, locale))


async def feedback_xlsx(request: web.Request) -> web.Response:
    return await _feedback_export(request, "xlsx")


async def feedback_csv(request: web.Request) -> web.Response:
    return await _feedback_export(request, "csv")


# -- a new survey from the form ------------------------------------------------------------------


def _blank_form(tz: str) -> dict[str, Any]:
    """A fresh form: opens in an hour (on the hour), closes a week later, school-local."""
    start = (utcnow().astimezone(ZoneInfo(tz)) + timedelta(hours=1)).replace(
        minute=0, second=0, microsecond=0
    )
    return {
        "title": "",
        "intro": "",
        "anonymous": False,
        "audience": "school",
        "opens": start.strftime("%Y-%m-%dT%H:%M"),
        "closes": (start + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
        "reminders": ["24", ""],
        "questions": [
            {"type": "single", "text": "", "options": "", "required": True} for _ in range(MAX_QUESTIONS)
        ],
    }


def _typed_form(form: MultiDictProxy[Any]) -> dict[str, Any]:
    """What was typed, as the template shows it again after an error."""

    def field(name: str) -> str:
        value = form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    return {
        "title": field("title"),
        "intro": field("intro"),
        "anonymous": "anonymous" in form,
        "audience": field("audience"),
        "opens": field("opens"),
        "closes": field("closes"),
        "reminders": [field(f"reminder{i}") for i in range(1, MAX_REMINDERS + 1)],
        "questions": [
            {
                "type": field(f"q{i}_type") or "single",
                "text": field(f"q{i}_text"),
                "options": field(f"q{i}_options"),
                "required": f"q{i}_required" in form,
            }
            for i in range(1, MAX_QUESTIONS + 1)
        ],
    }


def _spec_data(typed: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[int]]:
    """The dict a survey YAML file gives, built from the form; the form's own errors (label keys)
    for what only a form can get wrong (a reminder that is not a whole number); and the block
    number of each question kept (empty blocks are skipped, so question 2 may be block 3)."""
    errors: list[str] = []
    reminders: list[int] = []
    for value in typed["reminders"]:
        if not value:
            continue
        if value.isascii() and value.isdigit() and len(value) <= 4:
            reminders.append(int(value))
        else:
            errors.append("dashboard.form.bad_reminder")
    questions = []
    blocks: list[int] = []
    for block, q in enumerate(typed["questions"], start=1):
        if not q["text"] and not q["options"]:
            continue  # an unused block
        blocks.append(block)
        question: dict[str, Any] = {"text": q["text"], "type": q["type"], "required": q["required"]}
        if q["type"] in ("single", "multiple"):
            question["options"] = [line.strip() for line in q["options"].splitlines() if line.strip()]
        questions.append(question)
    data = {
        "title": typed["title"],
        "intro": typed["intro"],
        "anonymous": typed["anonymous"],
        "audience": typed["audience"],
        "opens": typed["opens"].replace("T", " "),
        "closes": typed["closes"].replace("T", " "),
        "reminders": reminders,
        "questions": questions,
    }
    return data, errors, blocks


FORM_FIELDS = ("title", "intro", "audience", "opens", "closes", "reminders", "type", "text", "options")


def _field_name(where: str, blocks: list[int], locale: str) -> str:
    """A spec path from SurveyError ("questions.2.options") named as the form shows it."""
    parts = where.split(".")
    if parts[0] == "questions" and len(parts) > 1 and parts[1].isdigit() and 0 < int(parts[1]) <= len(blocks):
        name = messages.format_label("dashboard.form.question", locale, n=blocks[int(parts[1]) - 1])
        if len(parts) > 2 and parts[2] in FORM_FIELDS:
            name += " · " + messages.label(f"dashboard.field.{parts[2]}", locale)
        return name
    if parts[0] in FORM_FIELDS:
        return messages.label(f"dashboard.field.{parts[0]}", locale)
    return where


def _audience_label(value: str, name: str, locale: str) -> str:
    """What an audience choice says in the page language ("grade:<name>" -> "Grade: <name>")."""
    kind, _, rest = value.partition(":")
    if kind == "school":
        return messages.label("dashboard.audience.school", locale)
    if kind == "role":
        return messages.label(f"role.{rest}", locale)
    return messages.format_label(f"dashboard.audience.{kind}", locale, name=name or rest)


def _form_page(
    request: web.Request,
    viewer: Viewer,
    typed: dict[str, Any],
    choices: list[tuple[str, str]],
    errors: list[str],
    status: int = 200,
) -> web.Response:
    return _page(
        request,
        "dashboard_form",
        status=status,
        viewer=viewer,
        form=typed,
        choices=[(value, _audience_label(value, name, page_locale(request))) for value, name in choices],
        errors=errors,
        open_blocks=OPEN_BLOCKS,
        max_reminders=MAX_REMINDERS,
    )


async def new_survey(request: web.Request) -> web.Response:
    async with request.app[DEPS].sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is None:
            return _message(request, "need_sign_in", 401)
        if not await _may(session, viewer, Action.SCHEDULE_SURVEY):
            return _message(request, "refused_not_allowed", 403, viewer)
        choices = await surveys.audience_choices(session, viewer.school_id)
    return _form_page(request, viewer, _blank_form(viewer.school_timezone), choices, [])


async def create_survey(request: web.Request) -> web.StreamResponse:
    """Validate with the same rules as a YAML file and schedule; errors come back beside the form,
    in the page's language, with everything typed kept."""
    locale = page_locale(request)
    form = await request.post()
    async with request.app[DEPS].sessionmaker.begin() as session:
        viewer = await _viewer(request, session)
        if viewer is None:
            return _message(request, "need_sign_in", 401)
        if not await _may(session, viewer, Action.SCHEDULE_SURVEY):
            return _message(request, "refused_not_allowed", 403, viewer)
        if not _csrf_ok(request, form):
            return _message(request, "csrf", 403, viewer)
        choices = await surveys.audience_choices(session, viewer.school_id)
        typed = _typed_form(form)
        data, form_errors, blocks = _spec_data(typed)
        errors = [messages.label(key, locale) for key in form_errors]
        survey: Survey | None = None
        if not errors:
            try:
                spec = surveys.parse_spec(data)
                school = await session.get(School, viewer.school_id)
                assert school is not None
                async with session.begin_nested():  # a refusal half-way leaves nothing behind
                    survey = await surveys.schedule_survey(
                        session, school, spec, utcnow(), created_by=viewer.person_id
                    )
            except surveys.SurveyError as exc:
                params = dict(exc.params)
                where = params.get("field")
                if isinstance(where, str):
                    params["field"] = _field_name(where, blocks, locale)
                errors.append(messages.format_label(f"survey_error.{exc.key}", locale, **params))
        if survey is None:
            return _form_page(request, viewer, typed, choices, errors, status=422)
    lang = _lang_query(request).replace("?", "&")
    raise web.HTTPSeeOther(f"{COOKIE_PATH}/surveys/{survey.id}?created=1{lang}")
