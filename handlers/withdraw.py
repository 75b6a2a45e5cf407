"""/withdraw: leave the service at any time (自愿参加), with one confirmation and no pressure.

The place is freed at once and offered to the next child on the waiting list.
"""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply
from handlers.enrollment_views import application_facts, tell_offers
from storage import enrollment
from storage.authz import Action
from storage.clock import utcnow
from storage.models import ACTIVE_APPLICATION, Application

KEY = "w"


async def choose(ctx: Context) -> list[Reply]:
    """Lists the active applications to withdraw from."""
    if not await ctx.may(Action.WITHDRAW):
        return [ctx.reply("apply_not_parent")]
    apps = [
        a
        for a in await enrollment.applications_of(ctx.session, [p.id for p in ctx.identity.people])
        if a.status in ACTIVE_APPLICATION
    ]
    if not apps:
        return [ctx.reply("withdraw_nothing")]
    rows = []
    for app in apps:
        facts = await application_facts(ctx.session, app)
        rows.append([Button(ctx.text("withdraw_button", **facts), f"{KEY}:a:{app.id}")])
    return [ctx.reply("withdraw_choose", buttons=rows)]


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    """Asks once to confirm, then withdraws."""
    action, _, raw_id = payload.partition(":")
    if not raw_id.isdigit():
        return [ctx.reply("button_invalid")]
    if not await ctx.may(Action.WITHDRAW):
        return [ctx.reply("review_refused", outcome="forbidden")]
    app_id = int(raw_id)
    if action == "a":
        app = await ctx.session.get(Application, app_id)
        children = {c.student_id for c in ctx.identity.children}
        if app is None or app.student_id not in children or app.status not in ACTIVE_APPLICATION:
            return [ctx.reply("button_invalid")]
        facts = await application_facts(ctx.session, app)
        rows = [
            [
                Button(ctx.label("withdraw.confirm"), f"{KEY}:y:{app_id}"),
                Button(ctx.label("withdraw.keep"), f"{KEY}:n:{app_id}"),
            ]
        ]
        return [ctx.reply("withdraw_confirm", **facts, buttons=rows)]
    if action == "n":
        return [ctx.reply("withdraw_kept")]
    if action != "y":
        return [ctx.reply("button_invalid")]
    result = await enrollment.withdraw(
        ctx.session, app_id, [p.id for p in ctx.identity.people], ctx.account_id, utcnow()
    )
    if not result.ok or result.application is None:
        return [ctx.reply("review_refused", outcome=result.outcome.value)]
    facts = await application_facts(ctx.session, result.application)
    me = {p.id for p in ctx.identity.people}
    for guardian in result.tell_guardians:
        if guardian not in me:
            await ctx.notify(guardian, "application_update", **facts)
    await tell_offers(ctx, result.offers)
    return [ctx.reply("withdraw_done", **facts)]


FLOW = Flow(
    name="withdraw",
    key=KEY,
    commands=("withdraw",),
    on_command=choose,
    on_button=pressed,
    menu_commands=("withdraw",),
)
