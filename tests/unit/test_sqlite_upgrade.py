"""A local database made before a schema change opens with the change applied and its data
carried over (``UPGRADES`` in ``dicom_core/storage/local/schema.py``)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from dicom_core.storage.local.sqlite_db import SqliteDatabase

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
