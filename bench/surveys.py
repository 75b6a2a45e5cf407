"""Counting a large survey: the database does the counting, matplotlib draws the charts.

    python -m bench.surveys [--responses 100000] [--db sqlite|postgres] [--runs 5]

A 10-question survey (4 single choice, 2 multiple choice, 3 ratings, 1 free text) with N
submitted responses from 40 classes, loaded straight into the tables. Then `storage.surveys.results`
(every count, the rating means, the per-class breakdown and up to 500 free texts) is timed over
several runs, and the charts of all chartable questions are drawn. The last line is the summary:

    surveys responses=N aggregate_ms=A charts_ms=C

(A and C are medians of the runs.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import time
from datetime import timedelta

from sqlalchemy import insert, select

from bench.broadcast import database
from messages import charts
from storage import surveys
from storage.clock import utcnow
from storage.db import create_sessionmaker, migrate
from storage.models import (
    QuestionKind,
    School,
    Survey,
    SurveyAnswer,
    SurveyQuestion,
    SurveyResponse,
    SurveyStatus,
)

KINDS = (
    [QuestionKind.SINGLE] * 4 + [QuestionKind.MULTIPLE] * 2 + [QuestionKind.RATING] * 3 + [QuestionKind.TEXT]
)
OPTIONS = ["作业辅导", "经典阅读", "阳光体育", "艺术社团", "科学实验", "编程"]
CLASSES = [f"{g}年级({c})班" for g in "一二三四五六" for c in range(1, 8)][:40]
CHUNK = 20_000


async def load(sessionmaker, responses: int) -> int:
    """The survey and its answers, inserted in bulk; returns the survey id."""
    rng = random.Random(2026)
    now = utcnow()
    async with sessionmaker.begin() as session:
        school = School(code="bench", name="bench")
        session.add(school)
        await session.flush()
        survey = Survey(
            school_id=school.id,
            title="bench",
            audience_kind="school",
            opens_at=now - timedelta(days=7),
            closes_at=now - timedelta(minutes=1),
            status=SurveyStatus.CLOSED.value,
            created_at=now,
            questions=[
                SurveyQuestion(
                    position=n,
                    kind=kind.value,
                    text=f"问题 {n}",
                    options=OPTIONS[: 5 if kind is QuestionKind.SINGLE else 6]
                    if kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE)
                    else [],
                )
                for n, kind in enumerate(KINDS, start=1)
            ],
        )
        session.add(survey)
        await session.flush()
        survey_id, school_id = survey.id, school.id
        questions = [(q.id, QuestionKind(q.kind), len(q.options)) for q in survey.questions]
    for start in range(0, responses, CHUNK):
        count = min(CHUNK, responses - start)
        async with sessionmaker.begin() as session:
            await session.execute(
                insert(SurveyResponse),
                [
                    {
                        "school_id": school_id,
                        "survey_id": survey_id,
                        "segment": rng.choice(CLASSES),
                        "submitted": True,
                    }
                    for _ in range(count)
                ],
            )
            loaded = (
                await session.execute(
                    select(SurveyResponse.id, SurveyResponse.segment)
                    .where(SurveyResponse.survey_id == survey_id)
                    .order_by(SurveyResponse.id.desc())
                    .limit(count)
                )
            ).all()
            rows = []
            for response_id, segment in loaded:
                for question_id, kind, options in questions:
                    base = {
                        "survey_id": survey_id,
                        "response_id": response_id,
                        "question_id": question_id,
                        "segment": segment,
                        "counted": True,
                    }
                    if kind is QuestionKind.SINGLE:
                        rows.append(base | {"choice": rng.randrange(options), "text": None})
                    elif kind is QuestionKind.MULTIPLE:
                        rows += [
                            base | {"choice": c, "text": None}
                            for c in rng.sample(range(options), rng.randint(1, 3))
                        ]
                        rows.append(base | {"choice": None, "text": None})  # the "answered" marker
                    elif kind is QuestionKind.RATING:
                        rows.append(base | {"choice": rng.choice((3, 4, 4, 5, 5, 2, 1)), "text": None})
                    elif rng.random() < 0.3:
                        rows.append(
                            base | {"choice": None, "text": rng.choice(["很好", "希望增加体育", "接送顺畅"])}
                        )
            await session.execute(insert(SurveyAnswer), rows)
        print(f"  loaded {start + count:>7} responses", flush=True)
    return survey_id


async def run(args: argparse.Namespace) -> None:
    async with database(args.db, args.database_url) as engine:
        await migrate(engine)
        sessionmaker = create_sessionmaker(engine)
        began = time.perf_counter()
        survey_id = await load(sessionmaker, args.responses)
        print(f"  loading took {time.perf_counter() - began:.1f} s")
        aggregate, drawing = [], []
        print(f"{'run':>4} {'aggregate_ms':>13} {'charts_ms':>10} {'respondents':>12} {'charts':>7}")
        for run_number in range(1, args.runs + 1):
            began = time.perf_counter()
            async with sessionmaker() as session:
                survey = await session.get(Survey, survey_id)
                assert survey is not None
                results = await surveys.results(session, survey)
            aggregate.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            drawn = await asyncio.to_thread(charts.survey_charts, results, "zh_CN")
            drawing.append((time.perf_counter() - began) * 1000)
            assert results.respondents == args.responses
            print(
                f"{run_number:>4} {aggregate[-1]:>13.0f} {drawing[-1]:>10.0f} "
                f"{results.respondents:>12} {len(drawn):>7}"
            )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, db {args.db}"
    )
    print(
        f"surveys responses={args.responses} aggregate_ms={statistics.median(aggregate):.0f} "
        f"charts_ms={statistics.median(drawing):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: TEST_DATABASE_URL)")
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
