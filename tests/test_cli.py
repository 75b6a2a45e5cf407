"""The administrator's commands, run as a school would run them: the real console script."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.school import EXAMPLES


def afterschool(tmp_path: Path, *args: str, locale: str = "zh_CN") -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_USERNAME")
    }
    env.update(DATA_DIR=str(tmp_path / "data"), DEFAULT_LOCALE=locale)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_school_sets_up_from_the_command_line(tmp_path: Path):
    roster = str(EXAMPLES / "roster.csv")
    done = afterschool(tmp_path, "import-roster", roster, "--school-name", "阳光实验小学")
    assert done.returncode == 0, done.stderr
    assert "学生新增 40" in done.stdout

    done = afterschool(tmp_path, "publish-terms", str(EXAMPLES / "terms.yaml"))
    assert done.returncode == 0, done.stderr
    assert "第 1 版" in done.stdout and "/terms/1" in done.stdout
    assert "2026-09-01 起生效" in done.stdout  # the school's date, not the UTC instant

    done = afterschool(tmp_path, "invite", "--role", "parent", "--class", "一年级(1)班", "--qr", "slips")
    assert done.returncode == 0, done.stderr
    with (tmp_path / "slips" / "index.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 10 and {r["class"] for r in rows} == {"一年级(1)班"}
    assert all((tmp_path / "slips" / r["file"]).stat().st_size > 100 for r in rows)
    assert all(r["code"] in r["link"] for r in rows)

    done = afterschool(tmp_path, "invite", "--role", "teacher", "--person", "T001", locale="en")
    assert done.returncode == 0, done.stderr
    assert "李红梅" in done.stdout and "start=" in done.stdout


def test_mistakes_get_clear_answers_and_exit_code_2(tmp_path: Path):
    done = afterschool(tmp_path, "invite", "--role", "parent", "--student", "S1")
    assert done.returncode == 2 and "还没有学校" in done.stderr

    bad = tmp_path / "bad.csv"
    bad.write_text("kind,number,name\nstudent,S1,小明\n", encoding="utf-8")
    done = afterschool(tmp_path, "import-roster", str(bad), locale="en")
    assert done.returncode == 2
    assert "line 2" in done.stderr and "nothing was imported" in done.stderr

    done = afterschool(tmp_path, "import-roster", str(EXAMPLES / "roster.csv"))
    assert done.returncode == 0
    bad_terms = tmp_path / "terms.yaml"
    bad_terms.write_text("title: x\nfees: {per_month: -5}\n", encoding="utf-8")
    done = afterschool(tmp_path, "publish-terms", str(bad_terms), locale="en")
    assert done.returncode == 2 and "fees.per_month" in done.stderr

    done = afterschool(tmp_path, "invite", "--role", "teacher", "--person", "S001", locale="en")
    assert done.returncode == 2 and "does not have the role teacher" in done.stderr


def test_groups_vetting_and_placement_from_the_command_line(tmp_path: Path):
    assert afterschool(tmp_path, "import-roster", str(EXAMPLES / "roster.csv")).returncode == 0
    assert afterschool(tmp_path, "publish-terms", str(EXAMPLES / "terms.yaml")).returncode == 0

    refused = afterschool(tmp_path, "groups", "import", str(EXAMPLES / "groups.yaml"))
    assert refused.returncode == 2 and "T005" in refused.stderr and "vet-staff" in refused.stderr

    for number in ("T005", "S001", "S002"):
        done = afterschool(
            tmp_path,
            "vet-staff",
            "--person",
            number,
            "--moral",
            "pass",
            "--health",
            "pass",
            "--qualification",
            "pass",
            "--checked-on",
            "2026-08-01",
            "--checked-by",
            "周校长",
            "--valid-until",
            "2027-07-31",
        )
        assert done.returncode == 0, done.stderr
    done = afterschool(tmp_path, "groups", "import", str(EXAMPLES / "groups.yaml"))
    assert done.returncode == 0, done.stderr
    assert "新建 4 个" in done.stdout

    listed = afterschool(tmp_path, "groups", "list", locale="en")
    assert "一年级作业辅导 (Homework help)" in listed.stdout and "刘洋" in listed.stdout

    proposal = afterschool(tmp_path, "place")
    assert proposal.returncode == 0 and "--confirm 1" in proposal.stdout
    confirmed = afterschool(tmp_path, "place", "--confirm", "1")
    assert confirmed.returncode == 0 and "安排 0 人" in confirmed.stdout
    again = afterschool(tmp_path, "place", "--confirm", "1")
    assert again.returncode == 2 and "已经确认" in again.stderr


def test_a_lesson_group_is_refused(tmp_path: Path):
    assert afterschool(tmp_path, "import-roster", str(EXAMPLES / "roster.csv")).returncode == 0
    assert afterschool(tmp_path, "publish-terms", str(EXAMPLES / "terms.yaml")).returncode == 0
    bad = tmp_path / "groups.yaml"
    bad.write_text(
        "groups:\n  - {name: 数学提高班, activity: lesson, weekdays: [mon], capacity: 30}\n", "utf-8"
    )
    done = afterschool(tmp_path, "groups", "import", str(bad), locale="en")
    assert done.returncode == 2 and "groups.0.activity" in done.stderr and "补课" in done.stderr
