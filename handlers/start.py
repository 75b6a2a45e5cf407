"""/start: bind this chat to a roster person with an invite code, after the privacy notice is accepted.

A valid code is held in the conversation state while the notice is shown; "accept" redeems it
(checking it again: it may have expired or been used meanwhile) and records the consent, "decline"
drops it. A bound person who has not accepted the current notice is shown it by the dispatcher
before anything else (`ask_consent`). /privacy shows the notice at any time.
"""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply
from storage import consent, invites
from storage.clock import utcnow
from storage.invites import Outcome

FLOW_NAME = "start"
KEY = "s"
CONSENT_STEP = "consent"
ACCEPT = f"{KEY}:ok"
DECLINE = f"{KEY}:no"


async def start(ctx: Context) -> list[Reply]:
    """Checks the code in `/start <code>`; without one, asks for the code (or greets the bound)."""
    if ctx.event.command == "privacy":
        return await show_notice(ctx)
    if ctx.event.args:
        return await _offer(ctx, ctx.event.args)
    if ctx.identity.bound:
        if await _unaccepted(ctx):
            return await ask_consent(ctx)
        return [ctx.reply("welcome_back", identity=ctx.identity, buttons=_menu_button(ctx))]
    await ctx.set_state(FLOW_NAME, "await_code")
    return [ctx.reply("start_unbound", terms_url=ctx.links.terms())]


async def code_typed(ctx: Context) -> list[Reply]:
    """Takes a typed invite code (from a paper slip); while the notice waits, shows it again."""
    if ctx.state is not None and ctx.state.step == CONSENT_STEP:
        return [_notice(ctx, ask=True)]
    if ctx.event.media or not ctx.event.text.strip():
        return [ctx.reply("start_need_code")]
    return await _offer(ctx, ctx.event.text)


async def ask_consent(ctx: Context) -> list[Reply]:
    """Shows the notice with Accept / Decline to a bound person who has not accepted this version."""
    return [_notice(ctx, ask=True)]


async def show_notice(ctx: Context) -> list[Reply]:
    """/privacy: the notice; with the buttons only while an answer is still wanted."""
    return [_notice(ctx, ask=ctx.identity.bound and await _unaccepted(ctx))]


async def pressed(ctx: Context, data: str) -> list[Reply]:
    if data == "ok":
        return await _accepted(ctx)
    if data == "no":
        return await _declined(ctx)
    return [ctx.reply("button_invalid")]


async def _offer(ctx: Context, code: str) -> list[Reply]:
    """Checks the code; shows the notice holding the code, unless everyone already accepted it."""
    result = await invites.check(ctx.session, ctx.identity.account, code)
    if result.outcome not in (Outcome.VALID, Outcome.ALREADY_BOUND):
        return [ctx.reply("invite_refused", outcome=result.outcome.value)]
    people = _people(ctx) + ([result.person.id] if result.person else [])
    if not await consent.missing(ctx.session, people):
        return await _bind(ctx, code, accepted=False)
    await ctx.set_state(FLOW_NAME, CONSENT_STEP, {"code": invites.normalise_code(code)})
    return [_notice(ctx, ask=True)]


async def _accepted(ctx: Context) -> list[Reply]:
    """Redeems the held code (checked again) and records the consent; or records it for the bound."""
    state = ctx.state
    if state is not None and state.flow == FLOW_NAME and state.step == CONSENT_STEP:
        return await _bind(ctx, str(state.data.get("code", "")), accepted=True)
    if not ctx.identity.bound or not await _unaccepted(ctx):
        return [ctx.reply("button_invalid")]
    await consent.accept(ctx.session, _people(ctx), ctx.account_id, utcnow())
    return [
        ctx.reply("privacy_accepted"),
        ctx.reply("welcome_back", identity=ctx.identity, buttons=_menu_button(ctx)),
    ]


async def _declined(ctx: Context) -> list[Reply]:
    """Drops the held code: nothing is bound and nothing of the notice is stored."""
    state = ctx.state
    pending = state is not None and state.flow == FLOW_NAME and state.step == CONSENT_STEP
    if pending:
        await ctx.clear_state()
    elif not ctx.identity.bound or not await _unaccepted(ctx):
        return [ctx.reply("button_invalid")]
    return [ctx.reply("privacy_declined", bound=ctx.identity.bound and not pending)]


async def _bind(ctx: Context, code: str, *, accepted: bool) -> list[Reply]:
    result = await invites.redeem(ctx.session, ctx.identity.account, code)
    await ctx.clear_state()
    if result.outcome not in (Outcome.BOUND, Outcome.ALREADY_BOUND):
        return [ctx.reply("invite_refused", outcome=result.outcome.value)]
    if accepted and result.person is not None:
        await consent.accept(ctx.session, [*_people(ctx), result.person.id], ctx.account_id, utcnow())
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


def _people(ctx: Context) -> list[int]:
    return [p.id for p in ctx.identity.people]


async def _unaccepted(ctx: Context) -> bool:
    return bool(await consent.missing(ctx.session, _people(ctx)))


def _notice(ctx: Context, *, ask: bool) -> Reply:
    buttons = (
        [[Button(ctx.label("privacy.accept"), ACCEPT), Button(ctx.label("privacy.decline"), DECLINE)]]
        if ask
        else []
    )
    return ctx.reply(
        "privacy_notice",
        buttons=buttons,
        ask=ask,
        policy=ctx.retention,
        version=consent.PRIVACY_NOTICE_VERSION,
        terms_url=ctx.links.terms(),
    )


def _menu_button(ctx: Context) -> list[list[Button]]:
    return [[Button(ctx.label("button.menu"), "m:open"), Button(ctx.label("button.terms"), "t:show")]]


FLOW = Flow(
    name=FLOW_NAME,
    key=KEY,
    commands=("start", "privacy"),
    on_command=start,
    on_button=pressed,
    on_message=code_typed,
    menu_commands=("start", "privacy"),
    before_consent=True,
)
