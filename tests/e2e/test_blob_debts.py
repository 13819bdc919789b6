"""A delete whose process dies between its index step and the delete of its files, over
HTTP on both backends: the debt the step recorded outlives the process, and the
timer-triggered ``jobs_settle_blob_debts`` deletes the files through the host.

The dead process is this test: it removes a stored study from the server's index through the
index adapter, as a worker would, and hands the files to no one. The module's server runs the
debt timer every second (``DICOM_BLOB_DEBT_SCHEDULE``); the debt is made older than the sweep's
grace by hand, rather than by waiting five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.uid import generate_uid

from dicom_core.bootstrap import build_backend
from dicom_core.services.blob_cleanup import DEBT_GRACE
from dicom_core.settings import Settings
from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.server import Server, backend_server

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'
#: How long the timer may take to settle a due debt (it ticks every second).
SETTLE_WAIT_SECONDS = 60
BACKDATE_MS = int(DEBT_GRACE.total_seconds() * 1000) + 60_000


@pytest.fixture(scope="module")
def debt_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    with backend_server(
        "blob-debts",
        backend,
        tmp_path_factory,
        request,
        DICOM_BLOB_DEBT_SCHEDULE="* * * * * *",
    ) as running:
        yield running


def files_of(server: Server, study: str) -> list[str]:
    return [str(path) for path in server.stored_files() if study in str(path)]


def die_after_the_index_step(server: Server, study: str) -> list[str]:
    """Remove the study from the server's index, with no one to release the files to."""

    async def delete() -> list[str]:
        environment = {"DATA_DIR": str(server.data_dir), "DICOM_STORAGE": server.backend}
        backend = build_backend(Settings.from_mapping({**environment, **server.env}))
        try:
            return await backend.index.delete_instances(study, partition=1)
        finally:
            await backend.close()

    return asyncio.run(delete())


def backdate_debts(server: Server, study: str) -> int:
    """Make the study's debts older than the sweep's grace; returns how many there were."""
    if server.backend == "azure":
        from tests.support.azure_backdoor import cosmos_query, cosmos_upsert

        debts = cosmos_query(
            server.azure,
            "SELECT * FROM c WHERE c.kind = 'blobdebt' AND c.study = @study",
            {"@study": study},
        )
        for debt in debts:
            kept = {k: v for k, v in debt.items() if not k.startswith("_")}
            cosmos_upsert(server.azure, {**kept, "ord": int(debt["ord"]) - BACKDATE_MS})
        return len(debts)
    with contextlib.closing(sqlite3.connect(server.data_dir / "index.sqlite")) as conn, conn:
        return conn.execute(
            "UPDATE blob_debt SET recorded_at = recorded_at - ? WHERE study_uid = ?",
            (BACKDATE_MS, study),
        ).rowcount


def open_debts(server: Server, study: str) -> list[Any]:
    if server.backend == "azure":
        from tests.support.azure_backdoor import cosmos_query

        return cosmos_query(
            server.azure,
            "SELECT c.id FROM c WHERE c.kind = 'blobdebt' AND c.study = @study",
            {"@study": study},
        )
    with contextlib.closing(sqlite3.connect(server.data_dir / "index.sqlite")) as conn:
        return conn.execute("SELECT id FROM blob_debt WHERE study_uid = ?", (study,)).fetchall()


def test_the_files_of_a_delete_whose_process_died_are_deleted_by_the_debt_timer(
    debt_server: Server,
) -> None:
    study = generate_uid()
    datasets = [make_dataset(study_uid=study) for _ in range(3)]
    with debt_server.client() as client:
        stored = client.post(
            "/v2/studies",
            content=multipart([to_bytes(ds) for ds in datasets]),
            headers={"Content-Type": MULTIPART},
        )
        assert stored.status_code == 200, stored.text
        assert len(files_of(debt_server, study)) == 3

        freed = die_after_the_index_step(debt_server, study)
        assert len(freed) == 3
        gone = client.get(f"/v2/studies/{study}", headers={"Accept": "multipart/related"})
        assert gone.status_code == 404
        # The index no longer names the files, and nothing deleted them: a debt is left.
        assert len(files_of(debt_server, study)) == 3
        time.sleep(2)  # the timer ticks: a debt younger than the grace stays
        assert len(files_of(debt_server, study)) == 3 and open_debts(debt_server, study)

        assert backdate_debts(debt_server, study) >= 1
        deadline = time.monotonic() + SETTLE_WAIT_SECONDS
        while files_of(debt_server, study) or open_debts(debt_server, study):
            assert time.monotonic() < deadline, "the debt timer left the files"
            time.sleep(0.5)


def test_a_delete_over_http_leaves_no_debt(debt_server: Server) -> None:
    ds = make_dataset()
    with debt_server.client() as client:
        stored = client.post(
            "/v2/studies", content=multipart([to_bytes(ds)]), headers={"Content-Type": MULTIPART}
        )
        assert stored.status_code == 200, stored.text
        assert client.delete(f"/v2/studies/{ds.StudyInstanceUID}").status_code == 204
    assert files_of(debt_server, ds.StudyInstanceUID) == []
    assert open_debts(debt_server, ds.StudyInstanceUID) == []
