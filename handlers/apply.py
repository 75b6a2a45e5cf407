"""/apply: a parent applies for the after-school service for one child (家长自愿申请).

Choose the child, the weekdays, noon care and lunch where offered, activity preferences, declare
priority groups and a fee waiver (claims the class teacher checks), read a summary with the fee
computed from the published standard, then confirm. The draft lives in the conversation state;
every button is checked against the step it was made for and against the database.
"""

from __future__ import annotations

from typing import Any

from handlers.dialog import Button, Context, Flow, Reply
from handlers.enrollment_views import bill_for, review_buttons
from storage import enrollment, terms
from storage.authz import Action
from storage.clock import utcnow
from storage.enrollment import Options, Outcome
from storage.fees import Waiver
from storage.models import TermsVersion
from storage.terms import PRIORITY_GROUPS, WEEKDAY_ORDER

NAME = "apply"
KEY = "a"
STEPS = ("child", "days", "extras", "activities", "priority", "waiver", "note", "confirm")
MAX_NOTE = enrollment.MAX_NOTE


def _check(selected: bool) -> str:
    return "✓ " if selected else ""


async def start(ctx: Context) -> list[Reply]:
    """Starts an application: the child first (skipped when there is only one)."""
    if not await ctx.may(Action.APPLY) or not ctx.identity.children:
        return [ctx.reply("apply_not_parent")]
    school = ctx.identity.school
    current = await terms.current_terms(ctx.session, school.id) if school else None
    if current is None:
        return [ctx.reply("terms_none", url=ctx.links.terms())]
    data: dict[str, Any] = {"terms": current.id}
    if len(ctx.identity.children) == 1:
        return await _choose_child(ctx, data, ctx.identity.children[0].student_id, current)
    await ctx.set_state(NAME, "child", data)
    buttons = [[Button(c.name, f"{KEY}:c:{c.student_id}")] for c in ctx.identity.children]
    return [ctx.reply("apply_choose_child", buttons=buttons)]


async def _choose_child(
    ctx: Context, data: dict[str, Any], student_id: int, current: TermsVersion
) -> list[Reply]:
    child = next((c for c in ctx.identity.children if c.student_id == student_id), None)
    if child is None:
        return [ctx.reply("button_invalid")]
    existing = await enrollment.active_application(ctx.session, student_id, enrollment.term_of(current))
    if existing is not None:
        await ctx.clear_state()
        return [ctx.reply("apply_has_active", child=child.name, status=existing.status)]
    data.update(
        student=student_id,
        child=child.name,
        days=list(current.content["service_hours"]["weekdays"]),
        noon=False,
        lunch=False,
        activities=[],
        priority=[],
        waiver=False,
        note="",
    )
    return await _show(ctx, "days", data, current)


async def _show(ctx: Context, step: str, data: dict[str, Any], current: TermsVersion) -> list[Reply]:
    """Stores the step and shows it with its buttons."""
    await ctx.set_state(NAME, step, data)
    content = current.content
    hours = content["service_hours"]
    nav = [Button(ctx.label("button.next"), f"{KEY}:n"), Button(ctx.label("button.cancel"), f"{KEY}:x")]
    if step == "days":
        rows = [
            [
                Button(_check(d in data["days"]) + ctx.label(f"weekday.{d}"), f"{KEY}:d:{d}")
                for d in hours["weekdays"]
            ],
            [Button(ctx.label("button.all_days"), f"{KEY}:d:all")],
            nav,
        ]
        return [ctx.reply("apply_days", child=data["child"], buttons=rows)]
    if step == "extras":
        rows = []
        if hours.get("noon_care"):
            rows.append([Button(_check(data["noon"]) + ctx.label("apply.noon_care"), f"{KEY}:o:noon")])
        if hours.get("lunch_offered"):
            rows.append([Button(_check(data["lunch"]) + ctx.label("apply.lunch"), f"{KEY}:o:lunch")])
        if not rows:
            return await _show(ctx, "activities", data, current)
        return [ctx.reply("apply_extras", child=data["child"], buttons=[*rows, nav])]
    if step == "activities":
        rows = [
            [Button(_check(a["type"] in data["activities"]) + a["name"], f"{KEY}:v:{a['type']}")]
            for a in content["activities"]
        ]
        return [ctx.reply("apply_activities", child=data["child"], buttons=[*rows, nav])]
    if step == "priority":
        rows = [
            [Button(_check(p in data["priority"]) + ctx.label(f"priority.{p}"), f"{KEY}:p:{p}")]
            for p in PRIORITY_GROUPS
        ]
        return [ctx.reply("apply_priority", child=data["child"], buttons=[*rows, nav])]
    if step == "waiver":
        rows = [
            [Button(ctx.label("apply.waiver_yes"), f"{KEY}:w:y")],
            [Button(ctx.label("apply.waiver_no"), f"{KEY}:w:n")],
            [Button(ctx.label("button.cancel"), f"{KEY}:x")],
        ]
        return [ctx.reply("apply_waiver", child=data["child"], waiver=content["waiver"], buttons=rows)]
    if step == "note":
        rows = [
            [Button(ctx.label("button.skip"), f"{KEY}:k"), Button(ctx.label("button.cancel"), f"{KEY}:x")]
        ]
        return [ctx.reply("apply_waiver_note", max=MAX_NOTE, buttons=rows)]
    # confirm
    bill = bill_for(ctx, current, _options(data), Waiver.PENDING if data["waiver"] else Waiver.NONE)
    rows = [[Button(ctx.label("button.submit"), f"{KEY}:ok"), Button(ctx.label("button.cancel"), f"{KEY}:x")]]
    return [
        ctx.reply(
            "apply_summary",
            d=data,
            bill=bill,
            activities={a["type"]: a["name"] for a in content["activities"]},
            t=content,
            buttons=rows,
        )
    ]


def _options(data: dict[str, Any]) -> Options:
    return Options(
        weekdays=tuple(d for d in WEEKDAY_ORDER if d in data["days"]),
        noon_care=bool(data["noon"]),
        lunch=bool(data["lunch"]),
        activities=tuple(data["activities"]),
        priority_claimed=tuple(p for p in PRIORITY_GROUPS if p in data["priority"]),
        waiver_requested=bool(data["waiver"]),
        waiver_note=str(data["note"]),
    )


def _toggle(items: list[str], value: str) -> list[str]:
    return [i for i in items if i != value] if value in items else [*items, value]


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    """Applies one button press to the draft, if it belongs to the step the chat is on."""
    state = ctx.state
    if state is None or state.flow != NAME:
        return [ctx.reply("apply_expired")]
    if not await ctx.may(Action.APPLY):
        await ctx.clear_state()
        return [ctx.reply("apply_not_parent")]
    data = dict(state.data)
    current = await ctx.session.get(TermsVersion, data.get("terms"))
    school = ctx.identity.school
    if current is None or school is None or current.school_id != school.id:
        await ctx.clear_state()
        return [ctx.reply("apply_expired")]
    step, (action, _, value) = state.step, payload.partition(":")
    hours = current.content["service_hours"]
    if action == "x":
        await ctx.clear_state()
        return [ctx.reply("apply_cancelled")]
    if step == "child" and action == "c" and value.isdigit():
        return await _choose_child(ctx, data, int(value), current)
    if step == "days" and action == "d":
        if value == "all":
            data["days"] = list(hours["weekdays"])
        elif value in hours["weekdays"]:
            data["days"] = _toggle(data["days"], value)
        else:
            return [ctx.reply("button_invalid")]
        return await _show(ctx, step, data, current)
    if step == "extras" and action == "o" and value in ("noon", "lunch"):
        if (value == "noon" and not hours.get("noon_care")) or (
            value == "lunch" and not hours.get("lunch_offered")
        ):
            return [ctx.reply("button_invalid")]
        data[value] = not data[value]
        return await _show(ctx, step, data, current)
    if step == "activities" and action == "v":
        if value not in {a["type"] for a in current.content["activities"]}:
            return [ctx.reply("button_invalid")]
        data["activities"] = _toggle(data["activities"], value)
        return await _show(ctx, step, data, current)
    if step == "priority" and action == "p" and value in PRIORITY_GROUPS:
        data["priority"] = _toggle(data["priority"], value)
        return await _show(ctx, step, data, current)
    if step == "waiver" and action == "w" and value in ("y", "n"):
        data["waiver"] = value == "y"
        return await _show(ctx, "note" if data["waiver"] else "confirm", data, current)
    if step == "note" and action == "k":
        return await _show(ctx, "confirm", data, current)
    if action == "n" and step in ("days", "extras", "activities", "priority"):
        if step == "days" and not data["days"]:
            return [ctx.reply("apply_need_day")]
        return await _show(ctx, STEPS[STEPS.index(step) + 1], data, current)
    if step == "confirm" and action == "ok":
        return await _submit(ctx, data, current)
    return [ctx.reply("button_invalid")]


async def typed(ctx: Context) -> list[Reply]:
    """Takes the waiver note; on any other step, says to use the buttons."""
    state = ctx.state
    if state is None or state.step != "note":
        return [ctx.reply("apply_use_buttons")]
    note = ctx.event.text.strip()
    if not note or ctx.event.media:
        return [ctx.reply("apply_waiver_note", max=MAX_NOTE)]
    if len(note) > MAX_NOTE:
        return [ctx.reply("apply_note_too_long", max=MAX_NOTE)]
    data = dict(state.data, note=note)
    current = await ctx.session.get(TermsVersion, data.get("terms"))
    if current is None:
        await ctx.clear_state()
        return [ctx.reply("apply_expired")]
    return await _show(ctx, "confirm", data, current)


async def _submit(ctx: Context, data: dict[str, Any], current: TermsVersion) -> list[Reply]:
    school = ctx.identity.school
    assert school is not None
    now = utcnow()
    result = await enrollment.submit(
        ctx.session,
        people=[p.id for p in ctx.identity.people],
        account_id=ctx.account_id,
        student_id=int(data["student"]),
        terms=current,
        options=_options(data),
        now=now,
    )
    await ctx.clear_state()
    if result.outcome is Outcome.ALREADY_APPLIED:
        status = result.application.status if result.application else ""
        return [ctx.reply("apply_has_active", child=data["child"], status=status)]
    if not result.ok or result.application is None:
        return [ctx.reply("apply_expired")]
    app = result.application
    child = next(c for c in ctx.identity.children if c.student_id == app.student_id)
    for reviewer in result.tell_reviewers:
        await ctx.notify(
            reviewer,
            "review_request",
            app=app,
            child=child.name,
            class_name=child.class_name,
            guardian=ctx.identity.person.name if ctx.identity.person else "",
            relation=child.relation,
            buttons=review_buttons(app),
        )
    return [ctx.reply("apply_submitted", child=child.name, app=app)]


FLOW = Flow(
    name=NAME,
    key=KEY,
    commands=("apply",),
    on_command=start,
    on_button=pressed,
    on_message=typed,
    menu_commands=("apply",),
)
