"""Whatever no flow took: stray text, unknown commands, stickers, photos, stale or forged buttons."""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply


def _menu(ctx: Context) -> list[list[Button]]:
    return [[Button(ctx.label("button.menu"), "m:open")]]


async def unknown_command(ctx: Context) -> list[Reply]:
    """Says the command is unknown and points to /help."""
    return [ctx.reply("unknown_command", command=ctx.event.command or "", buttons=_menu(ctx))]


async def anything(ctx: Context) -> list[Reply]:
    """Answers text or media sent outside any flow."""
    if ctx.event.media:
        return [ctx.reply("media_not_understood", buttons=_menu(ctx))]
    if not ctx.identity.bound:
        return [ctx.reply("not_bound", terms_url=ctx.links.terms())]
    return [ctx.reply("free_text", buttons=_menu(ctx))]


async def invalid_button(ctx: Context, _data: str) -> list[Reply]:
    return [ctx.reply("button_invalid", buttons=_menu(ctx))]


async def too_long(ctx: Context) -> list[Reply]:
    return [ctx.reply("too_long")]


FLOW = Flow(
    name="fallback",
    key="",
    on_command=unknown_command,
    on_button=invalid_button,
    on_message=anything,
)
