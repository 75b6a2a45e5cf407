"""/pickup for parents: who may collect each child, one-day authorisations, going home alone,
and the answer to "an adult not on the list is here" (allow this once, or refuse)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import messages
from handlers.dialog import Button, Context, Flow, Reply
from storage import agreements, authz, handover, pickup
from storage.authz import Action
from storage.clock import utcnow
from storage.models import Lane, PickupAdult, SchoolClass, Student

NAME = "pickup"
KEY = "k"


def _today(ctx: Context) -> date:
    assert ctx.identity.school is not None
    return handover.local_today(ctx.identity.school, utcnow())


def _people(ctx: Context) -> list[int]:
    return [p.id for p in ctx.identity.people]


async def start(ctx: Context) -> list[Reply]:
    """Shows the child's list (after choosing the child when there are several)."""
    children = ctx.identity.children
    if not await ctx.may(Action.MANAGE_PICKUP) or not children:
        return [ctx.reply("apply_not_parent")]
    if len(children) == 1:
        return await show(ctx, children[0].student_id)
    return [
        ctx.reply(
            "pickup_choose_child", buttons=[[Button(c.name, f"{KEY}:s:{c.student_id}")] for c in children]
        )
    ]


async def show(ctx: Context, student_id: int) -> list[Reply]:
    if student_id not in {c.student_id for c in ctx.identity.children}:
        await authz.refuse(
            ctx.session,
            ctx.identity,
            Action.MANAGE_PICKUP,
            reason="not_guardian",
            target_type="student",
            target_id=student_id,
        )
        return [ctx.reply("button_invalid")]
    student = await ctx.session.get(Student, student_id)
    adults = await pickup.adults(ctx.session, student_id, _today(ctx), later_too=True)
    alone = await pickup.alone_consent(ctx.session, student_id)
    rows = [
        [
            Button(ctx.label("pickup.add"), f"{KEY}:add:{student_id}"),
            Button(ctx.label("pickup.add_one_day"), f"{KEY}:one:{student_id}"),
        ]
    ]
    rows += [[Button(ctx.text("pickup_remove_button", adult=a), f"{KEY}:rm:{a.id}")] for a in adults]
    if alone:
        rows.append([Button(ctx.label("pickup.alone_revoke"), f"{KEY}:ar:{student_id}")])
    else:
        rows.append([Button(ctx.label("pickup.alone"), f"{KEY}:al:{student_id}")])
    return [
        ctx.reply(
            "pickup_list", child=student.name if student else "", adults=adults, alone=alone, buttons=rows
        )
    ]


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    action, _, raw = payload.partition(":")
    if not await ctx.may(Action.ANSWER_PICKUP_REQUEST if action in ("ok", "no") else Action.MANAGE_PICKUP):
        return [ctx.reply("button_invalid")]
    if not raw.isdigit() and action not in ("skip", "d"):
        return [ctx.reply("button_invalid")]
    now = utcnow()
    if action == "s":
        return await show(ctx, int(raw))
    if action in ("add", "one"):
        if int(raw) not in {c.student_id for c in ctx.identity.children}:
            return [ctx.reply("button_invalid")]
        await ctx.set_state(NAME, "name", {"student": int(raw), "one_day": action == "one"})
        return [ctx.reply("pickup_ask_name", days=ctx.retention.pickup_days)]
    if action == "rm":
        try:
            change = await pickup.remove_adult(ctx.session, _people(ctx), ctx.account_id, int(raw), now)
        except pickup.NotGuardian:
            return [ctx.reply("button_invalid")]
        if change is None or change.adult is None:
            return [ctx.reply("button_invalid")]
        await _tell_others(ctx, change, "pickup_removed")
        return await show(ctx, change.adult.student_id)
    if action == "al":
        return await _alone_offer(ctx, int(raw))
    if action == "ay":
        return await _alone_confirm(ctx, int(raw))
    if action == "ar":
        try:
            change = await pickup.revoke_alone(ctx.session, _people(ctx), ctx.account_id, int(raw), now)
        except pickup.NotGuardian:
            return [ctx.reply("button_invalid")]
        if change:
            await _tell_others(ctx, change, "pickup_alone_revoked", student_id=int(raw))
        return await show(ctx, int(raw))
    if action in ("ok", "no"):
        return await _decide(ctx, int(raw), action == "ok")
    if action in ("skip", "d") and ctx.state and ctx.state.flow == NAME:
        return await _step_button(ctx, action, raw)
    return [ctx.reply("button_invalid")]


async def _alone_text(ctx: Context, student_id: int) -> tuple[str, str] | None:
    student = await ctx.session.get(Student, student_id)
    if student is None or student_id not in {c.student_id for c in ctx.identity.children}:
        return None
    cls = await ctx.session.get(SchoolClass, student.class_id)
    if not pickup.old_enough_to_go_alone(cls.grade if cls else ""):
        return ctx.text("pickup_alone_too_young", child=student.name, grade=pickup.ALONE_MIN_GRADE), ""
    text = ctx.text("pickup_alone_consent", child=student.name)
    return text, agreements.digest(text)


async def _alone_offer(ctx: Context, student_id: int) -> list[Reply]:
    found = await _alone_text(ctx, student_id)
    if found is None:
        return [ctx.reply("button_invalid")]
    text, sha = found
    if not sha:
        return [Reply(text)]
    return [Reply(text, ((Button(ctx.label("pickup.alone_confirm"), f"{KEY}:ay:{student_id}"),),))]


async def _alone_confirm(ctx: Context, student_id: int) -> list[Reply]:
    found = await _alone_text(ctx, student_id)
    if found is None or not found[1]:
        return [ctx.reply("button_invalid")]
    change = await pickup.consent_alone(
        ctx.session, _people(ctx), ctx.account_id, student_id, found[1], utcnow()
    )
    await _tell_others(ctx, change, "pickup_alone_given", student_id=student_id)
    return await show(ctx, student_id)


async def _decide(ctx: Context, request_id: int, allow: bool) -> list[Reply]:
    result = await handover.decide_request(
        ctx.session, request_id, _people(ctx), ctx.account_id, allow, utcnow()
    )
    if result.outcome is handover.Outcome.FORBIDDEN or result.request is None:
        return [ctx.reply("button_invalid")]
    req = result.request
    student = await ctx.session.get(Student, req.student_id)
    child = student.name if student else ""
    if result.outcome is handover.Outcome.ALREADY:
        return [ctx.reply("pickup_request_answered", child=child, req=req)]

    def hand_over(locale: str) -> list[list[Button]]:
        if req.status != "allowed":
            return []
        label = messages.label("today.hand_over_allowed", locale)
        return [[Button(label, f"h:r:{req.group_id}:{req.student_id}:{req.id}")]]

    await ctx.notify(
        req.staff_person_id, "unlisted_decided", lane=Lane.SAFETY, buttons=hand_over, child=child, req=req
    )
    for other in result.guardians:
        await ctx.notify(other, "unlisted_decided_guardian", lane=Lane.SAFETY, child=child, req=req)
    return [ctx.reply("pickup_request_answered", child=child, req=req)]


async def typed(ctx: Context) -> list[Reply]:
    """Name → relation → phone's last four digits (or skip) → the day, for a one-day authorisation."""
    state = ctx.state
    text = ctx.event.text.strip()
    if not await ctx.may(Action.MANAGE_PICKUP):
        await ctx.clear_state()
        return [ctx.reply("button_invalid")]
    if state is None or ctx.event.media or not text:
        return [ctx.reply("pickup_ask_name", days=ctx.retention.pickup_days)]
    data = dict(state.data)
    if state.step == "name":
        if len(text) > pickup.MAX_NAME:
            return [ctx.reply("pickup_too_long", max=pickup.MAX_NAME)]
        await ctx.set_state(NAME, "relation", {**data, "name": text})
        return [ctx.reply("pickup_ask_relation")]
    if state.step == "relation":
        if len(text) > pickup.MAX_RELATION:
            return [ctx.reply("pickup_too_long", max=pickup.MAX_RELATION)]
        await ctx.set_state(NAME, "phone", {**data, "relation": text})
        return [ctx.reply("pickup_ask_phone", buttons=[[Button(ctx.label("button.skip"), f"{KEY}:skip")]])]
    if state.step == "phone":
        digits = re.sub(r"\D", "", text)
        if len(digits) < 4:
            return [
                ctx.reply("pickup_ask_phone", buttons=[[Button(ctx.label("button.skip"), f"{KEY}:skip")]])
            ]
        return await _after_phone(ctx, {**data, "phone": digits[-4:]})
    if state.step == "day":
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return [ctx.reply("pickup_ask_day", buttons=_day_buttons(ctx))]
        return await _save(ctx, data, day)
    return [ctx.reply("apply_use_buttons")]


def _day_buttons(ctx: Context) -> list[list[Button]]:
    return [
        [Button(ctx.label("pickup.today"), f"{KEY}:d:0"), Button(ctx.label("pickup.tomorrow"), f"{KEY}:d:1")]
    ]


async def _step_button(ctx: Context, action: str, raw: str) -> list[Reply]:
    assert ctx.state is not None
    data = dict(ctx.state.data)
    if action == "skip" and ctx.state.step == "phone":
        return await _after_phone(ctx, {**data, "phone": None})
    if action == "d" and ctx.state.step == "day" and raw in ("0", "1"):
        return await _save(ctx, data, _today(ctx) + timedelta(days=int(raw)))
    return [ctx.reply("button_invalid")]


async def _after_phone(ctx: Context, data: dict[str, Any]) -> list[Reply]:
    if data.get("one_day"):
        await ctx.set_state(NAME, "day", data)
        return [ctx.reply("pickup_ask_day", buttons=_day_buttons(ctx))]
    return await _save(ctx, data, None)


async def _save(ctx: Context, data: dict[str, Any], day: date | None) -> list[Reply]:
    if day is not None and not (_today(ctx) <= day <= _today(ctx) + timedelta(days=60)):
        return [ctx.reply("pickup_ask_day", buttons=_day_buttons(ctx))]
    await ctx.clear_state()
    try:
        change = await pickup.add_adult(
            ctx.session,
            _people(ctx),
            ctx.account_id,
            int(data["student"]),
            name=str(data["name"]),
            relation=str(data["relation"]),
            phone_tail=data.get("phone"),
            only_on=day,
            today=_today(ctx),
            now=utcnow(),
        )
    except pickup.NotGuardian:
        return [ctx.reply("button_invalid")]
    except ValueError:
        return [ctx.reply("pickup_too_many", max=pickup.MAX_ADULTS)]
    await _tell_others(ctx, change, "pickup_added")
    return [ctx.reply("pickup_added_self", adult=change.adult)]


async def _tell_others(
    ctx: Context, change: pickup.Change, template: str, student_id: int | None = None
) -> None:
    """Every change is told to the child's other guardians."""
    adult: PickupAdult | None = change.adult
    sid = adult.student_id if adult else student_id
    student = await ctx.session.get(Student, sid) if sid else None
    by = ctx.identity.person.name if ctx.identity.person else ""
    for other in change.others:
        await ctx.notify(other, template, child=student.name if student else "", adult=adult, by=by)


FLOW = Flow(
    name=NAME,
    key=KEY,
    commands=("pickup",),
    on_command=start,
    on_button=pressed,
    on_message=typed,
    menu_commands=("pickup",),
)
