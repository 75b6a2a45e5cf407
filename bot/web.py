"""Public web pages: the published terms (主动公开) and the health check."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import messages
from storage import schools, terms
from storage.models import School

SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker)
DEFAULT_LOCALE = web.AppKey("default_locale", str)


def page_locale(request: web.Request) -> str:
    """?lang= wins, then the browser's Accept-Language, then the deployment default."""
    wanted = request.query.get("lang")
    if wanted in messages.LOCALES:
        return wanted
    accept = request.headers.get("Accept-Language", "")
    first = accept.split(",")[0].strip() if accept else ""
    default = request.app[DEFAULT_LOCALE]
    return messages.normalise_locale(first, default) if first else default


async def healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[SESSIONMAKER]() as session:
            await session.execute(select(1))
    except Exception:
        return web.json_response({"status": "database unavailable"}, status=503)
    return web.json_response({"status": "ok"})


async def _school(session: AsyncSession, request: web.Request) -> School | None:
    code = request.query.get("school")
    try:
        return await schools.resolve_school(session, code)
    except schools.SchoolNotFound:
        return None


async def terms_page(request: web.Request) -> web.Response:
    locale = page_locale(request)
    version_text = request.match_info.get("version")
    async with request.app[SESSIONMAKER]() as session:
        school = await _school(session, request)
        if school is None and not request.query.get("school"):
            all_schools = await schools.list_schools(session)
            if len(all_schools) > 1:
                html = messages.render_page("schools", locale, schools=all_schools)
                return web.Response(text=html, content_type="text/html")
        status = 200
        version = None
        versions = []
        if school is not None:
            versions = await terms.list_versions(session, school.id)
            if version_text is None:
                version = await terms.current_terms(session, school.id)
            elif version_text.isdigit() and len(version_text) < 9:
                version = await terms.get_terms(session, school.id, int(version_text))
            if version is None and version_text is not None:
                status = 404
        current = await terms.current_terms(session, school.id) if school else None
    html = messages.render_page(
        "terms",
        locale,
        school=school,
        version=version,
        versions=versions,
        current_version=current.version if current else None,
        effective=terms.effective_date(version, school).isoformat() if version and school else "",
        requested=version_text,
        query_school=request.query.get("school"),
    )
    return web.Response(text=html, content_type="text/html", status=status)


async def home(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/terms")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/terms", terms_page)
    app.router.add_get("/terms/{version}", terms_page)
    app.router.add_get("/", home)
