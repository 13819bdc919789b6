"""End-to-end checks that reach into the azure backend's stores (Cosmos DB, Blob Storage).

The local twins of these tests are in ``test_store_recovery.py`` (SQLite back door).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydicom.dataset import Dataset

from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.timestamps import timestamp_of
from dicom_core.settings import RESERVATION_LEASE_SECONDS
from dicom_core.storage.azure.cosmos_schema import RESERVATION, reservation_id
from tests.support.azure_backdoor import blob_files, blob_put, cosmos_query, cosmos_upsert
from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.server import Server

pytestmark = pytest.mark.azure_backend

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'


def _simulate_crashed_store(server: Server, ds: Dataset, created_at: str) -> str:
    """What a process killed between writing the file and committing leaves behind."""
    watermark = 999_999
    with server.client() as client:  # any search makes the server create its containers
        assert client.get("/v2/studies", params={"PatientID": "nobody"}).status_code == 204
    key = blob_key_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, watermark)
    blob_put(server.azure, key, b"half written")
    cosmos_upsert(
        server.azure,
        {
            "id": reservation_id(ds.SeriesInstanceUID, ds.SOPInstanceUID),
            "pk": ds.StudyInstanceUID,
            "kind": RESERVATION,
            "study": ds.StudyInstanceUID,
            "series": ds.SeriesInstanceUID,
            "sop": ds.SOPInstanceUID,
            "wm": watermark,
            "blobKey": key,
            "owner": "crashed",
            "upsert": False,
            "createdAt": created_at,
        },
    )
    return key


def _post(client: httpx.Client, ds: Dataset) -> httpx.Response:
    return client.post(
        "/v2/studies", content=multipart([to_bytes(ds)]), headers={"Content-Type": MULTIPART}
    )


def test_store_of_an_instance_reserved_by_a_live_store_returns_45071(
    client: httpx.Client, server: Server
) -> None:
    ds = make_dataset()
    _simulate_crashed_store(server, ds, "2999-01-01T00:00:00.000000Z")
    response = _post(client, ds)
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [45071]


def test_store_after_a_crashed_store_takes_over_and_deletes_its_file(
    client: httpx.Client, server: Server
) -> None:
    ds = make_dataset()
    orphan = _simulate_crashed_store(server, ds, "2000-01-01T00:00:00.000000Z")
    response = _post(client, ds)
    assert response.status_code == 200, response.text
    keys = [f.key for f in blob_files(server.azure) if ds.SOPInstanceUID in f.key]
    assert orphan not in keys and len(keys) == 1
    docs = cosmos_query(
        server.azure,
        "SELECT * FROM c WHERE c.sop = @sop AND c.kind != 'pendingchange'",
        {"@sop": ds.SOPInstanceUID},
    )
    assert [(d["kind"], d["blobKey"]) for d in docs] == [("instance", keys[0])]


def test_a_retry_three_minutes_after_a_crashed_store_is_stored(
    client: httpx.Client, server: Server
) -> None:
    """A reservation is a two-minute lease that live stores renew: the reservation a killed
    host left stops blocking retries after that, not after DICOM_STALE_CREATE_SECONDS (an
    hour), which only bounds spool files now."""
    ds = make_dataset()
    crashed_at = datetime.now(UTC) - timedelta(seconds=RESERVATION_LEASE_SECONDS + 60)
    orphan = _simulate_crashed_store(server, ds, timestamp_of(crashed_at))
    response = _post(client, ds)
    assert response.status_code == 200, response.text
    keys = [f.key for f in blob_files(server.azure) if ds.SOPInstanceUID in f.key]
    assert orphan not in keys and len(keys) == 1


def test_a_stored_instance_is_one_document_with_its_summaries(
    client: httpx.Client, server: Server
) -> None:
    ds = make_dataset(PatientName="Müller^Hans", Modality="MR")
    assert _post(client, ds).status_code == 200
    docs = cosmos_query(
        server.azure, "SELECT * FROM c WHERE c.pk = @pk", {"@pk": ds.StudyInstanceUID}
    )
    kinds = sorted(d["kind"] for d in docs)
    # The change is recorded as a pending change in the study's batch; its sequencer moved it
    # into the change feed's own partition before the answer.
    assert kinds == ["instance", "series", "study"]
    by_kind = {d["kind"]: d for d in docs}
    # Matching keys are stored folded: Cosmos has no case- or accent-insensitive collation.
    assert by_kind["study"]["sk"]["PatientName"] == "muller hans"
    assert by_kind["study"]["sk"]["ModalitiesInStudy"] == ["mr"]
    assert by_kind["instance"]["sk"] == by_kind["study"]["sk"]
    assert by_kind["instance"]["rk"]["Modality"] == "mr"
    feed = cosmos_query(
        server.azure,
        "SELECT * FROM c WHERE c.pk = 'changefeed' AND c.kind = 'feed' AND c.sop = @sop",
        {"@sop": ds.SOPInstanceUID},
        container=server.azure.cosmos_system_container,
    )
    assert [(d["action"], d["wm"], d["cur"]) for d in feed] == [
        ("create", by_kind["instance"]["wm"], by_kind["instance"]["wm"])
    ]
