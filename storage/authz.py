"""Who may do what: every protected action of the product and the roles that may do it, in one table.

Roles come from the roster (and the invite code that bound the account), re-read from the database
for every event; this table is the only place that says which role may do which action. Handlers
and the web dashboard ask `allowed` before acting; a refusal is written to the audit log as
`authz.refused` (ids and the action only). Where a rule narrows further by scope (the head teacher
of the child's class, staff on duty today, the guardian of the child), the storage module of that
domain checks it, and audits its own refusals; `refuse` records one found in a handler.

`python -m storage.authz` prints the table as Markdown; docs/security.md holds a copy between
marker comments, and a test fails when the two differ.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.accounts import Identity
from storage.models import Role

REFUSED = "authz.refused"  # the audit action of every refusal recorded here
BEGIN_MARKER = "<!-- authz:begin -->"
END_MARKER = "<!-- authz:end -->"


class Action(enum.StrEnum):
    """Every protected action; the value is what the audit log and the docs show."""

    APPLY = "apply"
    VIEW_STATUS = "view_status"
    WITHDRAW = "withdraw"
    ANSWER_OFFER = "answer_offer"
    SIGN_AGREEMENT = "sign_agreement"
    MANAGE_PICKUP = "manage_pickup"
    ANSWER_PICKUP_REQUEST = "answer_pickup_request"
    REPORT_ABSENCE = "report_absence"
    REVIEW_APPLICATION = "review_application"
    APPROVE_APPLICATION = "approve_application"
    PLACE_CHILDREN = "place_children"
    VIEW_GROUPS = "view_groups"
    TAKE_ATTENDANCE = "take_attendance"
    CONFIRM_HANDOVER = "confirm_handover"
    SEND_NOTICE = "send_notice"
    MANAGE_NOTICES = "manage_notices"
    READ_NOTICES = "read_notices"
    ACK_NOTICE = "ack_notice"
    ANSWER_SURVEY = "answer_survey"
    SEND_FEEDBACK = "send_feedback"
    OPEN_DASHBOARD = "open_dashboard"
    VIEW_DASHBOARD = "view_dashboard"
    EXPORT_RESULTS = "export_results"
    SCHEDULE_SURVEY = "schedule_survey"
    VIEW_MY_DATA = "view_my_data"
    REQUEST_ERASURE = "request_erasure"
    DECIDE_ERASURE = "decide_erasure"


@dataclass(frozen=True)
class Rule:
    """Who may do an action, where people do it, and the narrower scope a domain module checks."""

    roles: frozenset[Role]
    where: str
    scope: str = ""


PARENT = frozenset({Role.PARENT})
ADMIN = frozenset({Role.ADMIN})
READERS = frozenset({Role.COMMITTEE, Role.ADMIN})  # policy 3.4: the committee takes part throughout
ON_DUTY = frozenset({Role.TEACHER, Role.STAFF, Role.ADMIN})
EVERY_ROLE = frozenset(Role)  # every bound person: each holds at least one role from the roster

RULES: dict[Action, Rule] = {
    Action.APPLY: Rule(PARENT, "`/apply`", "own children"),
    Action.VIEW_STATUS: Rule(PARENT, "`/status`", "own children's applications"),
    Action.WITHDRAW: Rule(PARENT, "`/withdraw`, `w:` buttons", "own child's application"),
    Action.ANSWER_OFFER: Rule(PARENT, "`o:` buttons", "own child's offer, before it lapses"),
    Action.SIGN_AGREEMENT: Rule(
        PARENT, "`/agreement`, `g:` buttons", "guardian of the placed child, under the registered name"
    ),
    Action.MANAGE_PICKUP: Rule(PARENT, "`/pickup`, `k:` buttons", "own children"),
    Action.ANSWER_PICKUP_REQUEST: Rule(PARENT, "`k:ok` / `k:no` buttons", "guardian of the child"),
    Action.REPORT_ABSENCE: Rule(PARENT, "`/absent`", "own children"),
    Action.REVIEW_APPLICATION: Rule(
        frozenset({Role.TEACHER, Role.ADMIN}),
        "`/pending`, `r:ok` `r:ou` `r:no` buttons",
        "teacher: head teacher of the child's class; admin: own school",
    ),
    Action.APPROVE_APPLICATION: Rule(ADMIN, "`r:sa` `r:sw` `r:sr` buttons", "own school"),
    Action.PLACE_CHILDREN: Rule(ADMIN, "`/place`, `q:` buttons", "own school"),
    Action.VIEW_GROUPS: Rule(ADMIN, "`/groups`", "own school"),
    Action.TAKE_ATTENDANCE: Rule(
        ON_DUTY,
        "`/today`, `h:ap` `h:ab` buttons",
        "teacher, staff: on duty with the group and vetted; admin: any group of own school",
    ),
    Action.CONFIRM_HANDOVER: Rule(
        ON_DUTY,
        "`h:c` `h:h` `h:r` `h:al` `h:n` buttons",
        "as attendance; only to an adult the parents named or allowed",
    ),
    Action.SEND_NOTICE: Rule(ADMIN, "`/notice`", "own school"),
    Action.MANAGE_NOTICES: Rule(ADMIN, "`n:l` `n:v` `n:x` buttons (reports, stop)", "own school"),
    Action.READ_NOTICES: Rule(EVERY_ROLE, "`/notices`, `n:o` buttons", "notices sent to this chat"),
    Action.ACK_NOTICE: Rule(EVERY_ROLE, "`n:a` buttons", "own delivery only"),
    Action.ANSWER_SURVEY: Rule(EVERY_ROLE, "`/survey`, `v:` buttons", "invited, while the survey is open"),
    Action.SEND_FEEDBACK: Rule(EVERY_ROLE, "`/feedback`, `f:` buttons", "own school"),
    Action.OPEN_DASHBOARD: Rule(READERS, "`/dashboard`", "own school"),
    Action.VIEW_DASHBOARD: Rule(READERS, "web: `/dashboard`, survey and feedback pages", "own school"),
    Action.EXPORT_RESULTS: Rule(READERS, "web: `.xlsx` / `.csv` downloads", "own school; audited"),
    Action.SCHEDULE_SURVEY: Rule(READERS, "web: `/dashboard/surveys/new`", "own school"),
    # Staff records (vetting, duties, handovers of other people's children) are the school's
    # employment file, asked for at the office: docs/privacy.md.
    Action.VIEW_MY_DATA: Rule(PARENT, "`/mydata`", "own records and own children's"),
    Action.REQUEST_ERASURE: Rule(PARENT, "`/delete_me`, `x:` buttons", "own records and own children's"),
    Action.DECIDE_ERASURE: Rule(ADMIN, "`x:` approve / refuse buttons", "requests of own school"),
}


def permits(roles: Iterable[str], action: Action) -> bool:
    """The table's answer for a set of role names (no scope, no audit)."""
    allowed = RULES[action].roles
    return any(role in allowed for role in roles)


async def refuse(
    session: AsyncSession,
    identity: Identity,
    action: Action,
    *,
    reason: str = "role",
    target_type: str | None = None,
    target_id: int | None = None,
) -> None:
    """Put a refused attempt on record: who (ids), which action, and why (`role` or a scope word)."""
    person = identity.person
    await audit.record(
        session,
        REFUSED,
        school_id=identity.school.id if identity.school else None,
        actor_person_id=person.id if person else None,
        actor_account_id=identity.account.id,
        target_type=target_type,
        target_id=target_id,
        attempted=action.value,
        reason=reason,
    )


async def allowed(session: AsyncSession, identity: Identity, action: Action) -> bool:
    """True when this account's roles (in its school) may do the action; a refusal is audited.

    An account bound to nobody may do none of them.
    """
    if identity.school is not None and permits(identity.roles, action):
        return True
    await refuse(session, identity, action)
    return False


async def viewer_allowed(
    session: AsyncSession, school_id: int, person_id: int, roles: Iterable[str], action: Action
) -> bool:
    """The same check for a web dashboard viewer (a person, no chat account)."""
    if permits(roles, action):
        return True
    await refused_person(session, school_id, person_id, action)
    return False


async def refused_person(
    session: AsyncSession, school_id: int, person_id: int, action: Action, reason: str = "role"
) -> None:
    """A refusal where the actor is a person without a chat account (the web dashboard)."""
    await audit.record(
        session,
        REFUSED,
        school_id=school_id,
        actor_person_id=person_id,
        attempted=action.value,
        reason=reason,
    )


# -- the table as documentation ------------------------------------------------------------------

ROLE_HEADINGS = {
    Role.PARENT: "parent",
    Role.TEACHER: "teacher",
    Role.STAFF: "staff",
    Role.COMMITTEE: "committee",
    Role.ADMIN: "admin",
}


def markdown_table() -> str:
    """Rows are actions, columns roles: ✓ may (within the scope noted), — may not."""
    head = ["action", *ROLE_HEADINGS.values(), "where", "scope"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for action in Action:
        rule = RULES[action]
        marks = ["✓" if role in rule.roles else "—" for role in ROLE_HEADINGS]
        lines.append("| " + " | ".join([f"`{action.value}`", *marks, rule.where, rule.scope]) + " |")
    return "\n".join(lines) + "\n"


def documented_table(text: str) -> str | None:
    """The table between the markers in a document, or None when the markers are missing."""
    start, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        return None
    return text[start + len(BEGIN_MARKER) : end].strip("\n") + "\n"


def with_table(text: str) -> str:
    """The document with the generated table put between its markers."""
    start, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN_MARKER} … {END_MARKER} in the document")
    return text[: start + len(BEGIN_MARKER)] + "\n" + markdown_table() + text[end:]


def main(argv: list[str]) -> int:
    """`python -m storage.authz` prints the table; `--write docs/security.md` updates the document."""
    if len(argv) == 2 and argv[0] == "--write":
        with open(argv[1], encoding="utf-8") as f:
            text = f.read()
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(with_table(text))
        return 0
    if argv:
        print("usage: python -m storage.authz [--write docs/security.md]", file=sys.stderr)
        return 2
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
