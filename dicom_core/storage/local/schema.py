"""The SQLite index schema of the local backend, for the whole service.

Every row of an instance, its summaries, its extended query tag values and errors, its
study's external metadata and its change feed entries carries ``partition_key``: the data
partition it belongs to (1, Microsoft.Default, where partitions are off), which leads their
keys, so the same UIDs may live in two partitions and nothing keyed by UIDs alone crosses
between them.

Tables and why they exist:
- ``instance``: one row per stored (status 1), reserved (status 0) or original (status 2: the
  first version, kept when a bulk update rewrote the instance) instance version. The
  ``watermark`` is a monotonic id that names the stored file and orders "latest wins". It keeps
  the precomputed DICOM JSON, the frame byte ranges and the instance's own copies of the
  searchable attributes (so study/series summaries can be recomputed after a delete).
- ``series`` and ``study``: summaries that QIDO searches, holding the attributes of the latest
  stored instance, counts and ModalitiesInStudy; recomputed in the same transaction as every
  commit and delete. A study also holds its expiry (``expires_at``: when the expiry sweep
  deletes it, as the last store to it asked; NULL for never), indexed for the sweep.
- ``extended_query_tag``, ``eqt_value``, ``eqt_error``: user-added query tags, their indexed
  values per level and the reindex errors.
- ``external_metadata``: study-level values sent with STOW headers (msdicom-meta-*).
- ``workitem`` and ``workitem_value``: UPS-RS workitems and their searchable values (including
  sequence paths such as ReferencedRequestSequence.AccessionNumber). A workitem UID is unique
  per data partition (``partition_key``), as in Azure.
- ``operation``: long-running operations (reindex, bulk update) with their checkpoint, so
  they resume; ``operation_hold``: the resources (studies) an unfinished one holds.
- ``change_feed``: the log of creates, updates and deletes, each entry with the version its
  instance has now.
- ``cursor``: how far the jobs that follow the change feed got (event publishing).
- ``data_partition``: the registry of data partitions (``sqlite_partitions``), seeded with
  ``Microsoft.Default`` (key 1). Not named ``partition``: that is an SQL keyword (window
  functions) and would need quoting everywhere.
- ``job``: the local durable job queue (visible_at leases give at-least-once delivery).
- ``blob_debt``: the files a delete's or a commit's transaction stopped naming
  (``blob_keys``, a JSON list; ``recorded_at`` in epoch milliseconds), kept until they were
  handed to the janitor (``ports.index.BlobDebt``), so a process that dies in between leaves
  a row that the debt sweep settles, rather than files for good.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME, name_key
from dicom_core.query.attributes import SUMMARY_TAGS

SCHEMA_VERSION = 2
"""The schema this code writes, stored in ``schema_version`` and raised to it on every open
that upgrades (``sqlite_db``). A database at a higher version was written by newer code, which
may keep rows this code would write wrong (2: ``workitem_value.partition_key``, which an
older writer would leave at 1 for every partition's workitems): it is not opened.
"""

# Searchable attribute columns, by keyword. Shared by the instance row (its own values) and
# the study/series summaries (the latest instance's values).
STUDY_COLUMNS: dict[str, str] = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "PatientBirthDate": "patient_birth_date",
    "AccessionNumber": "accession_number",
    "ReferringPhysicianName": "referring_physician_name",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "StudyDescription": "study_description",
}
# Matching keys (dicom_core.query.matching.index_key): PN normalised, other strings case-folded.
STUDY_NORMALIZED_COLUMNS: dict[str, str] = {
    "PatientName": "patient_name_norm",
    "ReferringPhysicianName": "referring_physician_name_norm",
    "PatientID": "patient_id_fold",
    "AccessionNumber": "accession_number_fold",
    "StudyDescription": "study_description_fold",
}
SERIES_COLUMNS: dict[str, str] = {
    "Modality": "modality",
    "PerformedProcedureStepStartDate": "pps_start_date",
    "ManufacturerModelName": "manufacturer_model_name",
}
SERIES_NORMALIZED_COLUMNS: dict[str, str] = {
    "Modality": "modality_fold",
    "ManufacturerModelName": "manufacturer_model_name_fold",
}
INSTANCE_COLUMNS: dict[str, str] = {
    "InstanceNumber": "instance_number",
}

# The study text keys the trigram index covers: study column -> index column.
STUDY_TEXT_TABLE = "study_text"
STUDY_TEXT_COLUMNS: dict[str, str] = {
    "patient_name_norm": "patient_name",
    "referring_physician_name_norm": "referring_physician_name",
    "patient_id_fold": "patient_id",
    "accession_number_fold": "accession_number",
    "study_description_fold": "study_description",
}

_summary_tags = ", ".join(f"'{tag}'" for tag in sorted(SUMMARY_TAGS))

_text_columns = ", ".join(STUDY_TEXT_COLUMNS.values())
_text_values = ", ".join(f"' ' || new.{c}" for c in STUDY_TEXT_COLUMNS)
_text_changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in STUDY_TEXT_COLUMNS)
_text_updates = ", ".join(f"{t} = ' ' || new.{c}" for c, t in STUDY_TEXT_COLUMNS.items())

# The workitem table, in one place for the DDL and the upgrade that rebuilds an older one.
# workitem_key names the workitem's workitem_value rows; a UID is unique per data partition
# (Azure's unique index is on (PartitionKey, WorkitemUid)). Rows made before partitions
# existed are Microsoft.Default's.
_WORKITEM_COLUMNS = f"""
    workitem_key INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key INTEGER NOT NULL DEFAULT {DEFAULT_PARTITION_KEY},
    workitem_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    transaction_uid TEXT,
    patient_name TEXT,
    patient_name_norm TEXT,
    patient_id TEXT,
    study_uid TEXT,
    scheduled_start_datetime TEXT,
    dataset BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    UNIQUE (partition_key, workitem_uid)
"""
# The columns a workitem table had before partition_key, all copied by the rebuild.
_WORKITEM_OLD_COLUMNS = (
    "workitem_key, workitem_uid, state, transaction_uid, patient_name, patient_name_norm,"
    " patient_id, study_uid, scheduled_start_datetime, dataset, created_at, updated_at, version"
)

_study_cols = ",\n    ".join(
    f"{c} TEXT" for c in [*STUDY_COLUMNS.values(), *STUDY_NORMALIZED_COLUMNS.values()]
)
_series_cols = ",\n    ".join(
    f"{c} TEXT" for c in [*SERIES_COLUMNS.values(), *SERIES_NORMALIZED_COLUMNS.values()]
)

DDL = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
-- A random name given to the database when it is created: metadata versions (ETags) start
-- with it, so a re-created or restored database, whose watermarks start again, never answers
-- 304 to an ETag of another database's content.
CREATE TABLE IF NOT EXISTS database_identity (id TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS instance (
    watermark INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key INTEGER NOT NULL DEFAULT 1,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    status INTEGER NOT NULL,
    original_watermark INTEGER,
    sop_class_uid TEXT,
    transfer_syntax_uid TEXT,
    blob_key TEXT NOT NULL DEFAULT '',
    file_size INTEGER,
    number_of_frames INTEGER,
    frames BLOB,
    metadata BLOB,
    {_study_cols},
    {_series_cols},
    instance_number INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (partition_key, study_uid, series_uid, sop_uid, status)
);

CREATE TABLE IF NOT EXISTS series (
    partition_key INTEGER NOT NULL DEFAULT 1,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    latest_watermark INTEGER NOT NULL,
    {_series_cols},
    num_instances INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (partition_key, study_uid, series_uid)
);

CREATE TABLE IF NOT EXISTS study (
    partition_key INTEGER NOT NULL DEFAULT 1,
    study_uid TEXT NOT NULL,
    latest_watermark INTEGER NOT NULL,
    {_study_cols},
    modalities TEXT,
    num_series INTEGER NOT NULL,
    num_instances INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT,
    PRIMARY KEY (partition_key, study_uid)
);

-- QIDO wildcard and fuzzy matching on the study's text keys, as a trigram index (FTS5) kept in
-- step with the study summaries by triggers. Each column holds ' ' || key, so a fuzzy word can
-- be found at the start of any name component ('* word*'). sqlite_query.py uses it only to
-- narrow the candidates; the exact GLOB on the study row still decides.
CREATE VIRTUAL TABLE IF NOT EXISTS {STUDY_TEXT_TABLE} USING fts5(
    {_text_columns},
    tokenize = 'trigram case_sensitive 1'
);

-- QIDO results mostly carry the default and "includefield=all" attributes; this keeps just
-- those of each stored instance's DICOM JSON (a few hundred bytes instead of kilobytes), so
-- a page of 100 results parses little. Written by trigger when the metadata is.
CREATE TABLE IF NOT EXISTS instance_summary (
    watermark INTEGER PRIMARY KEY,
    doc TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS extended_query_tag (
    tag_key INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    vr TEXT NOT NULL,
    private_creator TEXT,
    level TEXT NOT NULL,
    status TEXT NOT NULL,
    query_status TEXT NOT NULL,
    error_count INTEGER NOT NULL DEFAULT 0,
    operation_id TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS eqt_value (
    tag_key INTEGER NOT NULL,
    partition_key INTEGER NOT NULL DEFAULT 1,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL DEFAULT '',
    sop_uid TEXT NOT NULL DEFAULT '',
    watermark INTEGER NOT NULL,
    text_value TEXT,
    num_value REAL,
    norm_value TEXT,
    PRIMARY KEY (tag_key, partition_key, study_uid, series_uid, sop_uid)
);
DROP TRIGGER IF EXISTS external_metadata_study_delete;

CREATE TABLE IF NOT EXISTS eqt_error (
    tag_key INTEGER NOT NULL,
    partition_key INTEGER NOT NULL DEFAULT 1,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    created_at TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tag_key, partition_key, study_uid, series_uid, sop_uid)
);

CREATE TABLE IF NOT EXISTS external_metadata (
    partition_key INTEGER NOT NULL DEFAULT 1,
    study_uid TEXT NOT NULL,
    tag TEXT NOT NULL,
    vr TEXT NOT NULL,
    text_value TEXT,
    num_value REAL,
    norm_value TEXT,
    PRIMARY KEY (partition_key, study_uid, tag)
);
CREATE TABLE IF NOT EXISTS external_metadata_tag (
    tag TEXT PRIMARY KEY,
    vr TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS workitem ({_WORKITEM_COLUMNS});
-- partition_key repeats the workitem's, so that a search can count and list the keys of one
-- partition from workitem_value_by_partition alone (sqlite_workitems.RARE_WORKITEM_ROWS).
CREATE TABLE IF NOT EXISTS workitem_value (
    workitem_key INTEGER NOT NULL,
    path TEXT NOT NULL,
    value TEXT NOT NULL,
    partition_key INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS workitem_value_by_workitem
    ON workitem_value (workitem_key, path, value);

CREATE TABLE IF NOT EXISTS operation (
    operation_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    percent_complete INTEGER NOT NULL DEFAULT 0,
    resources TEXT NOT NULL DEFAULT '[]',
    checkpoint TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- The resources an operation holds while it runs (a bulk update, its studies), so that two
-- operations never work on one at once; a row whose operation has finished is free.
CREATE TABLE IF NOT EXISTS operation_hold (
    resource TEXT PRIMARY KEY,
    operation_id TEXT NOT NULL
);

-- The change feed (dicom_core.domain.change_feed). The sequence is allocated inside the
-- write transaction of the change, and SQLite has one writer at a time, so entries become
-- visible in sequence order with no gap: AUTOINCREMENT never reuses a value, and a rolled-back
-- transaction gives its value back. current_watermark is the instance's version now (NULL
-- once it is deleted), set on every entry of the instance by each later change of it.
-- With durable writes the WAL is synced just after the commit, outside the writers' lock, so
-- the feed's reader syncs it too before returning entries (sqlite_change_feed.py): an entry
-- a power cut could still take back (its sequence then given again) is never returned.
CREATE TABLE IF NOT EXISTS change_feed (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key INTEGER NOT NULL DEFAULT 1,
    timestamp TEXT NOT NULL,
    action TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    current_watermark INTEGER
);

-- Named positions of the jobs that follow the change feed (the event publisher's last
-- published sequence), moved forward only, by compare-and-set (sqlite_cursors.py).
CREATE TABLE IF NOT EXISTS cursor (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- Data partitions: key 1 is Microsoft.Default, then 2, 3, ... never reused (AUTOINCREMENT);
-- name is the first spelling stored, name_key the folded form names are compared in
-- (domain/partitions.name_key). In the DDL, not UPGRADES, so older databases get it too.
CREATE TABLE IF NOT EXISTS data_partition (
    partition_key INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
-- created_at as domain/timestamps.utc_timestamp writes it (microseconds; SQLite's clock has
-- milliseconds), like the other partitions'; a seed of the first version had milliseconds.
INSERT OR IGNORE INTO data_partition (partition_key, name, name_key, created_at)
    VALUES ({DEFAULT_PARTITION_KEY}, '{DEFAULT_PARTITION_NAME}',
        '{name_key(DEFAULT_PARTITION_NAME)}', strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z');
UPDATE data_partition SET created_at = substr(created_at, 1, 23) || '000Z'
    WHERE partition_key = {DEFAULT_PARTITION_KEY} AND length(created_at) = 24;

CREATE TABLE IF NOT EXISTS job (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at REAL NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    poison_reason TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_by_queue ON job (queue, poison_reason, visible_at);

-- Poison messages live in "<queue>-poison", as the Functions host's do; databases written
-- before that kept them in their own queue, marked only by poison_reason.
UPDATE job SET queue = queue || '-poison'
    WHERE poison_reason IS NOT NULL AND queue NOT LIKE '%-poison';

CREATE TABLE IF NOT EXISTS blob_debt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key INTEGER NOT NULL,
    study_uid TEXT NOT NULL,
    blob_keys TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blob_debt_by_age ON blob_debt (recorded_at);
"""

#: The tables whose rows belong to a data partition (``partition_key``; 1 is
#: Microsoft.Default), with their identity keys led by it. Databases made before partitions
#: existed have them keyed without it; SQLite cannot change a table's keys, so
#: ``partition_tables`` rebuilds them once, their rows in Microsoft.Default.
PARTITIONED_TABLES: tuple[str, ...] = (
    "instance",
    "series",
    "study",
    "eqt_value",
    "eqt_error",
    "external_metadata",
)
#: The triggers on those tables (dropped with them by a rebuild; AFTER_UPGRADES makes them).
_PARTITIONED_TRIGGERS: tuple[str, ...] = (
    "study_text_insert",
    "study_text_update",
    "study_text_delete",
    "instance_summary_write",
    "instance_summary_delete",
    "eqt_value_instance_delete",
    "external_metadata_study_delete_v2",
)


def _table_ddl(table: str) -> str:
    """The ``CREATE TABLE`` statement of ``table`` in ``DDL``."""
    start = DDL.index(f"CREATE TABLE IF NOT EXISTS {table} (")
    return DDL[start : DDL.index("\n);", start) + 3]


_TABLE_DDL = {table: _table_ddl(table) for table in PARTITIONED_TABLES}


def partition_tables(conn: sqlite3.Connection) -> None:
    """Rebuild the ``PARTITIONED_TABLES`` of a database made before data partitions, in the
    caller's write transaction: each as ``DDL`` declares it now, its rows copied into
    Microsoft.Default.

    What must survive the copy, and how:
    - every column the old table has (an old table may lack later ones: they take their
      defaults); ``rowid`` too, so the study text index (``study_text``, keyed by the study
      row's rowid) still points at the right studies;
    - the instance watermarks' AUTOINCREMENT sequence: watermarks name files, ETags and
      cached documents, so one given before must never be given again, even where its row
      is gone (the new table's sequence starts from the old one's);
    - the triggers, which go with their tables: dropped first (a trigger naming a table
      being renamed would stop the rename) and made again by ``AFTER_UPGRADES``.
    """
    for trigger in _PARTITIONED_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    definitions = {
        str(name): str(sql)
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
        ).fetchall()
    }
    for table in PARTITIONED_TABLES:
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        columns = [str(row[1]) for row in info]
        if "partition_key" in columns:
            continue
        staged = f"{table}_partitioned"
        conn.execute(f"DROP TABLE IF EXISTS {staged}")
        conn.execute(_TABLE_DDL[table].replace(f"IF NOT EXISTS {table} (", f"{staged} ("))
        keys = [row for row in info if row[5]]
        # The rowid is copied unless a column already is it (INTEGER PRIMARY KEY).
        aliased = len(keys) == 1 and str(keys[0][2]).upper() == "INTEGER"
        kept = ", ".join(columns if aliased else ["rowid", *columns])
        conn.execute(f"INSERT INTO {staged} (partition_key, {kept}) SELECT 1, {kept} FROM {table}")
        if "AUTOINCREMENT" in definitions.get(table, "").upper():
            row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
            ).fetchone()
            if row is not None:
                conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (staged,))
                conn.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?, max(?, coalesce("
                    f"(SELECT max(rowid) FROM {staged}), 0)))",
                    (staged, int(row[0])),
                )
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"ALTER TABLE {staged} RENAME TO {table}")


# For databases made before a column existed: when ``column`` is missing from ``table``, its
# steps (SQL statements, or functions of the connection) run, in one write transaction with
# the check (so processes starting together upgrade once), after ``DDL``, in this order.
# ``AFTER_UPGRADES`` then runs every time (idempotent): it holds what names a column an old
# table gains here, which ``DDL`` (run first, on the old tables) cannot.
UPGRADES: tuple[tuple[str, str, tuple[str | Callable[[sqlite3.Connection], None], ...]], ...] = (
    (
        "change_feed",
        "current_watermark",
        (
            "ALTER TABLE change_feed ADD COLUMN current_watermark INTEGER",
            # Every entry of an instance points at its stored version; none once deleted.
            """UPDATE change_feed SET current_watermark = (
                SELECT i.watermark FROM instance i WHERE i.study_uid = change_feed.study_uid
                    AND i.series_uid = change_feed.series_uid
                    AND i.sop_uid = change_feed.sop_uid AND i.status = 1)""",
        ),
    ),
    # Studies stored before expiry existed never expire.
    ("study", "expires_at", ("ALTER TABLE study ADD COLUMN expires_at TEXT",)),
    # Data stored before data partitions existed is Microsoft.Default's.
    (
        "change_feed",
        "partition_key",
        ("ALTER TABLE change_feed ADD COLUMN partition_key INTEGER NOT NULL DEFAULT 1",),
    ),
    # One rebuild for all the tables; an entry per table, so that it runs whichever of them
    # is old (a database may hold some tables of each age), and once (it skips the rebuilt).
    *((table, "partition_key", (partition_tables,)) for table in PARTITIONED_TABLES),
    # Workitem UIDs unique per data partition: a UNIQUE constraint cannot be changed in place,
    # so the table is rebuilt, its workitems becoming Microsoft.Default's. workitem_key is
    # copied as it is (workitem_value rows name it) and the AUTOINCREMENT sequence carried
    # over, so a key is never given twice. Indexes on workitem are made in AFTER_UPGRADES.
    (
        "workitem",
        "partition_key",
        (
            f"CREATE TABLE workitem_new ({_WORKITEM_COLUMNS})",
            f"""INSERT INTO workitem_new (partition_key, {_WORKITEM_OLD_COLUMNS})
                SELECT {DEFAULT_PARTITION_KEY}, {_WORKITEM_OLD_COLUMNS} FROM workitem""",
            "DELETE FROM sqlite_sequence WHERE name = 'workitem_new'",
            """INSERT INTO sqlite_sequence (name, seq)
                SELECT 'workitem_new', seq FROM sqlite_sequence WHERE name = 'workitem'""",
            "DROP TABLE workitem",
            "ALTER TABLE workitem_new RENAME TO workitem",
        ),
    ),
    # Each workitem's values in its partition (after the rebuild above, which gives old
    # workitems theirs). Its index, which names the column, is made in AFTER_UPGRADES. A value
    # whose workitem is gone (nothing deletes one, but a hand may have) names nothing: it goes,
    # or its partition would be NULL and the upgrade fail on every start.
    (
        "workitem_value",
        "partition_key",
        (
            "ALTER TABLE workitem_value ADD COLUMN partition_key INTEGER NOT NULL DEFAULT 1",
            """DELETE FROM workitem_value WHERE NOT EXISTS (SELECT 1 FROM workitem w
                WHERE w.workitem_key = workitem_value.workitem_key)""",
            """UPDATE workitem_value SET partition_key = (SELECT w.partition_key FROM workitem w
                WHERE w.workitem_key = workitem_value.workitem_key)""",
        ),
    ),
)
AFTER_UPGRADES = f"""
-- A partition's keys of one attribute, with the workitems they name: what a selective
-- workitem search counts and starts from. It replaces (path, value), which spanned partitions.
CREATE INDEX IF NOT EXISTS workitem_value_by_partition
    ON workitem_value (partition_key, path, value, workitem_key);
DROP INDEX IF EXISTS workitem_value_by_path;
CREATE INDEX IF NOT EXISTS instance_by_series
    ON instance (partition_key, study_uid, series_uid, status, watermark);
CREATE INDEX IF NOT EXISTS instance_by_sop ON instance (sop_uid);

CREATE INDEX IF NOT EXISTS series_by_uid ON series (series_uid);
CREATE INDEX IF NOT EXISTS series_by_latest ON series (latest_watermark);
CREATE INDEX IF NOT EXISTS series_by_modality ON series (modality);
CREATE INDEX IF NOT EXISTS series_by_modality_key
    ON series (modality_fold, partition_key, study_uid);

-- QIDO's indexes (newest first, and the attributes it seeks) do not lead with the partition:
-- a search filters on it (sqlite_query._partition_clause says why).
CREATE INDEX IF NOT EXISTS study_by_latest ON study (latest_watermark);
CREATE INDEX IF NOT EXISTS study_by_patient_id ON study (patient_id);
CREATE INDEX IF NOT EXISTS study_by_date ON study (study_date);
CREATE INDEX IF NOT EXISTS study_by_accession ON study (accession_number);
CREATE INDEX IF NOT EXISTS study_by_patient_id_key ON study (patient_id_fold);
CREATE INDEX IF NOT EXISTS study_by_accession_key ON study (accession_number_fold);
CREATE INDEX IF NOT EXISTS study_by_patient_name_key ON study (patient_name_norm);
-- The expiry sweep's page (sqlite_index.expired_studies); most studies never expire, so only
-- those that do are in it.
CREATE INDEX IF NOT EXISTS study_by_expiry ON study (expires_at) WHERE expires_at IS NOT NULL;

CREATE TRIGGER IF NOT EXISTS study_text_insert AFTER INSERT ON study BEGIN
    INSERT INTO {STUDY_TEXT_TABLE} (rowid, {_text_columns}) VALUES (new.rowid, {_text_values});
END;
CREATE TRIGGER IF NOT EXISTS study_text_update
    AFTER UPDATE OF {", ".join(STUDY_TEXT_COLUMNS)} ON study
    WHEN {_text_changed}
BEGIN
    UPDATE {STUDY_TEXT_TABLE} SET {_text_updates} WHERE rowid = old.rowid;
END;
CREATE TRIGGER IF NOT EXISTS study_text_delete AFTER DELETE ON study BEGIN
    DELETE FROM {STUDY_TEXT_TABLE} WHERE rowid = old.rowid;
END;

CREATE TRIGGER IF NOT EXISTS instance_summary_write AFTER UPDATE OF metadata ON instance
    WHEN new.metadata IS NOT NULL
BEGIN
    INSERT OR REPLACE INTO instance_summary (watermark, doc)
    SELECT new.watermark, json_group_object(key, json(value))
    FROM json_each(CAST(new.metadata AS TEXT)) WHERE key IN ({_summary_tags});
END;
CREATE TRIGGER IF NOT EXISTS instance_summary_delete AFTER DELETE ON instance BEGIN
    DELETE FROM instance_summary WHERE watermark = old.watermark;
END;

CREATE INDEX IF NOT EXISTS eqt_value_by_key ON eqt_value (tag_key, norm_value);
CREATE INDEX IF NOT EXISTS eqt_value_by_num ON eqt_value (tag_key, num_value);
CREATE INDEX IF NOT EXISTS eqt_value_by_entity
    ON eqt_value (partition_key, study_uid, series_uid, sop_uid);
-- A deleted instance takes its extended-query-tag values with it, and so does the last
-- instance of a series (series-level values) or of a study (study-level values). A replaced
-- version (PUT) loses its row here too; the store indexes the new version after its commit.
CREATE TRIGGER IF NOT EXISTS eqt_value_instance_delete AFTER DELETE ON instance
    WHEN old.status = 1
BEGIN
    DELETE FROM eqt_value WHERE partition_key = old.partition_key
        AND study_uid = old.study_uid AND series_uid = old.series_uid AND sop_uid = old.sop_uid;
    DELETE FROM eqt_value WHERE partition_key = old.partition_key
        AND study_uid = old.study_uid AND series_uid = old.series_uid AND sop_uid = ''
        AND NOT EXISTS (SELECT 1 FROM instance WHERE partition_key = old.partition_key
            AND study_uid = old.study_uid AND series_uid = old.series_uid AND status = 1);
    DELETE FROM eqt_value WHERE partition_key = old.partition_key
        AND study_uid = old.study_uid AND series_uid = '' AND sop_uid = ''
        AND NOT EXISTS (SELECT 1 FROM instance WHERE partition_key = old.partition_key
            AND study_uid = old.study_uid AND status = 1);
END;
-- External metadata belongs to its study: it goes when the study's last instance is deleted
-- (not when one is replaced: the new version is reserved, status 0, at that moment). A
-- delete removes an updated instance's original (status 2) in the same statement; the
-- trigger fires on either kind of row, so whichever goes last takes the metadata with it,
-- whatever order the statement deletes them in (version 1 fired on status 1 only).
CREATE TRIGGER IF NOT EXISTS external_metadata_study_delete_v2 AFTER DELETE ON instance
    WHEN old.status IN (1, 2)
        AND NOT EXISTS (SELECT 1 FROM instance WHERE partition_key = old.partition_key
            AND study_uid = old.study_uid)
BEGIN
    DELETE FROM external_metadata WHERE partition_key = old.partition_key
        AND study_uid = old.study_uid;
END;

CREATE INDEX IF NOT EXISTS change_feed_by_instance ON change_feed (sop_uid);
CREATE INDEX IF NOT EXISTS change_feed_by_time ON change_feed (timestamp);
-- A partition's feed (/partitions/{{name}}/changefeed), by sequence or by time.
CREATE INDEX IF NOT EXISTS change_feed_by_partition ON change_feed (partition_key, sequence);
CREATE INDEX IF NOT EXISTS change_feed_by_partition_time
    ON change_feed (partition_key, timestamp);
-- A partition's worklist newest first (sqlite_workitems.compile_workitem_search).
CREATE INDEX IF NOT EXISTS workitem_by_partition ON workitem (partition_key, workitem_key);
"""
