"""/help: what this person's roles can do, as a menu of buttons."""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply


async def show_menu(ctx: Context) -> list[Reply]:
    """Shows the menu for the roles this account holds now."""
    buttons = [[Button(ctx.label("button.terms"), "t:show"), Button(ctx.label("button.language"), "l:open")]]
    return [ctx.reply("help", identity=ctx.identity, buttons=buttons)]


async def pressed(ctx: Context, data: str) -> list[Reply]:
    if data == "open":
        return await show_menu(ctx)
    return [ctx.reply("button_invalid")]


FLOW = Flow(
    name="menu",
    key="m",
    commands=("help", "menu"),
    on_command=show_menu,
    on_button=pressed,
    menu_commands=("help",),
    before_consent=True,
)
