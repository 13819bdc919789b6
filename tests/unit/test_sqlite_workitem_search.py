"""``SqliteWorkitemStore.search_workitems``: which route a search takes, and its plan.

A worklist keeps every workitem it ever had, most of them COMPLETED, so the searches a
worklist client repeats (the SCHEDULED ones, one patient's) match few of them. Those must
start from the matching keys, not test every workitem newest first; the results are the same
either way (the property test draws both routes against the reference matcher).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dicom_core.query.workitems import parse_workitem_query
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_workitems import (
    SqliteWorkitemStore,
    compile_workitem_search,
    workitem_probes,
)
from tests.support.sql_trace import trace_statements

_FROM_KEYS = "w.workitem_key IN (SELECT v.workitem_key FROM workitem_value v"


def _workitem(patient_id: str, state: str) -> dict[str, Any]:
    return {
        "00100020": {"vr": "LO", "Value": [patient_id]},
        "00741000": {"vr": "CS", "Value": [state]},
    }


@pytest.fixture()
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the index's connections run, with its values bound."""
    return trace_statements(monkeypatch)


async def test_a_selective_condition_starts_the_search_from_its_keys(
    tmp_path: Path, statements: list[str]
) -> None:
    db = SqliteDatabase(tmp_path / "index.sqlite")
    store = SqliteWorkitemStore(db, rare_rows=4)
    try:
        for n in range(6):
            state = "SCHEDULED" if n in (1, 4) else "COMPLETED"
            await store.create_workitem(f"1.2.{n}", _workitem(f"P{n % 2}", state), partition=1)
        # Another partition's keys do not count: it has SCHEDULED and P0 workitems galore.
        for n in range(6):
            await store.create_workitem(f"1.2.{n}", _workitem("P0", "SCHEDULED"), partition=2)

        async def search(*pairs: tuple[str, str]) -> tuple[list[str], bool]:
            statements.clear()
            found = await store.search_workitems(parse_workitem_query(pairs, partition=1))
            return [r.uid for r in found], any(_FROM_KEYS in sql for sql in statements)

        # Two SCHEDULED keys in partition 1, below the limit of 4: from them.
        assert await search(("ProcedureStepState", "SCHEDULED")) == (["1.2.4", "1.2.1"], True)
        # Four COMPLETED keys: not below 4, so newest first.
        assert await search(("ProcedureStepState", "COMPLETED")) == (
            ["1.2.5", "1.2.3", "1.2.2", "1.2.0"],
            False,
        )
        # Four COMPLETED keys and three P1 keys: from P1's, the state tested on each.
        assert await search(("ProcedureStepState", "COMPLETED"), ("PatientID", "P1")) == (
            ["1.2.5", "1.2.3"],
            True,
        )
        assert await search(("PatientID", "P0"), ("limit", "1"), ("offset", "1")) == (
            ["1.2.2"],
            True,
        )
        # A wildcard is never counted (no index seeks it): newest first, whatever its matches.
        assert await search(("PatientID", "P0*")) == (["1.2.4", "1.2.2", "1.2.0"], False)
    finally:
        db.close()


def test_the_route_from_keys_reads_only_the_matching_workitems(tmp_path: Path) -> None:
    """Its plan seeks the workitems by key: the partition is a filter there, or SQLite would
    walk the partition's index and test the list on every workitem."""
    query = parse_workitem_query(
        [("ProcedureStepState", "SCHEDULED"), ("PatientID", "P1")], partition=1
    )
    [(position, _, _), (_, _, _)] = workitem_probes(query)
    sql, params = compile_workitem_search(query, start_from=position)
    db = SqliteDatabase(tmp_path / "index.sqlite")
    try:
        plan = [row[3] for row in db.connection().execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    finally:
        db.close()
    assert plan[0] == "SEARCH w USING INTEGER PRIMARY KEY (rowid=?)", plan
    keys = "workitem_value_by_partition (partition_key=? AND path=? AND value=?)"
    assert f"SEARCH v USING COVERING INDEX {keys}" in plan, plan
