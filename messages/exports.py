"""Survey results as spreadsheets (XLSX) and CSV, for the committee and the school office.

Every heading and note comes from the label catalogs (`export.*`). Numbers are written as
numbers, so a spreadsheet can sum and sort them.

Whatever a person typed is kept as text: a cell starting with `=`, `+`, `-` or `@` would
otherwise run as a formula when the file is opened (CSV injection, e.g. `=HYPERLINK(...)`
sending data to another site). In XLSX the cell is stored as a string and marked as quoted text,
so the exact answer is kept; in CSV, which has no types, it gets a leading apostrophe.

Anonymity (docs/surveys.md): while results are withheld no answer leaves this module, and in an
anonymous survey a class with fewer than `MIN_GROUP` responses is not named next to an answer.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from messages import format_label, label
from storage.surveys import MIN_GROUP, AnswerRow, Comment, QuestionResult, SurveyResults, TrendRow

if TYPE_CHECKING:
    from openpyxl.cell.cell import Cell
    from openpyxl.worksheet.worksheet import Worksheet

Value = str | int | float | None

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHOICE_KINDS = ("single", "multiple", "rating")
MAX_COLUMN_WIDTH = 60
MIN_COLUMN_WIDTH = 8


def survey_xlsx(results: SurveyResults, rows: list[AnswerRow], locale: str) -> bytes:
    """The workbook: a summary sheet, the answers one row per response and, when the survey has
    classes, the breakdown per class."""
    from openpyxl import Workbook

    workbook = Workbook()
    summary = workbook.active
    assert summary is not None  # a new workbook always has one sheet
    summary.title = _sheet_name(label("export.sheet_summary", locale))
    _write_summary(summary, results, locale)

    answers = workbook.create_sheet(_sheet_name(label("export.sheet_answers", locale)))
    if results.withheld:
        _put(answers.cell(1, 1), withheld_note(locale))
        answers.column_dimensions["A"].width = MAX_COLUMN_WIDTH
    else:
        header, body = answer_table(results, rows, locale)
        _write_table(answers, header, body)

    if results.segments and not results.withheld:
        _write_breakdown(
            workbook.create_sheet(_sheet_name(label("export.sheet_breakdown", locale))), results, locale
        )

    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def survey_csv(results: SurveyResults, rows: list[AnswerRow], locale: str) -> str:
    """The answers table as CSV text (the caller adds the BOM spreadsheets want for UTF-8)."""
    out = io.StringIO()
    writer = csv.writer(out)
    if results.withheld:
        writer.writerow([defuse(withheld_note(locale))])
        return out.getvalue()
    header, body = answer_table(results, rows, locale)
    writer.writerow([defuse(name) for name in header])
    for line in body:
        writer.writerow(
            ["" if value is None else defuse(value) if isinstance(value, str) else value for value in line]
        )
    return out.getvalue()


def feedback_xlsx(trends: Sequence[TrendRow], comments: Sequence[Comment], locale: str) -> bytes:
    """Feedback rounds per month and group (means only with `MIN_GROUP` answers), and the comments."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = _sheet_name(label("export.sheet_trends", locale))
    _write_table(sheet, *trend_table(trends, locale))
    _write_table(
        workbook.create_sheet(_sheet_name(label("export.sheet_comments", locale))),
        *comment_table(comments, locale),
    )
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def feedback_csv(trends: Sequence[TrendRow], locale: str) -> str:
    """The trends table as CSV (comments are in the XLSX: free text and CSV mix badly)."""
    out = io.StringIO()
    writer = csv.writer(out)
    header, body = trend_table(trends, locale)
    writer.writerow([defuse(name) for name in header])
    for line in body:
        writer.writerow(["" if v is None else defuse(v) if isinstance(v, str) else v for v in line])
    return out.getvalue()


def trend_table(trends: Sequence[TrendRow], locale: str) -> tuple[list[str], list[list[Value]]]:
    header = [label(f"export.{key}", locale) for key in ("month", "group", "respondents", "mean")]
    body: list[list[Value]] = [
        [t.month, t.group, t.respondents, _hidden_note(locale) if t.hidden or t.mean is None else t.mean]
        for t in trends
    ]
    return header, body


def comment_table(comments: Sequence[Comment], locale: str) -> tuple[list[str], list[list[Value]]]:
    header = [label(f"export.{key}", locale) for key in ("received", "group", "who", "comment")]
    anonymous = label("export.anonymous", locale)
    body: list[list[Value]] = [
        [c.received_on.isoformat(), c.group, c.who or anonymous, c.text] for c in comments
    ]
    return header, body


def answer_table(
    results: SurveyResults, rows: Sequence[AnswerRow], locale: str
) -> tuple[list[str], list[list[Value]]]:
    """Header and rows of the answers table, shared by XLSX and CSV: number, name (named
    surveys only), class, then one column per question. Ratings become numbers."""
    named = not results.anonymous
    header = [label("export.number", locale)]
    if named:
        header.append(label("export.who", locale))
    header.append(label("export.segment", locale))
    header += [question_header(q, locale) for q in results.questions]

    unnamed_segments = _small_segments(results, rows) if results.anonymous else set()
    body: list[list[Value]] = []
    for row in rows:
        line: list[Value] = [row.number]
        if named:
            line.append(row.who)
        line.append(_hidden_note(locale) if row.segment and row.segment in unnamed_segments else row.segment)
        for question, answer in zip(
            results.questions, _padded(row.answers, len(results.questions)), strict=True
        ):
            line.append(_answer_value(question, answer))
        body.append(line)
    return header, body


def question_header(question: QuestionResult, locale: str) -> str:
    return format_label("export.question", locale, number=question.position, text=question.text)


def withheld_note(locale: str) -> str:
    return format_label("export.withheld", locale, min=MIN_GROUP)


def defuse(text: str) -> str:
    """Text safe to open in a spreadsheet from CSV: a leading apostrophe keeps a formula-looking
    answer as text (OWASP's advice for CSV injection)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


# -- sheets --------------------------------------------------------------------------------------


def _write_summary(sheet: Worksheet, results: SurveyResults, locale: str) -> None:
    """Title and response figures, then each question's counts; nothing per question while the
    results are withheld (with one or two respondents the counts are their answers)."""
    from openpyxl.styles import Font

    bold = Font(bold=True)
    _put(sheet.cell(1, 1), results.title).font = Font(bold=True, size=14)
    facts: list[tuple[str, Value, str | None]] = [
        (label("export.status", locale), _status(results.status, locale), None),
        (label("export.invited", locale), results.invited, None),
        (label("export.respondents", locale), results.respondents, None),
        (label("export.rate", locale), results.rate, "0%"),
    ]
    row = 2
    for name, value, number_format in facts:
        _put(sheet.cell(row, 1), name).font = bold
        cell = _put(sheet.cell(row, 2), value)
        if number_format:
            cell.number_format = number_format
        row += 1
    sheet.freeze_panes = "A2"

    row += 1
    if results.withheld:
        _put(sheet.cell(row, 1), withheld_note(locale))
    else:
        for question in results.questions:
            row = _write_question(sheet, row, question, locale) + 1
    _fit_columns(sheet)


def _write_question(sheet: Worksheet, row: int, question: QuestionResult, locale: str) -> int:
    """One question's block in the summary; returns the next free row."""
    from openpyxl.styles import Font

    _put(sheet.cell(row, 1), question_header(question, locale)).font = Font(bold=True)
    row += 1
    _put(sheet.cell(row, 1), label("export.answered", locale))
    _put(sheet.cell(row, 2), question.answered)
    row += 1
    if question.kind == "rating" and question.mean is not None:
        _put(sheet.cell(row, 1), label("export.mean", locale))
        _put(sheet.cell(row, 2), question.mean).number_format = "0.00"
        row += 1
    if question.kind in CHOICE_KINDS:
        for column, name in enumerate(
            (label("export.option", locale), label("export.count", locale), label("export.share", locale)), 1
        ):
            _put(sheet.cell(row, column), name).font = Font(italic=True)
        row += 1
        for option in question.options:
            _put(sheet.cell(row, 1), _answer_value(question, option.label))
            _put(sheet.cell(row, 2), option.count)
            if question.answered:
                _put(sheet.cell(row, 3), option.count / question.answered).number_format = "0%"
            row += 1
    else:
        _put(sheet.cell(row, 1), label("export.see_answers", locale))
        row += 1
    return row


def _write_breakdown(sheet: Worksheet, results: SurveyResults, locale: str) -> None:
    """Per class: respondents and the mean of each rating question; a class below `MIN_GROUP`
    gets a note and no numbers at all."""
    ratings = [q for q in results.questions if q.kind == "rating"]
    header = [label("export.segment", locale), label("export.respondents", locale)]
    header += [format_label("export.mean_of", locale, question=question_header(q, locale)) for q in ratings]
    body: list[list[Value]] = []
    for segment in results.segments:
        if segment.hidden:
            body.append([segment.segment, _hidden_note(locale)])
        else:
            body.append(
                [segment.segment, segment.respondents, *(segment.means.get(q.position) for q in ratings)]
            )
    _write_table(sheet, header, body)
    for line in sheet.iter_rows(min_row=2, min_col=3):
        for cell in line:
            if isinstance(cell.value, float):
                cell.number_format = "0.00"


def _write_table(sheet: Worksheet, header: list[str], body: list[list[Value]]) -> None:
    from openpyxl.styles import Alignment, Font

    for column, name in enumerate(header, 1):
        cell = _put(sheet.cell(1, column), name)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for row, line in enumerate(body, 2):
        for column, value in enumerate(line, 1):
            _put(sheet.cell(row, column), value).alignment = Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "A2"
    _fit_columns(sheet)


def _put(cell: Cell, value: Value) -> Cell:
    """Write a value; text always stays text (never a formula or an error code like `#N/A`), and
    text that looks like a formula is also marked quoted, so editing the cell keeps it text."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, str):
        # Control characters (pasted from elsewhere) make openpyxl refuse the whole workbook.
        text: str = ILLEGAL_CHARACTERS_RE.sub("", value)
        cell.value = text
        cell.data_type = "s"
        if text.startswith(FORMULA_STARTS):
            cell.quotePrefix = True
    else:
        cell.value = value
    return cell


def _fit_columns(sheet: Worksheet) -> None:
    """Columns as wide as their longest line (Chinese counts double), within reason."""
    from openpyxl.utils import get_column_letter

    widths: dict[int, int] = {}
    for line in sheet.iter_rows():
        for cell in line:
            if cell.value is None:
                continue
            text = f"{cell.value:.2f}" if isinstance(cell.value, float) else str(cell.value)
            width = max(_width(part) for part in text.split("\n"))
            widths[cell.column] = max(widths.get(cell.column, 0), width)
    for column, width in widths.items():
        sheet.column_dimensions[get_column_letter(column)].width = min(
            MAX_COLUMN_WIDTH, max(MIN_COLUMN_WIDTH, width + 2)
        )


# -- helpers -------------------------------------------------------------------------------------


def _answer_value(question: QuestionResult, answer: str) -> Value:
    if not answer:
        return None
    if question.kind == "rating" and answer.strip().isdigit():
        return int(answer)
    return answer


def _padded(answers: list[str], count: int) -> list[str]:
    """Exactly one cell per question, even if a row was stored before a question was added."""
    return [*answers[:count], *[""] * (count - len(answers))]


def _small_segments(results: SurveyResults, rows: Sequence[AnswerRow]) -> set[str]:
    """Classes too small to name next to an anonymous answer: hidden in the breakdown, or with
    fewer than `MIN_GROUP` rows here."""
    counts = Counter(row.segment for row in rows)
    small = {segment for segment, count in counts.items() if count < MIN_GROUP}
    return small | {s.segment for s in results.segments if s.hidden}


def _hidden_note(locale: str) -> str:
    return format_label("export.hidden_segment", locale, min=MIN_GROUP)


def _status(status: str, locale: str) -> str:
    try:
        return label(f"export.status_{status}", locale)
    except KeyError:
        return status


def _sheet_name(name: str) -> str:
    """Excel refuses sheet names over 31 characters or with any of []:*?/\\."""
    return "".join(ch for ch in name if ch not in "[]:*?/\\")[:31]


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
