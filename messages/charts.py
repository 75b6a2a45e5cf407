"""Survey result charts as PNG images, sized and lettered to be read on a phone.

Figures are built with `matplotlib.figure.Figure` directly, never through pyplot: pyplot keeps
every figure in a global registry (a leak in a long-running bot) and its state is not
thread-safe. matplotlib is imported inside the functions so importing this module stays cheap for
the bot's start-up; only the first chart pays for it.

Every word on a chart comes from the label catalogs (`chart.*`). Chinese needs a CJK font: the
first installed one of `CJK_FONTS` is used, with DejaVu Sans behind it for anything it lacks.
"""

from __future__ import annotations

import io
import re
import unicodedata
import warnings
from functools import cache
from typing import TYPE_CHECKING, Literal

from messages import format_label, label
from storage.surveys import QuestionResult, SurveyResults

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure

CHARTABLE_KINDS = ("single", "multiple", "rating")
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Source Han Sans",
    "Droid Sans Fallback",
    "Microsoft YaHei",
    "PingFang SC",
    "SimHei",
)
FALLBACK_FONT = "DejaVu Sans"

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.5, 100  # 800×450 px: fills a phone screen held sideways
TITLE_SIZE, SUBTITLE_SIZE, LABEL_SIZE, VALUE_SIZE = 17, 13, 14, 13
BAR_COLOUR = "#3b6fb6"
MUTED = "#555555"
LABEL_WIDTH = 22  # option labels wrap at this many columns (a Chinese character counts two)
TITLE_WIDTH = 64
# Height budget: title and axis take CHROME_IN; each option row a line of label text per line plus a gap.
# Many options make the image taller rather than the text smaller.
CHROME_IN, LINE_IN, ROW_GAP_IN = 1.7, 0.25, 0.15


def chartable(question: QuestionResult) -> bool:
    """Whether the question has a chart: free-text answers have nothing to count."""
    return question.kind in CHARTABLE_KINDS


def question_chart(question: QuestionResult, locale: str, *, title: str | None = None) -> bytes:
    """One question's answers as a PNG: a bar per option (or per rating 1–5) with its count and
    its share of the people who answered the question.

    `title` replaces the default heading ("Q1. <question text>"). Raises ValueError for a
    question that is not `chartable` (free text); callers skip those.
    """
    if not chartable(question):
        raise ValueError(f"question {question.position} ({question.kind}) has no chart")
    if title is None:
        title = format_label("chart.question", locale, number=question.position, text=question.text)
    subtitle = [format_label("chart.answered", locale, count=question.answered)]
    if question.kind == "multiple":
        subtitle.append(label("chart.multiple", locale))
    if question.kind == "rating" and question.mean is not None:
        subtitle.append(format_label("chart.mean", locale, mean=f"{question.mean:.1f}"))

    # Missing-glyph warnings (an emoji in an option, or no CJK font on this machine) would only
    # clutter the log: the chart is still useful. pytest turns them into errors, so they are
    # silenced here, narrowly, around the drawing.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        if question.kind == "rating":
            figure = _figure()
            axes = figure.add_subplot()
            _rating_bars(axes, question, locale)
        else:
            labels = [_wrap(option.label, LABEL_WIDTH) for option in question.options]
            tallest = max((text.count("\n") + 1 for text in labels), default=1)
            figure = _figure(len(labels), tallest)
            axes = figure.add_subplot()
            _option_bars(axes, question, labels, locale)
        figure.suptitle(
            _wrap(title, TITLE_WIDTH, max_lines=2),
            x=0.01,
            ha="left",
            fontsize=TITLE_SIZE,
            fontweight="bold",
            fontfamily=font_families(),
        )
        axes.set_title(
            " · ".join(subtitle), loc="left", fontsize=SUBTITLE_SIZE, color=MUTED, fontfamily=font_families()
        )
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def survey_charts(results: SurveyResults, locale: str) -> list[tuple[str, bytes]]:
    """`(filename, png)` for each chartable question in order (`q1.png`, `q3.png`, …); nothing
    while the results are withheld, since a chart of two answers would show who said what."""
    if results.withheld:
        return []
    return [(f"q{q.position}.png", question_chart(q, locale)) for q in results.questions if chartable(q)]


@cache
def font_families() -> tuple[str, ...]:
    """Font families for chart text, best first: a CJK font when one is installed, then DejaVu
    Sans (matplotlib falls back glyph by glyph along the list). Looked up once per process."""
    from matplotlib import font_manager

    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    cjk = next((name for name in CJK_FONTS if name in installed), None)
    return (cjk, FALLBACK_FONT) if cjk else (FALLBACK_FONT,)


def has_cjk_font() -> bool:
    return font_families()[0] != FALLBACK_FONT


# -- drawing -------------------------------------------------------------------------------------


def _figure(rows: int = 0, lines_per_row: int = 1) -> Figure:
    """A 800×450 figure, taller when many or long option labels would otherwise overlap."""
    from matplotlib.figure import Figure

    height = max(HEIGHT_IN, CHROME_IN + rows * (LINE_IN * lines_per_row + ROW_GAP_IN))
    figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    figure.set_facecolor("white")
    return figure


def _option_bars(axes: Axes, question: QuestionResult, labels: list[str], locale: str) -> None:
    """Horizontal bars, first option on top, as the question listed them."""
    from matplotlib.ticker import MaxNLocator

    counts = [option.count for option in question.options]
    positions = range(len(counts))
    bars = axes.barh(positions, counts, color=BAR_COLOUR, height=0.6)
    axes.set_yticks(
        list(positions),
        labels=labels,
        fontsize=LABEL_SIZE,
        fontfamily=font_families(),
    )
    axes.invert_yaxis()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(0, max([*counts, 1]) * 1.3)  # room for the "12 (40%)" after the longest bar
    _finish(axes, bars, question, locale, grid_axis="x")


def _rating_bars(axes: Axes, question: QuestionResult, locale: str) -> None:
    """Upright bars for the ratings 1–5, left to right, like the scale people answered on."""
    from matplotlib.ticker import MaxNLocator

    counts = [option.count for option in question.options]
    positions = range(len(counts))
    bars = axes.bar(positions, counts, color=BAR_COLOUR, width=0.6)
    axes.set_xticks(
        list(positions), labels=[option.label for option in question.options], fontsize=LABEL_SIZE
    )
    axes.set_xlabel(label("chart.rating_axis", locale), fontsize=LABEL_SIZE, fontfamily=font_families())
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, max([*counts, 1]) * 1.25)
    _finish(axes, bars, question, locale, grid_axis="y")


def _finish(
    axes: Axes, bars: BarContainer, question: QuestionResult, locale: str, grid_axis: Literal["x", "y"]
) -> None:
    """Write each bar's count and share at its end, or say that nobody has answered yet."""
    if question.answered:
        texts = [
            format_label(
                "chart.bar", locale, count=option.count, percent=round(100 * option.count / question.answered)
            )
            for option in question.options
        ]
        axes.bar_label(bars, labels=texts, padding=4, fontsize=VALUE_SIZE, fontfamily=font_families())
    else:
        axes.text(
            0.5,
            0.5,
            label("chart.no_answers", locale),
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=LABEL_SIZE,
            color=MUTED,
            fontfamily=font_families(),
        )
    axes.tick_params(labelsize=LABEL_SIZE - 2, length=0, labelfontfamily=font_families())
    axes.grid(axis=grid_axis, color="#dddddd", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


# -- wrapping ------------------------------------------------------------------------------------

_TOKENS = re.compile(
    r"\s+|[^\s\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]+|."
)


def _width(text: str) -> int:
    """Columns the text takes: Chinese characters are about twice as wide as Latin letters."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _wrap(text: str, width: int, max_lines: int = 3) -> str:
    """Wrap at spaces between words and between any two Chinese characters, which need no
    space to break; cut with "…" after `max_lines`, since a label taller than its bar overlaps."""
    lines: list[str] = []
    line = ""
    for token in _TOKENS.findall(" ".join(text.split())):
        if token.isspace():
            if line:
                line += " "
            continue
        if _width(line + token) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = ""
        while _width(token) > width:  # one word longer than a line (a URL): cut it
            cut = _fit(token, width)
            lines.append(token[:cut])
            token = token[cut:]
        line = token
    if line.strip():
        lines.append(line.rstrip())
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        lines = [*lines[: max_lines - 1], last[: _fit(last, width - 1)] + "…"]
    return "\n".join(lines)


def _fit(text: str, width: int) -> int:
    """How many leading characters of `text` fit in `width` columns (at least one)."""
    used = 0
    for i, ch in enumerate(text):
        used += _width(ch)
        if used > width:
            return max(i, 1)
    return len(text)
