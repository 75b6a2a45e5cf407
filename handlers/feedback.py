"""/feedback: a comment or concern at any time, with one's name or anonymously, and the switch
for periodic feedback rounds. The school's administrators and the parent committee are told.

The choice "anonymous" is made before anything is typed, so the text goes straight into the
comment and is never kept in the chat's conversation state.
"""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply
from handlers.survey import problem
from storage import feedback, handover, surveys
from storage.clock import utcnow
from storage.models import Lane
from storage.surveys import SurveyError

NAME = "feedback"
KEY = "f"
MAX_ID = 2**31 - 1


def _people(ctx: Context) -> list[int]:
    return [p.id for p in ctx.identity.people]


async def start(ctx: Context) -> list[Reply]:
    if ctx.identity.school is None:
        return [ctx.reply("not_bound", terms_url=ctx.links.terms())]
    rounds_on = await feedback.rounds_on(ctx.session, _people(ctx))
    rows = [
        [
            Button(ctx.label("feedback.named"), f"{KEY}:n"),
            Button(ctx.label("feedback.anonymous"), f"{KEY}:a"),
        ],
        [
            Button(
                ctx.label("feedback.rounds_off" if rounds_on else "feedback.rounds_on"),
                f"{KEY}:r:{int(not rounds_on)}",
            )
        ],
    ]
    return [ctx.reply("feedback_start", buttons=rows, rounds_on=rounds_on)]


async def _ask_text(ctx: Context, mode: str, group_id: int) -> list[Reply]:
    await ctx.set_state(NAME, "text", {"mode": mode, "group": group_id})
    return [ctx.reply("feedback_ask_text", anonymous=mode == "a", max=feedback.MAX_COMMENT)]


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    school = ctx.identity.school
    if school is None:
        return [ctx.reply("button_invalid")]
    parts = payload.split(":")
    if parts[0] == "r" and len(parts) == 2 and parts[1] in ("0", "1"):
        on = parts[1] == "1"
        await feedback.set_rounds(ctx.session, school.id, _people(ctx), on, utcnow())
        return [ctx.reply("feedback_rounds", on=on)]
    if parts[0] in ("n", "a") and len(parts) == 1:
        groups = await feedback.groups_of(ctx.session, _people(ctx))
        if len(groups) < 2:
            return await _ask_text(ctx, parts[0], groups[0].id if groups else 0)
        rows = [[Button(g.name[:40], f"{KEY}:g:{parts[0]}:{g.id}")] for g in groups]
        rows.append([Button(ctx.label("feedback.general"), f"{KEY}:g:{parts[0]}:0")])
        return [ctx.reply("feedback_ask_group", buttons=rows)]
    if (
        parts[0] == "g"
        and len(parts) == 3
        and parts[1] in ("n", "a")
        and parts[2].isascii()
        and parts[2].isdigit()
    ):
        group_id = int(parts[2]) if len(parts[2]) <= 10 and int(parts[2]) <= MAX_ID else -1
        allowed = {g.id for g in await feedback.groups_of(ctx.session, _people(ctx))} | {0}
        if group_id not in allowed:
            return [ctx.reply("button_invalid")]
        return await _ask_text(ctx, parts[1], group_id)
    return [ctx.reply("button_invalid")]


async def typed(ctx: Context) -> list[Reply]:
    state, school = ctx.state, ctx.identity.school
    if state is None or school is None or state.step != "text":
        return [ctx.reply("button_invalid")]
    text = ctx.event.text.strip()
    if ctx.event.media or not text:
        return [
            ctx.reply("feedback_ask_text", anonymous=state.data.get("mode") == "a", max=feedback.MAX_COMMENT)
        ]
    anonymous = state.data.get("mode") == "a"
    group_id = int(state.data.get("group") or 0) or None
    if group_id is not None and group_id not in {
        g.id for g in await feedback.groups_of(ctx.session, _people(ctx))
    }:
        group_id = None  # the child has left the group since: keep the comment, without the group
    person = ctx.identity.person
    try:
        comment = await feedback.add_comment(
            ctx.session,
            school.id,
            text,
            handover.local_today(school, utcnow()),
            person_id=None if anonymous or person is None else person.id,
            group_id=group_id,
        )
    except SurveyError as error:
        return [problem(ctx, error)]
    await ctx.clear_state()
    group = next(
        (g.name for g in await feedback.groups_of(ctx.session, _people(ctx)) if g.id == group_id), ""
    )
    for reader in await surveys.readers(ctx.session, school.id):
        await ctx.notify(
            reader,
            "feedback_received",
            lane=Lane.INTERACTIVE,
            who="" if anonymous or person is None else person.name,
            group=group,
            text=comment.text,
        )
    return [ctx.reply("feedback_done", anonymous=anonymous)]


FLOW = Flow(
    name=NAME,
    key=KEY,
    commands=("feedback",),
    on_command=start,
    on_button=pressed,
    on_message=typed,
    menu_commands=("feedback",),
)
