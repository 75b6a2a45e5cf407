"""/settings: how this chat gets non-urgent notices (instantly or as a daily digest) and its quiet hours.

Choosing a digest or quiet hours is never questioned or followed up: the bot just does it.
Safety messages (handover, absence, late pickup) ignore both.
"""

from __future__ import annotations

from dataclasses import replace

from handlers.dialog import Button, Context, Flow, Reply
from handlers.notices import TEXTS
from storage import notices
from storage.clock import utcnow

KEY = "p"
# Button codes stay short and map to presets here; a payload is never taken as a value.
DIGEST_CODES: dict[str, str | None] = {"now": None, **{t.replace(":", ""): t for t in notices.DIGEST_PRESETS}}
QUIET_CODES: dict[str, str] = {(q[:5].replace(":", "") if q else "off"): q for q in notices.QUIET_PRESETS}


async def show(ctx: Context, saved: bool = False) -> list[Reply]:
    """Shows the current choices, each preset as a button (the chosen one ticked)."""
    if not ctx.identity.bound:
        return [ctx.reply("not_bound", terms_url=ctx.links.terms())]
    current = await notices.get_preference(ctx.session, ctx.account_id)
    tick = "✓ "
    digest = [
        Button(
            (tick if current.digest_time == value else "")
            + (
                ctx.label("button.instant")
                if value is None
                else ctx.text("settings_digest_button", time=value)
            ),
            f"{KEY}:d:{code}",
        )
        for code, value in DIGEST_CODES.items()
    ]
    quiet = [
        Button(
            (tick if current.quiet_hours == value else "")
            + (
                ctx.text("settings_quiet_button", hours=value.replace("-", "–"))
                if value
                else ctx.label("button.quiet_off")
            ),
            f"{KEY}:q:{code}",
        )
        for code, value in QUIET_CODES.items()
    ]
    return [
        ctx.reply(
            "settings",
            saved=saved,
            digest_time=current.digest_time,
            quiet=current.quiet_hours.replace("-", "–"),
            buttons=[digest, quiet],
        )
    ]


async def pressed(ctx: Context, data: str) -> list[Reply]:
    """Stores the pressed preset and shows the settings again."""
    if not ctx.identity.bound:
        return [ctx.reply("not_bound", terms_url=ctx.links.terms())]
    what, _, code = data.partition(":")
    current = await notices.get_preference(ctx.session, ctx.account_id)
    if what == "d" and code in DIGEST_CODES:
        chosen = replace(current, digest_time=DIGEST_CODES[code])
    elif what == "q" and code in QUIET_CODES:
        chosen = replace(current, quiet_hours=QUIET_CODES[code])
    elif data == "open":
        return await show(ctx)
    else:
        return [ctx.reply("button_invalid")]
    await notices.set_preference(ctx.session, ctx.account_id, chosen, utcnow(), TEXTS)
    return await show(ctx, saved=True)


async def command(ctx: Context) -> list[Reply]:
    return await show(ctx)


FLOW = Flow(
    name="settings",
    key=KEY,
    commands=("settings",),
    on_command=command,
    on_button=pressed,
    menu_commands=("settings",),
)
