"""Every text exists in every language, and nothing a person typed can break a message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jinja2 import meta

import messages
from handlers.registry import FLOWS, command_menu

HERE = Path(messages.__file__).parent


def test_every_template_exists_in_every_locale():
    names = {loc: set(messages.template_names(loc)) for loc in messages.LOCALES}
    assert names["zh_CN"] == names["en"]
    assert names["zh_CN"], "no templates found"


def test_every_label_exists_in_every_locale():
    keys = {loc: set(messages.catalog(loc)) for loc in messages.LOCALES}
    assert keys["zh_CN"] == keys["en"], keys["zh_CN"] ^ keys["en"]


def test_label_placeholders_agree_across_locales():
    for key in messages.catalog("zh_CN"):
        fields = [set(re.findall(r"{(\w+)}", messages.label(key, loc))) for loc in messages.LOCALES]
        assert all(f == fields[0] for f in fields), key


def test_every_template_and_label_used_in_python_exists():
    """Names passed to ctx.reply/notify/label in handlers/ and bot/ must exist."""
    templates = set(messages.template_names("zh_CN"))
    labels = set(messages.catalog("zh_CN"))
    root = HERE.parent
    for path in [*root.glob("handlers/*.py"), *root.glob("bot/*.py")]:
        source = path.read_text(encoding="utf-8")
        for name in re.findall(r"(?:reply|notify)\(\s*(?:\w+,\s*)?\"(\w+)\"", source):
            assert name in templates, f"{path.name}: template {name} missing"
        for key in re.findall(r"label\(\"([\w.]+)\"", source):
            assert key in labels, f"{path.name}: label {key} missing"


def test_every_menu_command_has_a_description_in_every_locale():
    for loc in messages.LOCALES:
        menu = command_menu(loc)
        assert {c for f in FLOWS for c in f.menu_commands} == {c for c, _ in menu}
        assert all(desc for _, desc in menu)


def test_web_templates_parse():
    env = messages.environment()
    for path in (HERE / "templates" / "web").glob("*.html"):
        meta.find_undeclared_variables(env.parse(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("locale", messages.LOCALES)
def test_names_with_markup_characters_are_escaped(locale: str):
    text = messages.render(
        "teacher_new_guardian", locale, student="<b>&小明</b>", guardian="王<i>", relation="父亲&"
    )
    assert "<b>&amp;小明</b>" not in text
    assert "&lt;b&gt;&amp;小明&lt;/b&gt;" in text
    assert "王&lt;i&gt;" in text and "父亲&amp;" in text


def test_a_missing_variable_fails_loudly():
    with pytest.raises(Exception, match="undefined"):
        messages.render("teacher_new_guardian", "zh_CN", student="x")


def test_platform_language_hints_map_to_our_locales():
    assert messages.normalise_locale("zh-hans") == "zh_CN"
    assert messages.normalise_locale("en-GB") == "en"
    assert messages.normalise_locale("fr", "en") == "en"
    assert messages.normalise_locale(None) == "zh_CN"
