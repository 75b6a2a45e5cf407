"""School placement (统筹安排) in chat for admins: /groups to see them, /place to propose and confirm.

A proposal changes nothing until an admin confirms it; confirming re-checks every seat, then each
family is told: placed (group, room, staff) or waiting (position).
"""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply
from handlers.enrollment_views import sign_buttons, tell_guardians
from storage import enrollment, groups, terms
from storage.authz import Action
from storage.clock import utcnow
from storage.enrollment import Outcome
from storage.models import PlacementProposal

KEY = "q"


async def _term(ctx: Context) -> str | None:
    school = ctx.identity.school
    current = await terms.current_terms(ctx.session, school.id) if school else None
    return enrollment.term_of(current) if current else None


async def list_groups(ctx: Context) -> list[Reply]:
    """Shows the term's groups: activity, room, weekdays, seats taken, staff on duty."""
    if not await ctx.may(Action.VIEW_GROUPS) or ctx.identity.school is None:
        return [ctx.reply("admin_only")]
    term = await _term(ctx)
    found = await groups.groups_of_term(ctx.session, ctx.identity.school.id, term) if term else []
    if not found:
        return [ctx.reply("groups_none")]
    staff = await groups.staff_on_duty(ctx.session, [g.id for g in found])
    loads = await enrollment.loads(ctx.session, ctx.identity.school.id, term or "")
    items = [
        {
            "group": g,
            "staff": [p.name for p in staff[g.id]],
            "taken": max(loads.get(g.id, {}).values(), default=0),
        }
        for g in found
    ]
    return [ctx.reply("groups_list", term=term, items=items)]


async def propose(ctx: Context) -> list[Reply]:
    """Proposes places for every approved or waiting child; nothing changes yet."""
    if not await ctx.may(Action.PLACE_CHILDREN) or ctx.identity.school is None:
        return [ctx.reply("admin_only")]
    term = await _term(ctx)
    if term is None:
        return [ctx.reply("groups_none")]
    people = [p.id for p in ctx.identity.people]
    proposal = await enrollment.propose_placement(ctx.session, ctx.identity.school.id, term, people, utcnow())
    if proposal is None:
        return [ctx.reply("admin_only")]
    if not proposal.placements and not proposal.waiting:
        return [ctx.reply("place_nothing")]
    names = {g.id: g.name for g in await groups.groups_of_term(ctx.session, ctx.identity.school.id, term)}
    counts: dict[str, int] = {}
    for _, group_id in proposal.placements:
        counts[names.get(group_id, "?")] = counts.get(names.get(group_id, "?"), 0) + 1
    rows = [
        [
            Button(ctx.label("place.confirm"), f"{KEY}:ok:{proposal.id}"),
            Button(ctx.label("button.cancel"), f"{KEY}:x:{proposal.id}"),
        ]
    ]
    return [ctx.reply("place_proposal", counts=counts, waiting=len(proposal.waiting), buttons=rows)]


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    """Confirms or discards a proposal (admins of its school only)."""
    action, _, raw_id = payload.partition(":")
    if action not in ("ok", "x") or not raw_id.isdigit():
        return [ctx.reply("button_invalid")]
    if not await ctx.may(Action.PLACE_CHILDREN):
        return [ctx.reply("button_invalid" if action == "x" else "review_refused", outcome="forbidden")]
    people = [p.id for p in ctx.identity.people]
    if action == "x":
        proposal = await ctx.session.get(PlacementProposal, int(raw_id))
        if proposal is None or not await enrollment.is_admin(ctx.session, people, proposal.school_id):
            return [ctx.reply("button_invalid")]
        if proposal.status == "proposed":
            proposal.status = "discarded"
        return [ctx.reply("cancelled")]
    result = await enrollment.confirm_proposal(ctx.session, int(raw_id), people, utcnow())
    if result.outcome is not Outcome.OK:
        return [ctx.reply("review_refused", outcome=result.outcome.value)]
    for app in result.placed:
        await tell_guardians(ctx.session, app, "placed", sign_buttons(app))
    for app in result.waiting:
        await tell_guardians(ctx.session, app, "waiting")
    return [ctx.reply("place_done", placed=len(result.placed), waiting=len(result.waiting))]


FLOW = Flow(
    name="placement",
    key=KEY,
    commands=("place",),
    on_command=propose,
    on_button=pressed,
    menu_commands=("place",),
)
GROUPS_FLOW = Flow(
    name="groups", key="", commands=("groups",), on_command=list_groups, menu_commands=("groups",)
)
