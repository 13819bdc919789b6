"""DICOM events over the wire, on both backends: a consumer of the event queue (on Azurite)
sees exactly the changes the change feed lists, in order, with Azure's fields; a server
killed with SIGKILL while it publishes may repeat events after its restart, never lose one.

Each test runs a server of its own with ``DICOM_EVENTS=queue`` and a timer ticking every
second, so the feed it checks against starts empty.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.support.events import EventQueueConsumer
from tests.support.factories import make_dataset, to_bytes
from tests.support.operations import wait_done
from tests.support.server import Server, azure_environment, start_server, stop_server

META = {"Accept": "application/dicom+json"}
EVENT_TYPES = {
    "create": "Microsoft.HealthcareApis.DicomImageCreated",
    "update": "Microsoft.HealthcareApis.DicomImageUpdated",
    "delete": "Microsoft.HealthcareApis.DicomImageDeleted",
}


def events_environment(
    backend: str, request: pytest.FixtureRequest, **extra: str
) -> tuple[dict[str, str], EventQueueConsumer]:
    """A server's settings with events on, sent to a queue of its own on Azurite, and the
    consumer of that queue. The local backend names its own connection setting; the azure
    backend uses the default, AzureWebJobsStorage (its own Azurite account)."""
    emulators = request.getfixturevalue("emulators")
    queue = f"events-{uuid.uuid4().hex[:12]}"
    env = {"DICOM_EVENTS": "queue", "DICOM_EVENTS_QUEUE": queue}
    if backend == "azure":
        env.update(azure_environment(emulators))
        connection = env["AzureWebJobsStorage"]
    else:
        connection = emulators.storage_connection(emulators.take_account())
        env.update(DICOM_EVENTS_QUEUE_CONNECTION="EVENTS_STORAGE", EVENTS_STORAGE=connection)
    # Every second, so the tests wait seconds; the default is every 10 s.
    env.update(DICOM_EVENTS_SCHEDULE="* * * * * *", **extra)
    return env, EventQueueConsumer(connection, queue)


@pytest.fixture()
def events_server(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Server, EventQueueConsumer]]:
    env, consumer = events_environment(backend, request)
    server = start_server(tmp_path, **env)
    try:
        yield server, consumer
    finally:
        stop_server(server)


def store(client: httpx.Client, ds: Dataset, *, method: str = "POST") -> None:
    response = client.request(
        method,
        "/v2/studies",
        content=to_bytes(ds),
        headers={"Content-Type": "application/dicom", **META},
    )
    assert response.status_code == 200, response.text


def instance_path(ds: Dataset) -> str:
    return (
        f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def feed(client: httpx.Client) -> list[dict[str, Any]]:
    """The whole change feed, in v1 pages of 100."""
    entries: list[dict[str, Any]] = []
    while True:
        after = entries[-1]["Sequence"] if entries else 0
        response = client.get(
            "/v1/changefeed",
            params={"offset": str(after), "limit": "100", "includeMetadata": "false"},
        )
        assert response.status_code == 200, response.text
        if not response.json():
            return entries
        entries.extend(response.json())


def sequence(event: dict[str, Any]) -> int:
    return int(event["data"]["sequenceNumber"])


def wait_for_every_change(
    consumer: EventQueueConsumer, entries: list[dict[str, Any]], timeout: float = 60
) -> None:
    """Drain the queue until an event of every entry arrived (or fail, saying what is missing)."""
    wanted = {entry["Sequence"] for entry in entries}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.drain()
        if wanted <= {sequence(event) for event in consumer.events}:
            return
        time.sleep(0.3)
    missing = sorted(wanted - {sequence(event) for event in consumer.events})
    raise AssertionError(f"no event for changes {missing} after {timeout} s")


def test_the_event_queue_holds_exactly_the_feeds_changes_in_order(
    events_server: tuple[Server, EventQueueConsumer],
) -> None:
    server, consumer = events_server
    port = server.url.rsplit(":", 1)[1]
    study = generate_uid()
    first, second = make_dataset(study_uid=study), make_dataset(study_uid=study)
    other = make_dataset()
    with server.client() as client:
        # given: a store of each kind, a bulk update and deletes
        for ds in (first, second, other):
            store(client, ds)
        first.PatientID = "EVENTS-PUT"
        store(client, first, method="PUT")
        response = client.post(
            "/v2/studies/$bulkUpdate",
            json={
                "studyInstanceUids": [study],
                "changeDataset": {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "E^V"}]}},
            },
        )
        assert response.status_code == 202, response.text
        operation, _ = wait_done(client, response.json()["href"])
        assert operation["status"] == "Completed", operation
        assert client.delete(instance_path(other)).status_code == 204
        assert client.delete(instance_path(first)).status_code == 204
        # when: the timer has published them
        entries = feed(client)
        assert [e["Action"] for e in entries] == [
            "create",
            "create",
            "create",
            "create",
            "update",
            "update",
            "delete",
            "delete",
        ]
        wait_for_every_change(consumer, entries)
        time.sleep(2)  # two more ticks: nothing more, nothing again
        consumer.drain()

    # then: one event per change, in the feed's order, with Azure's fields
    events = consumer.events
    assert [sequence(e) for e in events] == [e["Sequence"] for e in entries]
    host = f"localhost:{port}"
    for event, entry in zip(events, entries, strict=True):
        uids = (entry["StudyInstanceUid"], entry["SeriesInstanceUid"], entry["SopInstanceUid"])
        assert event == {
            "id": event["id"],
            "topic": f"/dicomweb/{host}",
            "subject": f"{host}/v1/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}",
            "data": {
                "partitionName": "Microsoft.Default",
                "imageStudyInstanceUid": uids[0],
                "imageSeriesInstanceUid": uids[1],
                "imageSopInstanceUid": uids[2],
                "serviceHostName": host,
                "sequenceNumber": entry["Sequence"],
            },
            "eventType": EVENT_TYPES[entry["Action"]],
            "dataVersion": "1",
            "metadataVersion": "1",
            "eventTime": entry["Timestamp"],
        }
    assert len({e["id"] for e in events}) == len(events)
    # The subject of a current instance is its URL on this server.
    with httpx.Client(timeout=30) as plain:
        sop = second.SOPInstanceUID
        current = next(e for e in events if e["data"]["imageSopInstanceUid"] == sop)
        url = f"http://127.0.0.1:{port}" + current["subject"].removeprefix(host) + "/metadata"
        assert plain.get(url, headers=META).status_code == 200


def test_cloud_events_carry_the_same_changes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env, consumer = events_environment(
        backend,
        request,
        DICOM_EVENTS_SCHEMA="cloudevents",
        DICOM_EVENTS_SERVICE_HOST="dicom.example.org",
        DICOM_EVENTS_SOURCE="/subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/f",
    )
    server = start_server(tmp_path, **env)
    try:
        ds = make_dataset()
        with server.client() as client:
            store(client, ds)
            assert client.delete(instance_path(ds)).status_code == 204
            entries = feed(client)
        wait_for_every_change(consumer, entries)
    finally:
        stop_server(server)
    created, deleted = consumer.events
    assert created["type"] == EVENT_TYPES["create"] and deleted["type"] == EVENT_TYPES["delete"]
    assert created["specversion"] == "1.0"
    assert created["source"] == env["DICOM_EVENTS_SOURCE"]
    assert created["subject"].startswith("dicom.example.org/v1/studies/")
    assert created["time"] == entries[0]["Timestamp"]
    assert created["data"]["serviceHostName"] == "dicom.example.org"
    assert [sequence(e) for e in consumer.events] == [e["Sequence"] for e in entries]
    assert set(created) == {"source", "subject", "type", "time", "id", "data", "specversion"}


def test_a_server_killed_while_publishing_repeats_events_and_loses_none(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # given: pages of one change, so a run moves its cursor after every event
    env, consumer = events_environment(
        backend, request, DICOM_EVENTS_BATCH_SIZE="1", DICOM_EVENTS_SERVICE_HOST="dicom.test"
    )
    server = start_server(tmp_path, **env)
    try:
        with server.client() as client:
            for _ in range(30):
                store(client, make_dataset())
        # when: SIGKILL once some of the events are out, while the run publishes the rest
        deadline = time.monotonic() + 60
        while not consumer.waiting() and time.monotonic() < deadline:
            time.sleep(0.01)
        server.process.kill()
        server.process.wait(timeout=20)
        published_before = len(consumer.drain())
        assert published_before, "no event was published before the kill"
    except BaseException:
        stop_server(server)
        raise
    # then: the restarted server, on the same stores, publishes what is left and what comes
    server = start_server(tmp_path, **env)
    try:
        with server.client() as client:
            store(client, make_dataset())
            entries = feed(client)
            wait_for_every_change(consumer, entries)
            time.sleep(2)
            consumer.drain()
    finally:
        stop_server(server)
    seen = [sequence(e) for e in consumer.events]
    assert sorted(set(seen)) == [e["Sequence"] for e in entries]  # none lost, none invented
    first_seen = list(dict.fromkeys(seen))
    assert first_seen == sorted(first_seen)  # delivered in the feed's order
    by_sequence: dict[int, dict[str, Any]] = {}
    for event in consumer.events:
        assert by_sequence.setdefault(sequence(event), event) == event  # a repeat is identical
    print(
        f"{backend}: {published_before} events before the kill,"
        f" {len(seen) - len(set(seen))} repeated after the restart"
    )
