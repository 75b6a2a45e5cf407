"""/cancel: leave whatever flow this chat is in, keeping nothing half-done."""

from __future__ import annotations

from handlers.dialog import Context, Flow, Reply


async def cancel(ctx: Context) -> list[Reply]:
    """Drops the stored state of the current flow, if any."""
    had_flow = await ctx.clear_state()
    return [ctx.reply("cancelled" if had_flow else "nothing_to_cancel")]


FLOW = Flow(
    name="cancel",
    key="c",
    commands=("cancel",),
    on_command=cancel,
    menu_commands=("cancel",),
    before_consent=True,
)
