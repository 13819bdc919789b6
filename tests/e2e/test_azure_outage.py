"""The azure backend when its stores go away: 503 (or 424), never 500, nothing half stored,
and service again as soon as they are back.

These tests stop and restart the emulators, so they run on emulators of their own (not the
session's) with a server that gives up retrying after one second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from pydicom.dataset import Dataset

from tests.support.azure_backdoor import blob_files, cosmos_query
from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.server import BACKENDS, Server, start_server, stop_server
from tools.emulators.launcher import Emulators

pytestmark = pytest.mark.skipif("azure" not in BACKENDS, reason="azure backend not tested")

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'
UNAVAILABLE = {503, 424}
#: The server's DICOM_AZURE_TIMEOUT_SECONDS: how long a call waits for a frozen service.
TIMEOUT_SECONDS = 2
#: How long a client here waits for an answer: far more than the server needs to give up on
#: a frozen service with that setting (some 3 calls of 2 s), far less than the SDKs' own
#: defaults took (76 s for a frozen Cosmos DB, 180 s for a frozen Azurite).
PATIENCE_SECONDS = 45
#: How long the cleanup queue may take to delete the file of a commit that failed (its
#: message waits UNKNOWN_COMMIT_DELAY, and is retried while Cosmos DB is still starting).
CLEANUP_WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulators, Server]]:
    emulators = Emulators(tmp_path_factory.mktemp("outage-emulators")).start()
    server = start_server(
        tmp_path_factory.mktemp("outage-server"),
        **emulators.environment(),
        DICOM_AZURE_RETRY_SECONDS="1",
        DICOM_AZURE_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
        # Files go as soon as nothing names them, so a test can see them go.
        DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS="0",
    )
    yield emulators, server
    stop_server(server)
    emulators.stop()


@pytest.fixture()
def running(outage: tuple[Emulators, Server]) -> Iterator[tuple[Emulators, Server]]:
    """The pair, with both emulators up again after the test whatever it did."""
    yield outage
    emulators, _ = outage
    emulators.resume_azurite()
    for process, start in ((emulators._azurite, emulators.start_azurite),
                           (emulators._cosmos, emulators.start_cosmos)):  # fmt: skip
        if process is None or process.process is None or process.process.poll() is not None:
            start()


def store(client: httpx.Client, *datasets: Dataset) -> httpx.Response:
    return client.post(
        "/v2/studies",
        content=multipart([to_bytes(ds) for ds in datasets]),
        headers={"Content-Type": MULTIPART, "Accept": "application/dicom+json"},
    )


def instance_path(ds: Dataset) -> str:
    return (
        f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def eventually(check: object, timeout: float = 15) -> httpx.Response:
    """Retry a request until it succeeds (the server reconnects on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        response = check()  # type: ignore[operator]
        if response.status_code < 300 or time.monotonic() > deadline:
            return response  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_cosmos_outage_is_503_and_the_service_recovers(
    running: tuple[Emulators, Server],
) -> None:
    emulators, server = running
    stored = make_dataset()
    with server.client() as client:
        assert store(client, stored).status_code == 200
        emulators.stop_cosmos()
        ds = make_dataset()
        answers = [
            store(client, ds),
            client.get(f"/v2/studies?PatientID={ds.PatientID}"),
            client.get(instance_path(stored), headers={"Accept": "application/dicom"}),
            client.get(instance_path(stored) + "/metadata"),
            client.delete(f"/v2/studies/{stored.StudyInstanceUID}"),
        ]
        assert [a.status_code for a in answers] == [503] * len(answers), [a.text for a in answers]
        assert all(a.headers.get("Retry-After") for a in answers)
        # No file of the refused store was left behind.
        assert not [f for f in blob_files(server.azure) if ds.SOPInstanceUID in f.name]

        emulators.start_cosmos()  # back, and empty: the index is recreated on first use
        assert eventually(lambda: store(client, ds)).status_code == 200
        retrieved = client.get(instance_path(ds), headers={"Accept": "application/dicom"})
        assert retrieved.status_code == 200
        assert retrieved.content[132:] == to_bytes(ds)[132:]
        found = client.get("/v2/studies", params={"PatientID": ds.PatientID})
        assert found.status_code == 200
        assert [s["0020000D"]["Value"][0] for s in found.json()] == [ds.StudyInstanceUID]


@pytest.mark.parametrize("frozen", ["cosmos", "azurite"])
def test_a_frozen_service_is_a_503_long_before_the_front_end_gives_up(
    running: tuple[Emulators, Server], frozen: str
) -> None:
    """A stall (the process frozen: connections open, no answer) rather than an outage. The
    server gives up after DICOM_AZURE_TIMEOUT_SECONDS a call, not when the service wakes, so
    a client behind Azure's front end (230 s) gets the 503 and its Retry-After."""
    emulators, server = running
    ds = make_dataset()
    with server.client() as client:
        assert store(client, ds).status_code == 200
    pause, resume = (
        (emulators.pause_cosmos, emulators.resume_cosmos)
        if frozen == "cosmos"
        else (emulators.pause_azurite, emulators.resume_azurite)
    )
    pause()
    try:
        with httpx.Client(base_url=server.url, timeout=PATIENCE_SECONDS) as patient:
            answer = patient.get(instance_path(ds), headers={"Accept": "application/dicom"})
    finally:
        resume()
    assert answer.status_code in UNAVAILABLE, answer.text
    assert answer.headers.get("Retry-After")
    with server.client() as client:
        again = eventually(
            lambda: client.get(instance_path(ds), headers={"Accept": "application/dicom"})
        )
        assert again.status_code == 200


def test_azurite_outage_is_503_and_the_service_recovers(
    running: tuple[Emulators, Server],
) -> None:
    emulators, server = running
    stored = make_dataset()
    with server.client() as client:
        assert store(client, stored).status_code == 200
        emulators.stop_azurite()
        ds = make_dataset()
        refused = store(client, ds)
        assert refused.status_code == 503, refused.text
        # The index never saw it: searching needs no blob and still answers.
        search = client.get("/v2/instances", params={"SOPInstanceUID": ds.SOPInstanceUID})
        assert search.status_code == 204
        assert (
            cosmos_query(
                server.azure, "SELECT c.kind FROM c WHERE c.sop = @sop", {"@sop": ds.SOPInstanceUID}
            )
            == []
        )
        metadata = client.get(instance_path(stored) + "/metadata")
        assert metadata.status_code == 200  # precomputed: no file read
        frames = client.get(
            instance_path(stored) + "/frames/1",
            headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        )
        assert frames.status_code in UNAVAILABLE, frames.text
        for accept in (
            "application/dicom; transfer-syntax=*",
            "multipart/related; type=application/dicom; transfer-syntax=*",
        ):
            whole = client.get(instance_path(stored), headers={"Accept": accept})
            assert whole.status_code in UNAVAILABLE, whole.text  # a status, not a cut-off 200

        emulators.start_azurite()  # back, and empty: its files are gone
        assert eventually(lambda: store(client, ds)).status_code == 200
        retrieved = client.get(instance_path(ds), headers={"Accept": "application/dicom"})
        assert retrieved.status_code == 200
        lost = client.get(
            instance_path(stored) + "/frames/1",
            headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        )
        assert lost.status_code == 424  # indexed, but its file went with the old Azurite


def _when_reserved(server: Server, sop_uid: str, then: object) -> threading.Thread:
    """Call ``then`` as soon as the store of ``sop_uid`` has reserved it in the index."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = cosmos_query(
                server.azure,
                "SELECT c.kind FROM c WHERE c.sop = @sop AND c.kind = 'reservation'",
                {"@sop": sop_uid},
            )
            if found:
                then()  # type: ignore[operator]
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_azurite_stopping_during_an_upload_leaves_nothing_half_stored(
    running: tuple[Emulators, Server],
) -> None:
    emulators, server = running
    ds = make_dataset(rows=512, columns=512)
    # Azurite is frozen first, so the upload that follows the reservation hangs until the
    # crash, whatever the machine's speed.
    emulators.pause_azurite()
    watcher = _when_reserved(server, ds.SOPInstanceUID, emulators.stop_azurite)
    with server.client() as client:
        response = store(client, ds)
    watcher.join()
    assert response.status_code == 503, response.text
    assert (
        cosmos_query(
            server.azure, "SELECT c.kind FROM c WHERE c.sop = @sop", {"@sop": ds.SOPInstanceUID}
        )
        == []
    )  # neither an instance nor a reservation: the identity is free again
    emulators.start_azurite()
    with server.client() as client:
        assert eventually(lambda: store(client, ds)).status_code == 200


def test_cosmos_stopping_during_an_upload_leaves_no_orphan_file(
    running: tuple[Emulators, Server],
) -> None:
    emulators, server = running
    ds = make_dataset(rows=512, columns=512)

    def crash() -> None:
        emulators.stop_cosmos()
        emulators.resume_azurite()  # the upload completes; the commit is what fails

    emulators.pause_azurite()
    watcher = _when_reserved(server, ds.SOPInstanceUID, crash)
    with server.client() as client:
        response = store(client, ds)
    watcher.join()
    assert response.status_code == 503, response.text
    # The file was written and the commit failed, but the store cannot tell whether its
    # batch reached Cosmos DB: the file stays until the cleanup queue finds the index does
    # not name it, once Cosmos DB is back.
    assert [f for f in blob_files(server.azure) if ds.SOPInstanceUID in f.name]
    emulators.start_cosmos()
    deadline = time.monotonic() + CLEANUP_WAIT_SECONDS
    while [f for f in blob_files(server.azure) if ds.SOPInstanceUID in f.name]:
        assert time.monotonic() < deadline, "the file of the failed commit stayed"
        time.sleep(1)
