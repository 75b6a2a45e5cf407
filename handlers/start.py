"""/start: bind this chat to a roster person with an invite code, or say how to get one."""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply
from storage import invites
from storage.invites import Outcome

FLOW_NAME = "start"


async def start(ctx: Context) -> list[Reply]:
    """Redeems the code in `/start <code>`; without one, asks for the code."""
    if ctx.event.args:
        return await _redeem(ctx, ctx.event.args)
    if ctx.identity.bound:
        return [ctx.reply("welcome_back", identity=ctx.identity, buttons=_menu_button(ctx))]
    await ctx.set_state(FLOW_NAME, "await_code")
    return [ctx.reply("start_unbound", terms_url=ctx.links.terms())]


async def code_typed(ctx: Context) -> list[Reply]:
    """Takes a typed invite code (from a paper slip)."""
    if ctx.event.media or not ctx.event.text.strip():
        return [ctx.reply("start_need_code")]
    return await _redeem(ctx, ctx.event.text)


async def _redeem(ctx: Context, code: str) -> list[Reply]:
    result = await invites.redeem(ctx.session, ctx.identity.account, code)
    if result.outcome not in (Outcome.BOUND, Outcome.ALREADY_BOUND):
        return [ctx.reply("invite_refused", outcome=result.outcome.value)]
    await ctx.clear_state()
    if result.outcome is Outcome.BOUND and result.student is not None and result.person is not None:
        for teacher_id in result.notify_person_ids:
            await ctx.notify(
                teacher_id,
                "teacher_new_guardian",
                student=result.student.name,
                guardian=result.person.name,
                relation=result.relation or "",
            )
    return [
        ctx.reply(
            "invite_bound",
            already=result.outcome is Outcome.ALREADY_BOUND,
            role=result.role,
            person=result.person.name if result.person else "",
            student=result.student.name if result.student else None,
            relation=result.relation,
            buttons=_menu_button(ctx),
        )
    ]


def _menu_button(ctx: Context) -> list[list[Button]]:
    return [[Button(ctx.label("button.menu"), "m:open"), Button(ctx.label("button.terms"), "t:show")]]


FLOW = Flow(
    name=FLOW_NAME,
    key="s",
    commands=("start",),
    on_command=start,
    on_message=code_typed,
    menu_commands=("start",),
)
