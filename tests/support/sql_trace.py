"""Every SQL statement the local database's connections run, for tests of which route or plan
a read or write takes (the statements come with their values bound)."""

from __future__ import annotations

import sqlite3

import pytest

from dicom_core.storage.local.sqlite_db import SqliteDatabase


def trace_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The list each connection made from now on appends its statements to."""
    seen: list[str] = []
    connect = SqliteDatabase._connect

    def traced(self: SqliteDatabase) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(SqliteDatabase, "_connect", traced)
    return seen
