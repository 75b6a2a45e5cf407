"""/status: where each of the parent's applications stands and what happens next."""

from __future__ import annotations

from handlers.dialog import Context, Flow, Reply
from handlers.enrollment_views import application_facts
from storage import enrollment
from storage.authz import Action


async def status(ctx: Context) -> list[Reply]:
    """Shows every application for this parent's children, newest first."""
    if not await ctx.may(Action.VIEW_STATUS):
        return [ctx.reply("apply_not_parent")]
    apps = await enrollment.applications_of(ctx.session, [p.id for p in ctx.identity.people])
    if not apps:
        return [ctx.reply("status_none")]
    items = [await application_facts(ctx.session, app) for app in apps[:10]]
    return [ctx.reply("status", items=items)]


FLOW = Flow(name="status", key="", commands=("status",), on_command=status, menu_commands=("status",))
