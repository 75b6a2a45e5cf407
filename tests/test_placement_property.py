"""Placement when places are short, checked for every shape of school hypothesis can think of."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.placement import Candidate, Seats, fits, order_key, propose

DAYS = ("mon", "tue", "wed", "thu", "fri")
START = datetime(2026, 9, 1, 8, 0)

weekday_sets = st.frozensets(st.sampled_from(DAYS), min_size=1, max_size=5)
activities = st.sampled_from(["homework", "reading", "sports", "arts"])


@st.composite
def schools(draw: st.DrawFn) -> tuple[list[Candidate], list[Seats]]:
    n_groups = draw(st.integers(1, 4))
    groups = [
        Seats(
            group_id=i + 1,
            activity_type=draw(activities),
            weekdays=draw(weekday_sets),
            capacity=draw(st.integers(0, 6)),
        )
        for i in range(n_groups)
    ]
    n = draw(st.integers(0, 30))
    candidates = [
        Candidate(
            application_id=i + 1,
            priority=draw(st.booleans()),
            applied_at=START + timedelta(minutes=draw(st.integers(0, 500))),
            weekdays=draw(weekday_sets),
            preferred_activities=tuple(draw(st.lists(activities, max_size=2, unique=True))),
        )
        for i in range(n)
    ]
    return candidates, groups


@settings(max_examples=400, deadline=None)
@given(schools())
def test_capacity_is_never_exceeded_and_weekdays_are_held(school):
    candidates, groups = school
    proposal = propose(candidates, groups)
    by_app = {c.application_id: c for c in candidates}
    by_group = {g.group_id: g for g in groups}
    load: dict[tuple[int, str], int] = {}
    for app_id, group_id in proposal.placements:
        child, group = by_app[app_id], by_group[group_id]
        assert child.weekdays <= group.weekdays, "a child is placed on a day the group does not run"
        for day in child.weekdays:
            load[group_id, day] = load.get((group_id, day), 0) + 1
            assert load[group_id, day] <= group.capacity
    placed = {a for a, _ in proposal.placements}
    assert placed.isdisjoint(proposal.waiting)
    assert placed | set(proposal.waiting) == set(by_app), "every child is placed or waiting"


@settings(max_examples=400, deadline=None)
@given(schools())
def test_nobody_is_passed_over_while_a_seat_existed_for_them(school):
    """For each waiting child: with only the children ahead of them placed, no group had room.

    This is "priority groups first, earlier before later" stated so it can be checked.
    """
    candidates, groups = school
    proposal = propose(candidates, groups)
    by_app = {c.application_id: c for c in candidates}
    for waiting_id in proposal.waiting:
        child = by_app[waiting_id]
        ahead = [(a, g) for a, g in proposal.placements if order_key(by_app[a]) < order_key(child)]
        for group in groups:
            taken: dict[str, int] = {}
            for app_id, group_id in ahead:
                if group_id == group.group_id:
                    for day in by_app[app_id].weekdays:
                        taken[day] = taken.get(day, 0) + 1
            assert not fits(child, group, taken), f"{waiting_id} waits though group {group.group_id} had room"


@settings(max_examples=200, deadline=None)
@given(schools())
def test_waiting_list_and_placements_follow_priority_then_time(school):
    candidates, groups = school
    proposal = propose(candidates, groups)
    keys = {c.application_id: order_key(c) for c in candidates}
    assert [keys[a] for a in proposal.waiting] == sorted(keys[a] for a in proposal.waiting)
    assert [keys[a] for a, _ in proposal.placements] == sorted(keys[a] for a, _ in proposal.placements)


def test_priority_child_applying_last_still_gets_the_only_seat():
    early = Candidate(1, False, START, frozenset({"mon"}))
    late_priority = Candidate(2, True, START + timedelta(days=3), frozenset({"mon"}))
    proposal = propose([early, late_priority], [Seats(7, "homework", frozenset({"mon"}), 1)])
    assert proposal.placements == ((2, 7),)
    assert proposal.waiting == (1,)
