"""User-facing text: Jinja2 templates and label catalogs per locale.

`render(name, locale, **context)` is the only way code produces a message. Autoescape is on (a
parent named `<b>&` cannot break Telegram HTML) and undefined variables raise, so a missing
value fails a test instead of reaching a parent as "None".
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from messages.markup import markdown, plain

HERE = Path(__file__).parent
LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"


def normalise_locale(value: str | None, default: str = DEFAULT_LOCALE) -> str:
    """Map a platform language hint (`zh-hans`, `en-GB`) to one of our locales."""
    if not value:
        return default if default in LOCALES else DEFAULT_LOCALE
    v = value.replace("-", "_").lower()
    if v.startswith("zh"):
        return "zh_CN"
    if v.startswith("en"):
        return "en"
    return default if default in LOCALES else DEFAULT_LOCALE


@cache
def catalog(locale: str) -> dict[str, str]:
    with open(HERE / "catalog" / f"{locale}.yaml", encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return {str(k): str(v) for k, v in _flatten(data).items()}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def label(key: str, locale: str) -> str:
    """A short label; a missing key raises so tests catch it."""
    try:
        return catalog(locale if locale in LOCALES else DEFAULT_LOCALE)[key]
    except KeyError:
        raise KeyError(f"label {key!r} missing in locale {locale}") from None


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["money"] = _money
    env.filters["markdown"] = markdown
    env.filters["plain"] = plain
    env.filters["chat_html"] = chat_html
    return env


_SIMPLE_TAGS = re.compile(r"&lt;(/?)(b|i|u|s|code|pre)&gt;")


def chat_html(text: str) -> Markup:
    """Chat text (Telegram's HTML subset) as page HTML: everything escaped again, then only the
    simple formatting tags let through, so even a tampered stored text cannot inject markup."""
    escaped = str(escape(text))
    allowed = _SIMPLE_TAGS.sub(lambda m: f"<{m.group(1)}{m.group(2)}>", escaped)
    return Markup(allowed.replace("\n", "<br>\n"))


def _money(value: Any) -> str:
    text = f"{float(value):.2f}"
    return text[:-3] if text.endswith(".00") else text


def render(name: str, locale: str, /, **context: Any) -> str:
    """Render chat template `templates/<locale>/<name>.txt` (Telegram HTML subset)."""
    locale = locale if locale in LOCALES else DEFAULT_LOCALE
    template = environment().get_template(f"{locale}/{name}.txt")
    return template.render(locale=locale, _=lambda key: label(key, locale), **context).strip()


def render_page(name: str, locale: str, /, **context: Any) -> str:
    """Render web page `templates/web/<name>.html` with the locale's labels."""
    locale = locale if locale in LOCALES else DEFAULT_LOCALE
    template = environment().get_template(f"web/{name}.html")
    return template.render(locale=locale, _=lambda key: label(key, locale), **context)


def template_names(locale: str) -> list[str]:
    return sorted(p.stem for p in (HERE / "templates" / locale).glob("*.txt"))


def format_label(key: str, locale: str, /, **params: Any) -> str:
    """A catalog label with `{name}` placeholders filled (for command-line and log-facing text)."""
    return label(key, locale).format(**params)
