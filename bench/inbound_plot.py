"""Sweep of bench.inbound: throughput by worker count, and p99 latency by offered load; two PNGs.

    python -m bench.inbound_plot [--db sqlite,postgres] [--workers 1,2,3] [--loads 20,40,60,80,100]
                                 [--updates 600] [--out docs/img] [--from-log SWEEP.txt]

For each database and worker count, one bot process tree on one prepared database takes a steady
phase at each offered load (open loop, as bench.inbound), then one full-speed phase. Writes
`inbound_throughput.png` (full-speed updates/s by workers, a line per database) and
`inbound_latency.png` (p99 latency by offered load, a line per database and worker count), and
prints bench.inbound's summary line for each point; `--from-log` draws those lines again without
measuring. PostgreSQL is left out when no server is given (--database-url, TEST_DATABASE_URL or
DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.inbound import KINDS, PROXIES, Run, measure, percentile, summary

ROOT = Path(__file__).resolve().parent.parent
# "  offered 20/s: inbound updates=600 db=sqlite workers=1 throughput=58/s p50_ms=19.5 p99_ms=68.9 ..."
LOG_LINE = re.compile(
    r"offered (?P<offered>[\d.]+)/s: inbound .*?db=(?P<db>\w+) workers=(?P<workers>\d+) "
    r"throughput=(?P<throughput>[\d.]+)/s .*?p99_ms=(?P<p99>[\d.]+|nan)"
)


@dataclass(frozen=True)
class Point:
    """One steady phase of a sweep, with the full-speed throughput of the same bot."""

    db: str
    workers: int
    offered: float
    p99_ms: float
    throughput: float

    @classmethod
    def of(cls, run: Run) -> Point:
        p99 = percentile(run.steady.latency, 0.99) * 1000
        return cls(run.db, run.workers, run.rate, p99, run.full.throughput)

    def line(self, run: Run) -> str:
        return f"  offered {self.offered:g}/s: {summary(run)}"


def points_from_log(text: str) -> list[Point]:
    """The points of an earlier sweep, from the lines it printed."""
    return [
        Point(m["db"], int(m["workers"]), float(m["offered"]), float(m["p99"]), float(m["throughput"]))
        for m in LOG_LINE.finditer(text)
    ]


def plot(points: list[Point], out: Path) -> tuple[Path, Path]:
    """Throughput by workers (one line per database); p99 by offered load (one per db × workers)."""
    out.mkdir(parents=True, exist_ok=True)
    throughput, latency = out / "inbound_throughput.png", out / "inbound_latency.png"
    cores = os.cpu_count() or 1

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for db in sorted({p.db for p in points}):
        by_workers = sorted({(p.workers, p.throughput) for p in points if p.db == db})
        ax.plot([w for w, _ in by_workers], [t for _, t in by_workers], marker="o", label=db)
    ax.set_xlabel("workers (processes)")
    ax.set_ylabel("updates / s at full speed")
    ax.set_title(
        f"Inbound webhook throughput\n({cores} cores, shared with the fake Bot API and the client)",
        fontsize="medium",
    )
    ax.set_xticks(sorted({p.workers for p in points}))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(throughput)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for db, workers in sorted({(p.db, p.workers) for p in points}):
        line = sorted((p.offered, p.p99_ms) for p in points if p.db == db and p.workers == workers)
        ax.plot([x for x, _ in line], [y for _, y in line], marker="o", label=f"{db}, {workers} worker(s)")
    ax.axhline(100, color="grey", linestyle="--", linewidth=1, label="100 ms")
    ax.set_xlabel("offered updates / s (steady)")
    ax.set_ylabel("p99 latency, POST to 200 (ms)")
    ax.set_yscale("log")
    ax.set_title("Inbound webhook latency by offered load", fontsize="medium")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(latency)
    plt.close(fig)
    return throughput, latency


def sweep(args: argparse.Namespace) -> list[Point]:
    postgres = args.database_url or os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    dbs = [db for db in args.db.split(",") if db == "sqlite" or (db == "postgres" and postgres)]
    loads = [float(x) for x in args.loads.split(",") if x]
    points: list[Point] = []
    for db in dbs:
        for workers in (int(w) for w in args.workers.split(",") if w):
            options = argparse.Namespace(
                db=db,
                database_url=args.database_url,
                updates=args.updates,
                rate=loads[0],
                concurrency=args.concurrency,
                kinds=frozenset(KINDS),
                profile=None,
                dump=None,
            )
            print(f"inbound_plot: {db}, {workers} worker(s), loads {args.loads}/s ...", flush=True)
            for run in asyncio.run(measure(options, workers, loads)):
                point = Point.of(run)
                print(point.line(run), flush=True)
                points.append(point)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inbound_plot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workers", default="1,2,3", help="comma-separated worker counts")
    parser.add_argument("--loads", default="20,40,60,80,100", help="comma-separated offered updates/s")
    parser.add_argument("--updates", type=int, default=600, help="updates per point")
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--from-log", type=Path, default=None, help="draw the points a sweep printed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in PROXIES:
        os.environ.pop(name, None)
    points = points_from_log(args.from_log.read_text(encoding="utf-8")) if args.from_log else sweep(args)
    for path in plot(points, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
