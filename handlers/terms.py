"""/terms: the school's published service terms, the same as the public web page.

The policy asks schools to disclose them (主动公开).
"""

from __future__ import annotations

from handlers.dialog import Button, Context, Flow, Reply
from storage import schools, terms


async def show_terms(ctx: Context) -> list[Reply]:
    """Shows the terms in force for this person's school."""
    school = ctx.identity.school
    if school is None:
        try:
            school = await schools.resolve_school(ctx.session, None)
        except schools.SchoolNotFound:
            return [ctx.reply("terms_none", url=ctx.links.terms())]
    version = await terms.current_terms(ctx.session, school.id)
    if version is None:
        return [ctx.reply("terms_none", url=ctx.links.terms())]
    url = ctx.links.terms(version.version)
    return [
        ctx.reply(
            "terms",
            school=school.name,
            version=version.version,
            effective=terms.effective_date(version, school).isoformat(),
            t=version.content,
            url=url,
            buttons=[[Button(ctx.label("button.open_web"), url=url)]],
        )
    ]


async def pressed(ctx: Context, data: str) -> list[Reply]:
    if data == "show":
        return await show_terms(ctx)
    return [ctx.reply("button_invalid")]


FLOW = Flow(
    name="terms",
    key="t",
    commands=("terms",),
    on_command=show_terms,
    on_button=pressed,
    menu_commands=("terms",),
    before_consent=True,
)
