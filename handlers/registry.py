"""Every flow, in one ordered list. The dispatcher looks flows up here and nowhere else."""

from __future__ import annotations

import messages
from handlers import (
    absent,
    agreement,
    apply,
    cancel,
    dashboard,
    delete_me,
    fallback,
    feedback,
    language,
    menu,
    mydata,
    notices,
    offer,
    pickup,
    placement,
    review,
    settings,
    start,
    status,
    survey,
    terms,
    today,
    withdraw,
)
from handlers.dialog import Flow

FLOWS: list[Flow] = [
    cancel.FLOW,  # first: /cancel always works, whatever flow the chat is in
    start.FLOW,
    menu.FLOW,
    terms.FLOW,
    language.FLOW,
    notices.FLOW,
    settings.FLOW,
    apply.FLOW,
    status.FLOW,
    withdraw.FLOW,
    offer.FLOW,
    agreement.FLOW,
    pickup.FLOW,
    absent.FLOW,
    today.FLOW,
    review.FLOW,
    placement.FLOW,
    placement.GROUPS_FLOW,
    survey.FLOW,
    feedback.FLOW,
    dashboard.FLOW,
    mydata.FLOW,
    delete_me.FLOW,
    fallback.FLOW,  # must be last: answers whatever no other flow took
]

FALLBACK = FLOWS[-1]
BY_COMMAND: dict[str, Flow] = {c: f for f in FLOWS for c in f.commands}
BY_KEY: dict[str, Flow] = {f.key: f for f in FLOWS if f.key}
BY_NAME: dict[str, Flow] = {f.name: f for f in FLOWS}


def command_menu(locale: str) -> list[tuple[str, str]]:
    """(command, description) pairs for the platform's command list, in this locale."""
    return [(c, messages.label(f"command.{c}", locale)) for f in FLOWS for c in f.menu_commands]
