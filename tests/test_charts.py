"""Survey charts and exports: readable images, exact numbers, and nothing that breaks anonymity.

Results are built by hand: these are pure functions of `storage.surveys` dataclasses.
"""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook
from PIL import Image

import messages
from messages import charts
from messages.charts import chartable, question_chart, survey_charts
from messages.exports import survey_csv, survey_xlsx
from storage.surveys import MIN_GROUP, AnswerRow, OptionCount, QuestionResult, SegmentResult, SurveyResults

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INJECTION = '=HYPERLINK("http://x","y")'


def single(position: int = 1, answered: int = 4) -> QuestionResult:
    return QuestionResult(
        position,
        "single",
        "您对本学期课后服务的整体安排是否满意？",
        True,
        answered,
        [
            OptionCount("非常满意", 3),
            OptionCount("满意，但希望增加体育和艺术类活动的时间", 1),
            OptionCount("不满意", 0),
        ],
    )


def rating(position: int = 2) -> QuestionResult:
    counts = [0, 0, 1, 2, 1]
    return QuestionResult(
        position,
        "rating",
        "How good is the homework help?",
        True,
        4,
        [OptionCount(str(score), n) for score, n in zip(range(1, 6), counts, strict=True)],
        mean=4.0,
    )


def text(position: int = 3) -> QuestionResult:
    return QuestionResult(position, "text", "Anything else?", False, 2, texts=["More sport", INJECTION])


def results(**changes: object) -> SurveyResults:
    base = SurveyResults(
        survey_id=7,
        title="Autumn term survey",
        kind="survey",
        anonymous=False,
        status="closed",
        invited=10,
        respondents=4,
        questions=[single(), rating(), text()],
        segments=[SegmentResult("1A", 3, False, {2: 4.333}), SegmentResult("1B", 1, True)],
    )
    return SurveyResults(**{**base.__dict__, **changes})  # type: ignore[arg-type]


ROWS = [
    AnswerRow(1, "Wang Fang", "1A", ["非常满意", "5", "More sport"]),
    AnswerRow(2, "Li Lei", "1A", ["非常满意", "4", INJECTION]),
    AnswerRow(3, "Zhao Min", "1A", ["非常满意", "4", ""]),
    AnswerRow(4, "Chen Jie", "1B", ["满意，但希望增加体育和艺术类活动的时间", "3", ""]),
]


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        return image.size


def workbook(data: bytes) -> Workbook:
    return load_workbook(io.BytesIO(data))


def summary_facts(book: Workbook) -> dict[str, object]:
    """Column A → column B of the summary sheet (labels are unique enough for these checks)."""
    return {row[0]: row[1] for row in book.worksheets[0].iter_rows(values_only=True) if row[0] is not None}


def all_values(book: Workbook) -> list[object]:
    return [value for sheet in book for row in sheet.iter_rows(values_only=True) for value in row]


# -- charts --------------------------------------------------------------------------------------


def test_a_choice_question_becomes_a_phone_sized_png():
    """Charts are sent into a chat: a real PNG of about 800×450 reads well on a phone."""
    assert png_size(question_chart(single(), "zh_CN")) == (800, 450)


def test_a_rating_question_is_charted_too():
    assert png_size(question_chart(rating(), "en")) == (800, 450)


def test_many_long_options_make_the_chart_taller_instead_of_overlapping():
    """Wrapped labels need room; a taller image beats unreadable text."""
    options = [OptionCount(f"Option {i} with a label long enough to need wrapping", i) for i in range(10)]
    question = QuestionResult(1, "multiple", "Which clubs?", False, 9, options)
    width, height = png_size(question_chart(question, "en"))
    assert width == 800 and height > 450


def test_a_question_nobody_answered_still_gets_a_chart():
    """Right after opening a survey the counts are all zero: no division by zero, just a note."""
    assert png_size(question_chart(single(answered=0), "en")) == (800, 450)


def test_free_text_has_no_chart_and_survey_charts_skip_it():
    assert not chartable(text())
    with pytest.raises(ValueError):
        question_chart(text(), "en")
    assert [name for name, _ in survey_charts(results(), "en")] == ["q1.png", "q2.png"]


def test_withheld_results_have_no_charts():
    """With one or two respondents in an anonymous survey a chart would show who said what."""
    assert survey_charts(results(anonymous=True, respondents=2, withheld=True), "zh_CN") == []


def test_the_same_results_give_the_same_image():
    """No timestamps or version strings in the file: resending a chart sends identical bytes."""
    assert question_chart(single(), "zh_CN") == question_chart(single(), "zh_CN")


def test_chinese_labels_use_an_installed_cjk_font():
    """With a CJK font installed (fonts-noto-cjk), Chinese text is drawn with real glyphs, not
    boxes. pytest turns warnings into errors, so a missing glyph would also fail the chart tests."""
    from matplotlib import font_manager

    if not charts.has_cjk_font():
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk)")
    path = font_manager.findfont(font_manager.FontProperties(family=charts.font_families()[0]))
    assert font_manager.get_font(path).get_char_index(ord("满")) != 0


def test_without_a_cjk_font_the_chart_is_still_made(monkeypatch: pytest.MonkeyPatch):
    """A server without Chinese fonts sends a chart with boxes rather than failing."""
    monkeypatch.setattr(charts, "font_families", lambda: (charts.FALLBACK_FONT,))
    assert png_size(question_chart(single(), "zh_CN")) == (800, 450)


def test_chart_words_exist_in_both_languages():
    for locale in messages.LOCALES:
        assert messages.label("chart.no_answers", locale)
        assert "5" in messages.format_label("chart.bar", locale, count=5, percent=50)


# -- XLSX ----------------------------------------------------------------------------------------


def test_summary_numbers_match_the_results_exactly():
    """The committee quotes these figures: they must be the results' numbers, stored as numbers."""
    book = workbook(survey_xlsx(results(), ROWS, "en"))
    facts = summary_facts(book)
    assert facts["Invited"] == 10 and facts["Respondents"] == 4
    assert facts["Response rate"] == pytest.approx(0.4)
    assert facts["Status"] == "Closed"
    counts = {
        row[0]: row[1]
        for row in book.worksheets[0].iter_rows(values_only=True)
        if row[0] in ("非常满意", "不满意")
    }
    assert counts == {"非常满意": 3, "不满意": 0}
    assert facts["Mean rating"] == 4.0


def test_answers_sheet_has_one_row_per_response_with_ratings_as_numbers():
    answers = workbook(survey_xlsx(results(), ROWS, "en")).worksheets[1]
    header, *body = answers.iter_rows(values_only=True)
    assert header[:3] == ("No.", "Name", "Class")
    assert header[3] == "Q1 您对本学期课后服务的整体安排是否满意？"
    assert [row[0] for row in body] == [1, 2, 3, 4]
    assert [row[4] for row in body] == [5, 4, 4, 3]
    assert answers.freeze_panes == "A2"


def test_an_anonymous_survey_has_no_name_column():
    """Anonymous means no name anywhere in the file, not an empty column someone could fill."""
    anonymous_rows = [AnswerRow(r.number, "", r.segment, r.answers) for r in ROWS]
    book = workbook(survey_xlsx(results(anonymous=True), anonymous_rows, "en"))
    header = next(book.worksheets[1].iter_rows(values_only=True))
    assert "Name" not in header
    assert header[:2] == ("No.", "Class")


def test_an_anonymous_answer_does_not_name_a_class_too_small_to_hide_in():
    """Class 1B has one respondent: naming the class next to the answer would name the parent."""
    anonymous_rows = [AnswerRow(r.number, "", r.segment, r.answers) for r in ROWS]
    answers = workbook(survey_xlsx(results(anonymous=True), anonymous_rows, "en")).worksheets[1]
    classes = [row[1] for row in answers.iter_rows(min_row=2, values_only=True)]
    assert classes[:3] == ["1A", "1A", "1A"]
    assert classes[3] != "1B" and str(MIN_GROUP) in classes[3]


def test_withheld_results_expose_no_answers():
    """Below MIN_GROUP respondents the file says why it is empty and holds no answer at all."""
    withheld = results(anonymous=True, respondents=2, withheld=True)
    book = workbook(survey_xlsx(withheld, [AnswerRow(1, "", "1B", ["不满意", "1", "secret"])], "zh_CN"))
    values = all_values(book)
    assert not {"不满意", "secret", 1}.intersection(v for v in values if not isinstance(v, bool))
    note = messages.format_label("export.withheld", "zh_CN", min=MIN_GROUP)
    assert list(book.worksheets[1].iter_rows(values_only=True)) == [(note,)]
    assert len(book.worksheets) == 2  # no breakdown either


def test_breakdown_hides_small_classes_without_numbers():
    breakdown = workbook(survey_xlsx(results(), ROWS, "en")).worksheets[2]
    rows = list(breakdown.iter_rows(values_only=True))
    assert rows[1] == ("1A", 3, pytest.approx(4.333))
    assert rows[2][0] == "1B" and rows[2][1] == "fewer than 3: not shown"
    assert all(value is None for value in rows[2][2:])


def test_a_formula_typed_as_an_answer_stays_text():
    """`=HYPERLINK(...)` typed by a parent must not run when the office opens the file."""
    data = survey_xlsx(results(), ROWS, "en")
    cell = workbook(data).worksheets[1]["F3"]
    assert cell.value == INJECTION and cell.data_type == "s" and cell.quotePrefix
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/worksheets/")]
    assert not any("<f>" in sheet for sheet in sheets)


def test_control_characters_in_an_answer_do_not_break_the_export():
    """openpyxl refuses some control characters; a pasted answer must not lose the whole file."""
    rows = [AnswerRow(1, "Wang Fang", "1A", ["非常满意", "5", "tab\x0bbed"])]
    answers = workbook(survey_xlsx(results(), rows, "en")).worksheets[1]
    assert answers["F2"].value == "tabbed"


def test_sheet_names_and_headings_follow_the_locale():
    assert workbook(survey_xlsx(results(), ROWS, "zh_CN")).sheetnames == ["汇总", "答卷", "分班统计"]


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_is_the_answers_table_with_formulas_defused():
    table = list(csv.reader(io.StringIO(survey_csv(results(), ROWS, "en"))))
    assert table[0][:3] == ["No.", "Name", "Class"]
    assert len(table) == 1 + len(ROWS)
    assert table[2][5] == "'" + INJECTION


def test_withheld_csv_holds_only_the_note():
    withheld = results(anonymous=True, respondents=2, withheld=True)
    text = survey_csv(withheld, [AnswerRow(1, "", "1B", ["不满意", "1", "secret"])], "en")
    assert "secret" not in text
    assert list(csv.reader(io.StringIO(text))) == [
        [messages.format_label("export.withheld", "en", min=MIN_GROUP)]
    ]
