"""The scheduler: APScheduler 3 with a persistent SQLAlchemy job store, run only by the leader.

- **Where jobs live**: the `apscheduler_jobs` table (migration 0003) in the app's own database,
  through a synchronous engine on the same URL (psycopg for PostgreSQL, sqlite3 for SQLite).
- **Which jobs**: `notice:<id>` for each scheduled one-off notice (a date) and each recurring
  series (a crontab line in the school's time zone), plus `notices:digests` and
  `notices:reminders`, which poll the database every few minutes. Ids are explicit and jobs are
  added with `replace_existing`; an existing job whose definition (kept in its name) is unchanged
  is left alone, so its stored next run time, and with it a run missed while the app was down,
  survives a restart.
- **Where notices come from**: any process (a chat worker, the command line) stores the notice
  row; the leader's `reconcile()` (at start and every `sync_interval` seconds) adds the missing
  jobs and removes those of stopped notices.
- **How jobs reach the database**: a job is stored as a textual reference to a module-level
  coroutine in `bot.jobs` plus ids, so it can be pickled. When it runs, it calls `current()`,
  the JobContext of the Scheduler started in this process (one per process: the leader's), and
  uses its sessionmaker.
- **Misfires**: jobs coalesce (a series missed several times runs once) and have a grace period
  per kind (NOTICE_GRACE, HOUSEKEEPING_GRACE); docs/scheduling.md says why.
- **The event loop never waits for the job store**: its calls are synchronous, and on SQLite a
  loop blocked on the database's write lock could never let our own open transaction finish.
  Job processing and every job-store call therefore run on one worker thread; jobs themselves
  are coroutines run on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.base import run_coroutine_job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler, run_in_event_loop
from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED, BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings, sync_database_url
from storage import notices
from storage.clock import utcnow
from storage.retention import RetentionPolicy

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
# A notice missed while the service was down still goes out within this time (the same school
# day); later it would be stale ("tomorrow's trip is cancelled" after the trip), so it is marked
# missed instead and the admin sees that in the report.
NOTICE_GRACE = timedelta(hours=6)
# Digests and reminders are worked out from the database on each pass, so a missed pass costs
# nothing: the next one does its work. One run after a restart is enough.
HOUSEKEEPING_INTERVAL = timedelta(minutes=5)
HOUSEKEEPING_GRACE = HOUSEKEEPING_INTERVAL
SYNC_INTERVAL = 30.0
# Late pickups and unanswered pickup requests are checked this often (each run reads the database).
SAFETY_INTERVAL = timedelta(minutes=1)

T = TypeVar("T")


@dataclass(frozen=True)
class JobContext:
    """What a running job needs from the runtime."""

    sessionmaker: async_sessionmaker[AsyncSession]
    wake: Callable[[], None]
    notice_grace: timedelta
    files_dir: Path | None = None  # DATA_DIR: where survey charts and exports are written
    feedback_days: int = 7
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)


# The contexts of the schedulers running in this process: one, the leader's (a test may briefly
# hold two on the same database while leadership changes hands; the newest wins).
_running: list[JobContext] = []


def current() -> JobContext:
    """The running scheduler's context, for the job functions in bot.jobs."""
    if not _running:
        raise RuntimeError("no scheduler is running in this process")
    return _running[-1]


@dataclass(frozen=True)
class JobSpec:
    func: str
    trigger: BaseTrigger
    signature: str  # stored as the job's name; a different one means "replace the job"
    grace: timedelta
    args: tuple[Any, ...] = ()


class _LoopExecutor(AsyncIOExecutor):
    """Runs coroutine jobs on the event loop when they are submitted from the worker thread."""

    def _do_submit_job(self, job: Any, run_times: list[Any]) -> None:
        coro = run_coroutine_job(job, job._jobstore_alias, run_times, self._logger.name)
        future = asyncio.run_coroutine_threadsafe(coro, self._eventloop)
        self._pending_futures.add(future)
        future.add_done_callback(functools.partial(self._finished, job.id))

    def _finished(self, job_id: str, future: Future[Any]) -> None:
        self._pending_futures.discard(future)
        try:
            events = future.result()
        except BaseException:
            self._run_job_error(job_id, *sys.exc_info()[1:])
        else:
            self._run_job_success(job_id, events)

    async def drain(self, grace: float) -> None:
        """Let running jobs finish their transaction; cancel only those still running after `grace` s."""
        running = [asyncio.wrap_future(f) for f in list(self._pending_futures)]
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace)
        for future in late:
            future.cancel()
        if late:
            await asyncio.wait(late)


class _OffLoopScheduler(AsyncIOScheduler):
    """AsyncIOScheduler whose job processing (job-store reads and writes) runs on a worker thread."""

    def __init__(self, worker: ThreadPoolExecutor, **options: Any) -> None:
        self._worker = worker
        self._processing: asyncio.Future[Any] | None = None
        self._again = False
        super().__init__(**options)

    @run_in_event_loop
    def wakeup(self) -> None:
        self._stop_timer()
        if self.state != STATE_RUNNING:
            return
        if self._processing is not None:
            self._again = True  # look once more when the pass under way is done
            return
        self._processing = self._eventloop.run_in_executor(self._worker, self._process_jobs)
        self._processing.add_done_callback(self._processed)

    def _processed(self, future: asyncio.Future[Any]) -> None:
        self._processing = None
        wait: float | None = None
        if future.cancelled():
            return
        if future.exception() is not None:
            log.error("scheduler pass failed", exc_info=future.exception())
            wait = self.jobstore_retry_interval
        else:
            wait = future.result()
        if self._again:
            self._again, wait = False, 0
        if self.state == STATE_RUNNING:
            self._start_timer(wait)

    async def idle(self) -> None:
        """Wait for a processing pass under way."""
        if self._processing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._processing)

    def shutdown(self, wait: bool = True) -> None:
        """Shut executors and job stores down in the calling thread (the worker), not on the loop."""
        BaseScheduler.shutdown(self, wait)


class Scheduler:
    """The leader duty that runs scheduled and recurring notices, digests and reminders."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        sync_url: str,
        timezone: str = "Asia/Shanghai",
        *,
        wake: Callable[[], None] | None = None,
        sync_interval: float = SYNC_INTERVAL,
        notice_grace: timedelta = NOTICE_GRACE,
        housekeeping_interval: timedelta = HOUSEKEEPING_INTERVAL,
        files_dir: Path | None = None,
        feedback_cron: str = "",
        feedback_days: int = 7,
        retention: RetentionPolicy | None = None,
        retention_cron: str = "",
    ) -> None:
        self.sessionmaker = sessionmaker
        self.sync_url = sync_url
        self.timezone = ZoneInfo(timezone)
        self.wake = wake or (lambda: None)
        self.sync_interval = sync_interval
        self.notice_grace = notice_grace
        self.housekeeping_interval = housekeeping_interval
        self.files_dir = files_dir
        self.feedback_cron = feedback_cron
        self.feedback_days = feedback_days
        self.retention = retention or RetentionPolicy()
        self.retention_cron = retention_cron
        self._scheduler: _OffLoopScheduler | None = None
        self._executor: _LoopExecutor | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._store: SQLAlchemyJobStore | None = None
        self._context: JobContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._nudge = asyncio.Event()

    @classmethod
    def from_settings(
        cls, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], wake: Callable[[], None]
    ) -> Scheduler:
        return cls(
            sessionmaker,
            sync_database_url(settings.resolved_database_url()),
            settings.timezone,
            wake=wake,
            files_dir=settings.data_dir,
            feedback_cron=settings.feedback_rounds_cron,
            feedback_days=settings.feedback_round_days,
            retention=settings.retention_policy(),
            retention_cron=settings.retention_cron,
        )

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the job store, run what is due (missed runs within their grace), add missing jobs."""
        loop = asyncio.get_running_loop()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="scheduler")
        self._executor = _LoopExecutor()
        options: dict[str, Any] = {"pool_pre_ping": True}
        if self.sync_url.startswith("sqlite"):
            # One worker thread uses the connections, but the pool may close them from another.
            options = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        self._store = SQLAlchemyJobStore(engine=create_engine(self.sync_url, **options), tablename=JOB_TABLE)
        self._scheduler = _OffLoopScheduler(
            self._worker,
            jobstores={"default": self._store},
            executors={"default": self._executor},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=self.timezone,
            event_loop=loop,
        )
        self._context = JobContext(
            self.sessionmaker,
            self.wake,
            self.notice_grace,
            self.files_dir,
            self.feedback_days,
            self.retention,
        )
        _running.append(self._context)
        try:
            await self._in_worker(self._scheduler.start)
        except BaseException:
            await self.stop()
            raise
        try:
            await self.reconcile()
        except Exception:  # the jobs already stored run; the sync loop tries again
            log.exception("scheduler: reconciling jobs at start failed")
        self._stop.clear()
        self._task = asyncio.create_task(self._keep_in_sync(), name="scheduler-sync")
        log.info("scheduler started (%s)", self.timezone)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking jobs, let running ones finish (up to `grace` seconds), close the job store."""
        self._stop.set()
        self._nudge.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        scheduler, executor, worker, store = self._scheduler, self._executor, self._worker, self._store
        self._scheduler = self._executor = self._worker = self._store = None
        loop = asyncio.get_running_loop()
        try:
            if scheduler is not None and scheduler.state != STATE_STOPPED:
                scheduler.pause()
                await scheduler.idle()
                if executor is not None:
                    await executor.drain(grace)
                await loop.run_in_executor(worker, functools.partial(scheduler.shutdown, False))
                scheduler._stop_timer()
            elif store is not None:  # start() failed before the scheduler ran: close its engine
                await loop.run_in_executor(worker, store.shutdown)
        finally:
            if worker is not None:
                worker.shutdown(wait=True)
            if self._context in _running:
                _running.remove(self._context)
            self._context = None

    def nudge(self) -> None:
        """Reconcile now rather than at the next interval (a notice was stored in this process)."""
        self._nudge.set()

    async def _keep_in_sync(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), self.sync_interval)
            self._nudge.clear()
            if self._stop.is_set():
                return
            try:
                await self.reconcile()
            except Exception:
                log.exception("scheduler: reconciling jobs failed; retrying")

    # -- jobs ------------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Make the job store hold exactly the jobs the database asks for."""
        async with self.sessionmaker.begin() as session:
            wanted = await notices.schedules(session, utcnow(), self.notice_grace)
        specs = {f"notice:{s.notice_id}": self._notice_spec(s) for s in wanted}
        every = self.housekeeping_interval
        for name, func in (("digests", "bot.jobs:send_digests"), ("reminders", "bot.jobs:send_reminders")):
            specs[f"notices:{name}"] = JobSpec(
                func,
                IntervalTrigger(seconds=every.total_seconds(), timezone=self.timezone),
                f"{name} every {every.total_seconds():.0f}s",
                HOUSEKEEPING_GRACE,
            )
        # A child's safety does not wait five minutes: late pickups and unanswered requests every minute.
        specs["care:handovers"] = JobSpec(
            "bot.jobs:watch_handovers",
            IntervalTrigger(seconds=SAFETY_INTERVAL.total_seconds(), timezone=self.timezone),
            f"handover watch every {SAFETY_INTERVAL.total_seconds():.0f}s",
            SAFETY_INTERVAL,
        )
        specs["care:housekeeping"] = JobSpec(
            "bot.jobs:care_housekeeping",
            IntervalTrigger(seconds=every.total_seconds(), timezone=self.timezone),
            f"care housekeeping every {every.total_seconds():.0f}s",
            HOUSEKEEPING_GRACE,
        )
        # Surveys open, remind and close on the minute; their results follow the closing.
        specs["surveys:tick"] = JobSpec(
            "bot.jobs:survey_tick",
            IntervalTrigger(seconds=SAFETY_INTERVAL.total_seconds(), timezone=self.timezone),
            f"surveys every {SAFETY_INTERVAL.total_seconds():.0f}s",
            HOUSEKEEPING_GRACE,
        )
        if self.feedback_cron:
            specs["feedback:rounds"] = JobSpec(
                "bot.jobs:feedback_rounds",
                notices.cron_trigger(self.feedback_cron, self.timezone),
                f"feedback rounds: cron {self.feedback_cron} ({self.timezone})",
                timedelta(days=1),  # a round missed while down still starts that day
            )
        if self.retention_cron:
            specs["retention:purge"] = JobSpec(
                "bot.jobs:purge_retention",
                notices.cron_trigger(self.retention_cron, self.timezone),
                f"retention purge: cron {self.retention_cron} ({self.timezone})",
                timedelta(days=1),  # a night missed while down is made up once on start
            )
        await self._in_worker(functools.partial(self._apply, specs))

    def _notice_spec(self, schedule: notices.Schedule) -> JobSpec:
        if schedule.cron is not None:
            trigger: BaseTrigger = notices.cron_trigger(schedule.cron, ZoneInfo(schedule.timezone))
            signature = f"notice {schedule.notice_id}: cron {schedule.cron} ({schedule.timezone})"
        else:
            assert schedule.run_at is not None
            trigger = DateTrigger(run_date=schedule.run_at, timezone=self.timezone)
            signature = f"notice {schedule.notice_id}: at {schedule.run_at.isoformat()}"
        return JobSpec("bot.jobs:send_notice", trigger, signature, self.notice_grace, (schedule.notice_id,))

    def _apply(self, specs: dict[str, JobSpec]) -> None:
        """(Worker thread.) Add missing or changed jobs; remove jobs of notices no longer scheduled."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        existing = {job.id: job for job in scheduler.get_jobs()}
        for job_id, spec in specs.items():
            job = existing.get(job_id)
            if job is not None and job.name == spec.signature:
                continue  # unchanged: keep its stored next run time
            scheduler.add_job(
                spec.func,
                spec.trigger,
                args=spec.args,
                id=job_id,
                name=spec.signature,
                replace_existing=True,
                misfire_grace_time=int(spec.grace.total_seconds()),
                coalesce=True,
                max_instances=1,
            )
            log.debug("scheduler: %s %s", "replaced" if job else "added", spec.signature)
        for job_id in existing.keys() - specs.keys():
            if job_id.startswith(("notice:", "feedback:", "retention:")):
                scheduler.remove_job(job_id)
                log.info("scheduler: removed %s", job_id)

    async def jobs(self) -> dict[str, Any]:
        """The stored jobs by id (for the admin and for tests)."""
        scheduler = self._scheduler
        if scheduler is None:
            return {}
        return {job.id: job for job in await self._in_worker(scheduler.get_jobs)}

    async def _in_worker(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, call)
