"""The `afterschool` command: demo, run, migrate and the administrators' commands.

Command and option names are a contract: the README, scripts and printed slips use them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

import messages
from bot import admin
from bot.config import Settings
from bot.logs import setup_logging
from handlers.dialog import Links
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import Role
from storage.roster import RosterError
from storage.terms import effective_date

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afterschool",
        description="After-school service (课后服务) bot for parents, teachers and the parent committee.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="try it: example school, web chat and terms page, no token")
    demo.add_argument("--data-dir", type=Path, default=None, help="data folder (default: DATA_DIR/demo)")
    demo.add_argument("--host", default=None, help="address to listen on (default: HTTP_HOST)")
    demo.add_argument("--port", type=int, default=None, help="port (default: HTTP_PORT, 8080)")

    sub.add_parser("run", help="production: Telegram (when TELEGRAM_BOT_TOKEN is set) and the web server")
    sub.add_parser("migrate", help="bring the database schema to the latest version")

    roster = sub.add_parser("import-roster", help="load classes, students, guardians and staff from CSV")
    roster.add_argument("path", type=Path, metavar="PATH.csv")
    roster.add_argument("--school", default=None, help="school code (needed when there are several)")
    roster.add_argument("--school-name", default=None, help="the school's name, set on import")

    terms = sub.add_parser("publish-terms", help="publish a new, immutable version of the service terms")
    terms.add_argument("path", type=Path, metavar="PATH.yaml")
    terms.add_argument("--school", default=None, help="school code (needed when there are several)")

    invite = sub.add_parser("invite", help="one-time invite codes as Telegram links (and QR images)")
    invite.add_argument("--role", required=True, choices=[r.value for r in Role])
    who = invite.add_mutually_exclusive_group(required=True)
    who.add_argument("--student", metavar="STUDENT_NO", help="a code for each guardian of this student")
    who.add_argument("--class", dest="class_name", metavar="NAME", help="codes for every student of a class")
    who.add_argument("--person", metavar="PERSON_NO", help="a teacher, staff, committee member or admin")
    invite.add_argument("--qr", type=Path, metavar="DIR", help="write a QR image per code and index.csv")
    invite.add_argument("--days", type=int, default=None, help="days the codes stay valid (default 30)")
    invite.add_argument("--school", default=None, help="school code (needed when there are several)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    secrets = [s.get_secret_value() for s in (settings.telegram_bot_token, settings.webhook_secret) if s]
    setup_logging(settings.log_level, settings.log_format, secrets)
    locale = messages.normalise_locale(settings.default_locale)
    try:
        return asyncio.run(_dispatch(args, settings, locale))
    except KeyboardInterrupt:
        return 130
    except admin.AdminError as exc:
        text = messages.format_label(f"admin.{exc.key}", locale, **exc.params)
        print(messages.format_label("cli.error", locale, message=text), file=sys.stderr)
        return 2


async def _dispatch(args: argparse.Namespace, settings: Settings, locale: str) -> int:
    if args.command == "demo":
        from bot.demo import run_demo

        update: dict[str, object] = {"data_dir": args.data_dir or settings.data_dir / "demo"}
        if args.host:
            update["http_host"] = args.host
        if args.port:
            update["http_port"] = args.port
        # The demo is self-contained: its own SQLite file, no Telegram even if a token is set.
        await run_demo(
            settings.model_copy(update={**update, "database_url": None, "telegram_bot_token": None})
        )
        return 0
    if args.command == "run":
        from bot.app import serve

        await serve(settings)
        return 0

    engine = create_engine(settings.resolved_database_url())
    try:
        await migrate(engine)
        sessionmaker = create_sessionmaker(engine)
        if args.command == "migrate":
            print(messages.label("cli.migrated", locale))
            return 0
        if args.command == "import-roster":
            return await _import_roster(args, sessionmaker, locale)
        if args.command == "publish-terms":
            return await _publish_terms(args, sessionmaker, settings, locale)
        if args.command == "invite":
            return await _invite(args, sessionmaker, settings, locale)
    finally:
        await engine.dispose()
    raise AssertionError(args.command)


async def _import_roster(args: argparse.Namespace, sessionmaker: object, locale: str) -> int:
    try:
        school, report = await admin.import_roster_file(
            sessionmaker,  # type: ignore[arg-type]
            args.path,
            args.school,
            args.school_name,
        )
    except RosterError as exc:
        print(
            messages.format_label("cli.roster_problems", locale, path=args.path, count=len(exc.problems)),
            file=sys.stderr,
        )
        for line, key, params in exc.problems:
            text = messages.format_label(f"roster.{key}", locale, **params)
            print(messages.format_label("cli.roster_line", locale, line=line, message=text), file=sys.stderr)
        return 2
    print(
        messages.format_label(
            "cli.roster_done",
            locale,
            school=school.name,
            code=school.code,
            classes=report.classes_created,
            students_created=report.students_created,
            students_updated=report.students_updated,
            people_created=report.people_created,
            people_updated=report.people_updated,
        )
    )
    return 0


async def _publish_terms(
    args: argparse.Namespace, sessionmaker: object, settings: Settings, locale: str
) -> int:
    try:
        school, version, created = await admin.publish_terms_file(
            sessionmaker,  # type: ignore[arg-type]
            args.path,
            args.school,
        )
    except ValidationError as exc:
        print(messages.format_label("cli.terms_problems", locale, path=args.path), file=sys.stderr)
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "-"
            print(
                messages.format_label("cli.terms_field", locale, field=field, message=error["msg"]),
                file=sys.stderr,
            )
        return 2
    if not created:
        print(messages.format_label("cli.terms_unchanged", locale, version=version.version))
        return 0
    url = Links(settings.base_url()).terms(version.version)
    print(
        messages.format_label(
            "cli.terms_published",
            locale,
            school=school.name,
            version=version.version,
            effective=effective_date(version, school).isoformat(),
            url=url,
        )
    )
    return 0


async def _bot_username(settings: Settings) -> str | None:
    """The bot's username for t.me links: from settings, else asked from the Bot API."""
    if settings.telegram_bot_username:
        return settings.telegram_bot_username.lstrip("@")
    if settings.telegram_bot_token is None:
        return None
    from telegram import Bot

    base = settings.telegram_api_base_url.rstrip("/")
    try:
        async with Bot(settings.telegram_bot_token.get_secret_value(), base_url=f"{base}/bot") as bot:
            return bot.username
    except Exception as exc:  # the codes are still valid; only the link form changes
        log.warning("could not ask Telegram for the bot's username: %s", type(exc).__name__)
        return None


async def _invite(args: argparse.Namespace, sessionmaker: object, settings: Settings, locale: str) -> int:
    request = admin.InviteRequest(
        role=args.role,
        student=args.student,
        class_name=args.class_name,
        person=args.person,
        ttl_days=args.days or settings.invite_ttl_days,
    )
    issued = await admin.issue_invites(sessionmaker, request, args.school)  # type: ignore[arg-type]
    username = await _bot_username(settings)
    if username is None:
        print(messages.label("cli.invite_no_username", locale), file=sys.stderr)
    links = Links(settings.base_url(), username)
    for item in issued:
        if item.student_no:
            who = messages.format_label(
                "cli.invite_parent_who",
                locale,
                name=item.person_name,
                relation=item.relation or "",
                student=item.student_name,
                student_no=item.student_no,
                class_name=item.class_name,
            )
        else:
            who = messages.format_label(
                "cli.invite_person_who",
                locale,
                name=item.person_name,
                person_no=item.person_no,
                role=messages.label(f"role.{item.role}", locale),
            )
        print(
            messages.format_label(
                "cli.invite_line",
                locale,
                who=who,
                link=links.invite(item.code),
                expires=item.expires_at.date().isoformat(),
            )
        )
    if args.qr:
        index = admin.write_invite_qr(issued, links, args.qr)
        print(messages.format_label("cli.invite_qr", locale, count=len(issued), index=index))
    return 0
