"""Bulk update over HTTP (Azure's "Update DICOM files"), on both backends: the operation, the
new versions, the original kept for ``msdicom-request-original``, QIDO, ETags and the
change feed after it."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.support.azure_backdoor import cosmos_query
from tests.support.factories import make_dataset, to_bytes
from tests.support.operations import wait_done
from tests.support.server import Server, azure_environment, start_server, stop_server

DICOM = {"Accept": "application/dicom; transfer-syntax=*"}
META = {"Accept": "application/dicom+json"}
ORIGINAL = {"msdicom-request-original": "true"}


def store_study(client: httpx.Client, count: int = 3, **attributes: Any) -> list[Dataset]:
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    datasets = [
        make_dataset(study_uid=study, series_uid=series[n % 2], **attributes) for n in range(count)
    ]
    for ds in datasets:
        response = client.post(
            "/v2/studies",
            content=to_bytes(ds),
            headers={"Content-Type": "application/dicom", **META},
        )
        assert response.status_code == 200, response.text
    return datasets


def instance_path(ds: Dataset) -> str:
    return (
        f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def update(client: httpx.Client, studies: list[str], change: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/v2/studies/$bulkUpdate",
        json={"studyInstanceUids": studies, "changeDataset": change},
    )


def name(value: str) -> dict[str, Any]:
    return {"vr": "PN", "Value": [{"Alphabetic": value}]}


def latest_sequence(client: httpx.Client) -> int:
    response = client.get("/v2/changefeed/latest", params={"includeMetadata": "false"})
    return 0 if response.status_code == 204 else int(response.json()["Sequence"])


def test_an_update_rewrites_every_instance_and_keeps_the_original(client: httpx.Client) -> None:
    datasets = store_study(client, PatientName="Old^Name", PatientID="OLD-ID")
    study = datasets[0].StudyInstanceUID
    stored = {ds.SOPInstanceUID: client.get(instance_path(ds), headers=DICOM) for ds in datasets}
    before = client.get(f"/v2/studies/{study}/metadata", headers=META)
    feed_start = latest_sequence(client)

    response = update(
        client,
        [study],
        {"00100010": name("New^Name"), "00100020": {"vr": "LO", "Value": ["NEW-ID"]}},
    )
    assert response.status_code == 202, response.text
    reference = response.json()
    assert reference["href"].endswith(f"/v2/operations/{reference['id']}")
    assert response.headers["location"] == reference["href"]
    operation, _ = wait_done(client, reference["href"])
    assert operation["type"] == "update"
    assert (operation["status"], operation["percentComplete"]) == ("Completed", 100)
    assert operation["results"] == {
        "studyProcessed": 1,
        "studyUpdated": 1,
        "studyFailed": 0,
        "instanceUpdated": 3,
    }

    # Latest: new values in the files and the metadata; pixels as they were.
    for ds in datasets:
        latest = dcmread(io.BytesIO(client.get(instance_path(ds), headers=DICOM).content))
        assert (str(latest.PatientName), latest.PatientID) == ("New^Name", "NEW-ID")
        assert latest.PixelData == ds.PixelData
        assert latest.SOPInstanceUID == ds.SOPInstanceUID
        original = client.get(instance_path(ds), headers={**DICOM, **ORIGINAL})
        assert original.content == stored[ds.SOPInstanceUID].content
        frame = client.get(instance_path(ds) + "/frames/1", headers={"Accept": "*/*"})
        assert frame.status_code == 200
    after = client.get(f"/v2/studies/{study}/metadata", headers=META)
    assert {str(i["00100020"]["Value"][0]) for i in after.json()} == {"NEW-ID"}
    assert after.headers["etag"] != before.headers["etag"]
    kept = client.get(f"/v2/studies/{study}/metadata", headers={**META, **ORIGINAL})
    assert kept.json() == before.json()
    assert kept.headers["etag"] == before.headers["etag"]
    # The answer depends on the header: a shared cache must keep the two apart.
    vary = {v.strip().lower() for v in kept.headers["vary"].split(",")}
    assert {"accept", "msdicom-request-original", "msdicom-request-meta"} <= vary
    revalidated = client.get(
        f"/v2/studies/{study}/metadata", headers={**META, "If-None-Match": before.headers["etag"]}
    )
    assert revalidated.status_code == 200  # the old tag no longer matches the latest

    # Series and study retrieve take the header too.
    series = datasets[0].SeriesInstanceUID
    parts = client.get(
        f"/v2/studies/{study}/series/{series}",
        headers={"Accept": 'multipart/related; type="application/dicom"', **ORIGINAL},
    )
    assert parts.status_code == 200
    assert b"Old^Name" in parts.content and b"New^Name" not in parts.content

    # QIDO finds the study by its new values only.
    found = client.get("/v2/studies", params={"PatientID": "NEW-ID"})
    assert [s["0020000D"]["Value"][0] for s in found.json()] == [study]
    assert client.get("/v2/studies", params={"PatientID": "OLD-ID"}).status_code == 204
    instances = client.get("/v2/instances", params={"PatientName": "New^Name"})
    assert {i["00080018"]["Value"][0] for i in instances.json()} >= {
        ds.SOPInstanceUID for ds in datasets
    }

    # The change feed records one update per instance; the creates are replaced.
    entries = client.get(
        "/v2/changefeed", params={"offset": "0", "limit": "200", "includeMetadata": "false"}
    ).json()
    ours = [e for e in entries if e["StudyInstanceUid"] == study]
    assert [(e["Action"], e["State"]) for e in ours] == [("create", "replaced")] * 3 + [
        ("update", "current")
    ] * 3
    assert all(e["Sequence"] > feed_start for e in ours if e["Action"] == "update")


def test_a_second_update_keeps_the_first_original_and_delete_removes_all(
    client: httpx.Client,
) -> None:
    [ds] = store_study(client, count=1, PatientName="First^Name")
    study = ds.StudyInstanceUID
    stored = client.get(instance_path(ds), headers=DICOM).content
    for value in ("Second^Name", "Third^Name"):
        response = update(client, [study], {"00100010": name(value)})
        operation, _ = wait_done(client, response.json()["href"])
        assert operation["results"]["instanceUpdated"] == 1
    original = client.get(instance_path(ds), headers={**DICOM, **ORIGINAL})
    assert original.content == stored
    latest = dcmread(io.BytesIO(client.get(instance_path(ds), headers=DICOM).content))
    assert str(latest.PatientName) == "Third^Name"

    assert client.delete(f"/v2/studies/{study}").status_code == 204
    assert client.get(instance_path(ds), headers={**DICOM, **ORIGINAL}).status_code == 404
    assert client.get(instance_path(ds), headers=DICOM).status_code == 404


def test_a_replacing_store_drops_the_original(client: httpx.Client) -> None:
    [ds] = store_study(client, count=1, PatientName="Before^Put")
    study = ds.StudyInstanceUID
    wait_done(client, update(client, [study], {"00100010": name("Updated^Name")}).json()["href"])
    ds.PatientName = "Put^Name"
    response = client.put(
        "/v2/studies",
        content=to_bytes(ds),
        headers={"Content-Type": "application/dicom", **META},
    )
    assert response.status_code == 200
    for headers in (DICOM, {**DICOM, **ORIGINAL}):
        got = dcmread(io.BytesIO(client.get(instance_path(ds), headers=headers).content))
        assert str(got.PatientName) == "Put^Name"


def test_the_operation_id_has_32_digits_and_any_spelling_of_it_finds_it(
    client: httpx.Client,
) -> None:
    """Azure's ids are 32 hex digits, and Microsoft's .NET client polls with that form."""
    [ds] = store_study(client, count=1)
    response = update(client, [ds.StudyInstanceUID], {"00100010": name("X^Y")})
    operation_id = response.json()["id"]
    guid = uuid.UUID(operation_id)
    assert operation_id == guid.hex
    wait_done(client, response.json()["href"])
    for spelling in (str(guid), f"{{{guid}}}".upper(), guid.hex.upper()):
        found = client.get(f"/v2/operations/{spelling}")
        assert found.status_code == 200, (spelling, found.text)
        assert found.json()["operationId"] == operation_id


def test_a_study_with_no_instances_is_processed_and_the_operation_completes(
    client: httpx.Client,
) -> None:
    """As Azure's orchestration does: a study it finds no instances of is counted as processed
    and is no failure, so an update naming a study deleted meanwhile still completes."""
    [ds] = store_study(client, count=1)
    missing = generate_uid()
    response = update(client, [ds.StudyInstanceUID, missing], {"00100010": name("X^Y")})
    operation, _ = wait_done(client, response.json()["href"])
    assert operation["status"] == "Completed"
    assert operation["results"] == {
        "studyProcessed": 2,
        "studyUpdated": 1,
        "studyFailed": 0,
        "instanceUpdated": 1,
    }


def test_a_study_with_an_instance_that_cannot_take_the_change_is_not_updated_at_all(
    client: httpx.Client,
) -> None:
    """Azure's update commits a study only when every instance of it took the change (a
    probe saw one instance updated and its sibling not): the study fails whole, no instance
    of it counts as updated, and the feed records no update of it. Other studies of the
    request are updated as usual."""
    study = generate_uid()
    plain = make_dataset(study_uid=study, PatientName="Old^Name")
    latin = make_dataset(
        study_uid=study,
        PatientName="Old^Name",
        SpecificCharacterSet="ISO_IR 100",
        InstitutionName="Klinik Münster",
    )
    for ds in (plain, latin):
        stored = client.post(
            "/v2/studies",
            content=to_bytes(ds),
            headers={"Content-Type": "application/dicom", **META},
        )
        assert stored.status_code == 200, stored.text
    [other] = store_study(client, count=1, PatientName="Other^Name")
    start = latest_sequence(client)

    response = update(client, [study, other.StudyInstanceUID], {"00100010": name("山田^花子")})
    operation, _ = wait_done(client, response.json()["href"])
    assert operation["status"] == "Failed"
    results = operation["results"]
    assert (
        results["studyProcessed"],
        results["studyUpdated"],
        results["studyFailed"],
        results["instanceUpdated"],
    ) == (2, 1, 1, 1)
    assert latin.SOPInstanceUID in " ".join(results["errors"])

    metadata = client.get(f"/v2/studies/{study}/metadata", headers=META).json()
    assert sorted(m["00100010"]["Value"][0]["Alphabetic"] for m in metadata) == ["Old^Name"] * 2
    entries = client.get(
        "/v2/changefeed", params={"offset": str(start), "includeMetadata": "false"}
    ).json()
    assert [(e["StudyInstanceUid"], e["Action"]) for e in entries] == [
        (other.StudyInstanceUID, "update")
    ]


def body(studies: list[str], change: dict[str, Any] | None) -> dict[str, Any]:
    sent: dict[str, Any] = {"studyInstanceUids": studies}
    if change is not None:
        sent["changeDataset"] = change
    return sent


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        (body([], {"00100010": name("A")}), "StudyInstanceUids"),
        (body([f"1.2.{n}" for n in range(51)], {"00100010": name("A")}), "50"),
        (body(["not a uid"], {"00100010": name("A")}), "not a uid"),
        (body(["1.2.3"], None), "changeDataset"),
    ],
)
def test_bad_requests_get_a_400_naming_the_problem(
    client: httpx.Client, sent: dict[str, Any], named: str
) -> None:
    response = client.post("/v2/studies/$bulkUpdate", json=sent)
    assert response.status_code == 400, response.text
    assert named.lower() in response.json()["message"].lower()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"00080060": {"vr": "CS", "Value": ["MR"]}}, ["(0008,0060) Modality"]),
        ({"00100020": {"vr": "LO"}}, ["(0010,0020) PatientID"]),
        (
            {"00100010": {"vr": "PN", "Value": None}, "0020000D": {"vr": "UI", "Value": ["1"]}},
            ["(0010,0010) PatientName", "(0020,000D) StudyInstanceUID"],
        ),
    ],
)
def test_refused_attributes_are_reported_one_by_one_as_azure_does(
    client: httpx.Client, change: dict[str, Any], named: list[str]
) -> None:
    """Azure's 400 for a bad change dataset: a DICOM JSON FailedAttributesSequence with one
    ErrorComment per refused attribute, in tag order."""
    response = client.post("/v2/studies/$bulkUpdate", json=body(["1.2.3"], change))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    comments = [item["00000902"]["Value"][0] for item in response.json()["00741048"]["Value"]]
    assert len(comments) == len(named)
    for comment, attribute in zip(comments, named, strict=True):
        assert comment.startswith(f"DICOM100: {attribute}:"), comment


def test_microsofts_postman_request_succeeds_as_written(client: httpx.Client) -> None:
    """The collection's Bulk-update-study: POST {{baseUrl}}/studies/$bulkupdate, baseUrl
    ending in /v1, a raw JSON body with CRLF line ends (Postman sends application/json)."""
    [ds] = store_study(client, count=1)
    raw = (
        '{\r\n   "studyInstanceUids": ["STUDY"],\r\n    "changeDataset": { \r\n'
        '        "00100010": { \r\n            "vr": "PN", \r\n            "Value": \r\n'
        '            [\r\n                { \r\n                    "Alphabetic":'
        ' "New Patient Name" \r\n                }\r\n            ] \r\n        } \r\n'
        "    }\r\n}"
    ).replace("STUDY", ds.StudyInstanceUID)
    response = client.post(
        "/v1/studies/$bulkupdate",
        content=raw.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text
    operation, _ = wait_done(client, f"/v1/operations/{response.json()['id']}")
    assert operation["status"] == "Completed"
    latest = dcmread(io.BytesIO(client.get(instance_path(ds), headers=DICOM).content))
    assert str(latest.PatientName) == "New Patient Name"


def test_bulk_update_takes_json_only(client: httpx.Client) -> None:
    response = client.post(
        "/v2/studies/$bulkUpdate", content=b"<xml/>", headers={"Content-Type": "text/xml"}
    )
    assert response.status_code == 415
    assert client.post("/v2/studies/$bulkUpdate", content=b"{").status_code == 400


def test_readers_never_see_a_large_study_half_updated(client: httpx.Client) -> None:
    """A study larger than one Cosmos DB batch (30 instances; staged, flipped and rolled
    forward there): metadata and instance QIDO, polled while the update runs, show every
    instance with the old name or every instance with the new one, never a mix."""
    study = store_study(client, count=30, PatientName="Before^Large")[0].StudyInstanceUID
    href = update(client, [study], {"00100010": name("After^Large")}).json()["href"]
    observed: list[str] = []
    deadline = time.monotonic() + 120
    while True:
        operation = client.get(href).json()
        names = study_names(client, study)
        assert len(names) == 1, f"metadata half updated: {names}"
        found = client.get(
            f"/v2/studies/{study}/instances", params={"includefield": "PatientName"}
        ).json()
        listed = {i["00100010"]["Value"][0]["Alphabetic"] for i in found}
        assert len(found) == 30 and len(listed) == 1, f"QIDO half updated: {listed}"
        observed.extend(names | listed)
        if operation["status"] in ("Completed", "Failed"):
            break
        assert time.monotonic() < deadline
    assert operation["status"] == "Completed", operation
    assert study_names(client, study) == {"After^Large"}
    assert observed[-1] == "After^Large"


def test_a_killed_update_leaves_each_study_whole_and_completes_after_restart(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """kill -9 mid-operation: every study is wholly before or wholly after the update, a
    reader never sees one half updated, and the restarted server finishes the operation with
    the same results as if nothing had happened. (On Cosmos DB a study of up to
    STUDY_BATCH_VERSIONS instances is one batch; these have 3.)"""
    env = azure_environment(request.getfixturevalue("emulators")) if backend == "azure" else {}
    server = start_server(tmp_path, **env)
    studies: list[str] = []
    try:
        with server.client() as client:
            for _ in range(40):
                studies.append(store_study(client, PatientName="Before^Kill")[0].StudyInstanceUID)
            response = update(client, studies, {"00100010": name("After^Kill")})
            href = response.json()["href"]
            operation_id = response.json()["id"]
            deadline = time.monotonic() + 60
            while client.get(href).json()["percentComplete"] < 10:
                assert time.monotonic() < deadline
                for study in studies[:8]:
                    names = study_names(client, study)
                    assert len(names) == 1, f"study {study} half updated: {names}"
            server.process.kill()
            server.process.wait()
    finally:
        if server.process.poll() is None:
            stop_server(server)
    at_kill = index_names(server)
    assert all(len(at_kill[study]) == 1 for study in studies), at_kill
    updated = sum(at_kill[study] == {AFTER} for study in studies)
    assert 0 < updated < len(studies), "the kill fell outside the operation; make it longer"

    (tmp_path / "again").mkdir()
    restarted = start_server(tmp_path / "again", DATA_DIR=str(server.data_dir), **env)
    try:
        with restarted.client() as client:
            operation, _ = wait_done(client, f"/v2/operations/{operation_id}", timeout=120)
            assert operation["status"] == "Completed"
            assert operation["results"] == {
                "studyProcessed": 40,
                "studyUpdated": 40,
                "studyFailed": 0,
                "instanceUpdated": 120,
            }
            for study in studies:
                assert study_names(client, study) == {"After^Kill"}
    finally:
        stop_server(restarted)
    after = index_names(server)  # the same data directory, or the same Cosmos database
    assert all(after[study] == {AFTER} for study in studies)


def study_names(client: httpx.Client, study: str) -> set[str]:
    response = client.get(f"/v2/studies/{study}/metadata", headers=META)
    return {i["00100010"]["Value"][0]["Alphabetic"] for i in response.json()}


AFTER = "after kill"


def index_names(server: Server) -> dict[str, set[str]]:
    """Each study's PatientName matching keys among its current versions, from the index."""
    if server.backend == "azure":
        docs = cosmos_query(
            server.azure,
            "SELECT c.pk, c.own.sk.PatientName AS name FROM c WHERE c.kind = 'instance'",
        )
        rows = [(d["pk"], d["name"]) for d in docs]
    else:
        with contextlib.closing(sqlite3.connect(server.data_dir / "index.sqlite")) as conn:
            rows = conn.execute(
                "SELECT study_uid, patient_name_norm FROM instance WHERE status = 1"
            ).fetchall()
    names: dict[str, set[str]] = {}
    for study, patient in rows:
        names.setdefault(study, set()).add(str(patient))
    return names
