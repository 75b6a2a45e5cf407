"""Terms are published as immutable versions; forbidden activity types never get published."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from bot import admin
from storage import terms
from tests.school import EXAMPLES


def example() -> dict:
    return yaml.safe_load((EXAMPLES / "terms.yaml").read_text(encoding="utf-8"))


async def test_publishing_makes_versions_and_keeps_old_ones(sessionmaker, tmp_path: Path):
    await admin.import_roster_file(sessionmaker, EXAMPLES / "roster.csv")
    _, v1, created = await admin.publish_terms_file(sessionmaker, EXAMPLES / "terms.yaml")
    assert (v1.version, created) == (1, True)
    _, same, created = await admin.publish_terms_file(sessionmaker, EXAMPLES / "terms.yaml")
    assert (same.version, created) == (1, False)

    data = example()
    data["fees"]["per_month"] = 180
    changed = tmp_path / "terms.yaml"
    changed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    _, v2, created = await admin.publish_terms_file(sessionmaker, changed)
    assert (v2.version, created) == (2, True)
    async with sessionmaker() as session:
        old = await terms.get_terms(session, v1.school_id, 1)
        assert old is not None and old.content["fees"]["per_month"] == "200"
        assert len(await terms.list_versions(session, v1.school_id)) == 2


@pytest.mark.parametrize("kind", ["lesson", "补课", "teaching"])
def test_teaching_a_class_is_not_an_allowed_activity(kind: str):
    data = example()
    data["activities"].append({"type": kind, "name": "数学提高班"})
    with pytest.raises(ValidationError) as caught:
        terms.parse_terms(data)
    assert "补课" in str(caught.value)


def test_negative_fees_and_unknown_fields_are_refused():
    data = example()
    data["fees"]["per_month"] = -1
    data["surprise"] = True
    with pytest.raises(ValidationError) as caught:
        terms.parse_terms(data)
    fields = {".".join(map(str, e["loc"])) for e in caught.value.errors()}
    assert {"fees.per_month", "surprise"} <= fields
