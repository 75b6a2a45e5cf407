"""App assembly: the one place that builds the engine, the dialog deps, the channels and the server.

Nothing is module-level: `open_runtime()` builds everything from Settings and `serve()` ties their
lives to the aiohttp server (start on entry, stop on exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import dashboard
from bot import web as web_pages
from bot.channels import Channel
from bot.config import Settings, engine_options
from bot.leader import Duty, Leadership
from bot.ratelimit import Limits
from bot.scheduler import Scheduler
from bot.sender import Sender
from handlers.dialog import Links
from handlers.dispatch import Deps
from storage.db import create_engine, create_sessionmaker, migrate

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1024 * 1024
# On stop, how long requests in hand may take to finish (then they are cut off). With the sender's
# own 10 s this stays within the 30 s a supervisor gives a worker to stop.
DRAIN_SECONDS = 15.0


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    deps: Deps
    sender: Sender
    channels: dict[str, Channel] = field(default_factory=dict)
    # Work only the elected leader does, started and stopped in this order (sender first).
    leader_duties: list[Duty] = field(default_factory=list)


async def open_runtime(settings: Settings, *, run_migrations: bool = True) -> Runtime:
    engine = create_engine(settings.resolved_database_url(), **engine_options(settings))
    if run_migrations:
        await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    channels: dict[str, Channel] = {}
    sender = Sender(
        sessionmaker,
        channels,
        limits={"telegram": Limits.telegram(settings)},
        concurrency=settings.send_concurrency,
        poll_interval=settings.send_poll_seconds,
        lease=settings.send_lease_seconds,
        retry_base=settings.send_retry_base_seconds,
    )
    deps = Deps(
        sessionmaker=sessionmaker,
        links=Links(settings.base_url(), settings.telegram_bot_username),
        default_locale=settings.default_locale,
        files_dir=settings.data_dir,
        secret_key=settings.secret_key_bytes(),
        retention=settings.retention_policy(),
        on_queued=sender.wake,
    )
    scheduler = Scheduler.from_settings(settings, sessionmaker, wake=sender.wake)
    return Runtime(settings, engine, sessionmaker, deps, sender, channels, [sender, scheduler])


async def close_runtime(runtime: Runtime) -> None:
    await runtime.engine.dispose()


def build_web_app(runtime: Runtime) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[web_pages.SESSIONMAKER] = runtime.sessionmaker
    app[web_pages.DEFAULT_LOCALE] = runtime.settings.default_locale
    web_pages.add_routes(app)
    dashboard.add_routes(app, runtime.deps)
    return app


async def serve(
    settings: Settings,
    *,
    demo: bool = False,
    stop: asyncio.Event | None = None,
    run_migrations: bool = True,
    reuse_port: bool = False,
) -> None:
    """Run the web server, the web chat, Telegram (when a token is set) and the outbox sender.

    A worker of `run --workers N` shares the port with its siblings (`reuse_port`: the kernel
    spreads connections over them) and skips migrations, which its supervisor ran once before.
    """
    from bot.telegram import TelegramAdapter
    from bot.webchat import WebChat

    runtime = await open_runtime(settings, run_migrations=run_migrations)
    app = build_web_app(runtime)
    webchat = WebChat(runtime.deps, wake=runtime.sender.wake, demo=demo, data_dir=settings.data_dir)
    webchat.add_routes(app)
    runtime.channels[webchat.platform] = webchat
    telegram: TelegramAdapter | None = None
    if settings.telegram_bot_token is not None:
        telegram = TelegramAdapter(settings, runtime.deps, wake=runtime.sender.wake)
        telegram.add_routes(app)
        runtime.channels[telegram.platform] = telegram

    leadership = Leadership(
        runtime.engine, runtime.leader_duties, check_interval=settings.leader_check_seconds
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=DRAIN_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, reuse_port=reuse_port or None)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await site.start()
        if telegram is not None:
            await telegram.start()
        await leadership.start()
        log.info("serving on http://%s:%s (pid %s)", settings.http_host, settings.http_port, os.getpid())
        await stop.wait()
    finally:
        log.info("shutting down")
        # The server first: it stops listening (another worker on the port takes new connections)
        # and lets the requests in hand finish. A webhook update being processed still needs
        # Telegram for its reply; were Telegram stopped first, it would get its 200 without one.
        await runner.cleanup()
        await leadership.stop()
        if telegram is not None:
            await telegram.stop()
        await close_runtime(runtime)


async def send_only(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """`afterschool sender`: only the leader duties (the outbox sender), no web server, no updates.

    For a dedicated sender process beside inbound workers, and for the crash tests. Telegram is
    used to deliver only (getMe checks the token; no polling, no webhook).
    """
    from bot.telegram import TelegramAdapter

    runtime = await open_runtime(settings)
    telegram: TelegramAdapter | None = None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    leadership = Leadership(
        runtime.engine, runtime.leader_duties, check_interval=settings.leader_check_seconds
    )
    try:
        if settings.telegram_bot_token is not None:
            telegram = TelegramAdapter(settings, runtime.deps, wake=runtime.sender.wake)
            await telegram.application.initialize()
            runtime.channels[telegram.platform] = telegram
        else:
            log.warning("TELEGRAM_BOT_TOKEN is not set: nothing to send through")
        await leadership.start()
        log.info("outbox sender process ready")
        await stop.wait()
    finally:
        log.info("shutting down")
        await leadership.stop()
        if telegram is not None:
            await telegram.stop()
        await close_runtime(runtime)


async def prepare_workers(settings: Settings, workers: int) -> None:
    """What must happen once, before the workers start: the schema, and the shared secret key.

    Workers starting together would race each other's migrations, and the secret key file: one
    could read it empty while another is writing it, and sign links no other worker accepts.
    """
    engine = create_engine(settings.resolved_database_url())
    try:
        await migrate(engine)
        if engine.dialect.name == "sqlite" and workers > 1:
            log.warning(
                "%s workers on SQLite: SQLite lets one transaction write at a time, so more workers "
                "add little; use PostgreSQL (DATABASE_URL) to scale out",
                workers,
            )
    finally:
        await engine.dispose()
    settings.secret_key_bytes()
