"""/lang: switch between Chinese and English."""

from __future__ import annotations

import messages
from handlers.dialog import Button, Context, Flow, Reply
from storage import accounts


async def choose(ctx: Context) -> list[Reply]:
    """Offers the languages."""
    buttons = [[Button(messages.label("language.name", loc), f"l:{loc}") for loc in messages.LOCALES]]
    return [ctx.reply("lang_choose", buttons=buttons)]


async def pressed(ctx: Context, data: str) -> list[Reply]:
    """Stores the chosen language and confirms in it."""
    if data == "open":
        return await choose(ctx)
    if data not in messages.LOCALES:
        return [ctx.reply("button_invalid")]
    await accounts.set_locale(ctx.session, ctx.identity.account, data)
    ctx.locale = data
    return [ctx.reply("lang_set")]


FLOW = Flow(
    name="language",
    key="l",
    commands=("lang", "language"),
    on_command=choose,
    on_button=pressed,
    menu_commands=("lang",),
    before_consent=True,
)
