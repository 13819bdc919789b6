"""Study and series summaries kept up to date by stores equal ones recomputed from scratch.

A new instance is counted into the summaries incrementally (``_add_to_summaries``); upserts,
deletes and out-of-order commits recompute them (``_refresh_summaries``). Whatever the mix,
the rows QIDO reads must be exactly what a full recount gives.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicom_core.domain.model import InstanceKey, StoredInstance
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from tests.support.index_rows import stored_instance

STUDIES = ("1.2.3.1", "1.2.3.2")
SERIES = ("1.2.4.1", "1.2.4.2", "1.2.4.3")
SOPS = ("1.2.5.1", "1.2.5.2", "1.2.5.3", "1.2.5.4")

store_op = st.tuples(
    st.just("store"),
    st.sampled_from(STUDIES),
    st.sampled_from(SERIES),
    st.sampled_from(SOPS),
    st.sampled_from(["CT", "MR", "", None]),
    st.sampled_from(["Doe^Jane", "Roe^Rich", None]),
)
delete_op = st.tuples(
    st.just("delete"),
    st.sampled_from(STUDIES),
    st.sampled_from([*SERIES, None]),
    st.sampled_from([*SOPS, None]),
)
# Two reservations committed in the opposite order: the later reservation commits first.
crossed_op = st.tuples(
    st.just("crossed"), st.sampled_from(STUDIES), st.sampled_from(SERIES), st.just(None)
)


def stored(key: InstanceKey, modality: str | None, patient: str | None) -> StoredInstance:
    return stored_instance(key, study={"PatientName": patient}, series={"Modality": modality})


def summaries(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    tables = {}
    for table, order in (("study", "study_uid"), ("series", "study_uid, series_uid")):
        columns = [
            row[1] for row in conn.execute(f"PRAGMA table_info({table})") if row[1] != "updated_at"
        ]
        tables[table] = conn.execute(
            f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"
        ).fetchall()
    return tables


def apply(index: SqliteIndexStore, db: SqliteDatabase, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "store":
        _, study, series, sop, modality, patient = op
        key = InstanceKey(study, series, sop, partition=1)
        with db.transaction() as conn:
            reservation = index.reserve(conn, key, upsert=True)
            index.finish(conn, reservation, stored(key, modality, patient))
    elif kind == "delete":
        _, study, series, sop = op
        if series is None:
            sop = None
        index._delete(1, study, series, sop)
    else:
        _, study, series, _ = op
        first, second = (
            InstanceKey(study, series, "9.1", partition=1),
            InstanceKey(study, series, "9.2", partition=1),
        )
        early = index._begin(first, True)
        late = index._begin(second, True)
        index._commit(late, stored(second, "US", "Late^Last"))
        index._commit(early, stored(first, "XA", "Early^First"))


def recounted(db: SqliteDatabase, index: SqliteIndexStore) -> dict[str, list[tuple[Any, ...]]]:
    """The summaries recomputed from scratch, on a copy so the database under test is kept."""
    copy = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db.connection().backup(copy)
        pairs = copy.execute(
            "SELECT DISTINCT study_uid, series_uid FROM instance WHERE status = 1"
        ).fetchall()
        copy.execute("BEGIN")
        copy.execute("DELETE FROM series")
        copy.execute("DELETE FROM study")
        for study, series in pairs:
            index._refresh_summaries(copy, 1, study, series)
        copy.execute("COMMIT")
        return summaries(copy)
    finally:
        copy.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(store_op, store_op, delete_op, crossed_op), min_size=1, max_size=25))
def test_summaries_match_a_full_recount(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = SqliteDatabase(Path(tmp) / "index.sqlite")
        index = SqliteIndexStore(db)
        try:
            for step, op in enumerate(ops):
                apply(index, db, op)
                assert summaries(db.connection()) == recounted(db, index), f"after step {step}"
        finally:
            db.close()
