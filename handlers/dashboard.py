"""/dashboard: a one-time sign-in link to the committee's web dashboard (policy 3.4: the parent
committee takes part throughout, so it reads survey and feedback results).

Only people with the committee or admin role get a link; the role is read from the database
here and again when the link is used and on every page. The link is sent only as a URL button,
never in the message text: chat apps fetch previews of links in text, which would use it up.
"""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply
from storage import authz, dashboard
from storage.authz import Action
from storage.clock import utcnow

KEY = "d"


async def send_link(ctx: Context) -> list[Reply]:
    """Issues a fresh link for a committee member or admin; anyone else gets a polite refusal."""
    if not await ctx.may(Action.OPEN_DASHBOARD):
        return [ctx.reply("dashboard_refused")]
    person = await dashboard.eligible_person(ctx.session, [p.id for p in ctx.identity.people])
    if person is None:  # the role is held, but not in the person's own school
        await authz.refuse(ctx.session, ctx.identity, Action.OPEN_DASHBOARD, reason="school")
        return [ctx.reply("dashboard_refused")]
    token = await dashboard.issue_link(ctx.session, person.school_id, person.id, ctx.secret_key, utcnow())
    url = f"{ctx.links.web_base}/dashboard/login?token={token}"
    school = ctx.identity.school.name if ctx.identity.school else ""
    buttons = [
        [Button(ctx.label("dashboard.open"), url=url)],
        [Button(ctx.label("dashboard.new_link"), f"{KEY}:new")],
    ]
    minutes = int(dashboard.LINK_TTL.total_seconds() // 60)
    return [ctx.reply("dashboard_link", buttons=buttons, school=school, name=person.name, minutes=minutes)]


async def pressed(ctx: Context, data: str) -> list[Reply]:
    """The "new link" button: the same checks as the command (the payload is never trusted)."""
    if data == "new":
        return await send_link(ctx)
    return [ctx.reply("button_invalid")]


FLOW = Flow(
    name="dashboard",
    key=KEY,
    commands=("dashboard",),
    on_command=send_link,
    on_button=pressed,
    menu_commands=("dashboard",),
)
