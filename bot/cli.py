"""The `afterschool` command: demo, run, migrate and the administrators' commands.

Command and option names are a contract: the README, scripts and printed slips use them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import messages
from bot import admin
from bot.config import Settings
from bot.logs import secrets_of, setup_logging
from handlers.dialog import Links
from handlers.notices import audience_label, describe, when
from messages import format_label
from storage import notices, retention
from storage.clock import utcnow
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import Role
from storage.notices import NoticeError
from storage.roster import RosterError
from storage.surveys import SurveyError
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

    run = sub.add_parser(
        "run", help="production: Telegram (when TELEGRAM_BOT_TOKEN is set) and the web server"
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes on the same port and database (default 1); more than one needs WEBHOOK_URL",
    )
    # Set by the supervisor of `run --workers N` on each worker it starts; not for people.
    run.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)
    sub.add_parser("migrate", help="bring the database schema to the latest version")
    sub.add_parser("sender", help="only the outbox sender (leader-elected): no web server, no updates")
    backup = sub.add_parser("backup", help="a consistent copy of the SQLite database (PostgreSQL: pg_dump)")
    backup.add_argument("path", type=Path, metavar="PATH", help="the backup file to write (replaced)")
    restore = sub.add_parser("restore", help="put a backup in place of the database (bot stopped)")
    restore.add_argument("path", type=Path, metavar="PATH", help="a file written by `afterschool backup`")
    restore.add_argument("--force", action="store_true", help="replace the database that is there")

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

    notice = sub.add_parser("notice", help="school notices: send, list, report, cancel")
    actions = notice.add_subparsers(dest="action", required=True, metavar="ACTION")
    send = actions.add_parser("send", help="send a notice from a Markdown-ish file, now, later or repeatedly")
    send.add_argument("path", type=Path, metavar="FILE.md", help='"# Title" on the first line, then the text')
    send.add_argument(
        "--to", required=True, metavar="AUDIENCE", help="school, grade:NAME, class:NAME or role:ROLE"
    )
    send.add_argument("--title", default=None, help="the title (instead of the file's first line)")
    timing = send.add_mutually_exclusive_group()
    timing.add_argument("--at", metavar="'YYYY-MM-DD HH:MM'", help="send at this time (school time zone)")
    timing.add_argument("--cron", metavar="'MIN HOUR DAY MONTH WEEKDAY'", help="repeat, e.g. '0 16 * * fri'")
    ack = send.add_mutually_exclusive_group()
    ack.add_argument("--ack-by", metavar="'YYYY-MM-DD HH:MM'", help="ask for 已阅 by this time")
    ack.add_argument("--ack-within", type=int, metavar="HOURS", help="ask for 已阅 within HOURS of sending")
    send.add_argument("--urgent", action="store_true", help="never held for a daily digest")
    send.add_argument("--attach", type=Path, metavar="FILE", help="a file sent with the notice")
    send.add_argument("--school", default=None, help="school code (needed when there are several)")
    report = actions.add_parser("report", help="sent, failed, unreachable and acknowledged")
    report.add_argument("id", type=int, metavar="ID")
    report.add_argument("--csv", type=Path, metavar="PATH", help="also write one row per recipient")
    listing = actions.add_parser("list", help="recent notices with their ids")
    listing.add_argument("--school", default=None, help="school code (needed when there are several)")
    stop = actions.add_parser("cancel", help="stop a scheduled or recurring notice")
    stop.add_argument("id", type=int, metavar="ID")
    survey = sub.add_parser("survey", help="surveys: schedule one from YAML, list them, cancel one")
    survey_sub = survey.add_subparsers(dest="action", required=True, metavar="ACTION")
    survey_schedule = survey_sub.add_parser(
        "schedule", help="open, remind and close a survey on its times (see examples/survey.yaml)"
    )
    survey_schedule.add_argument("path", type=Path, metavar="FILE.yaml")
    survey_schedule.add_argument("--school", default=None, help="school code (needed when there are several)")
    survey_list = survey_sub.add_parser("list", help="surveys and feedback rounds with their response rates")
    survey_list.add_argument("--school", default=None, help="school code (needed when there are several)")
    survey_cancel = survey_sub.add_parser("cancel", help="stop a survey that has not closed yet")
    survey_cancel.add_argument("id", type=int, metavar="ID")
    survey_cancel.add_argument("--school", default=None, help="school code (needed when there are several)")
    grp = sub.add_parser("groups", help="service groups: import them from YAML, or list them")
    grp_sub = grp.add_subparsers(dest="groups_command", required=True, metavar="ACTION")
    grp_import = grp_sub.add_parser("import", help="create or update the term's groups from a YAML file")
    grp_import.add_argument("path", type=Path, metavar="PATH.yaml")
    grp_list = grp_sub.add_parser("list", help="groups with seats taken and staff on duty")
    for p in (grp_import, grp_list):
        p.add_argument("--term", default=None, help="term (default: the current terms' school year)")
        p.add_argument("--school", default=None, help="school code (needed when there are several)")

    vet = sub.add_parser("vet-staff", help="record a person's moral, health and qualification checks")
    vet.add_argument("--person", required=True, metavar="PERSON_NO")
    for check in ("moral", "health", "qualification"):
        vet.add_argument(f"--{check}", required=True, choices=["pass", "fail"])
    vet.add_argument("--checked-on", required=True, type=date.fromisoformat, metavar="YYYY-MM-DD")
    vet.add_argument("--checked-by", required=True, metavar="NAME")
    vet.add_argument("--valid-until", required=True, type=date.fromisoformat, metavar="YYYY-MM-DD")
    vet.add_argument("--note", default="")
    vet.add_argument("--school", default=None, help="school code (needed when there are several)")

    place = sub.add_parser("place", help="propose placements for a term, or confirm a proposal")
    place.add_argument("--term", default=None, help="term (default: the current terms' school year)")
    place.add_argument("--confirm", type=int, default=None, metavar="PROPOSAL_ID")
    place.add_argument("--school", default=None, help="school code (needed when there are several)")

    agr = sub.add_parser("agreements", help="signed service agreements: verify, export, who has not signed")
    agr_sub = agr.add_subparsers(dest="agreements_command", required=True, metavar="ACTION")
    agr_verify = agr_sub.add_parser(
        "verify", help="recompute an agreement's SHA-256: is the stored text intact?"
    )
    agr_verify.add_argument("id", type=int, metavar="ID")
    agr_export = agr_sub.add_parser("export", help="write every agreement as HTML with an index.csv")
    agr_export.add_argument("--dir", type=Path, default=Path("agreements"), metavar="DIR")
    agr_unsigned = agr_sub.add_parser("unsigned", help="placed children without an agreement in force")
    for p in (agr_export, agr_unsigned):
        p.add_argument("--school", default=None, help="school code (needed when there are several)")

    purge = sub.add_parser("purge", help="delete data past its retention period (RETENTION_*), print counts")
    purge.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    secrets = secrets_of(
        settings.telegram_bot_token, settings.webhook_secret, settings.secret_key, settings.database_url
    )
    setup_logging(settings.log_level, settings.log_format, secrets)
    if getattr(args, "worker", None) is not None:
        _tag_log_lines(f"worker {args.worker}")
    locale = messages.normalise_locale(settings.default_locale)
    try:
        return asyncio.run(_dispatch(args, settings, locale))
    except KeyboardInterrupt:
        return 130
    except admin.AdminError as exc:
        text = messages.format_label(f"admin.{exc.key}", locale, **exc.params)
        print(messages.format_label("cli.error", locale, message=text), file=sys.stderr)
        return 2
    except NoticeError as exc:
        text = messages.format_label(f"notice_error.{exc.key}", locale, **exc.params)
        print(messages.format_label("cli.error", locale, message=text), file=sys.stderr)
        return 2
    except SurveyError as exc:
        text = messages.format_label(f"survey_error.{exc.key}", locale, **exc.params)
        print(messages.format_label("cli.error", locale, message=text), file=sys.stderr)
        return 2


class _Prefix(logging.Filter):
    """Starts every log line with the worker's name: N workers write to one log."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = f"{self.prefix}: {record.getMessage()}", None
        return True


def _tag_log_lines(prefix: str) -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Prefix(prefix))


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
        return await _run(args, settings, locale)
    if args.command == "sender":
        from bot.app import send_only

        await send_only(settings)
        return 0
    if args.command in ("backup", "restore"):  # before anything opens (and so creates) the database
        return await _backup(args, settings, locale)

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
        if args.command == "notice":
            return await _notice(args, sessionmaker, settings, locale)
        if args.command in ("groups", "vet-staff", "place"):
            return await _enrollment(args, sessionmaker, locale)
        if args.command == "agreements":
            return await _agreements(args, sessionmaker, locale)
        if args.command == "survey":
            return await _survey(args, sessionmaker, locale)
        if args.command == "purge":
            return await _purge(args, sessionmaker, settings, locale)
    finally:
        await engine.dispose()
    raise AssertionError(args.command)


async def _purge(
    args: argparse.Namespace, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, locale: str
) -> int:
    """What the nightly job does, now; with --dry-run nothing is deleted."""
    async with sessionmaker() as session:
        counts = await retention.purge_expired(
            session, utcnow(), settings.retention_policy(), data_dir=settings.data_dir, dry_run=args.dry_run
        )
        if not args.dry_run:
            await session.commit()
    head = "cli_retention.would_delete" if args.dry_run else "cli_retention.deleted"
    print(format_label(head, locale, total=sum(counts.values())))
    for kind, count in counts.items():
        print(format_label("cli_retention.line", locale, kind=kind, count=count))
    return 0


async def _run(args: argparse.Namespace, settings: Settings, locale: str) -> int:
    """One process (the default), one worker of a supervisor, or the supervisor of N workers."""
    from bot.app import prepare_workers, serve
    from bot.supervisor import WORKER_PLACEHOLDER, exec_supervisor, stop_with_parent

    if args.worker is not None:
        if args.supervisor is not None:
            stop_with_parent(args.supervisor)
        await serve(settings, run_migrations=False, reuse_port=True)
        return 0
    if args.workers < 1:
        print(
            messages.format_label("cli.workers_at_least_one", locale, workers=args.workers), file=sys.stderr
        )
        return 2
    if args.workers == 1:
        await serve(settings)
        return 0
    if not settings.webhook_url:
        # Telegram hands each update to one getUpdates caller: several pollers would fight (409).
        print(
            messages.format_label("cli.workers_need_webhook", locale, workers=args.workers), file=sys.stderr
        )
        return 2
    await prepare_workers(settings, args.workers)
    worker = [sys.executable, "-m", "bot", "run", "--worker", WORKER_PLACEHOLDER]
    exec_supervisor(
        args.workers, [*worker, "--supervisor", str(os.getpid())], settings.log_level, settings.log_format
    )
    raise AssertionError("exec returned")


async def _backup(args: argparse.Namespace, settings: Settings, locale: str) -> int:
    from bot import backup

    def say(key: str, **params: object) -> None:
        print(messages.format_label(f"cli_backup.{key}", locale, **params))

    url = settings.resolved_database_url()
    database = backup.sqlite_path(url)
    if database is None:
        dump, restore = backup.postgres_commands(url, args.path)
        say("postgres_backup" if args.command == "backup" else "postgres_restore")
        say("command", command=dump if args.command == "backup" else restore)
        return 2  # we did not make (or restore) the backup: a cron job must not think so
    try:
        if args.command == "backup":
            done = backup.backup_sqlite(database, args.path)
        else:
            done = await backup.restore_sqlite(args.path, database, force=args.force)
    except backup.BackupError as exc:
        text = messages.format_label(f"cli_backup.{exc.key}", locale, **exc.params)
        print(messages.format_label("cli.error", locale, message=text), file=sys.stderr)
        return 2
    common = {"path": done.path, "size": done.megabytes, "tables": done.tables, "version": done.version}
    if args.command == "backup":
        say("done", **common)
    else:
        say("restored", backup=args.path, **common)
    return 0


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
        return _validation_problems(args.path, exc, locale, "cli.terms_problems")
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


async def _notice(
    args: argparse.Namespace, maker: async_sessionmaker[AsyncSession], settings: Settings, locale: str
) -> int:
    if args.action == "send":
        request = admin.NoticeRequest(
            path=args.path,
            to=args.to,
            title=args.title,
            at=args.at,
            cron=args.cron,
            ack_by=args.ack_by,
            ack_within=args.ack_within,
            urgent=args.urgent,
            attach=args.attach,
        )
        school, issued = await admin.send_notice_file(maker, settings.data_dir, request, args.school)
        notice = issued.notice
        if notice.cron:
            fire = notices.next_fire(notice.cron, school, utcnow())
            print(
                format_label(
                    "cli_notice.recurring", locale, id=notice.id, cron=notice.cron, when=when(fire, school)
                )
            )
        elif notice.sent_at is None:
            print(
                format_label("cli_notice.scheduled", locale, id=notice.id, when=when(notice.send_at, school))
            )
        else:
            counts = {"accounts": issued.accounts, "held": issued.held, "not_joined": issued.not_joined}
            print(format_label("cli_notice.sent", locale, id=notice.id, **counts))
        return 0
    if args.action == "list":
        school, found = await admin.list_notices(maker, args.school)
        if not found:
            print(messages.label("cli_notice.none", locale))
        for n in found:
            status = messages.label(f"notice_status.{n.status}", locale)
            moment = when(n.sent_at or n.send_at or n.created_at, school)
            print(format_label("cli_notice.line", locale, id=n.id, status=status, when=moment, title=n.title))
        return 0
    if args.action == "cancel":
        notice = await admin.cancel_notice(maker, args.id)
        print(format_label("cli_notice.stopped", locale, id=notice.id))
        return 0
    report = await admin.notice_report(maker, args.id)
    _print_report(report, locale)
    if args.csv:
        count = admin.write_report_csv(report, args.csv)
        print(format_label("cli_notice.csv", locale, count=count, path=args.csv))
    return 0


def _print_report(report: notices.Report, locale: str) -> None:
    notice, school = report.notice, report.school
    status = messages.label(f"notice_status.{notice.status}", locale)
    audience = audience_label(notices.audience_of(notice), locale)
    print(
        format_label(
            "cli_notice.head", locale, id=notice.id, title=notice.title, status=status, audience=audience
        )
    )
    if notice.sent_at is not None:
        print(format_label("cli_notice.counts", locale, **report.counts))
    if report.asks_ack:
        missing = report.not_acknowledged
        deadline = when(notice.ack_deadline, school)
        print(format_label("cli_notice.deadline", locale, deadline=deadline, count=len(missing)))
        for row in missing:
            print(format_label("cli_notice.who", locale, who=describe(row, locale)))
    for issue in report.issues:
        accounts, acknowledged = report.issue_counts.get(issue.id, (0, 0))
        moment = when(issue.sent_at, school)
        print(
            format_label(
                "cli_notice.issue",
                locale,
                id=issue.id,
                when=moment,
                accounts=accounts,
                acknowledged=acknowledged,
            )
        )


async def _enrollment(args: argparse.Namespace, sessionmaker: Any, locale: str) -> int:
    from bot import enrollment_admin as ea

    def say(key: str, **params: object) -> None:
        print(messages.format_label(f"cli.{key}", locale, **params))

    if args.command == "groups" and args.groups_command == "import":
        try:
            term, report = await ea.import_groups_file(sessionmaker, args.path, args.term, args.school)
        except ValidationError as exc:
            return _validation_problems(args.path, exc, locale, "cli.file_problems")
        say(
            "groups_imported", term=term, created=report.created, updated=report.updated, duties=report.duties
        )
        return 0
    if args.command == "groups":
        term, rows = await ea.list_groups(sessionmaker, args.term, args.school)
        say("groups_header", term=term, count=len(rows))
        for row in rows:
            g = row.group
            days = "/".join(messages.label(f"weekday.{d}", locale) for d in g.weekdays)
            staff = ", ".join(row.staff) or messages.label("cli.nobody", locale)
            activity = messages.label(f"activity.{g.activity_type}", locale)
            say(
                "groups_row",
                name=g.name,
                activity=activity,
                room=g.room,
                days=days,
                taken=row.taken,
                capacity=g.capacity,
                staff=staff,
            )
        return 0
    if args.command == "vet-staff":
        person = await ea.vet_staff(
            sessionmaker,
            args.person,
            moral_ok=args.moral == "pass",
            health_ok=args.health == "pass",
            qualification_ok=args.qualification == "pass",
            checked_on=args.checked_on,
            checked_by=args.checked_by,
            valid_until=args.valid_until,
            note=args.note,
            school_code=args.school,
        )
        passed = args.moral == args.health == args.qualification == "pass"
        say("vetted" if passed else "vetting_failed", name=person.name, until=args.valid_until.isoformat())
        return 0
    if args.confirm is not None:
        result = await ea.confirm(sessionmaker, args.confirm)
        say("place_confirmed", placed=len(result.placed), waiting=len(result.waiting))
        return 0
    proposal, names = await ea.propose(sessionmaker, args.term, args.school)
    say("place_proposal", id=proposal.id, term=proposal.term)
    counts: dict[str, int] = {}
    for _, group_id in proposal.placements:
        counts[names.get(group_id, "?")] = counts.get(names.get(group_id, "?"), 0) + 1
    for name, n in counts.items():
        say("place_row", name=name, count=n)
    say("place_waiting", count=len(proposal.waiting), id=proposal.id)
    return 0


def _validation_problems(path: Path, exc: ValidationError, locale: str, header: str) -> int:
    """Each invalid field on its own line, by its path in the file."""
    print(messages.format_label(header, locale, path=path), file=sys.stderr)
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "-"
        print(
            messages.format_label("cli.terms_field", locale, field=field, message=error["msg"]),
            file=sys.stderr,
        )
    return 2


async def _agreements(args: argparse.Namespace, sessionmaker: Any, locale: str) -> int:
    from bot import enrollment_admin as ea

    def say(key: str, **params: object) -> None:
        print(messages.format_label(f"cli.{key}", locale, **params))

    if args.agreements_command == "verify":
        check = await ea.verify_agreement(sessionmaker, args.id)
        say(
            "agreement_intact" if check.intact else "agreement_tampered",
            id=check.agreement_id,
            stored=check.stored,
            computed=check.computed,
        )
        return 0 if check.intact else 1
    if args.agreements_command == "export":
        count, index = await ea.export_agreements(sessionmaker, args.dir, args.school, locale)
        say("agreements_exported", count=count, index=index)
        return 0
    rows = await ea.unsigned(sessionmaker, args.school)
    say("unsigned_header", count=len(rows))
    for row in rows:
        say(
            "unsigned_row_again" if row.superseded else "unsigned_row",
            child=row.child,
            student_no=row.student_no,
            group=row.group,
        )
    return 0


async def _survey(
    args: argparse.Namespace, sessionmaker: async_sessionmaker[AsyncSession], locale: str
) -> int:
    if args.action == "schedule":
        school, survey, people = await admin.schedule_survey_file(sessionmaker, args.path, args.school)
        print(
            format_label(
                "cli.survey_scheduled",
                locale,
                id=survey.id,
                title=survey.title,
                opens=when(survey.opens_at, school),
                closes=when(survey.closes_at, school),
                people=people,
                questions=len(survey.questions),
            )
        )
        return 0
    if args.action == "cancel":
        survey = await admin.cancel_survey(sessionmaker, args.id, args.school)
        print(format_label("cli.survey_cancelled", locale, id=survey.id))
        return 0
    school, found = await admin.list_surveys(sessionmaker, args.school)
    if not found:
        print(messages.label("cli.surveys_none", locale))
    for s in found:
        print(
            format_label(
                "cli.survey_line",
                locale,
                id=s.id,
                status=messages.label(f"export.status_{s.status}", locale),
                opens=when(s.opens_at, school),
                closes=when(s.closes_at, school),
                title=s.title,
                invited=s.invited_people,
            )
        )
    return 0
