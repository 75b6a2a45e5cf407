"""/notice, /notices and the 「已阅」 button: school notices in chat.

Admins compose a notice step by step (title, body, audience, when, acknowledgement, urgency,
preview) and see what became of it; everyone reads the notices sent to them and acknowledges
those that ask for it. The admin role is re-read from the database on every step and button;
a button payload only names an id, re-checked against the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import messages
from handlers.dialog import Attachment, Button, Context, Flow, Reply
from storage import authz, notices
from storage.authz import Action
from storage.clock import utcnow
from storage.models import DeliveryStatus, Notice, NoticeStatus, Role, School
from storage.notices import AckOutcome, Audience, Draft, NoticeError

FLOW_NAME = "notices"
KEY = "n"
ACK_CHOICES = (0, 24, 72, 168)  # hours; 0: no acknowledgement asked
ROLE_CHOICES = tuple(r.value for r in Role)
LIST_LIMIT = 10
NAMES_SHOWN = 30
MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database


def _id(data: str) -> int | None:
    """The id a button names, or None for anything that cannot be one."""
    return (
        int(data) if data.isascii() and data.isdigit() and len(data) <= 10 and int(data) <= MAX_ID else None
    )


# -- texts for recipients (the Composer the storage layer calls) ---------------------------------


def when(moment: datetime | None, school: School) -> str:
    """A stored instant as the school's wall-clock time, as people read it."""
    return notices.local(moment, school).strftime("%Y-%m-%d %H:%M") if moment else ""


class Texts:
    """Turns notices into outbox payloads in each recipient's language."""

    def notice(self, notice: Notice, school: School, delivery_id: int, locale: str) -> dict[str, Any]:
        return notice_reply(notice, school, delivery_id, locale, acked=False).to_payload()

    def reminder(
        self, notice: Notice, school: School, delivery_id: int, number: int, locale: str
    ) -> dict[str, Any]:
        text = messages.render(
            "notice_reminder",
            locale,
            title=notice.title,
            number=number,
            most=notices.MAX_REMINDERS,
            deadline=when(notice.ack_deadline, school),
        )
        buttons = (
            (
                Button(messages.label("button.ack", locale), f"{KEY}:a:{delivery_id}"),
                Button(messages.label("button.notice_open", locale), f"{KEY}:o:{delivery_id}"),
            ),
        )
        return Reply(text, buttons).to_payload()

    def digest(self, items: Sequence[Notice], school: School, locale: str) -> dict[str, Any]:
        text = messages.render("notice_digest", locale, school=school.name, items=items)
        return Reply(text).to_payload()


TEXTS = Texts()


def notice_reply(
    notice: Notice, school: School, delivery_id: int | None, locale: str, *, acked: bool
) -> Reply:
    """The notice as its recipient sees it, with the "got it" button while an acknowledgement is due."""
    text = messages.render(
        "notice",
        locale,
        school=school.name,
        title=notice.title,
        body=notice.body,
        urgent=notice.urgent,
        deadline=when(notice.ack_deadline, school),
        acked=acked,
        attachment=notice.attachment_name,
    )
    buttons: tuple[tuple[Button, ...], ...] = ()
    if notice.ack_deadline is not None and not acked and delivery_id is not None:
        buttons = ((Button(messages.label("button.ack", locale), f"{KEY}:a:{delivery_id}"),),)
    document = None
    if notice.attachment_path and notice.attachment_name:
        document = Attachment(notice.attachment_name, notice.attachment_path)
    return Reply(text, buttons, document)


def audience_label(audience: Audience, locale: str) -> str:
    role = messages.label(f"role.{audience.value}", locale) if audience.kind == "role" else ""
    return messages.format_label(f"audience.{audience.kind}", locale, value=audience.value, role=role)


# -- composing (admins) --------------------------------------------------------------------------


def _draft(ctx: Context) -> dict[str, Any]:
    if ctx.state is None or ctx.state.flow != FLOW_NAME:
        return {}
    return dict(ctx.state.data or {})


def _step(ctx: Context) -> str | None:
    return ctx.state.step if ctx.state is not None and ctx.state.flow == FLOW_NAME else None


async def start_compose(ctx: Context) -> list[Reply]:
    """Asks an admin for the notice's title."""
    if not await ctx.may(Action.SEND_NOTICE):
        return [ctx.reply("notice_only_admins")]
    await ctx.set_state(FLOW_NAME, "title", {})
    return [ctx.reply("notice_ask_title", most=notices.MAX_TITLE)]


async def typed(ctx: Context) -> list[Reply]:
    """Takes the title, the body, a send time or a crontab line, whichever step the draft is at."""
    if not await ctx.may(Action.SEND_NOTICE):
        await ctx.clear_state()
        return [ctx.reply("notice_only_admins")]
    step, draft, text = _step(ctx), _draft(ctx), ctx.event.text.strip()
    if step not in ("title", "body", "at", "cron"):
        return [ctx.reply("notice_use_buttons")]
    if ctx.event.media or not text:
        return [ctx.reply("notice_need_text")]
    if step == "title":
        if len(text) > notices.MAX_TITLE:
            return [ctx.reply("notice_too_long", most=notices.MAX_TITLE)]
        await ctx.set_state(FLOW_NAME, "body", {**draft, "title": text})
        return [ctx.reply("notice_ask_body", most=notices.MAX_BODY)]
    if step == "body":
        if len(text) > notices.MAX_BODY:
            return [ctx.reply("notice_too_long", most=notices.MAX_BODY)]
        await ctx.set_state(FLOW_NAME, "audience", {**draft, "body": text})
        return [_ask_audience(ctx)]
    assert ctx.identity.school is not None
    school, now = ctx.identity.school, utcnow()
    try:
        if step == "at":
            send_at = notices.parse_local(text, school)
            if send_at <= now:
                raise NoticeError("in_the_past", value=text)
            draft.update(send_at=send_at.isoformat(), cron=None)
        else:
            notices.next_fire(text, school, now)
            draft.update(cron=" ".join(text.split()), send_at=None)
    except NoticeError as exc:
        return [_problem(ctx, exc)]
    await ctx.set_state(FLOW_NAME, "ack", draft)
    return [_ask_ack(ctx)]


def _ask_audience(ctx: Context) -> Reply:
    kinds = [Button(ctx.label(f"button.audience_{k}"), f"{KEY}:t:{k}") for k in notices.AUDIENCE_KINDS]
    return ctx.reply("notice_ask_audience", buttons=[kinds[:2], kinds[2:]])


def _ask_when(ctx: Context) -> Reply:
    buttons = [[Button(ctx.label(f"button.when_{w}"), f"{KEY}:w:{w}") for w in ("now", "at", "cron")]]
    return ctx.reply("notice_ask_when", buttons=buttons)


def _ask_ack(ctx: Context) -> Reply:
    buttons = [Button(ctx.label(f"button.ack_{h}"), f"{KEY}:h:{h}") for h in ACK_CHOICES]
    return ctx.reply("notice_ask_ack", buttons=[buttons[:2], buttons[2:]])


def _problem(ctx: Context, exc: NoticeError) -> Reply:
    return ctx.reply(
        "notice_problem", problem=messages.format_label(f"notice_error.{exc.key}", ctx.locale, **exc.params)
    )


def _rows(buttons: list[Button], width: int = 2) -> list[list[Button]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


async def _choose_audience(ctx: Context, kind: str, data: str) -> list[Reply]:
    """Offers grades, classes or roles; or, once chosen, stores the audience and asks when."""
    assert ctx.identity.school is not None
    school_id = ctx.identity.school.id
    draft = _draft(ctx)
    audience: Audience | None = None
    if kind == "t":
        if data == "school":
            audience = Audience("school")
        elif data in ("grade", "class"):
            choices = await notices.audience_choices(ctx.session, school_id)
            items = choices.grades if data == "grade" else choices.classes
            tag = "g" if data == "grade" else "c"
            buttons = [Button(c.grade if data == "grade" else c.name, f"{KEY}:{tag}:{c.id}") for c in items]
            return [ctx.reply("notice_ask_pick", kind=data, buttons=_rows(buttons, 3))]
        elif data == "role":
            buttons = [Button(ctx.label(f"role.{r}"), f"{KEY}:r:{r}") for r in ROLE_CHOICES]
            return [ctx.reply("notice_ask_pick", kind=data, buttons=_rows(buttons, 3))]
        else:
            return [ctx.reply("button_invalid")]
    elif kind == "r":
        if data not in ROLE_CHOICES:
            return [ctx.reply("button_invalid")]
        audience = Audience("role", data)
    else:
        choices = await notices.audience_choices(ctx.session, school_id)
        picked = next((c for c in choices.classes if str(c.id) == data), None)
        if picked is None:
            return [ctx.reply("button_invalid")]
        audience = Audience("grade", picked.grade) if kind == "g" else Audience("class", picked.name)
    await ctx.set_state(FLOW_NAME, "when", {**draft, "audience": str(audience)})
    return [_ask_when(ctx)]


async def _choose_when(ctx: Context, data: str) -> list[Reply]:
    """Now goes straight on; a time or a crontab line is typed next."""
    draft = _draft(ctx)
    if data == "now":
        await ctx.set_state(FLOW_NAME, "ack", {**draft, "send_at": None, "cron": None})
        return [_ask_ack(ctx)]
    if data == "at":
        await ctx.set_state(FLOW_NAME, "at", draft)
        assert ctx.identity.school is not None
        example = when(utcnow().replace(minute=0, second=0, microsecond=0), ctx.identity.school)
        return [ctx.reply("notice_ask_at", example=example)]
    if data == "cron":
        await ctx.set_state(FLOW_NAME, "cron", draft)
        return [ctx.reply("notice_ask_cron")]
    return [ctx.reply("button_invalid")]


async def _choose_ack(ctx: Context, data: str) -> list[Reply]:
    if not data.isdigit() or int(data) not in ACK_CHOICES:
        return [ctx.reply("button_invalid")]
    await ctx.set_state(FLOW_NAME, "urgent", {**_draft(ctx), "ack_hours": int(data) or None})
    buttons = [
        [Button(ctx.label("button.normal"), f"{KEY}:u:0"), Button(ctx.label("button.urgent"), f"{KEY}:u:1")]
    ]
    return [ctx.reply("notice_ask_urgent", buttons=buttons)]


def _draft_of(data: dict[str, Any]) -> Draft:
    send_at = data.get("send_at")
    return Draft(
        title=str(data.get("title", "")),
        body=str(data.get("body", "")),
        audience=Audience.parse(str(data.get("audience", "school"))),
        urgent=bool(data.get("urgent")),
        send_at=datetime.fromisoformat(send_at).astimezone(UTC) if send_at else None,
        cron=data.get("cron") or None,
        ack_within_hours=data.get("ack_hours") or None,
    )


async def _preview(ctx: Context, data: str) -> list[Reply]:
    """Shows the notice as recipients will see it, who gets it and when, and asks to confirm."""
    if data not in ("0", "1"):
        return [ctx.reply("button_invalid")]
    school = ctx.identity.school
    assert school is not None
    raw = {**_draft(ctx), "urgent": data == "1"}
    try:
        draft = _draft_of(raw)
        await notices.check_draft(ctx.session, school, draft, utcnow())
    except NoticeError as exc:
        await ctx.clear_state()
        return [_problem(ctx, exc)]
    recipients = await notices.resolve_audience(ctx.session, school.id, draft.audience)
    await ctx.set_state(FLOW_NAME, "confirm", raw)
    shown = Notice(
        title=draft.title,
        body=draft.body,
        urgent=draft.urgent,
        ack_deadline=None,
        attachment_name=None,
        attachment_path=None,
    )
    preview = notice_reply(shown, school, None, ctx.locale, acked=False)
    buttons = [
        [Button(ctx.label("button.send"), f"{KEY}:y:go"), Button(ctx.label("button.discard"), f"{KEY}:q:x")]
    ]
    summary = ctx.reply(
        "notice_preview",
        audience=audience_label(draft.audience, ctx.locale),
        accounts=len(recipients.account_ids),
        not_joined=recipients.not_joined,
        send_at=when(draft.send_at, school),
        cron=draft.cron or "",
        next_run=when(notices.next_fire(draft.cron, school, utcnow()), school) if draft.cron else "",
        ack_hours=draft.ack_within_hours or 0,
        urgent=draft.urgent,
        buttons=buttons,
    )
    return [preview, summary]


async def _confirm(ctx: Context) -> list[Reply]:
    """Stores the notice: sends it now (outbox rows in this transaction) or leaves it to the scheduler."""
    school = ctx.identity.school
    assert school is not None
    data = _draft(ctx)
    await ctx.clear_state()
    try:
        issued = await notices.create_notice(
            ctx.session,
            school,
            _draft_of(data),
            utcnow(),
            TEXTS,
            author_person_id=ctx.identity.person.id if ctx.identity.person else None,
            actor_account_id=ctx.account_id,
        )
    except NoticeError as exc:
        return [_problem(ctx, exc)]
    notice = issued.notice
    return [
        ctx.reply(
            "notice_done",
            id=notice.id,
            status=notice.status,
            accounts=issued.accounts,
            held=issued.held,
            not_joined=issued.not_joined,
            send_at=when(notice.send_at, school),
            next_run=when(notices.next_fire(notice.cron, school, utcnow()), school) if notice.cron else "",
            buttons=[[Button(ctx.label("button.notice_report"), f"{KEY}:v:{notice.id}")]],
        )
    ]


# -- reading and acknowledging (everyone) --------------------------------------------------------


async def list_mine(ctx: Context) -> list[Reply]:
    """Lists the notices sent to this chat, newest first, with a button to open each."""
    if not await ctx.may(Action.READ_NOTICES):
        return [ctx.reply("not_bound", terms_url=ctx.links.terms())]
    school = ctx.identity.school
    assert school is not None
    items = await notices.recent_for_account(ctx.session, ctx.account_id, LIST_LIMIT)
    rows = [
        {
            "title": n.title,
            "sent": when(d.created_at, school),
            "asks_ack": n.ack_deadline is not None,
            "acked": d.acked_at is not None,
            "deadline": when(n.ack_deadline, school),
            "held": d.status == DeliveryStatus.HELD.value,
        }
        for d, n in items
    ]
    buttons = [[Button(messages.markup.plain(n.title, 30), f"{KEY}:o:{d.id}")] for d, n in items]
    if authz.permits(ctx.identity.roles, Action.MANAGE_NOTICES):
        buttons.append([Button(ctx.label("button.notices_sent"), f"{KEY}:l:all")])
    return [ctx.reply("notice_list", items=rows, buttons=buttons)]


async def _open(ctx: Context, data: str) -> list[Reply]:
    """Shows one of this chat's notices again (with "got it" while it is still due)."""
    if not await ctx.may(Action.READ_NOTICES):
        return [ctx.reply("button_invalid")]
    delivery_id = _id(data)
    found = await notices.delivery_of(ctx.session, delivery_id, ctx.account_id) if delivery_id else None
    if found is None or ctx.identity.school is None:
        return [ctx.reply("button_invalid")]
    delivery, notice = found
    return [
        notice_reply(
            notice, ctx.identity.school, delivery.id, ctx.locale, acked=delivery.acked_at is not None
        )
    ]


async def _acknowledge(ctx: Context, data: str) -> list[Reply]:
    """Records "got it" for this chat's own delivery; anything else is refused and audited."""
    if not await ctx.may(Action.ACK_NOTICE):
        return [ctx.reply("notice_ack_refused", outcome=AckOutcome.REFUSED.value, title="")]
    result = await notices.acknowledge(ctx.session, _id(data) or 0, ctx.account_id, utcnow())
    if result.outcome is AckOutcome.ACKED and result.notice is not None:
        return [ctx.reply("notice_acked", title=result.notice.title, late=result.late)]
    title = result.notice.title if result.notice else ""
    return [ctx.reply("notice_ack_refused", outcome=result.outcome.value, title=title)]


# -- the admin's view ----------------------------------------------------------------------------


async def _admin_list(ctx: Context) -> list[Reply]:
    assert ctx.identity.school is not None
    school = ctx.identity.school
    items = await notices.recent_for_school(ctx.session, school.id, LIST_LIMIT)
    rows = [
        {
            "id": n.id,
            "title": n.title,
            "status": n.status,
            "when": when(n.sent_at or n.send_at or n.created_at, school),
        }
        for n in items
    ]
    buttons = [[Button(f"#{n.id} {messages.markup.plain(n.title, 24)}", f"{KEY}:v:{n.id}")] for n in items]
    return [ctx.reply("notice_admin_list", items=rows, buttons=buttons)]


async def _admin_view(ctx: Context, data: str) -> list[Reply]:
    """The report of one notice: counts, who has not acknowledged, a series' issues."""
    school = ctx.identity.school
    assert school is not None
    try:
        notice_id = _id(data)
        report = await notices.report(ctx.session, notice_id, school.id) if notice_id else None
    except NoticeError:
        report = None
    if report is None:
        return [ctx.reply("button_invalid")]
    return [report_reply(ctx, report)]


def report_reply(ctx: Context, report: notices.Report) -> Reply:
    notice, school = report.notice, report.school
    missing = [describe(row, ctx.locale) for row in report.not_acknowledged]
    buttons: list[list[Button]] = [
        [Button(f"#{i.id} {when(i.sent_at, school)}", f"{KEY}:v:{i.id}")] for i in report.issues[:5]
    ]
    if notice.status in (NoticeStatus.SCHEDULED.value, NoticeStatus.RECURRING.value):
        buttons.append([Button(ctx.label("button.notice_stop"), f"{KEY}:x:{notice.id}")])
    return ctx.reply(
        "notice_report",
        id=notice.id,
        title=notice.title,
        status=notice.status,
        audience=audience_label(notices.audience_of(notice), ctx.locale),
        sent=when(notice.sent_at, school),
        send_at=when(notice.send_at, school),
        cron=notice.cron or "",
        deadline=when(notice.ack_deadline, school),
        counts=report.counts,
        missing=missing[:NAMES_SHOWN],
        more=max(0, len(missing) - NAMES_SHOWN),
        issues=len(report.issues),
        buttons=buttons,
    )


def describe(row: notices.ReportRow, locale: str) -> str:
    """A recipient as a teacher would say it: name, relation and child, class.

    For example 董静（曹若曦的母亲，一年级(1)班）.
    """
    names = " / ".join(row.names) or "?"
    details = [
        messages.format_label(
            "notice_report.child", locale, student=c.student, relation=c.relation, class_name=c.class_name
        )
        for c in row.children
    ] or [messages.label(f"role.{r}", locale) for r in row.roles]
    if not details:
        return names
    separator = messages.label("notice_report.separator", locale)
    return messages.format_label("notice_report.person", locale, names=names, details=separator.join(details))


async def _stop(ctx: Context, data: str) -> list[Reply]:
    assert ctx.identity.school is not None
    try:
        notice_id = _id(data)
        notice = await notices.cancel(ctx.session, notice_id, ctx.identity.school.id) if notice_id else None
    except NoticeError as exc:
        return [_problem(ctx, exc)]
    if notice is None:
        return [ctx.reply("button_invalid")]
    return [ctx.reply("notice_stopped", id=notice.id, title=notice.title)]


# -- routing -------------------------------------------------------------------------------------

_ADMIN_STEPS = {
    "t": "audience",
    "g": "audience",
    "c": "audience",
    "r": "audience",
    "w": "when",
    "h": "ack",
    "u": "urgent",
    "y": "confirm",
}


async def command(ctx: Context) -> list[Reply]:
    """/notice composes (admins only); /notices lists what this chat was sent."""
    if ctx.event.command == "notice":
        return await start_compose(ctx)
    return await list_mine(ctx)


async def pressed(ctx: Context, data: str) -> list[Reply]:
    """Routes `n:<what>:<id or choice>`; recipients' buttons first, then the admin's."""
    what, _, arg = data.partition(":")
    if what == "a":
        return await _acknowledge(ctx, arg)
    if what == "o":
        return await _open(ctx, arg)
    if not await ctx.may(Action.MANAGE_NOTICES if what in ("l", "v", "x") else Action.SEND_NOTICE):
        if _step(ctx) is not None:
            await ctx.clear_state()  # no longer an admin: the draft goes too
        return [ctx.reply("notice_only_admins")]
    if what == "l":
        return await _admin_list(ctx)
    if what == "v":
        return await _admin_view(ctx, arg)
    if what == "x":
        return await _stop(ctx, arg)
    if what == "q":
        await ctx.clear_state()
        return [ctx.reply("cancelled")]
    step = _ADMIN_STEPS.get(what)
    if step is None or _step(ctx) != step:
        return [ctx.reply("notice_stale_button")]
    if step == "audience":
        return await _choose_audience(ctx, what, arg)
    if step == "when":
        return await _choose_when(ctx, arg)
    if step == "ack":
        return await _choose_ack(ctx, arg)
    if step == "urgent":
        return await _preview(ctx, arg)
    return await _confirm(ctx)


FLOW = Flow(
    name=FLOW_NAME,
    key=KEY,
    commands=("notice", "notices"),
    on_command=command,
    on_button=pressed,
    on_message=typed,
    menu_commands=("notices",),
)
