"""The supervisor of `afterschool run --workers N`: N worker processes on one port, kept running.

`afterschool run --workers N` checks the settings, migrates the database once, then becomes this
program (exec, same pid, so systemd, Docker and `kill` still see the service's main process). It
imports only the standard library and `bot.logs`: about 20 MB resident instead of the 90 MB of a
process that has imported the bot, and nothing in it can hang on the database or the network.

Each worker is `python -m bot run --worker I --supervisor PID`: the whole bot (`serve()`), sharing
the port with its siblings. Workers share everything else through the database (conversation state,
update ids, locks, the leader election), so any of them can take any update.

    python -m bot.supervisor --workers N [--log-level L] [--log-format F] -- COMMAND ... {worker} ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.logs import setup_logging

log = logging.getLogger("bot.supervisor")

# A worker that dies is restarted after RESTART_FIRST_DELAY, doubled after each death that came
# within STABLE_SECONDS of its start (up to RESTART_MAX_DELAY): a crash loop must not spin the CPU
# or flood the log. After MAX_QUICK_DEATHS such deaths in a row the supervisor gives up, stops the
# other workers and exits non-zero, so systemd / Docker / an operator sees the failure.
RESTART_FIRST_DELAY = 1.0
RESTART_MAX_DELAY = 30.0
STABLE_SECONDS = 30.0
MAX_QUICK_DEATHS = 5
# Workers finish the sends in flight (up to 10 s) when stopped; after this they are killed.
STOP_TIMEOUT = 30.0
WORKER_PLACEHOLDER = "{worker}"
_PR_SET_PDEATHSIG = 1


def stop_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this worker SIGTERM when its supervisor dies, even by `kill -9`.

    Otherwise orphaned workers would keep the port and the leadership, and a restarted service
    would run beside them. Elsewhere (no prctl) this does nothing.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    quick_deaths: int = 0


class Supervisor:
    """Runs N worker processes and keeps them running; SIGTERM / SIGINT are passed on to each, and
    `run()` returns when they have all stopped."""

    def __init__(
        self,
        command: Callable[[int], list[str]],
        workers: int,
        *,
        first_delay: float = RESTART_FIRST_DELAY,
        max_delay: float = RESTART_MAX_DELAY,
        stable_after: float = STABLE_SECONDS,
        max_quick_deaths: int = MAX_QUICK_DEATHS,
    ) -> None:
        self.command = command
        self.workers = [_Worker(i) for i in range(1, workers + 1)]
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.max_quick_deaths = max_quick_deaths
        self.gave_up = False
        self.killed = False
        self._stopping = asyncio.Event()
        self._kill_timer: asyncio.TimerHandle | None = None

    async def run(self) -> int:
        """Start the workers, keep them running until told to stop; 0 on a clean stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop, sig)
        log.info("supervisor (pid %s): starting %s workers", os.getpid(), len(self.workers))
        try:
            await asyncio.gather(*(self._keep(worker) for worker in self.workers))
        finally:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        log.info("supervisor: all workers stopped")
        return 1 if self.gave_up or self.killed else 0

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Pass the signal on to every worker; those still running after STOP_TIMEOUT are killed."""
        if not self._stopping.is_set():
            log.info("supervisor: stopping the workers (%s)", sig.name)
            self._stopping.set()
            self._kill_timer = asyncio.get_running_loop().call_later(STOP_TIMEOUT, self._kill_all)
        for worker in self.workers:
            self._signal(worker, sig)

    def _signal(self, worker: _Worker, sig: signal.Signals) -> None:
        if worker.process is not None and worker.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(sig)

    def _kill_all(self) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                log.error(
                    "worker %s (pid %s) did not stop in time: killing it", worker.index, worker.process.pid
                )
                self.killed = True
                self._signal(worker, signal.SIGKILL)

    async def _keep(self, worker: _Worker) -> None:
        """Run one worker slot: start it, wait for it, restart it with back-off when it dies."""
        while not self._stopping.is_set():
            worker.started, worker.process = time.monotonic(), None
            try:
                worker.process = await asyncio.create_subprocess_exec(
                    *self.command(worker.index), stdin=asyncio.subprocess.DEVNULL
                )
            except OSError:
                log.exception("worker %s could not be started", worker.index)
                code: int | None = None
            else:
                log.info("worker %s started (pid %s)", worker.index, worker.process.pid)
                if self._stopping.is_set():  # a signal came while it was being started
                    self._signal(worker, signal.SIGTERM)
                code = await worker.process.wait()
            if self._stopping.is_set():
                return
            pid = worker.process.pid if worker.process else None
            lived = time.monotonic() - worker.started
            worker.quick_deaths = worker.quick_deaths + 1 if lived < self.stable_after else 1
            if worker.quick_deaths >= self.max_quick_deaths:
                log.error(
                    "worker %s (pid %s) exited with %s after %.1f s, the %s time in a row soon after "
                    "starting: giving up and stopping the others",
                    worker.index,
                    pid,
                    code,
                    lived,
                    worker.quick_deaths,
                )
                self.gave_up = True
                self.stop(signal.SIGTERM)
                return
            delay = min(self.max_delay, self.first_delay * 2 ** (worker.quick_deaths - 1))
            log.warning(
                "worker %s (pid %s) exited unexpectedly with %s after %.1f s; restarting it in %.1f s",
                worker.index,
                pid,
                code,
                lived,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()


def exec_supervisor(workers: int, worker_command: Sequence[str], log_level: str, log_format: str) -> None:
    """Replace this process by the supervisor program (keeping its pid); never returns."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "bot.supervisor", "--workers", str(workers)]
    argv += ["--log-level", log_level, "--log-format", log_format, "--", *worker_command]
    os.execv(sys.executable, argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.supervisor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text")
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help=f"the worker's command; {WORKER_PLACEHOLDER}"
    )
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.workers < 1 or not command:
        parser.error("--workers N (N >= 1) and a worker command are needed")
    setup_logging(args.log_level, args.log_format)

    def worker_command(index: int) -> list[str]:
        return [part.replace(WORKER_PLACEHOLDER, str(index)) for part in command]

    return asyncio.run(Supervisor(worker_command, args.workers).run())


if __name__ == "__main__":
    raise SystemExit(main())
