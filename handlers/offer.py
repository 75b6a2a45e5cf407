"""A freed place offered to a waiting child: the parent accepts or declines before the deadline."""

from __future__ import annotations

from handlers.dialog import Context, Flow, Reply
from handlers.enrollment_views import application_facts, sign_buttons, tell_offers
from storage import enrollment
from storage.authz import Action
from storage.clock import utcnow


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    """Accepts (`y`) or declines (`n`) the offer named in the payload, if it is this parent's."""
    action, _, raw_id = payload.partition(":")
    if action not in ("y", "n") or not raw_id.isdigit():
        return [ctx.reply("button_invalid")]
    if not await ctx.may(Action.ANSWER_OFFER):
        return [ctx.reply("review_refused", outcome="forbidden")]
    result = await enrollment.answer_offer(
        ctx.session, int(raw_id), [p.id for p in ctx.identity.people], ctx.account_id, action == "y", utcnow()
    )
    if not result.ok or result.application is None:
        return [
            ctx.reply(
                "offer_not_open" if result.outcome.value == "stale" else "review_refused",
                outcome=result.outcome.value,
            )
        ]
    await tell_offers(ctx, result.offers)
    facts = await application_facts(ctx.session, result.application)
    buttons = sign_buttons(result.application)(ctx.locale) if action == "y" else []
    return [ctx.reply("offer_answered", accepted=action == "y", buttons=buttons, **facts)]


FLOW = Flow(name="offer", key="o", on_button=pressed)
