"""Markdown-ish text from administrators, made safe for Telegram HTML.

Everything is escaped first; then only `**bold**`, `*italic*`, `[label](https://…)` links and line
breaks come back as markup. Bold and italic never cross a link or each other's edges, so the
result is always well-nested HTML that Telegram accepts (and the web chat renders).
"""

from __future__ import annotations

import html
import re

from markupsafe import Markup

# After escaping: a label without brackets or line breaks, and an http(s) URL without spaces or ")".
_LINK = re.compile(r"\[([^\[\]\n]{1,200})\]\((https?://[^\s()<>]{1,1000})\)")
_BOLD = re.compile(r"\*\*(?=\S)([^\n]*?\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^\n*]*?[^\s*])\*(?![*\w])")
_BLANK_LINES = re.compile(r"\n{3,}")


def markdown(text: str) -> Markup:
    """Telegram HTML for an administrator's text (a notice body); safe whatever it contains."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    text = _BLANK_LINES.sub("\n\n", html.escape(text, quote=True))
    out: list[str] = []
    pos = 0
    for match in _LINK.finditer(text):
        out.append(_inline(text[pos : match.start()]))
        # The URL was escaped with the rest (& -> &amp;, " -> &quot;): right for an attribute.
        out.append(f'<a href="{match.group(2)}">{_inline(match.group(1))}</a>')
        pos = match.end()
    out.append(_inline(text[pos:]))
    return Markup("".join(out))


def _inline(text: str) -> str:
    """Bold, with italic inside and outside it: tags nest because each piece is matched alone."""
    out: list[str] = []
    pos = 0
    for match in _BOLD.finditer(text):
        out.append(_italic(text[pos : match.start()]))
        out.append(f"<b>{_italic(match.group(1))}</b>")
        pos = match.end()
    out.append(_italic(text[pos:]))
    return "".join(out)


def _italic(text: str) -> str:
    return _ITALIC.sub(r"<i>\1</i>", text)


def plain(text: str, limit: int = 80) -> str:
    """The first line of an administrator's text without markup characters, for lists and previews."""
    first = text.strip().split("\n", 1)[0]
    first = _LINK.sub(r"\1", first).replace("**", "").replace("*", "")
    return first if len(first) <= limit else first[: limit - 1] + "…"
