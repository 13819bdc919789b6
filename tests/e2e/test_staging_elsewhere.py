"""``DICOM_STAGING_DIR`` on another file system than ``DATA_DIR``: a staged part cannot be
renamed or linked into place across file systems, so the blob store copies it in. A probe
found every STOW then failing with 272 ("internal error", EXDEV in the log)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.filesystems import directory_elsewhere
from tests.support.operations import wait_done
from tests.support.server import Server, start_server, stop_server
from tests.support.wado import store

DICOM = {"Accept": "application/dicom; transfer-syntax=*"}
MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    with directory_elsewhere(tmp_path) as staging:
        started = start_server(tmp_path, DICOM_STAGING_DIR=str(staging))
        try:
            yield started
        finally:
            stop_server(started)


def test_stores_and_updates_work_with_the_staging_directory_on_another_disk(
    server: Server,
) -> None:
    single, first, second = make_dataset(), make_dataset(), make_dataset()
    with server.client() as client:
        store(client, single)
        response = client.post(
            "/v2/studies",
            content=multipart([to_bytes(first), to_bytes(second)]),
            headers={"Content-Type": MULTIPART},
        )
        assert response.status_code == 200, response.text
        for ds in (single, first, second):
            retrieved = client.get(
                f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}",
                headers=DICOM,
            )
            assert retrieved.status_code == 200
            assert dcmread(io.BytesIO(retrieved.content)).SOPInstanceUID == ds.SOPInstanceUID

        # A bulk update writes its new versions through the staging directory too.
        response = client.post(
            "/v2/studies/$bulkUpdate",
            json={
                "studyInstanceUids": [first.StudyInstanceUID],
                "changeDataset": {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Moved^In"}]}},
            },
        )
        operation, _ = wait_done(client, response.json()["href"])
        assert operation["status"] == "Completed", operation
        retrieved = client.get(
            f"/v2/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
            f"/instances/{first.SOPInstanceUID}",
            headers=DICOM,
        )
        assert str(dcmread(io.BytesIO(retrieved.content)).PatientName) == "Moved^In"
    leftovers = [p for p in server.data_dir.rglob("*") if p.name.endswith(".copy")]
    assert leftovers == []
