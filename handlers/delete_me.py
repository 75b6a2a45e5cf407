"""/delete_me: a parent asks the school to erase their data; an admin of the school approves or
refuses with a button, and the parent is told either way.

What is erased and what is kept by law is decided in storage/privacy.py (docs/privacy.md). Staff
cannot use it: their data is the school's employment record. Every button is re-checked against
the database: only an admin of the request's own school decides it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import messages
from handlers.dialog import Button, Context, Flow, Reply
from handlers.enrollment_views import tell_offers
from storage import outbox, privacy
from storage.authz import Action
from storage.clock import utcnow
from storage.models import ErasureRequest, ErasureStatus, PlatformAccount

KEY = "x"


async def may_ask(ctx: Context) -> bool:
    """Parents only (storage.authz): a teacher's or an admin's data is the school's employment record."""
    return await ctx.may(Action.REQUEST_ERASURE)


async def deciders(ctx: Context) -> list[int]:
    """The people this chat may decide a request as (storage checks the request's school too)."""
    return [p.id for p in ctx.identity.people] if await ctx.may(Action.DECIDE_ERASURE) else []


async def explain(ctx: Context) -> list[Reply]:
    """Says what would be erased and what is kept, and asks to confirm."""
    if not await may_ask(ctx):
        if not ctx.identity.bound:
            return [ctx.reply("not_bound", terms_url=ctx.links.terms())]
        return [ctx.reply("privacy_parents_only")]
    people = [p.id for p in await privacy.parent_people(ctx.session, ctx.account_id)]
    pending = await privacy.pending_request(ctx.session, people)
    if pending is not None:
        return [_pending(ctx, pending)]
    plan = await privacy.erasure_plan(ctx.session, people)
    buttons = [
        [Button(ctx.label("mydata.confirm"), f"{KEY}:y")],
        [Button(ctx.label("mydata.keep"), f"{KEY}:n")],
    ]
    return [
        ctx.reply("delete_me_explain", buttons=buttons, kept=plan.kept, last=plan.last, shared=plan.shared)
    ]


def _pending(ctx: Context, request: ErasureRequest) -> Reply:
    return ctx.reply("delete_me_pending", requested_on=request.requested_at.date().isoformat())


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    """Confirm or keep (the parent), approve or refuse (an admin); nothing in the payload is trusted."""
    action, _, raw_id = payload.partition(":")
    if action == "n" and not raw_id:
        return [ctx.reply("delete_me_kept")]
    if action == "y" and not raw_id:
        return await _request(ctx)
    if action in ("ok", "no") and raw_id.isdigit():
        return await _decide(ctx, int(raw_id), approve=action == "ok")
    return [ctx.reply("button_invalid")]


async def _request(ctx: Context) -> list[Reply]:
    """Stores the request (one pending per person) and asks the school's admins to decide."""
    if not await may_ask(ctx):
        return [ctx.reply("privacy_parents_only")]
    people = [p.id for p in await privacy.parent_people(ctx.session, ctx.account_id)]
    plan = await privacy.erasure_plan(ctx.session, people)
    result = await privacy.request_erasure(ctx.session, ctx.account_id, utcnow())
    if result.outcome is privacy.Outcome.PENDING and result.request is not None:
        return [_pending(ctx, result.request)]
    if result.outcome is not privacy.Outcome.OK or result.request is None:
        return [ctx.reply("privacy_parents_only")]
    request_id = result.request.id
    names = [p.name for p in ctx.identity.people if p.id in people]

    def buttons(locale: str) -> list[list[Button]]:
        return [
            [
                Button(messages.label("mydata.approve", locale), f"{KEY}:ok:{request_id}"),
                Button(messages.label("mydata.refuse", locale), f"{KEY}:no:{request_id}"),
            ]
        ]

    for admin in result.admins:
        await ctx.notify(
            admin,
            "erasure_request_admin",
            buttons=buttons,
            names=names,
            children=plan.last + plan.shared,
            kept=plan.kept,
        )
    return [ctx.reply("delete_me_requested")]


async def _decide(ctx: Context, request_id: int, *, approve: bool) -> list[Reply]:
    """Erases or refuses every request sent together with this one, then tells the parent."""
    admins = await deciders(ctx)
    if not admins:
        return [ctx.reply("admin_only")]
    first = await ctx.session.get(ErasureRequest, request_id)
    if first is None:
        return [ctx.reply("button_invalid")]
    group = await privacy.requests_for(ctx.session, first) if first.status == ErasureStatus.PENDING else []
    told: dict[int, PlatformAccount] = {}
    kept: dict[str, int] = {}
    outcome = privacy.Outcome.STALE
    for request in group or [first]:
        if approve:
            decided = await privacy.erase_person(ctx.session, request.id, admins, utcnow())
        else:
            decided = await privacy.refuse_erasure(ctx.session, request.id, admins, utcnow())
        if decided.outcome is privacy.Outcome.FORBIDDEN:
            return [ctx.reply("admin_only")]
        if decided.outcome is not privacy.Outcome.OK:
            continue
        outcome = decided.outcome
        told.update({a.id: a for a in decided.accounts})
        for key, n in decided.kept.as_dict().items():
            kept[key] = kept.get(key, 0) + n
        await tell_offers(ctx, decided.offers)
        privacy.remove_exports(ctx.files_dir, decided.unbound_accounts)
    if outcome is not privacy.Outcome.OK:
        return [ctx.reply("erasure_decided", outcome="stale", kept={})]
    school_id = first.school_id
    await _tell(ctx, told.values(), school_id, "erasure_done" if approve else "erasure_refused", kept=kept)
    return [ctx.reply("erasure_decided", outcome="erased" if approve else "refused", kept=kept)]


async def _tell(
    ctx: Context, accounts: Iterable[PlatformAccount], school_id: int, template: str, **context: Any
) -> None:
    """The outcome to the accounts the parent had: captured before their links were erased."""
    for account in accounts:
        text = messages.render(template, account.locale, **context)
        await outbox.enqueue(ctx.session, account.id, Reply(text).to_payload(), school_id=school_id)


FLOW = Flow(
    name="delete_me",
    key=KEY,
    commands=("delete_me",),
    on_command=explain,
    on_button=pressed,
    menu_commands=("delete_me",),
    before_consent=True,  # asking for erasure never waits for consent
)
