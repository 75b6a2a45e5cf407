"""An administrator's Markdown-ish text becomes Telegram HTML that is always safe and well formed."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from messages.markup import markdown, plain

TAG = re.compile(r"<(/?)([a-z]+)((?: href=\"[^\"<>]*\")?)>")


def well_formed(text: str) -> str:
    """The visible text, after checking tags are only b, i and a (http links), properly nested."""
    stack: list[str] = []
    for match in TAG.finditer(text):
        closing, name, attrs = match.groups()
        assert name in {"b", "i", "a"}, name
        if closing:
            assert stack and stack.pop() == name, text
        else:
            assert (name == "a") == bool(attrs), text
            if attrs:
                assert attrs.startswith((' href="http://', ' href="https://')), attrs
            stack.append(name)
    assert not stack, text
    visible = TAG.sub("", text)
    assert "<" not in visible and ">" not in visible, text
    return html.unescape(visible)


def test_the_allowed_markup_and_nothing_else():
    assert str(markdown("**粗体** 和 *斜体*")) == "<b>粗体</b> 和 <i>斜体</i>"
    assert str(markdown("[菜单](https://school.example.cn/menu?week=1&day=5)")) == (
        '<a href="https://school.example.cn/menu?week=1&amp;day=5">菜单</a>'
    )
    assert str(markdown("<b>不是标签</b> & <script>")) == "&lt;b&gt;不是标签&lt;/b&gt; &amp; &lt;script&gt;"
    assert str(markdown("[点我](javascript:alert(1))")) == "[点我](javascript:alert(1))"
    # A quote cannot end the attribute: it is escaped inside it.
    assert (
        str(markdown('[x](https://a.cn/"onclick="y)')) == '<a href="https://a.cn/&quot;onclick=&quot;y">x</a>'
    )
    assert str(markdown("第一行\r\n第二行\n\n\n\n第三行")) == "第一行\n第二行\n\n第三行"
    assert str(markdown("**a *b** c*")) == "<b>a *b</b> c*"  # never crossed tags
    assert str(markdown("[**加粗链接**](https://a.cn)")) == '<a href="https://a.cn"><b>加粗链接</b></a>'
    assert str(markdown("2*3*4 和 snake_case")) == "2*3*4 和 snake_case"
    assert plain("**周五** [菜单](https://a.cn) 第二行\n更多") == "周五 菜单 第二行"


TOKENS = [*"ab *[]()<>&\"'\n_:/.", "https://", "**", "中", "](", "\r\n"]


@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_any_text_becomes_well_formed_html_that_keeps_its_words(text: str):
    visible = well_formed(str(markdown(text)))
    for kept in ("中", "a", "b", "&", "<", ">"):
        assert visible.count(kept) == text.count(kept), kept
