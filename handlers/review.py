"""Class review (班级初审) and school approval (学校核准): /pending and the reviewers' buttons.

The buttons arrive in the reviewer's chat through the outbox. Every press is re-authorised from the
database (the head teacher of that child's class, or an admin of that school); a forged, forwarded
or replayed press is refused, and the attempt is in the audit log.
"""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply
from handlers.enrollment_views import review_buttons
from storage import authz, enrollment
from storage.authz import Action
from storage.clock import utcnow
from storage.enrollment import Outcome
from storage.models import Application, SchoolClass, Student

NAME = "review"
KEY = "r"
MAX_LISTED = 20
# The class stage's buttons, then the school's (storage.authz names who may press which).
_ACTION = {
    "ok": Action.REVIEW_APPLICATION,
    "ou": Action.REVIEW_APPLICATION,
    "no": Action.REVIEW_APPLICATION,
    "sa": Action.APPROVE_APPLICATION,
    "sw": Action.APPROVE_APPLICATION,
    "sr": Action.APPROVE_APPLICATION,
}


async def _facts(ctx: Context, app: Application) -> dict[str, object]:
    student = await ctx.session.get(Student, app.student_id)
    cls = await ctx.session.get(SchoolClass, student.class_id) if student else None
    return {"app": app, "child": student.name if student else "", "class_name": cls.name if cls else ""}


async def pending(ctx: Context) -> list[Reply]:
    """Lists what awaits this person, each with its buttons."""
    school = ctx.identity.school
    if school is None or not await ctx.may(Action.REVIEW_APPLICATION):
        return [ctx.reply("review_not_allowed")]
    # A teacher reviews their own class only; whoever approves for the school sees every class.
    if not ctx.identity.classes_headed and not authz.permits(ctx.identity.roles, Action.APPROVE_APPLICATION):
        await authz.refuse(ctx.session, ctx.identity, Action.REVIEW_APPLICATION, reason="no_class")
        return [ctx.reply("review_not_allowed")]
    apps = await enrollment.pending_for(ctx.session, [p.id for p in ctx.identity.people], school.id)
    if not apps:
        return [ctx.reply("review_nothing_pending")]
    replies = [ctx.reply("review_pending_header", count=len(apps), shown=min(len(apps), MAX_LISTED))]
    for app in apps[:MAX_LISTED]:
        rows = review_buttons(app)(ctx.locale)
        replies.append(ctx.reply("review_item", **await _facts(ctx, app), buttons=rows))
    return replies


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    """Approves or rejects; a rejection first asks for the reason."""
    action, _, raw_id = payload.partition(":")
    if not raw_id.isdigit() or action not in _ACTION:
        return [ctx.reply("button_invalid")]
    if not await ctx.may(_ACTION[action]):
        return [ctx.reply("review_refused", outcome=Outcome.FORBIDDEN.value)]
    app_id = int(raw_id)
    people = [p.id for p in ctx.identity.people]
    now = utcnow()
    if action in ("no", "sr"):
        app = await ctx.session.get(Application, app_id)
        allowed = app is not None and (
            await enrollment.may_review(ctx.session, people, app)
            if action == "no"
            else await enrollment.is_admin(ctx.session, people, app.school_id)
        )
        if not allowed:
            outcome = Outcome.FORBIDDEN if app is not None else Outcome.NOT_FOUND
            await enrollment.record_refusal(
                ctx.session, outcome, f"reject:{action}", ctx.account_id, app, app_id
            )
            return [ctx.reply("review_refused", outcome=outcome.value)]
        await ctx.set_state(NAME, "reason", {"app": app_id, "stage": "class" if action == "no" else "school"})
        return [ctx.reply("review_ask_reason", buttons=[[Button(ctx.label("button.cancel"), f"{KEY}:x:0")]])]
    if action in ("ok", "ou"):
        result = await enrollment.class_review(
            ctx.session,
            app_id,
            people,
            ctx.account_id,
            approve=True,
            now=now,
            priority_confirmed=None if action == "ok" else [],
            waiver_ok=None if action == "ok" else False,
        )
    else:
        result = await enrollment.school_decide(
            ctx.session,
            app_id,
            people,
            ctx.account_id,
            approve=True,
            now=now,
            waiver_granted=False if action == "sw" else None,
        )
    return await _after(ctx, result)


async def cancel_reason(ctx: Context) -> list[Reply]:
    await ctx.clear_state()
    return [ctx.reply("cancelled")]


async def typed(ctx: Context) -> list[Reply]:
    """Takes the rejection reason and rejects."""
    state = ctx.state
    if state is None or state.step != "reason":
        return [ctx.reply("button_invalid")]
    reason = ctx.event.text.strip()
    if not reason or ctx.event.media:
        return [ctx.reply("review_ask_reason")]
    if len(reason) > enrollment.MAX_REASON:
        return [ctx.reply("review_reason_too_long", max=enrollment.MAX_REASON)]
    app_id, stage = int(state.data["app"]), state.data["stage"]
    await ctx.clear_state()
    if not await ctx.may(Action.REVIEW_APPLICATION if stage == "class" else Action.APPROVE_APPLICATION):
        return [ctx.reply("review_refused", outcome=Outcome.FORBIDDEN.value)]
    people = [p.id for p in ctx.identity.people]
    decide = enrollment.class_review if stage == "class" else enrollment.school_decide
    result = await decide(
        ctx.session, app_id, people, ctx.account_id, approve=False, now=utcnow(), reason=reason
    )
    return await _after(ctx, result)


async def _after(ctx: Context, result: enrollment.Result) -> list[Reply]:
    """Tells the guardians and the next reviewers, and confirms to the reviewer."""
    if not result.ok or result.application is None:
        return [ctx.reply("review_refused", outcome=result.outcome.value)]
    app = result.application
    facts = await _facts(ctx, app)
    for guardian in result.tell_guardians:
        await ctx.notify(guardian, "application_update", **facts)
    for admin in result.tell_reviewers:
        await ctx.notify(admin, "review_request_school", **facts, buttons=review_buttons(app))
    return [ctx.reply("review_done", **facts)]


async def route(ctx: Context, payload: str) -> list[Reply]:
    if payload.startswith("x:"):
        return await cancel_reason(ctx)
    return await pressed(ctx, payload)


FLOW = Flow(
    name=NAME,
    key=KEY,
    commands=("pending",),
    on_command=pending,
    on_button=route,
    on_message=typed,
    menu_commands=("pending",),
)
