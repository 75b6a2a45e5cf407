"""Platform accounts and who they are: people, school and roles, always read from the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, bindparam, cast, literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    AccountBinding,
    ConversationState,
    Guardianship,
    Person,
    PersonRole,
    PlatformAccount,
    PrivacyConsent,
    School,
    SchoolClass,
    Student,
)


@dataclass(frozen=True)
class ChildView:
    student_id: int
    name: str
    class_name: str
    relation: str


@dataclass
class Identity:
    """What an account may do, freshly loaded for each event (never taken from the client)."""

    account: PlatformAccount
    people: list[Person] = field(default_factory=list)
    school: School | None = None
    roles: frozenset[str] = frozenset()
    children: list[ChildView] = field(default_factory=list)
    classes_headed: list[str] = field(default_factory=list)
    # (person id, notice version) for each privacy notice these people accepted (storage.consent).
    accepted: frozenset[tuple[int, int]] = frozenset()

    @property
    def bound(self) -> bool:
        return bool(self.people)

    @property
    def person(self) -> Person | None:
        """The person this account speaks as in greetings: the first bound."""
        return self.people[0] if self.people else None

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Opened:
    """An event's account, who it speaks for and where its chat is in a flow."""

    identity: Identity
    state: ConversationState | None


async def open_account(
    session: AsyncSession, platform: str, external_id: str, chat_id: str, locale: str
) -> Opened:
    """The account of an event, created on first contact (safe under races), with its identity and
    conversation state, in as few queries as is safe: this runs before every event.

    On PostgreSQL the account row is locked first, in a statement of its own, and stays locked
    until the caller's transaction ends: two updates of one chat that reach two workers at once are
    handled one after the other, and the second reads the conversation state the first left (a
    state read in the locking statement would be the one from before the wait). SQLite locks no
    rows, so one statement reads it all: it has one writer at a time, and a second process that
    read the state before the first one wrote is refused at its first write and its update is
    offered again.
    """
    if session.get_bind().dialect.name == "sqlite":
        params = {"platform": platform, "external_id": external_id}
        rows = (await session.execute(_OPEN_BY_IDENTITY, params)).all()
        if not rows:
            account = await get_or_create_account(session, platform, external_id, chat_id, locale)
            return Opened(await load_identity(session, account), None)
        account = rows[0][0]
        _refresh(account, chat_id)
    else:
        account = await get_or_create_account(session, platform, external_id, chat_id, locale)
        rows = (await session.execute(_OPEN_BY_ID, {"account_id": account.id})).all()
    bound = [(person, school) for _, _, person, school in rows if person is not None]
    return Opened(await _identity(session, account, bound), rows[0][1])


async def get_or_create_account(
    session: AsyncSession, platform: str, external_id: str, chat_id: str, locale: str
) -> PlatformAccount:
    """The account for this platform identity, locked as in `open_account`; created on first contact."""
    params = {"platform": platform, "external_id": external_id}
    account = await session.scalar(_ACCOUNT_LOCKED, params)
    if account is None:
        try:
            async with session.begin_nested():
                account = PlatformAccount(
                    platform=platform, external_id=external_id, chat_id=chat_id, locale=locale
                )
                session.add(account)
        except IntegrityError:
            account = (await session.scalars(_ACCOUNT, params)).one()
    else:
        _refresh(account, chat_id)
    return account


def _refresh(account: PlatformAccount, chat_id: str) -> None:
    if account.chat_id != chat_id:
        account.chat_id = chat_id
    if account.unreachable_at is not None:
        account.unreachable_at = None  # they wrote to us: no longer blocked, send to them again


async def find_account(session: AsyncSession, platform: str, external_id: str) -> PlatformAccount | None:
    return await session.scalar(
        select(PlatformAccount).where(
            PlatformAccount.platform == platform, PlatformAccount.external_id == external_id
        )
    )


# The statements run for every event are built once: building and keying a statement costs more CPU
# than SQLite takes to answer it (docs/benchmarks.md, "Inbound updates").
_ACCOUNT = select(PlatformAccount).where(
    PlatformAccount.platform == bindparam("platform"), PlatformAccount.external_id == bindparam("external_id")
)
_ACCOUNT_LOCKED = _ACCOUNT.with_for_update()
# The account with its conversation state and the people it speaks for: a row per binding.
_OPEN = (
    select(PlatformAccount, ConversationState, Person, School)
    .outerjoin(ConversationState, ConversationState.account_id == PlatformAccount.id)
    .outerjoin(AccountBinding, AccountBinding.account_id == PlatformAccount.id)
    .outerjoin(Person, Person.id == AccountBinding.person_id)
    .outerjoin(School, School.id == Person.school_id)
    .order_by(AccountBinding.id)
)
_OPEN_BY_IDENTITY = _OPEN.where(
    PlatformAccount.platform == bindparam("platform"), PlatformAccount.external_id == bindparam("external_id")
)
_OPEN_BY_ID = _OPEN.where(PlatformAccount.id == bindparam("account_id"))
_BOUND = (
    select(Person, School)
    .join(AccountBinding, AccountBinding.person_id == Person.id)
    .join(School, School.id == Person.school_id)
    .where(AccountBinding.account_id == bindparam("account_id"))
    .order_by(AccountBinding.id)
)


_ACCOUNTS_OF_PEOPLE = (
    select(AccountBinding.person_id, PlatformAccount.id, PlatformAccount.locale)
    .join(AccountBinding, AccountBinding.account_id == PlatformAccount.id)
    .where(AccountBinding.person_id.in_(bindparam("ids", expanding=True)))
)


def _about_people(one: bool) -> Any:
    """Roles, classes headed, children and accepted privacy notices as one union of (kind, sort key,
    id, name, class, relation); of one person (`id`) or of several (`ids`)."""
    ids = bindparam("ids", expanding=True)

    def of(column: Any) -> Any:
        return column == bindparam("id") if one else column.in_(ids)

    none = literal(None, String)
    roles = select(
        literal("r").label("kind"), PersonRole.role.label("k"), literal(0).label("id"), none, none, none
    ).where(of(PersonRole.person_id))
    headed = select(literal("h"), SchoolClass.name, literal(0), none, none, none).where(
        of(SchoolClass.head_teacher_id)
    )
    children = (
        select(literal("c"), Student.name, Student.id, Student.name, SchoolClass.name, Guardianship.relation)
        .join(Guardianship, Guardianship.student_id == Student.id)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(of(Guardianship.person_id), Student.active.is_(True))
    )
    accepted = select(
        literal("p"), cast(PrivacyConsent.version, String), PrivacyConsent.person_id, none, none, none
    ).where(of(PrivacyConsent.person_id))
    return union_all(roles, headed, children, accepted).order_by("kind", "k", "id")


_ABOUT_PERSON = _about_people(one=True)
_ABOUT_PEOPLE = _about_people(one=False)


async def load_identity(session: AsyncSession, account: PlatformAccount) -> Identity:
    """Who the account speaks for, in two queries."""
    bound = (await session.execute(_BOUND, {"account_id": account.id})).all()
    return await _identity(session, account, [(person, school) for person, school in bound])


async def _identity(
    session: AsyncSession, account: PlatformAccount, bound: list[tuple[Person, School]]
) -> Identity:
    if not bound:
        return Identity(account=account)
    people = [person for person, _ in bound]
    if len(people) == 1:  # most accounts: no IN list to expand into the statement
        rows = (await session.execute(_ABOUT_PERSON, {"id": people[0].id})).all()
    else:
        rows = (await session.execute(_ABOUT_PEOPLE, {"ids": [p.id for p in people]})).all()
    return Identity(
        account,
        people,
        bound[0][1],
        frozenset(row[1] for row in rows if row[0] == "r"),
        [ChildView(row[2], row[3], row[4], row[5]) for row in rows if row[0] == "c"],
        [row[1] for row in rows if row[0] == "h"],
        frozenset((row[2], int(row[1])) for row in rows if row[0] == "p"),
    )


async def accounts_of_person(session: AsyncSession, person_id: int) -> list[PlatformAccount]:
    return list(
        await session.scalars(
            select(PlatformAccount)
            .join(AccountBinding, AccountBinding.account_id == PlatformAccount.id)
            .where(AccountBinding.person_id == person_id)
            .order_by(PlatformAccount.id)
        )
    )


async def accounts_of_people(session: AsyncSession, person_ids: Sequence[int]) -> list[tuple[int, int, str]]:
    """(person id, account id, locale) of every account bound to these people, in the order the
    people were given: one query for all the guardians a message goes to."""
    if not person_ids:
        return []
    rows = (await session.execute(_ACCOUNTS_OF_PEOPLE, {"ids": list(person_ids)})).all()
    order = {person: n for n, person in enumerate(person_ids)}
    return sorted(((r[0], r[1], r[2]) for r in rows), key=lambda r: (order[r[0]], r[1]))


async def other_accounts(session: AsyncSession, account_id: int) -> list[PlatformAccount]:
    """Reachable accounts on other platforms of the people this account speaks for.

    Where a message goes when this account proved unreachable (the person blocked the bot).
    """
    people = select(AccountBinding.person_id).where(AccountBinding.account_id == account_id)
    platform = select(PlatformAccount.platform).where(PlatformAccount.id == account_id).scalar_subquery()
    return list(
        await session.scalars(
            select(PlatformAccount)
            .join(AccountBinding, AccountBinding.account_id == PlatformAccount.id)
            .where(
                AccountBinding.person_id.in_(people),
                PlatformAccount.id != account_id,
                PlatformAccount.platform != platform,
                PlatformAccount.unreachable_at.is_(None),
            )
            .distinct()
            .order_by(PlatformAccount.id)
        )
    )


async def set_locale(session: AsyncSession, account: PlatformAccount, locale: str) -> None:
    account.locale = locale
    await session.flush()


class OtherSchool(ValueError):
    """The account already speaks for people of another school."""


async def bind_account(session: AsyncSession, account: PlatformAccount, person: Person) -> AccountBinding:
    """Bind an account to a person without an invite (the demo's persona picker).

    Keeps the invite rule that one account's bindings are all in one school; binding twice is a no-op.
    """
    other = await session.scalar(
        select(AccountBinding.id).where(
            AccountBinding.account_id == account.id, AccountBinding.school_id != person.school_id
        )
    )
    if other is not None:
        raise OtherSchool(f"account {account.id} is bound in another school")
    binding = await session.scalar(
        select(AccountBinding).where(
            AccountBinding.account_id == account.id, AccountBinding.person_id == person.id
        )
    )
    if binding is None:
        binding = AccountBinding(school_id=person.school_id, account_id=account.id, person_id=person.id)
        session.add(binding)
        await session.flush()
    return binding
