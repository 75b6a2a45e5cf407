"""Every benchmark still runs, at a small size, and ends with the summary line scripts read.

A benchmark nobody runs rots: `bench.plans` failed for a whole issue after a migration added a
table its old schema lacked. These runs are tiny and assert no timing (figures on a shared machine
mean nothing); they check the line's form and the counts that must be zero at any size.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.parts import postgres_url, require

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"[0-9]+(?:\.[0-9]+)?"

SUMMARIES = {
    "inbound": (
        rf"inbound updates=40 db=(sqlite|postgres) workers=[12] throughput={NUMBER}/s p50_ms={NUMBER}"
        rf" p99_ms={NUMBER} rss_mb={NUMBER} errors=0 lost=0 duplicates=0"
    ),
    "broadcast": (
        rf"broadcast recipients=20 rate_limit=30 achieved={NUMBER} ratio={NUMBER} 429s=0 duplicates=0"
        rf" lost=0 safety_latency_ms={NUMBER}"
    ),
    "handover": rf"handover children=20 p50_ms={NUMBER} p99_ms={NUMBER} p99_with_bulk_ms={NUMBER} lost=0",
    "surveys": rf"surveys responses=200 aggregate_ms={NUMBER} charts_ms={NUMBER}",
    "dialog": rf"dialog events=\d+ cpu_ms_per_event={NUMBER} statements_per_event={NUMBER}",
}
SMALL = {
    "inbound": ["--updates", "40"],
    "broadcast": ["--recipients", "20"],
    "handover": ["--children", "20", "--groups", "2"],
    "surveys": ["--responses", "200", "--runs", "1"],
    "dialog": ["--events", "5"],
}


def run_bench(name: str, *args: str) -> list[str]:
    """The benchmark as a user runs it (`python -m bench.NAME`), its output's lines."""
    env = dict(os.environ)
    url = postgres_url()
    if url:
        env["TEST_DATABASE_URL"] = url
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"bench.{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout.strip().splitlines()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_a_benchmark_ends_with_its_summary_line(name: str, db: str) -> None:
    if db == "postgres":
        require(postgres_url() is not None, "TEST_DATABASE_URL is not set (PostgreSQL benchmarks need it)")
    args = [*SMALL[name], "--db", db]
    if name == "inbound" and db == "postgres":
        args += ["--workers", "2"]  # the district shape: several workers on one database
    last = run_bench(name, *args)[-1]
    assert re.fullmatch(SUMMARIES[name], last), last
    if name == "inbound":
        assert f"db={db}" in last


def test_the_query_plans_cover_the_hot_paths_before_and_after() -> None:
    require(postgres_url() is not None, "TEST_DATABASE_URL is not set (bench.plans needs PostgreSQL)")
    lines = run_bench("plans", "--accounts", "200", "--outbox", "2000")
    table = [line for line in lines if re.match(r"\| \S", line) and "#" in line]
    paths = {line.split("|")[1].strip().split(" #")[0] for line in table}
    assert {"open_account", "claim_update", "outbox.claim bulk", "outbox.renew"} <= paths
    # Every statement has a plan at the head revision, and the outbox's had one before 0006 too.
    assert all(re.fullmatch(rf"{NUMBER}", line.split("|")[3].strip()) for line in table)
    assert all(line.split("|")[2].strip() != "-" for line in table if "outbox" in line)


def test_the_sweep_draws_both_plots(tmp_path: Path) -> None:
    lines = run_bench(
        "inbound_plot", "--db", "sqlite", "--workers", "1", "--loads", "50", "--updates", "30",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert any("errors=0 lost=0 duplicates=0" in line for line in lines)
    assert {p.name for p in tmp_path.iterdir()} == {"inbound_throughput.png", "inbound_latency.png"}
