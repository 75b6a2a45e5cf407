"""统筹安排: who gets a place when places are short. A pure function, so it can be proven.

Order: children in a confirmed priority group (残疾、留守、随迁、困难) first, then by the time the
application was made, then by id. Each child in turn gets a group that runs on all of the
child's weekdays and still has a seat on each of them (its preferred activity first, then the
group with most seats left, then the lowest id); a child who fits nowhere goes on the waiting list
in the same order. Capacity is per weekday: a group of 20 on Mon/Wed can hold 20 Monday children
and 20 Wednesday children.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Candidate:
    application_id: int
    priority: bool
    applied_at: datetime
    weekdays: frozenset[str]
    preferred_activities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Seats:
    group_id: int
    activity_type: str
    weekdays: frozenset[str]
    capacity: int
    # Children already placed in the group, per weekday.
    taken: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Proposal:
    placements: tuple[tuple[int, int], ...]  # (application id, group id), in placement order
    waiting: tuple[int, ...]  # application ids in waiting-list order


def order_key(c: Candidate) -> tuple[int, datetime, int]:
    return (0 if c.priority else 1, c.applied_at, c.application_id)


def ordered(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=order_key)


def fits(candidate: Candidate, group: Seats, taken: Mapping[str, int]) -> bool:
    return (
        bool(candidate.weekdays)
        and candidate.weekdays <= group.weekdays
        and all(taken.get(day, 0) < group.capacity for day in candidate.weekdays)
    )


def propose(candidates: Iterable[Candidate], groups: Iterable[Seats]) -> Proposal:
    load = {g.group_id: dict(g.taken) for g in groups}
    by_id = {g.group_id: g for g in groups}
    placements: list[tuple[int, int]] = []
    waiting: list[int] = []
    for candidate in ordered(candidates):
        options = [g for g in by_id.values() if fits(candidate, g, load[g.group_id])]
        if not options:
            waiting.append(candidate.application_id)
            continue

        def preference(g: Seats, c: Candidate = candidate) -> tuple[int, int, int]:
            rank = (
                c.preferred_activities.index(g.activity_type)
                if g.activity_type in c.preferred_activities
                else len(c.preferred_activities)
            )
            free = min(g.capacity - load[g.group_id].get(d, 0) for d in c.weekdays)
            return (rank, -free, g.group_id)

        chosen = min(options, key=preference)
        for day in candidate.weekdays:
            load[chosen.group_id][day] = load[chosen.group_id].get(day, 0) + 1
        placements.append((candidate.application_id, chosen.group_id))
    return Proposal(tuple(placements), tuple(waiting))
