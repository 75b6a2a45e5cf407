"""/mydata: a parent sees everything the school stores about them and their children (PIPL's
right of access), as a page to read on a phone and as JSON, both written under DATA_DIR.

What is exported, and what is not and why, is decided in storage/privacy.py (docs/privacy.md).
"""

from __future__ import annotations

import json
import secrets
import shutil
from typing import Any
from zoneinfo import ZoneInfo

import messages
from handlers.dialog import Attachment, Context, Flow, Reply
from storage import privacy
from storage.authz import Action
from storage.clock import utcnow

KEY = ""
NOTES = ("note_anonymous", "note_secrets", "note_staff", "note_messages")


async def may_see(ctx: Context) -> bool:
    """Parents only (storage.authz): staff records are the school's employment records."""
    return await ctx.may(Action.VIEW_MY_DATA)


async def show(ctx: Context) -> list[Reply]:
    """Sends a short summary with the readable page, then the same data as JSON."""
    if not await may_see(ctx):
        if not ctx.identity.bound:
            return [ctx.reply("not_bound", terms_url=ctx.links.terms())]
        return [ctx.reply("privacy_parents_only")]
    data = await privacy.export_person_data(ctx.session, ctx.account_id)
    tables: dict[str, list[dict[str, Any]]] = data["tables"]
    school = ctx.identity.school
    now = utcnow()
    local = now.astimezone(ZoneInfo(school.timezone if school else "Asia/Shanghai")).strftime(
        "%Y-%m-%d %H:%M"
    )
    data = {
        **data,
        "exported_at": now.isoformat(),
        "school": school.name if school else "",
        "notes": {n: ctx.label(f"mydata.{n}") for n in NOTES},
    }
    people = [str(p["name"]) for p in tables["person"]]
    children = [str(s["name"]) for s in tables["student"]]
    counts = [(name, len(rows)) for name, rows in tables.items() if rows]
    files = _write(ctx, data, people, children, local)
    summary = ctx.text("mydata_summary", people=people, children=children, counts=counts, files=bool(files))
    if not files:
        return [Reply(summary)]
    page, raw = files
    return [Reply(summary, document=page), Reply(ctx.text("mydata_json"), document=raw)]


def _write(
    ctx: Context, data: dict[str, Any], people: list[str], children: list[str], local: str
) -> tuple[Attachment, Attachment] | None:
    """Both files in a fresh folder; the account's earlier exports are removed (one copy at a time)."""
    if ctx.files_dir is None:
        return None
    base = privacy.export_folder(ctx.account_id)
    shutil.rmtree(ctx.files_dir / base, ignore_errors=True)
    relative = f"{base}/{secrets.token_urlsafe(12)}"
    folder = ctx.files_dir / relative
    folder.mkdir(parents=True)
    readable = [(name, [_readable(row) for row in rows]) for name, rows in data["tables"].items() if rows]
    page = messages.render_page(
        "mydata",
        ctx.locale,
        school=data["school"],
        exported_at=local,
        people=people,
        children=children,
        tables=readable,
    )
    (folder / "mydata.html").write_text(page, encoding="utf-8")
    (folder / "mydata.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return Attachment("mydata.html", f"{relative}/mydata.html"), Attachment(
        "mydata.json", f"{relative}/mydata.json"
    )


def _readable(row: dict[str, Any]) -> dict[str, str]:
    """A row's values as text: lists and objects (e.g. a message's buttons) as compact JSON."""
    out: dict[str, str] = {}
    for key, value in row.items():
        if isinstance(value, dict | list):
            out[key] = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            out[key] = "✓" if value else "✗"
        else:
            out[key] = "" if value is None else str(value)
    return out


FLOW = Flow(
    name="mydata",
    key=KEY,
    commands=("mydata",),
    on_command=show,
    menu_commands=("mydata",),
    before_consent=True,  # seeing what is stored never waits for consent
)
