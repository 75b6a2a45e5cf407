"""/today for staff on duty: the roster, attendance in few taps, and handover in two taps.

Tap a child, then the adult: the handover is recorded and the parents are told at once (safety
lane). An adult not on the list: "not on the list", type who it is, and the parents are asked to
allow or refuse; the child stays until they answer.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import messages
from handlers.dialog import Button, Context, Flow, Reply
from storage import authz, handover, pickup, rosters
from storage.authz import Action
from storage.clock import utcnow
from storage.enrollment import guardians_of
from storage.handover import Outcome
from storage.models import Lane, Person, ServiceGroup, Student

NAME = "today"
KEY = "h"


def _today(ctx: Context) -> date:
    assert ctx.identity.school is not None
    return handover.local_today(ctx.identity.school, utcnow())


def _ids(parts: list[str], count: int) -> list[int] | None:
    if len(parts) != count or not all(p.isdigit() and len(p) < 12 for p in parts):
        return None
    return [int(p) for p in parts]


async def roster(ctx: Context, group: ServiceGroup | None = None) -> list[Reply]:
    """Shows each of today's groups with every child's state, and what can be tapped."""
    if not await ctx.may(Action.TAKE_ATTENDANCE):
        return [ctx.reply("today_not_staff")]
    people = [p.id for p in ctx.identity.people]
    day = _today(ctx)
    groups = [group] if group else await handover.on_duty(ctx.session, people, day)
    if not groups:
        await authz.refuse(ctx.session, ctx.identity, Action.TAKE_ATTENDANCE, reason="not_on_duty")
        return [ctx.reply("today_not_staff")]
    replies = []
    for g in groups:
        state = await handover.group_day(ctx.session, g, day, utcnow())
        rows = [[Button(ctx.label("today.all_present"), f"{KEY}:ap:{g.id}")]] if state.children else []
        for child in state.children:
            if child.handover is None:
                label = ctx.text("today_child_button", child=child)
                rows.append([Button(label, f"{KEY}:c:{g.id}:{child.student_id}")])
        replies.append(ctx.reply("today_roster", state=state, buttons=rows))
    return replies


async def _group(ctx: Context, group_id: int, action: Action) -> ServiceGroup | None:
    """The group if this person is on duty with it today (or an admin of its school); else audited."""
    group = await ctx.session.get(ServiceGroup, group_id)
    people = [p.id for p in ctx.identity.people]
    if group is None or not await handover.may_act(ctx.session, people, group, _today(ctx)):
        await authz.refuse(
            ctx.session, ctx.identity, action, reason="not_on_duty", target_type="group", target_id=group_id
        )
        return None
    return group


async def child_menu(ctx: Context, group: ServiceGroup, student_id: int) -> list[Reply]:
    """The child's authorised adults for today (with their relation), and the other choices."""
    day = _today(ctx)
    student = await ctx.session.get(Student, student_id)
    if student is None:
        return [ctx.reply("button_invalid")]
    adults = await pickup.adults(ctx.session, student_id, day)
    rows = [
        [Button(ctx.text("today_adult_button", adult=a), f"{KEY}:h:{group.id}:{student_id}:{a.id}")]
        for a in adults
    ]
    state = await handover.group_day(ctx.session, group, day, utcnow())
    child = next((c for c in state.children if c.student_id == student_id), None)
    if child and child.request and child.request.status == "allowed":
        rows.append(
            [
                Button(
                    ctx.text("today_allowed_button", request=child.request),
                    f"{KEY}:r:{group.id}:{student_id}:{child.request.id}",
                )
            ]
        )
    if await pickup.alone_consent(ctx.session, student_id):
        rows.append([Button(ctx.label("today.alone"), f"{KEY}:al:{group.id}:{student_id}")])
    rows.append([Button(ctx.label("today.not_on_list"), f"{KEY}:n:{group.id}:{student_id}")])
    rows.append([Button(ctx.label("today.absent"), f"{KEY}:ab:{group.id}:{student_id}")])
    return [ctx.reply("today_child", child=student.name, adults=adults, buttons=rows)]


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    parts = payload.split(":")
    action, rest = parts[0], parts[1:]
    ids = _ids(rest, {"ap": 1, "ro": 1, "c": 2, "ab": 2, "n": 2, "al": 2, "h": 3, "r": 3}.get(action, -1))
    if ids is None:
        return [ctx.reply("button_invalid")]
    wanted = Action.TAKE_ATTENDANCE if action in ("ap", "ro", "ab") else Action.CONFIRM_HANDOVER
    if not await ctx.may(wanted):
        return [ctx.reply("today_not_allowed")]
    group = await _group(ctx, ids[0], wanted)
    if group is None:
        return [ctx.reply("today_not_allowed")]
    people = [p.id for p in ctx.identity.people]
    day, now = _today(ctx), utcnow()
    if action == "ap":
        await handover.mark(ctx.session, group, day, people, now, absent=[])
        return await roster(ctx, group)
    if action == "ro":
        return await roster(ctx, group)
    student_id = ids[1]
    # The child's menu names the adults, and "not on the list" asks the parents: this group's children only.
    if action in ("c", "n") and not await rosters.expected(ctx.session, group, student_id, day, now):
        return [ctx.reply("button_invalid")]
    if action == "c":
        return await child_menu(ctx, group, student_id)
    if action == "ab":
        marked = await handover.mark(ctx.session, group, day, people, now, present=[], absent=[student_id])
        await _alert_absent(ctx, marked.unexpected_absent)
        return await roster(ctx, group)
    if action == "n":
        await ctx.set_state(NAME, "adult_name", {"group": group.id, "student": student_id})
        return [ctx.reply("today_ask_adult")]
    result = await handover.hand_over(
        ctx.session,
        group,
        student_id,
        day,
        people,
        now,
        adult_id=ids[2] if action == "h" else None,
        request_id=ids[2] if action == "r" else None,
        alone=action == "al",
    )
    return await _after_handover(ctx, group, result)


async def _after_handover(ctx: Context, group: ServiceGroup, result: handover.HandedOver) -> list[Reply]:
    if result.outcome is Outcome.ALREADY and result.handover is not None:
        return [
            ctx.reply(
                "today_already",
                h=result.handover,
                when=result.handover.handed_at.astimezone(_tz(ctx)).strftime("%H:%M"),
                staff=await _name(ctx, result.handover.staff_person_id),
            )
        ]
    if result.outcome is not Outcome.OK or result.handover is None:
        return [ctx.reply("today_refused", outcome=result.outcome.value)]
    row = result.handover
    staff = ctx.identity.person.name if ctx.identity.person else ""
    when = row.handed_at.astimezone(_tz(ctx)).strftime("%H:%M")
    await ctx.notify_all(
        result.guardians, "handover_done", lane=Lane.SAFETY, child=result.child, h=row, staff=staff, time=when
    )
    # The roster is one tap away: building it here would hold the parents' message back.
    back = [[Button(ctx.label("today.roster"), f"{KEY}:ro:{group.id}")]]
    return [ctx.reply("today_handed_over", child=result.child, h=row, time=when, buttons=back)]


async def typed(ctx: Context) -> list[Reply]:
    """Takes the unlisted adult's name, then their relation, then asks the parents."""
    state = ctx.state
    text = ctx.event.text.strip()
    if state is None or not text or ctx.event.media or len(text) > 50:
        return [ctx.reply("today_ask_adult")]
    data = dict(state.data)
    if not await ctx.may(Action.CONFIRM_HANDOVER):
        await ctx.clear_state()
        return [ctx.reply("today_not_allowed")]
    if state.step == "adult_name":
        await ctx.set_state(NAME, "adult_relation", {**data, "name": text})
        return [ctx.reply("today_ask_relation")]
    group = await _group(ctx, int(data["group"]), Action.CONFIRM_HANDOVER)
    await ctx.clear_state()
    if group is None:
        return [ctx.reply("today_not_allowed")]
    people = [p.id for p in ctx.identity.people]
    result = await handover.request_unlisted(
        ctx.session, group, int(data["student"]), _today(ctx), people, str(data["name"]), text, utcnow()
    )
    if result.request is None:
        return [ctx.reply("today_refused", outcome=result.outcome.value)]
    req = result.request
    student = await ctx.session.get(Student, req.student_id)
    staff = ctx.identity.person.name if ctx.identity.person else ""

    def buttons(locale: str) -> list[list[Button]]:
        return [
            [
                Button(messages.label("pickup.allow_once", locale), f"k:ok:{req.id}"),
                Button(messages.label("pickup.refuse", locale), f"k:no:{req.id}"),
            ]
        ]

    for guardian in result.guardians:
        await ctx.notify(
            guardian,
            "unlisted_request",
            lane=Lane.SAFETY,
            buttons=buttons,
            child=student.name if student else "",
            req=req,
            staff=staff,
        )
    return [ctx.reply("today_waiting_parents", child=student.name if student else "", req=req)]


async def _alert_absent(ctx: Context, student_ids: list[int]) -> None:
    """Expected but absent: the parents hear at once (safety lane)."""
    staff = ctx.identity.person.name if ctx.identity.person else ""
    for student_id in student_ids:
        student = await ctx.session.get(Student, student_id)
        for guardian in await guardians_of(ctx.session, student_id):
            await ctx.notify(
                guardian, "absent_alert", lane=Lane.SAFETY, child=student.name if student else "", staff=staff
            )


async def _name(ctx: Context, person_id: int) -> str:
    person = await ctx.session.get(Person, person_id)
    return person.name if person else ""


def _tz(ctx: Context) -> ZoneInfo:
    return ZoneInfo(ctx.identity.school.timezone if ctx.identity.school else "Asia/Shanghai")


FLOW = Flow(
    name=NAME,
    key=KEY,
    commands=("today",),
    on_command=roster,
    on_button=pressed,
    on_message=typed,
    menu_commands=("today",),
)
