"""A store interrupted by a crash (reservation + file, no commit) never leaves an orphan."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.server import Server

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'
# These tests fake a crashed store in the SQLite index; the azure variant is in test_azure_backend.
pytestmark = pytest.mark.local_backend


def _simulate_crashed_store(server: Server, ds: Dataset, created_at: str) -> Path:
    """What a process killed between writing the file and committing leaves behind."""
    key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}_999999.dcm"
    path = server.data_dir / "blobs" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half written")
    with contextlib.closing(
        sqlite3.connect(server.data_dir / "index.sqlite", isolation_level=None)
    ) as conn:
        conn.execute(
            "INSERT INTO instance (watermark, study_uid, series_uid, sop_uid, status, blob_key,"
            " created_at, updated_at) VALUES (999999, ?, ?, ?, 0, ?, ?, ?)",
            (
                ds.StudyInstanceUID,
                ds.SeriesInstanceUID,
                ds.SOPInstanceUID,
                key,
                created_at,
                created_at,
            ),
        )
    return path


def test_store_of_an_instance_reserved_by_a_live_store_returns_45071(server: Server) -> None:
    ds = make_dataset()
    orphan = _simulate_crashed_store(server, ds, "2999-01-01T00:00:00.000000Z")
    with server.client() as client:
        response = client.post(
            "/v2/studies", content=multipart([to_bytes(ds)]), headers={"Content-Type": MULTIPART}
        )
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [45071]
    orphan.unlink()
    with contextlib.closing(
        sqlite3.connect(server.data_dir / "index.sqlite", isolation_level=None)
    ) as conn:
        conn.execute("DELETE FROM instance WHERE watermark = 999999")


def test_store_after_a_crashed_store_takes_over_and_deletes_its_file(server: Server) -> None:
    ds = make_dataset()
    orphan = _simulate_crashed_store(server, ds, "2000-01-01T00:00:00.000000Z")
    with server.client() as client:
        response = client.post(
            "/v2/studies", content=multipart([to_bytes(ds)]), headers={"Content-Type": MULTIPART}
        )
        assert response.status_code == 200, response.text
        retrieved = client.get(
            f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}",
            headers={"Accept": "application/dicom; transfer-syntax=*"},
        )
    assert retrieved.status_code == 200 and retrieved.content[128:] == to_bytes(ds)[128:]
    assert not orphan.exists()
    assert [p.name for p in server.stored_files() if ds.SOPInstanceUID in p.name] != []
