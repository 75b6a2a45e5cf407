"""Signing the service agreement (课后服务协议书): read it, confirm, type your registered name.

The text is rendered from the placement and the newest terms; its SHA-256 at reading time is kept
in the conversation state, and the signature is stored only if the text is still exactly that.
/agreement shows the signed ones.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

import messages
from handlers.dialog import Attachment, Button, Context, Flow, Reply
from handlers.enrollment_views import next_month, sign_buttons, tell_offers
from storage import agreements, enrollment, terms
from storage.authz import Action
from storage.clock import utcnow
from storage.models import Agreement, Application, Person, School, Student, TermsVersion

NAME = "agreement"
KEY = "g"
PAGE_CHARS = 3000


def pages_of(text: str, limit: int = PAGE_CHARS) -> list[str]:
    """Whole paragraphs per page, so a page never ends mid-sentence (unless one paragraph is huge)."""
    pages: list[str] = []
    current = ""
    for paragraph in text.split("\n\n"):
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            pages.append(current)
        while len(paragraph) > limit:
            pages.append(paragraph[:limit])
            paragraph = paragraph[limit:]
        current = paragraph
    if current:
        pages.append(current)
    return pages or [""]


async def render(ctx: Context, app: Application) -> tuple[str, TermsVersion] | None:
    """The agreement text for this application, in this chat's language, under the newest terms."""
    version = await terms.latest_terms(ctx.session, app.school_id)
    if version is None or app.group_id is None:
        return None
    timezone = ctx.identity.school.timezone if ctx.identity.school else "Asia/Shanghai"
    facts = await agreements.agreement_facts(ctx.session, app, version, next_month(timezone))
    return messages.render("agreement", ctx.locale, **facts), version


async def _child(ctx: Context, app: Application) -> str:
    student = await ctx.session.get(Student, app.student_id)
    return student.name if student else ""


async def _open(ctx: Context, app_id: int) -> tuple[Application, str] | Reply:
    app = await ctx.session.get(Application, app_id)
    if (
        app is None
        or await agreements.may_sign(ctx.session, [p.id for p in ctx.identity.people], app) is None
    ):
        if app is not None:
            await enrollment.record_refusal(
                ctx.session, enrollment.Outcome.FORBIDDEN, "agreement", ctx.account_id, app
            )
        return ctx.reply("button_invalid")
    child = await _child(ctx, app)
    if not await agreements.needs_signature(ctx.session, app):
        return ctx.reply("sign_not_needed", child=child)
    return app, child


async def show_page(ctx: Context, app_id: int, page: int) -> list[Reply]:
    """Shows one page; the last one has the sign and decline buttons."""
    opened = await _open(ctx, app_id)
    if isinstance(opened, Reply):
        return [opened]
    app, child = opened
    rendered = await render(ctx, app)
    if rendered is None:
        return [ctx.reply("sign_not_needed", child=child)]
    text, _version = rendered
    pages = pages_of(text)
    page = min(max(page, 1), len(pages))
    await ctx.set_state(NAME, "reading", {"app": app.id, "sha": agreements.digest(text)})
    nav = []
    if page > 1:
        nav.append(Button(ctx.label("agreement.previous"), f"{KEY}:p:{app.id}:{page - 1}"))
    if page < len(pages):
        nav.append(Button(ctx.label("agreement.next"), f"{KEY}:p:{app.id}:{page + 1}"))
    rows = [nav] if nav else []
    if page == len(pages):
        rows.append([Button(ctx.label("agreement.sign"), f"{KEY}:s:{app.id}")])
        rows.append([Button(ctx.label("agreement.decline"), f"{KEY}:d:{app.id}")])
    return [ctx.reply("sign_page", page_text=pages[page - 1], page=page, pages=len(pages), buttons=rows)]


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    """Reads (r), turns pages (p), signs (s), declines (d, then dy to confirm)."""
    parts = payload.split(":")
    if len(parts) < 2 or not parts[1].isdigit() or not all(p.isdigit() for p in parts[2:]):
        return [ctx.reply("button_invalid")]
    if not await ctx.may(Action.SIGN_AGREEMENT):
        return [ctx.reply("button_invalid")]
    action, app_id = parts[0], int(parts[1])
    if action == "c":
        return await _copy(ctx, app_id)
    if action == "r":
        return await show_page(ctx, app_id, 1)
    if action == "p" and len(parts) == 3:
        return await show_page(ctx, app_id, int(parts[2]))
    state = ctx.state
    if action == "s":
        if state is None or state.flow != NAME or state.data.get("app") != app_id:
            return await show_page(ctx, app_id, 1)  # read it first
        await ctx.set_state(NAME, "name", dict(state.data))
        return [ctx.reply("sign_ask_name")]
    if action in ("d", "dy"):
        opened = await _open(ctx, app_id)
        if isinstance(opened, Reply):
            return [opened]
        app, child = opened
        if action == "d":
            rows = [
                [
                    Button(ctx.label("agreement.decline_confirm"), f"{KEY}:dy:{app.id}"),
                    Button(ctx.label("agreement.back"), f"{KEY}:r:{app.id}"),
                ]
            ]
            return [ctx.reply("sign_decline_confirm", child=child, buttons=rows)]
        await ctx.clear_state()
        result = await enrollment.withdraw(
            ctx.session, app.id, [p.id for p in ctx.identity.people], ctx.account_id, utcnow()
        )
        await tell_offers(ctx, result.offers)
        return [ctx.reply("withdraw_done", child=child)]
    return [ctx.reply("button_invalid")]


async def _copy(ctx: Context, agreement_id: int) -> list[Reply]:
    """A fresh copy of a signed agreement, for a guardian of its child only."""
    row = await ctx.session.get(Agreement, agreement_id)
    children = {c.student_id for c in ctx.identity.children}
    if row is None or row.student_id not in children:
        return [ctx.reply("button_invalid")]
    student = await ctx.session.get(Student, row.student_id)
    return [await _with_copy(ctx, ctx.reply("agreement_copy", child=student.name if student else ""), row)]


async def typed(ctx: Context) -> list[Reply]:
    """Takes the typed name and signs, if the text is still the one read."""
    state = ctx.state
    if state is None or state.step != "name":
        return [ctx.reply("apply_use_buttons")]
    if not await ctx.may(Action.SIGN_AGREEMENT):
        await ctx.clear_state()
        return [ctx.reply("button_invalid")]
    app = await ctx.session.get(Application, int(state.data["app"]))
    if app is None:
        await ctx.clear_state()
        return [ctx.reply("button_invalid")]
    rendered = await render(ctx, app)
    child = await _child(ctx, app)
    if rendered is None:
        await ctx.clear_state()
        return [ctx.reply("sign_not_needed", child=child)]
    text, version = rendered
    now = utcnow()
    result = await agreements.sign(
        ctx.session,
        app.id,
        [p.id for p in ctx.identity.people],
        ctx.account_id,
        platform=ctx.event.platform,
        locale=ctx.locale,
        text=text,
        shown_sha256=str(state.data["sha"]),
        typed_name=ctx.event.text,
        terms=version,
        now=now,
    )
    outcome = result.outcome
    if outcome is agreements.Outcome.NAME_MISMATCH:
        signer = await agreements.may_sign(ctx.session, [p.id for p in ctx.identity.people], app)
        return [ctx.reply("sign_name_mismatch", registered=signer.name if signer else "")]
    await ctx.clear_state()
    if outcome is agreements.Outcome.STALE:
        return [ctx.reply("sign_changed", buttons=sign_buttons(app)(ctx.locale))]
    if outcome is not agreements.Outcome.OK or result.agreement is None:
        return [ctx.reply("sign_not_needed", child=child)]
    done = ctx.reply("sign_done", child=child, sha=result.agreement.sha256, signed_at=_local(ctx, now))
    return [await _with_copy(ctx, done, result.agreement)]


async def _with_copy(ctx: Context, reply: Reply, row: Agreement) -> Reply:
    """The reply with the agreement's HTML copy attached (written under DATA_DIR once)."""
    if ctx.files_dir is None:
        return reply
    name, html = await document(ctx.session, row, ctx.locale)
    relative = agreements.document_path(row, name)
    target = ctx.files_dir / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")
    return Reply(reply.text, reply.buttons, Attachment(name, relative))


def _local(ctx: Context, when: object) -> str:
    timezone = ctx.identity.school.timezone if ctx.identity.school else "Asia/Shanghai"
    return when.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")  # type: ignore[attr-defined]


async def list_signed(ctx: Context) -> list[Reply]:
    """Shows the parent's signed agreements, and any still to sign."""
    people = [p.id for p in ctx.identity.people]
    rows: list[Agreement] = await agreements.signed_by(ctx.session, people) if people else []
    replies = []
    if rows:
        items = []
        for row in rows:
            student = await ctx.session.get(Student, row.student_id)
            version = await ctx.session.get(TermsVersion, row.terms_version_id)
            items.append(
                {
                    "child": student.name if student else "",
                    "signed_at": _local(ctx, row.signed_at),
                    "version": version.version if version else "",
                    "sha": row.sha256,
                    "valid_until": _local(ctx, row.valid_until) if row.valid_until else None,
                }
            )
        copies = [
            [Button(ctx.text("agreement_copy_button", item=i), f"{KEY}:c:{row.id}")]
            for i, row in zip(items, rows, strict=True)
        ]
        replies.append(ctx.reply("agreements_list", items=items, buttons=copies[:10]))
    for app in await enrollment.applications_of(ctx.session, people) if people else []:
        if await agreements.needs_signature(ctx.session, app):
            replies.append(
                ctx.reply("sign_request", child=await _child(ctx, app), buttons=sign_buttons(app)(ctx.locale))
            )
    return replies or [ctx.reply("agreements_none")]


FLOW = Flow(
    name=NAME,
    key=KEY,
    commands=("agreement",),
    on_command=list_signed,
    on_button=pressed,
    on_message=typed,
    menu_commands=("agreement",),
)


async def document(session: AsyncSession, row: Agreement, locale: str) -> tuple[str, str]:
    """(file name, self-contained HTML) of a signed agreement: the parent's copy and the school's record.

    HTML rather than PDF: it needs no CJK font on the server, opens on every phone, and prints.
    """
    student = await session.get(Student, row.student_id)
    signer = await session.get(Person, row.signer_person_id)
    version = await session.get(TermsVersion, row.terms_version_id)
    school = await session.get(School, row.school_id)
    tz = ZoneInfo(school.timezone if school else "Asia/Shanghai")
    html = messages.render_page(
        "agreement_doc",
        locale,
        title=f"{student.name if student else ''} · {messages.label('agreement.title', locale)}",
        text=row.text,
        signer=signer.name if signer else "",
        signed_at=row.signed_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        platform=row.platform,
        version=version.version if version else "",
        sha=row.sha256,
        valid_until=row.valid_until.astimezone(tz).strftime("%Y-%m-%d") if row.valid_until else None,
    )
    number = student.student_no if student else "student"
    return f"agreement-{number}-{row.id}.html", html
