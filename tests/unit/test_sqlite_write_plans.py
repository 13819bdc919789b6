"""The local index's writes reach their rows through an index, whatever its size.

Why: a store, a replace, a bulk update's version and a delete run inside the writers' lock,
which every process of the server shares, so a statement that reads a whole table (or a whole
partition, which for most archives is the whole table) slows every STOW down as the archive
grows, and they all queue behind it. SQLite picks its plans from the schema alone here (no
ANALYZE statistics), so the plan of each statement is fixed: this test records the statements
that the store and delete services run (through the app's own composition) and asks SQLite for
each one's plan. Timing would only show the defect at a size no unit test can build.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from dicom_core.domain.model import InstanceKey
from dicom_core.query.workitems import parse_workitem_query
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_workitems import SqliteWorkitemStore
from dicom_core.storage.ports.index import NewVersion
from tests.support.factories import make_dataset, to_bytes
from tests.support.index_rows import stored_instance
from tests.support.services import BASE_URL, Body, local_services, store_datasets
from tests.support.sql_trace import trace_statements

#: Plan lines that read a table whole, or a partition whole (``partition_key`` is the only
#: constraint of the index search). Not counted: a subquery's few rows (``SCAN
#: (subquery-1)``), and the tables that do not grow with the archive: the extended query tag
#: registry (a few dozen rows at most), the full-text index's configuration, the
#: database's one-row tables and its schema.
_SMALL = (
    "extended_query_tag|main\\.study_text_config|schema_version|database_identity|sqlite_master"
)
_WHOLE_READ = re.compile(rf"^SCAN (?!\(subquery|(?:{_SMALL})$)|\(partition_key=\?\)$")
_SKIP = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA", "--")


@pytest.fixture()
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the index's connections run, with its values bound."""
    return trace_statements(monkeypatch)


def _whole_reads(database: Path, statements: list[str]) -> dict[str, list[str]]:
    """The statements whose plan reads a table or partition whole, with that plan."""
    found: dict[str, list[str]] = {}
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        for statement in statements:
            if statement.lstrip().upper().startswith(_SKIP):
                continue
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")]
            if any(_WHOLE_READ.search(line) for line in plan):
                found[statement] = plan
    return found


async def test_store_replace_update_and_delete_read_no_table_whole(
    tmp_path: Path, statements: list[str]
) -> None:
    async with local_services(tmp_path / "data") as services:
        studies = [make_dataset() for _ in range(3)]
        series_mate = make_dataset(
            study_uid=studies[0].StudyInstanceUID, series_uid=studies[0].SeriesInstanceUID
        )
        await store_datasets(services, tmp_path / "seed", *studies, series_mate)
        statements.clear()

        new = make_dataset(
            study_uid=studies[1].StudyInstanceUID, series_uid=studies[1].SeriesInstanceUID
        )
        await store_datasets(services, tmp_path / "store", new)
        replaced = await services.store.store_instances(
            Body(tmp_path / "replace", [to_bytes(studies[2])]),
            study_uid=None,
            upsert=True,
            api_version=2,
            base_url=BASE_URL,
            external_metadata=(),
            partition=1,
        )
        assert len(replaced.stored) == 1
        key = InstanceKey(
            studies[2].StudyInstanceUID,
            studies[2].SeriesInstanceUID,
            studies[2].SOPInstanceUID,
            partition=1,
        )
        current = await services.backend.index.get_instance(key)
        assert current is not None
        committed = await services.backend.index.commit_versions(
            [
                NewVersion(
                    instance=stored_instance(key, study={"PatientID": "changed"}),
                    blob_key="bulk-update-version",
                    based_on=current.watermark,
                )
            ]
        )
        assert committed.committed == (key,)
        first = studies[0]
        deleted = await services.delete.delete(
            first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID, partition=1
        )
        assert deleted == 1
        assert await services.delete.delete(first.StudyInstanceUID, partition=1) == 1
        assert (
            await services.delete.delete(
                studies[1].StudyInstanceUID, studies[1].SeriesInstanceUID, partition=1
            )
            == 2
        )

    assert len(statements) > 20, "the trace saw the writes"
    assert _whole_reads(tmp_path / "data" / "index.sqlite", statements) == {}


async def test_workitem_create_update_and_selective_search_read_no_table_whole(
    tmp_path: Path, statements: list[str]
) -> None:
    """UPS-RS: a create, a replace (each rewrites the workitem's keys) and a search by a
    selective value, which starts from that value's keys (``RARE_WORKITEM_ROWS``)."""
    db = SqliteDatabase(tmp_path / "index.sqlite")
    store = SqliteWorkitemStore(db)
    try:
        for n in range(3):
            dataset = {"00100020": {"vr": "LO", "Value": [f"P{n}"]}}
            await store.create_workitem(f"1.2.{n}", dataset, partition=1 + n % 2)
        record = await store.get_workitem("1.2.0", partition=1)
        assert record is not None
        changed = {"00100020": {"vr": "LO", "Value": ["Q0"]}}
        await store.replace_workitem("1.2.0", changed, partition=1, version=record.version)
        query = parse_workitem_query([("PatientID", "Q0")], partition=1)
        assert [r.uid for r in await store.search_workitems(query)] == ["1.2.0"]
    finally:
        db.close()
    assert len(statements) > 10, "the trace saw the writes"
    assert _whole_reads(tmp_path / "index.sqlite", statements) == {}
