"""A local database made before a schema change opens with the change applied and its data
carried over (``UPGRADES`` in ``dicom_core/storage/local/schema.py``)."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from dicom_core.domain.model import InstanceKey
from dicom_core.query.conditions import QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.query.workitems import parse_workitem_query
from dicom_core.storage.local import sqlite_db
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from dicom_core.storage.local.sqlite_workitems import SqliteWorkitemStore

# The change feed and instance tables as the first schema made them (no current_watermark).
OLD_TABLES = """
CREATE TABLE instance (
    watermark INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL, sop_uid TEXT NOT NULL, status INTEGER NOT NULL,
    blob_key TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE change_feed (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL, action TEXT NOT NULL,
    study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, sop_uid TEXT NOT NULL,
    watermark INTEGER NOT NULL
);
"""


def test_an_old_change_feed_gets_each_entrys_current_version(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(OLD_TABLES)
        now = "2026-01-01T00:00:00.000000Z"
        # Instance 1.1 stored (wm 1) and replaced by a PUT (wm 3); 1.2 stored then deleted.
        conn.execute("INSERT INTO instance VALUES (3, 's', 'r', '1.1', 1, 'k3', ?, ?)", (now, now))
        conn.executemany(
            "INSERT INTO change_feed (timestamp, action, study_uid, series_uid, sop_uid,"
            " watermark) VALUES (?, ?, 's', 'r', ?, ?)",
            [
                (now, "create", "1.1", 1),
                (now, "create", "1.2", 2),
                (now, "update", "1.1", 3),
                (now, "delete", "1.2", 2),
            ],
        )
        conn.commit()
    db = SqliteDatabase(path)
    try:
        rows = (
            db.connection()
            .execute(
                "SELECT sop_uid, watermark, current_watermark FROM change_feed ORDER BY sequence"
            )
            .fetchall()
        )
        assert rows == [("1.1", 1, 3), ("1.2", 2, None), ("1.1", 3, 3), ("1.2", 2, None)]
        names = {r[0] for r in db.connection().execute("SELECT name FROM sqlite_master")}
        assert {"change_feed_by_instance", "external_metadata_study_delete_v2"} <= names
        assert "external_metadata_study_delete" not in names
    finally:
        db.close()
    again = SqliteDatabase(path)  # opening twice upgrades once
    again.close()


# The study summary as schema version 1 made it (no expires_at).
OLD_STUDY = """
CREATE TABLE study (
    study_uid TEXT PRIMARY KEY, latest_watermark INTEGER NOT NULL, patient_name TEXT,
    patient_id TEXT, patient_birth_date TEXT, accession_number TEXT,
    referring_physician_name TEXT, study_date TEXT, study_time TEXT, study_description TEXT,
    patient_name_norm TEXT, referring_physician_name_norm TEXT, patient_id_fold TEXT,
    accession_number_fold TEXT, study_description_fold TEXT, modalities TEXT,
    num_series INTEGER NOT NULL, num_instances INTEGER NOT NULL, updated_at TEXT NOT NULL
);
"""


async def test_an_old_study_table_gets_an_expiry_and_its_studies_never_expire(
    tmp_path: Path,
) -> None:
    path = tmp_path / "index.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(OLD_STUDY)
        conn.execute(
            "INSERT INTO study (study_uid, latest_watermark, num_series, num_instances,"
            " updated_at) VALUES ('s', 1, 1, 1, '2026-01-01T00:00:00.000000Z')"
        )
        conn.commit()
    db = SqliteDatabase(path)
    try:
        conn = db.connection()
        assert conn.execute("SELECT study_uid, expires_at FROM study").fetchall() == [("s", None)]
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "study_by_expiry" in names
        index = SqliteIndexStore(db)
        assert await index.expired_studies(datetime(9999, 1, 1, tzinfo=UTC), 10) == []
    finally:
        db.close()


BEFORE_PARTITIONS = Path(__file__).with_name("sqlite_schema_before_partitions.sql")
NOW = "2026-01-01T00:00:00.000000Z"


def _old_database(path: Path) -> None:
    """A database as the schema before data partitions made it: one stored instance
    (watermark 5, later ones deleted: the sequence stands at 9) with its summaries, an
    extended query tag value, external metadata and a change feed entry."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(BEFORE_PARTITIONS.read_text())
        conn.execute(
            "INSERT INTO instance (watermark, study_uid, series_uid, sop_uid, status, blob_key,"
            " metadata, patient_name_norm, created_at, updated_at)"
            " VALUES (5, 's', 'r', 'i', 1, 's/r/i_5.dcm', '{}', 'doe^jane', ?, ?)",
            (NOW, NOW),
        )
        conn.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'instance'")
        conn.execute(
            "INSERT INTO series (study_uid, series_uid, latest_watermark, num_instances,"
            " updated_at) VALUES ('s', 'r', 5, 1, ?)",
            (NOW,),
        )
        conn.execute(
            "INSERT INTO study (study_uid, latest_watermark, patient_name_norm, num_series,"
            " num_instances, updated_at) VALUES ('s', 5, 'doe^jane', 1, 1, ?)",
            (NOW,),
        )
        conn.execute(
            "INSERT INTO extended_query_tag (tag_key, path, vr, level, status, query_status,"
            " created_at) VALUES (1, '00101010', 'AS', 'Study', 'Ready', 'Enabled', ?)",
            (NOW,),
        )
        conn.execute(
            "INSERT INTO eqt_value (tag_key, study_uid, watermark, text_value, norm_value)"
            " VALUES (1, 's', 5, '042Y', '042y')"
        )
        conn.execute(
            "INSERT INTO external_metadata (study_uid, tag, vr, text_value, norm_value)"
            " VALUES ('s', '00091001', 'LO', 'v', 'v')"
        )
        conn.execute(
            "INSERT INTO change_feed (timestamp, action, study_uid, series_uid, sop_uid,"
            " watermark, current_watermark) VALUES (?, 'create', 's', 'r', 'i', 5, 5)",
            (NOW,),
        )
        conn.commit()


async def test_data_stored_before_partitions_is_microsoft_default_s_after_the_upgrade(
    tmp_path: Path,
) -> None:
    path = tmp_path / "index.sqlite"
    _old_database(path)
    db = SqliteDatabase(path)
    try:
        conn = db.connection()
        for table in ("instance", "series", "study", "eqt_value", "external_metadata"):
            assert conn.execute(f"SELECT DISTINCT partition_key FROM {table}").fetchall() == [
                (1,)
            ], table
        assert conn.execute("SELECT partition_key FROM change_feed").fetchall() == [(1,)]
        index = SqliteIndexStore(db)
        record = await index.get_instance(InstanceKey("s", "r", "i", partition=1))
        assert record is not None and record.watermark == 5
        # Watermarks deleted before the upgrade are never given again.
        fresh = await index.begin_instance(InstanceKey("s", "r", "j", partition=1), upsert=False)
        assert fresh.watermark == 10
        await index.abort_instance(fresh)
        # The same UIDs may now be stored in another partition.
        other = await index.begin_instance(InstanceKey("s", "r", "i", partition=2), upsert=False)
        assert other.watermark == 11
        await index.abort_instance(other)
        # The study text index still points at the study (wildcard search through it).
        query = parse_query([("PatientName", "*jane*")], QueryResource.ALL_STUDIES, partition=1)
        assert [m.study_uid for m in await index.search(query)] == ["s"]
        # The triggers came back: deleting the study takes its tag values and metadata.
        assert await index.delete_instances("s", partition=1) == ["s/r/i_5.dcm"]
        assert conn.execute("SELECT count(*) FROM eqt_value").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM external_metadata").fetchone() == (0,)
    finally:
        db.close()
    again = SqliteDatabase(path)  # opening again upgrades nothing
    try:
        assert again.connection().execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'instance'"
        ).fetchone() == (11,)
    finally:
        again.close()


# The workitem table before data partitions: a UID unique across the whole database.
OLD_WORKITEM = """
CREATE TABLE workitem (
    workitem_key INTEGER PRIMARY KEY AUTOINCREMENT, workitem_uid TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL, transaction_uid TEXT, patient_name TEXT, patient_name_norm TEXT,
    patient_id TEXT, study_uid TEXT, scheduled_start_datetime TEXT, dataset BLOB NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE workitem_value (
    workitem_key INTEGER NOT NULL, path TEXT NOT NULL, value TEXT NOT NULL
);
"""


def _old_workitem(conn: sqlite3.Connection, key: int, uid: str, patient: str) -> None:
    dataset = {"00100020": {"vr": "LO", "Value": [patient]}}
    conn.execute(
        "INSERT INTO workitem (workitem_key, workitem_uid, state, patient_id, dataset,"
        " created_at, updated_at, version) VALUES (?, ?, 'SCHEDULED', ?, ?, ?, ?, 3)",
        (key, uid, patient, orjson.dumps(dataset), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    )
    conn.execute(
        "INSERT INTO workitem_value (workitem_key, path, value) VALUES (?, '00100020', ?)",
        (key, patient.lower()),
    )


async def test_old_workitems_become_the_default_partitions_with_their_keys_and_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(OLD_WORKITEM)
        _old_workitem(conn, 2, "1.2.2", "P2")
        _old_workitem(conn, 5, "1.2.5", "P5")
        # Keys 6 to 9 were given to workitems since gone: the sequence, not the largest
        # key, says which key comes next.
        conn.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'workitem'")
        conn.commit()
    db = SqliteDatabase(path)
    try:
        conn = db.connection()
        rows = conn.execute(
            "SELECT workitem_key, partition_key, workitem_uid, version FROM workitem"
            " ORDER BY workitem_key"
        ).fetchall()
        assert rows == [(2, 1, "1.2.2", 3), (5, 1, "1.2.5", 3)]
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "workitem_by_partition" in names and "workitem_new" not in names
        sequence = conn.execute("SELECT name, seq FROM sqlite_sequence WHERE name LIKE 'work%'")
        assert sequence.fetchall() == [("workitem", 9)]

        store = SqliteWorkitemStore(db)
        record = await store.get_workitem("1.2.5", partition=1)
        assert record is not None and record.sequence == 5 and record.version == "3"
        found = await store.search_workitems(
            parse_workitem_query([("PatientID", "P2")], partition=1)
        )
        assert [r.uid for r in found] == ["1.2.2"]  # its workitem_value rows still name it
        # The UID is now unique per partition only, and new keys follow the sequence.
        await store.create_workitem("1.2.5", {}, partition=7)
        again = await store.get_workitem("1.2.5", partition=7)
        assert again is not None and again.sequence == 10
    finally:
        db.close()
    # A second open finds partition_key and upgrades nothing: a statement that ran would fail.
    monkeypatch.setattr(
        sqlite_db, "UPGRADES", (("workitem", "partition_key", ("SELECT no_such_function()",)),)
    )
    SqliteDatabase(path).close()


async def test_workitem_values_of_an_older_database_take_their_workitems_partitions(
    tmp_path: Path,
) -> None:
    """Values written before ``workitem_value`` had a partition column (and its index by
    partition, path and value) carry their workitem's partition after the upgrade, so a
    search that counts and lists one partition's keys still finds them; a value whose
    workitem is gone is dropped rather than left without a partition."""
    path = tmp_path / "index.sqlite"
    db = SqliteDatabase(path)
    store = SqliteWorkitemStore(db)
    await store.create_workitem("1.2.1", {"00100020": {"vr": "LO", "Value": ["P7"]}}, partition=7)
    await store.create_workitem("1.2.2", {"00100020": {"vr": "LO", "Value": ["P1"]}}, partition=1)
    db.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as the table was made before
        conn.executescript(
            """
            DROP INDEX workitem_value_by_partition;
            ALTER TABLE workitem_value DROP COLUMN partition_key;
            CREATE INDEX workitem_value_by_path ON workitem_value (path, value);
            -- A value whose workitem is gone: it names nothing, and must not stop the upgrade.
            INSERT INTO workitem_value (workitem_key, path, value) VALUES (99, '00100020', 'x');
            """
        )
    db = SqliteDatabase(path)
    try:
        conn = db.connection()
        rows = conn.execute(
            "SELECT w.workitem_uid, v.partition_key FROM workitem_value v"
            " JOIN workitem w ON w.workitem_key = v.workitem_key ORDER BY w.workitem_uid"
        ).fetchall()
        assert rows == [("1.2.1", 7), ("1.2.2", 1)]
        orphans = conn.execute("SELECT count(*) FROM workitem_value WHERE workitem_key = 99")
        assert orphans.fetchone() == (0,)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "workitem_value_by_partition" in names and "workitem_value_by_path" not in names
        # Counted below any limit, so the search starts from the partition's keys.
        store = SqliteWorkitemStore(db, rare_rows=10**9)
        found = await store.search_workitems(
            parse_workitem_query([("PatientID", "P7")], partition=7)
        )
        assert [r.uid for r in found] == ["1.2.1"]
        assert (
            await store.search_workitems(parse_workitem_query([("PatientID", "P7")], partition=1))
            == []
        )
    finally:
        db.close()


def test_a_database_of_a_newer_schema_is_not_opened_and_an_older_one_is_raised(
    tmp_path: Path,
) -> None:
    """A newer server's database may hold rows this code would keep wrong (schema 2: each
    workitem value's partition): it is refused. An older one is upgraded and then says so."""
    path = tmp_path / "index.sqlite"
    SqliteDatabase(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (sqlite_db.SCHEMA_VERSION,)
        ]
        conn.execute("UPDATE schema_version SET version = 1")
        conn.commit()
    SqliteDatabase(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (sqlite_db.SCHEMA_VERSION,)
        ]
        conn.execute("UPDATE schema_version SET version = ?", (sqlite_db.SCHEMA_VERSION + 1,))
        conn.commit()
    with pytest.raises(sqlite_db.SchemaTooNew, match="written by a newer version"):
        SqliteDatabase(path)
