"""The SQLite workitem search compiler agrees with the reference matcher.

Random worklists (names with accents and case, IDs, several accession numbers per workitem,
start date-times, states) and random queries (exact, wildcard, range, fuzzy, paths through
sequences, paging) are stored through the real ``SqliteWorkitemStore`` and searched with its
compiled SQL by either route (newest first, or from a selective condition's keys); the page
must equal what ``query.workitems.workitem_matches`` selects, in order. The same workitems,
under the same UIDs, are stored in a second partition too, which no search of the first may
return.
(The Cosmos adapter is held to the same reference by ``tests/contract/test_workitem_store``.)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicom_core.query.workitems import parse_workitem_query, workitem_matches
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_workitems import SqliteWorkitemStore

NAMES = ["Müller^Hans", "muller^anna", "Doe^John", "DOE^Jane", "Smith"]
WORDS = ["ACC1", "acc2", "X-1", "RP"]
STATES = ["SCHEDULED", "IN PROGRESS", "COMPLETED"]
TIMES = ["20260101", "20260101120000", "20260215083000", "20261231235959"]


@st.composite
def workitems(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": draw(st.sampled_from(NAMES))}]},
        "00100020": {"vr": "LO", "Value": [draw(st.sampled_from(WORDS))]},
        "00741000": {"vr": "CS", "Value": [draw(st.sampled_from(STATES))]},
        "00404005": {"vr": "DT", "Value": [draw(st.sampled_from(TIMES))]},
        "0040A370": {
            "vr": "SQ",
            "Value": [
                {"00080050": {"vr": "SH", "Value": [a]}}
                for a in draw(st.lists(st.sampled_from(WORDS), max_size=3))
            ],
        },
    }


CONDITIONS = st.sampled_from(
    [
        ("PatientName", "muller^hans"),
        ("PatientName", "DOE*"),
        ("PatientName", "do"),
        ("PatientName", "j"),
        ("PatientID", "acc?"),
        ("PatientID", "X-1"),
        ("ProcedureStepState", "*PROGRESS"),
        ("ProcedureStepState", "scheduled"),
        ("ScheduledProcedureStepStartDateTime", "20260101"),
        ("ScheduledProcedureStepStartDateTime", "20260102-"),
        ("ScheduledProcedureStepStartDateTime", "-20260215"),
        ("ReferencedRequestSequence.AccessionNumber", "acc1"),
        ("0040A370.00080050", "A*"),
        ("0040A370.00080050", "*-?"),
    ]
)


@st.composite
def queries(draw: st.DrawFn) -> list[tuple[str, str]]:
    # One condition per attribute: the keyword path and the tag path name the same one.
    same = {"0040A370.00080050": "ReferencedRequestSequence.AccessionNumber"}
    chosen = draw(
        st.lists(CONDITIONS, max_size=3, unique_by=lambda pair: same.get(pair[0], pair[0]))
    )
    if draw(st.booleans()):
        chosen.append(("fuzzymatching", "true"))
    chosen.append(("limit", str(draw(st.integers(1, 6)))))
    chosen.append(("offset", str(draw(st.integers(0, 4)))))
    return chosen


async def _check(
    items: list[dict[str, Any]], query_pairs: list[tuple[str, str]], rare_rows: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = SqliteDatabase(Path(tmp) / "index.sqlite")
        try:
            # rare_rows: 0 never starts from a condition's keys, 10**9 always does (from the
            # fewest), 2 only from a condition with one key or none in the partition.
            store = SqliteWorkitemStore(db, rare_rows=rare_rows)
            for n, dataset in enumerate(reversed(items)):  # the same UIDs, another partition
                await store.create_workitem(f"1.2.{n + 1}", dataset, partition=2)
            for n, dataset in enumerate(items):
                await store.create_workitem(f"1.2.{n + 1}", dataset, partition=1)
            query = parse_workitem_query(query_pairs, partition=1)
            newest_first = [(f"1.2.{n + 1}", d) for n, d in enumerate(items)][::-1]
            expected = [uid for uid, d in newest_first if workitem_matches(query, d)]
            expected = expected[query.offset : query.offset + query.limit]
            found = [record.uid for record in await store.search_workitems(query)]
            assert found == expected, query_pairs
        finally:
            db.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(workitems(), max_size=8),
    query_pairs=queries(),
    rare_rows=st.sampled_from([0, 2, 10**9]),
)
def test_sqlite_workitem_search_matches_the_reference(
    items: list[dict[str, Any]], query_pairs: list[tuple[str, str]], rare_rows: int
) -> None:
    asyncio.run(_check(items, query_pairs, rare_rows))
