"""/absent: a parent says a child will not attend on a day or a range of days, with a reason."""

from __future__ import annotations

import re
from datetime import date, timedelta

from handlers.dialog import Button, Context, Flow, Reply
from storage import authz, handover, pickup
from storage.authz import Action
from storage.clock import utcnow
from storage.models import Student

NAME = "absent"
KEY = "b"
MAX_DAYS = 60


def _today(ctx: Context) -> date:
    assert ctx.identity.school is not None
    return handover.local_today(ctx.identity.school, utcnow())


def parse_days(text: str, today: date) -> tuple[date, date] | None:
    """ "2026-12-03" or "2026-12-03 2026-12-05" (any separator): one day or a range, not in the past."""
    found = re.findall(r"\d{4}-\d{2}-\d{2}", text)
    try:
        days = [date.fromisoformat(d) for d in found]
    except ValueError:
        return None
    if len(days) not in (1, 2):
        return None
    first, last = days[0], days[-1]
    if first > last or first < today or (last - first).days > MAX_DAYS:
        return None
    return first, last


async def start(ctx: Context) -> list[Reply]:
    children = ctx.identity.children
    if not await ctx.may(Action.REPORT_ABSENCE) or not children:
        return [ctx.reply("apply_not_parent")]
    if len(children) == 1:
        return await _ask_day(ctx, children[0].student_id)
    return [
        ctx.reply(
            "pickup_choose_child", buttons=[[Button(c.name, f"{KEY}:s:{c.student_id}")] for c in children]
        )
    ]


async def _ask_day(ctx: Context, student_id: int) -> list[Reply]:
    if student_id not in {c.student_id for c in ctx.identity.children}:
        await authz.refuse(
            ctx.session,
            ctx.identity,
            Action.REPORT_ABSENCE,
            reason="not_guardian",
            target_type="student",
            target_id=student_id,
        )
        return [ctx.reply("button_invalid")]
    await ctx.set_state(NAME, "day", {"student": student_id})
    rows = [
        [Button(ctx.label("pickup.today"), f"{KEY}:d:0"), Button(ctx.label("pickup.tomorrow"), f"{KEY}:d:1")]
    ]
    return [ctx.reply("absent_ask_day", buttons=rows)]


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    if not await ctx.may(Action.REPORT_ABSENCE):
        return [ctx.reply("button_invalid")]
    action, _, raw = payload.partition(":")
    if action == "s" and raw.isdigit():
        return await _ask_day(ctx, int(raw))
    state = ctx.state
    if action == "d" and raw in ("0", "1") and state and state.flow == NAME and state.step == "day":
        day = _today(ctx) + timedelta(days=int(raw))
        await ctx.set_state(NAME, "reason", {**state.data, "first": day.isoformat(), "last": day.isoformat()})
        return [ctx.reply("absent_ask_reason")]
    return [ctx.reply("button_invalid")]


async def typed(ctx: Context) -> list[Reply]:
    state = ctx.state
    text = ctx.event.text.strip()
    if not await ctx.may(Action.REPORT_ABSENCE):
        await ctx.clear_state()
        return [ctx.reply("button_invalid")]
    if state is None or ctx.event.media or not text:
        return [ctx.reply("absent_ask_reason")]
    if state.step == "day":
        days = parse_days(text, _today(ctx))
        if days is None:
            return [ctx.reply("absent_bad_day", max=MAX_DAYS)]
        await ctx.set_state(
            NAME, "reason", {**state.data, "first": days[0].isoformat(), "last": days[1].isoformat()}
        )
        return [ctx.reply("absent_ask_reason")]
    if len(text) > pickup.MAX_REASON:
        return [ctx.reply("pickup_too_long", max=pickup.MAX_REASON)]
    data = dict(state.data)
    await ctx.clear_state()
    first, last = date.fromisoformat(data["first"]), date.fromisoformat(data["last"])
    try:
        await pickup.report_absence(
            ctx.session,
            [p.id for p in ctx.identity.people],
            ctx.account_id,
            int(data["student"]),
            first,
            last,
            text,
            utcnow(),
        )
    except pickup.NotGuardian:
        return [ctx.reply("button_invalid")]
    student = await ctx.session.get(Student, int(data["student"]))
    return [ctx.reply("absent_done", child=student.name if student else "", first=first, last=last)]


FLOW = Flow(
    name=NAME,
    key=KEY,
    commands=("absent",),
    on_command=start,
    on_button=pressed,
    on_message=typed,
    menu_commands=("absent",),
)
