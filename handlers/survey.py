"""/survey: answer a survey or a feedback round, one question at a time.

The invitation's button (or /survey) opens the survey at its first question. Choices and ratings
are buttons; a free-text question waits for a typed reply. Every question can be gone back to,
optional ones skipped, and after the last one the answers count, yet stay changeable until the
survey closes. Each press names only the survey and the question: whether this chat may answer
is re-read from the database every time. The conversation state holds where the chat is, never
an answer, so an anonymous answer is not linked to the chat through it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import messages
from handlers.dialog import Button, Context, Flow, Reply
from storage import feedback, notices, surveys
from storage.clock import utcnow
from storage.models import QuestionKind, School, Survey, SurveyQuestion
from storage.surveys import Invited, SurveyError

NAME = "survey"
KEY = "v"
MAX_ID = 2**31 - 1


def _int(text: str) -> int | None:
    return (
        int(text) if text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_ID else None
    )


def problem(ctx: Context, error: SurveyError) -> Reply:
    """A SurveyError in the reader's language."""
    return ctx.reply(
        "survey_problem",
        problem=messages.format_label(f"survey_error.{error.key}", ctx.locale, **error.params),
    )


def when(moment: datetime | None, school: School) -> str:
    return notices.local(moment, school).strftime("%Y-%m-%d %H:%M") if moment else ""


def question_text(survey: Survey, question: SurveyQuestion, locale: str) -> str:
    """Feedback rounds ask their two questions in the reader's language; surveys as written."""
    if survey.kind == "feedback":
        key = (
            "survey.feedback_rating"
            if question.kind == QuestionKind.RATING.value
            else "survey.feedback_comment"
        )
        return messages.format_label(key, locale, group=survey.audience_value)
    return question.text


# -- texts for those invited (the Composer the storage layer calls) ------------------------------


def _invitation_buttons(survey: Survey, locale: str) -> tuple[tuple[Button, ...], ...]:
    rows: list[tuple[Button, ...]] = [
        (
            Button(messages.label("survey.answer", locale), f"{KEY}:o:{survey.id}"),
            Button(messages.label("survey.not_now", locale), f"{KEY}:x:{survey.id}"),
        )
    ]
    if survey.kind == "feedback":
        rows.append((Button(messages.label("survey.rounds_off", locale), f"{KEY}:off"),))
    return tuple(rows)


class Texts:
    """Turns surveys into invitations and reminders in each recipient's language."""

    def invitation(self, survey: Survey, school: School, locale: str) -> dict[str, Any]:
        text = messages.render(
            "survey_invitation",
            locale,
            school=school.name,
            survey=survey,
            questions=len(survey.questions),
            closes=when(survey.closes_at, school),
        )
        return Reply(text, _invitation_buttons(survey, locale)).to_payload()

    def reminder(self, survey: Survey, school: School, number: int, locale: str) -> dict[str, Any]:
        text = messages.render(
            "survey_reminder",
            locale,
            survey=survey,
            number=number,
            most=surveys.MAX_REMINDERS,
            closes=when(survey.closes_at, school),
        )
        return Reply(text, _invitation_buttons(survey, locale)).to_payload()


TEXTS = Texts()


# -- the conversation ----------------------------------------------------------------------------


def _people(ctx: Context) -> list[int]:
    return [p.id for p in ctx.identity.people]


async def start(ctx: Context) -> list[Reply]:
    """/survey: the open surveys this chat is invited to."""
    if ctx.identity.school is None:
        return [ctx.reply("not_bound", terms_url=ctx.links.terms())]
    found = await surveys.open_for(ctx.session, _people(ctx), utcnow())
    if not found:
        return [ctx.reply("survey_none")]
    if len(found) == 1:
        return await _begin(ctx, found[0])
    rows = [[Button(item.survey.title[:60], f"{KEY}:o:{item.survey.id}")] for item in found]
    return [ctx.reply("survey_choose", buttons=rows, items=found)]


async def _begin(ctx: Context, item: Invited) -> list[Reply]:
    school = ctx.identity.school
    assert school is not None
    intro = ctx.reply(
        "survey_intro",
        survey=item.survey,
        questions=len(item.survey.questions),
        closes=when(item.survey.closes_at, school),
        answered=item.responded,
    )
    return [intro, *await _ask(ctx, item, 1)]


async def _ask(ctx: Context, item: Invited, position: int) -> list[Reply]:
    """Show one question with what this chat answered to it so far."""
    survey = item.survey
    question = next((q for q in survey.questions if q.position == position), None)
    if question is None:
        return await _finish(ctx, item)
    response = await surveys.response_of(ctx.session, item, ctx.secret_key)
    answers = (await surveys.answers_of(ctx.session, response)).get(question.id, []) if response else []
    chosen = {a.choice for a in answers if a.choice is not None}
    written = next((a.text for a in answers if a.text), None)
    kind = QuestionKind(question.kind)
    base = f"{KEY}:%s:{survey.id}:{position}"
    rows: list[list[Button]] = []
    if kind is QuestionKind.RATING:
        rows.append(
            [
                Button(("✅" if v in chosen else "") + str(v), f"{base % 'a'}:{v}")
                for v in surveys.RATING_SCALE
            ]
        )
    elif kind is QuestionKind.SINGLE:
        rows += [
            [Button(("✅ " if i in chosen else "") + option, f"{base % 'a'}:{i}")]
            for i, option in enumerate(question.options)
        ]
    elif kind is QuestionKind.MULTIPLE:
        rows += [
            [Button(("☑️ " if i in chosen else "⬜ ") + option, f"{base % 't'}:{i}")]
            for i, option in enumerate(question.options)
        ]
    navigation = []
    if position > 1:
        navigation.append(Button(ctx.label("survey.back"), f"{KEY}:q:{survey.id}:{position - 1}"))
    if not question.required:
        navigation.append(Button(ctx.label("survey.skip"), base % "s"))
    if (
        kind is QuestionKind.MULTIPLE
        or (kind is QuestionKind.TEXT and written)
        or (chosen and kind is not QuestionKind.MULTIPLE)
    ):
        navigation.append(Button(ctx.label("survey.next"), base % "n"))
    if navigation:
        rows.append(navigation)
    if kind is QuestionKind.TEXT:
        await ctx.set_state(NAME, "text", {"survey": survey.id, "position": position})
    else:
        await ctx.clear_state()
    labels = [question.options[c] for c in sorted(chosen) if 0 <= c < len(question.options)]
    return [
        ctx.reply(
            "survey_question",
            buttons=rows,
            survey=survey,
            position=position,
            count=len(survey.questions),
            text=question_text(survey, question, ctx.locale),
            kind=kind.value,
            required=question.required,
            current=written
            or (
                ", ".join(labels) if kind is not QuestionKind.RATING else ", ".join(map(str, sorted(chosen)))
            ),
            max_text=surveys.MAX_TEXT_ANSWER,
        )
    ]


async def _finish(ctx: Context, item: Invited) -> list[Reply]:
    """After the last question: count the answers (or point at the first one still missing)."""
    await ctx.clear_state()
    response = await surveys.response_of(ctx.session, item, ctx.secret_key, create=True)
    assert response is not None
    try:
        await surveys.submit(ctx.session, item, response, utcnow())
    except SurveyError as error:
        position = int(str(error.params.get("position", 1)))
        return [ctx.reply("survey_missing", position=position), *await _ask(ctx, item, position)]
    school = ctx.identity.school
    assert school is not None
    return [ctx.reply("survey_done", survey=item.survey, closes=when(item.survey.closes_at, school))]


async def _answer(
    ctx: Context, item: Invited, position: int, *, choices: list[int] | None = None, text: str | None = None
) -> list[Reply]:
    question = next((q for q in item.survey.questions if q.position == position), None)
    if question is None:
        return [ctx.reply("button_invalid")]
    response = await surveys.response_of(ctx.session, item, ctx.secret_key, create=True)
    assert response is not None
    try:
        await surveys.set_answer(ctx.session, response, question, choices=choices or (), text=text)
    except SurveyError as error:
        return [problem(ctx, error), *await _ask(ctx, item, position)]
    return await _ask(ctx, item, position + 1)


async def _toggle(ctx: Context, item: Invited, position: int, option: int) -> list[Reply]:
    question = next((q for q in item.survey.questions if q.position == position), None)
    if (
        question is None
        or question.kind != QuestionKind.MULTIPLE.value
        or not 0 <= option < len(question.options)
    ):
        return [ctx.reply("button_invalid")]
    response = await surveys.response_of(ctx.session, item, ctx.secret_key, create=True)
    assert response is not None
    chosen = {a.choice for a in (await surveys.answers_of(ctx.session, response)).get(question.id, [])}
    chosen ^= {option}
    try:
        await surveys.set_answer(
            ctx.session, response, question, choices=[c for c in chosen if c is not None]
        )
    except SurveyError as error:
        return [problem(ctx, error), *await _ask(ctx, item, position)]
    return await _ask(ctx, item, position)


async def _next(ctx: Context, item: Invited, position: int) -> list[Reply]:
    """Go on from a question, which must have an answer unless it is optional."""
    question = next((q for q in item.survey.questions if q.position == position), None)
    if question is None:
        return [ctx.reply("button_invalid")]
    response = await surveys.response_of(ctx.session, item, ctx.secret_key)
    has = bool(response and (await surveys.answers_of(ctx.session, response)).get(question.id))
    if question.required and not has:
        return [problem(ctx, SurveyError("required")), *await _ask(ctx, item, position)]
    return await _ask(ctx, item, position + 1)


async def _skip(ctx: Context, item: Invited, position: int) -> list[Reply]:
    question = next((q for q in item.survey.questions if q.position == position), None)
    if question is None or question.required:
        return [ctx.reply("button_invalid")]
    response = await surveys.response_of(ctx.session, item, ctx.secret_key)
    if response is not None:
        await surveys.set_answer(ctx.session, response, question)
    return await _ask(ctx, item, position + 1)


async def pressed(ctx: Context, payload: str) -> list[Reply]:
    if ctx.identity.school is None:
        return [ctx.reply("button_invalid")]
    if payload == "off":
        await feedback.set_rounds(ctx.session, ctx.identity.school.id, _people(ctx), False, utcnow())
        return [ctx.reply("survey_rounds_off")]
    parts = payload.split(":")
    action, numbers = parts[0], [_int(p) for p in parts[1:]]
    if not numbers or any(n is None for n in numbers) or len(numbers) > 3:
        return [ctx.reply("button_invalid")]
    ids = [n for n in numbers if n is not None]
    item = await surveys.invited(ctx.session, ids[0], _people(ctx), utcnow())
    if item is None:
        return [ctx.reply("survey_not_open")]
    if action == "o" and len(ids) == 1:
        return await _begin(ctx, item)
    if action == "x" and len(ids) == 1:
        await surveys.decline(ctx.session, item)
        return [ctx.reply("survey_later", survey=item.survey)]
    if action == "q" and len(ids) == 2:
        return await _ask(ctx, item, max(ids[1], 1))
    if action == "n" and len(ids) == 2:
        return await _next(ctx, item, ids[1])
    if action == "s" and len(ids) == 2:
        return await _skip(ctx, item, ids[1])
    if action == "a" and len(ids) == 3:
        return await _answer(ctx, item, ids[1], choices=[ids[2]])
    if action == "t" and len(ids) == 3:
        return await _toggle(ctx, item, ids[1], ids[2])
    return [ctx.reply("button_invalid")]


async def typed(ctx: Context) -> list[Reply]:
    """A reply to a free-text question."""
    state = ctx.state
    if state is None or state.step != "text":
        return [ctx.reply("survey_use_buttons")]
    survey_id, position = _int(str(state.data.get("survey"))), _int(str(state.data.get("position")))
    item = await surveys.invited(ctx.session, survey_id or 0, _people(ctx), utcnow())
    if item is None or position is None:
        await ctx.clear_state()
        return [ctx.reply("survey_not_open")]
    if ctx.event.media or not ctx.event.text.strip():
        return [ctx.reply("survey_need_text"), *await _ask(ctx, item, position)]
    return await _answer(ctx, item, position, text=ctx.event.text)


FLOW = Flow(
    name=NAME,
    key=KEY,
    commands=("survey",),
    on_command=start,
    on_button=pressed,
    on_message=typed,
    menu_commands=("survey",),
)
