"""Extended query tags and reindex operations over HTTP (spec/extended-query-tags.md).

Each module server is its own (tags are global to a service, so the shared session server is
left alone), one per backend. The reindex tests that insert index rows straight into the local
SQLite file (to have thousands of instances) are marked ``local_backend``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.index_rows import add_instance
from tests.support.operations import wait_done
from tests.support.server import Server, backend_server, start_server, stop_server

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'


@pytest.fixture(scope="module")
def eqt_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    with backend_server("eqt", backend, tmp_path_factory, request) as running:
        yield running


@pytest.fixture()
def http(eqt_server: Server) -> Iterator[httpx.Client]:
    with eqt_server.client() as client:
        yield client


def add_tags(client: httpx.Client, tags: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v2/extendedquerytags", json=tags)
    assert response.status_code == 202, response.text
    return response.json()


def store(client: httpx.Client, **attributes: Any) -> tuple[str, str, str]:
    ds = make_dataset(**attributes)
    response = client.post(
        "/v2/studies",
        content=multipart([to_bytes(ds)]),
        headers={"Content-Type": MULTIPART, "Accept": "application/dicom+json"},
    )
    assert response.status_code in (200, 202), response.text  # 202: stored with warnings
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_add_get_list_patch_delete_tag(http: httpx.Client) -> None:
    reference = add_tags(http, [{"Path": "PatientAge", "level": "study"}])
    assert set(reference) == {"id", "href"}
    assert reference["href"].endswith(f"/v2/operations/{reference['id']}")
    operation, _ = wait_done(http, reference["href"])
    assert operation["status"] == "Completed"
    assert operation["percentComplete"] == 100
    assert operation["type"] == "Reindex"
    assert operation["operationId"] == reference["id"]
    assert operation["resources"][0].endswith("/v2/extendedquerytags/00101010")
    assert operation["createdTime"] and operation["lastUpdatedTime"]

    tag = http.get("/v2/extendedquerytags/00101010").json()
    assert tag == {
        "path": "00101010",
        "vr": "AS",
        "level": "Study",
        "status": "Ready",
        "queryStatus": "Enabled",
    }
    assert http.get("/v2/extendedquerytags/PatientAge").json() == tag
    assert tag in http.get("/v2/extendedquerytags").json()

    patched = http.patch("/v2/extendedquerytags/00101010", json={"QueryStatus": "disabled"})
    assert patched.status_code == 200
    assert patched.json()["queryStatus"] == "Disabled"
    assert http.get("/v2/extendedquerytags/00101010/errors").json() == []

    assert http.delete("/v2/extendedquerytags/PatientAge").status_code == 204
    assert http.get("/v2/extendedquerytags/00101010").status_code == 404
    assert http.delete("/v2/extendedquerytags/00101010").status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ([{"path": "NotAKeyword", "level": "Study"}], "NotAKeyword"),
        ([{"path": "00101010", "level": "Patient"}], "level"),
        ([{"path": "00101010", "vr": "LO", "level": "Study"}], "VR"),
        ([{"path": "ReferencedStudySequence", "level": "Study"}], "SQ"),
        ([{"path": "PixelData", "level": "Instance"}], "not supported"),
        ([{"path": "04011001", "level": "Instance", "privateCreator": "X"}], "VR"),
        ([{"path": "04011001", "vr": "SS", "level": "Instance"}], "PrivateCreator"),
        ([{"path": "04011001", "vr": "SQ", "privateCreator": "X", "level": "Instance"}], "SQ"),
        ([{"path": "04011001", "vr": "OB", "privateCreator": "X", "level": "Instance"}], "OB"),
        ({"path": "00101010"}, "array"),
        ([], "array"),
    ],
)
def test_add_rejects_invalid_tags(http: httpx.Client, body: Any, needle: str) -> None:
    response = http.post("/v2/extendedquerytags", json=body)
    assert response.status_code == 400, response.text
    assert needle in response.json()["message"]


def test_add_rejects_bad_json_and_content_type(http: httpx.Client) -> None:
    response = http.post(
        "/v2/extendedquerytags", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    response = http.post(
        "/v2/extendedquerytags", content=b"[]", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def test_duplicates_conflict(http: httpx.Client) -> None:
    reference = add_tags(http, [{"path": "00081080", "level": "Series"}])  # AdmittingDiagnoses
    wait_done(http, reference["href"])
    response = http.post(
        "/v2/extendedquerytags",
        json=[{"path": "AdmittingDiagnosesDescription", "level": "Series"}],
    )
    assert response.status_code == 409, response.text
    assert "00081080" in response.json()["message"]
    again = http.post("/v2/extendedquerytags", json=[{"path": "00081080", "level": "Series"}])
    assert again.status_code == 409


def test_invalid_and_unknown_paths(http: httpx.Client) -> None:
    assert http.get("/v2/extendedquerytags/xyz!").status_code == 400
    assert http.get("/v2/extendedquerytags/00191001").status_code == 404
    assert http.get("/v2/extendedquerytags/00191001/errors").status_code == 404
    assert (
        http.patch("/v2/extendedquerytags/00191001", json={"queryStatus": "Enabled"}).status_code
        == 404
    )
    assert http.get("/v2/operations/0123456789abcdef").status_code == 404


def test_private_tag_and_store_time_indexing_and_qido(http: httpx.Client) -> None:
    reference = add_tags(
        http,
        [
            {"Path": "00191010", "VR": "SS", "PrivateCreator": "MicrosoftPC", "Level": "Instance"},
            {"Path": "BodyPartExamined", "Level": "Series"},
        ],
    )
    wait_done(http, reference["href"])
    private = http.get("/v2/extendedquerytags/00191010").json()
    assert private["privateCreator"] == "MicrosoftPC"
    assert private["vr"] == "SS"

    part = f"P{generate_uid()[-10:]}"
    study, series, sop = store(http, BodyPartExamined=part)
    found = http.get("/v2/series", params={"BodyPartExamined": part.lower()})
    assert found.status_code == 200, found.text
    assert [s["0020000E"]["Value"][0] for s in found.json()] == [series]
    assert http.get("/v2/studies", params={"BodyPartExamined": part}).status_code == 400


@pytest.mark.local_backend
def test_reindex_thousands_then_search(eqt_server: Server, http: httpx.Client) -> None:
    study = generate_uid()
    count = 2500

    async def fill() -> None:
        db = SqliteDatabase(eqt_server.data_dir / "index.sqlite")
        index = SqliteIndexStore(db)
        try:
            for n in range(count):
                age = f"{n % 50:03d}Y"
                await add_instance(
                    index,
                    study if n < 10 else generate_uid(),
                    generate_uid(),
                    generate_uid(),
                    metadata={"00101010": {"vr": "AS", "Value": [age]}},
                )
        finally:
            db.close()

    asyncio.run(fill())
    reference = add_tags(http, [{"path": "00101010", "level": "Study"}])
    assert http.get("/v2/extendedquerytags/00101010").json()["status"] in ("Adding", "Ready")
    operation, seen = wait_done(http, reference["href"])
    assert operation["status"] == "Completed"
    assert seen == sorted(seen) and seen[-1] == 100
    found = http.get("/v2/studies", params={"PatientAge": "007Y", "limit": "200"})
    assert found.status_code == 200
    # Study n (n >= 10) has age n % 50; the first study takes the latest of its 10 instances.
    expected = sum(1 for n in range(10, count) if n % 50 == 7)
    assert len(found.json()) == expected
    assert http.get("/v2/studies", params={"PatientAge": "009Y", "StudyInstanceUID": study}).json()
    assert http.delete("/v2/extendedquerytags/00101010").status_code == 204


def test_errors_disable_then_header_when_enabled(http: httpx.Client) -> None:
    store(http, PatientSex="not a valid code string")  # a CS that cannot be indexed
    reference = add_tags(http, [{"path": "PatientSex", "level": "Study"}])
    wait_done(http, reference["href"])
    tag = http.get("/v2/extendedquerytags/00100040").json()
    assert tag["queryStatus"] == "Disabled"
    assert tag["errors"]["count"] == 1
    assert tag["errors"]["href"].endswith("/v2/extendedquerytags/00100040/errors")
    errors = http.get("/v2/extendedquerytags/00100040/errors").json()
    assert set(errors[0]) == {
        "studyInstanceUid",
        "seriesInstanceUid",
        "sopInstanceUid",
        "createdTime",
        "errorMessage",
        "partitionName",  # Azure's entries name the partition, Microsoft.Default when off
    }
    assert errors[0]["partitionName"] == "Microsoft.Default"
    assert http.get("/v2/studies", params={"PatientSex": "F"}).status_code == 400
    http.patch("/v2/extendedquerytags/00100040", json={"queryStatus": "Enabled"})
    response = http.get("/v2/studies", params={"PatientSex": "F"})
    assert response.status_code in (200, 204)
    assert response.headers["erroneous-dicom-attributes"] == "00100040"
    plain = http.get("/v2/studies", params={"PatientID": "PID-1", "limit": "1"})
    assert "erroneous-dicom-attributes" not in plain.headers


def test_reindex_survives_a_kill(tmp_path: Path) -> None:
    server = start_server(tmp_path, DICOM_REINDEX_BATCH_SIZE="5")
    count = 1500
    try:

        async def fill() -> None:
            db = SqliteDatabase(server.data_dir / "index.sqlite")
            index = SqliteIndexStore(db)
            try:
                for n in range(count):
                    await add_instance(
                        index,
                        generate_uid(),
                        generate_uid(),
                        generate_uid(),
                        metadata={"00080070": {"vr": "LO", "Value": [f"Maker{n % 3}"]}},
                    )
            finally:
                db.close()

        asyncio.run(fill())
        with server.client() as client:
            reference = add_tags(client, [{"path": "Manufacturer", "level": "Instance"}])
            deadline = time.monotonic() + 30
            while client.get(reference["href"]).json()["percentComplete"] < 10:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            server.process.kill()
            server.process.wait()
        # The kill lands between batches or inside one: the database tells where it stopped.
        db = SqliteDatabase(server.data_dir / "index.sqlite")
        (at_kill,) = db.connection().execute("SELECT percent_complete FROM operation").fetchone()
        db.close()
        server.process.wait()
    finally:
        if server.process.poll() is None:
            stop_server(server)
    assert at_kill < 100, "the reindex finished before the kill; make it longer"
    (tmp_path / "again").mkdir()
    restarted = start_server(tmp_path / "again", DATA_DIR=str(server.data_dir))
    try:
        with restarted.client() as client:
            # The href names the first server's port; the operation id is what survives.
            operation, _ = wait_done(client, f"/v2/operations/{reference['id']}", timeout=90)
            assert operation["status"] == "Completed"
            total = 0
            for maker in range(3):
                found = client.get(
                    "/v2/instances", params={"Manufacturer": f"Maker{maker}", "limit": "1"}
                )
                assert found.status_code == 200
        db = SqliteDatabase(server.data_dir / "index.sqlite")
        try:
            rows = (
                db.connection()
                .execute("SELECT COUNT(*), COUNT(DISTINCT sop_uid) FROM eqt_value")
                .fetchone()
            )
        finally:
            db.close()
        total = rows[0]
        assert total == rows[1] == count
    finally:
        stop_server(restarted)


def test_deleted_instances_take_their_values_along(http: httpx.Client) -> None:
    wait_done(http, add_tags(http, [{"path": "ProtocolName", "level": "Series"}])["href"])
    protocol = f"Proto{generate_uid()[-8:]}"
    study, series, _ = store(http, ProtocolName=protocol)
    assert http.get("/v2/series", params={"ProtocolName": protocol}).status_code == 200
    assert http.delete(f"/v2/studies/{study}/series/{series}").status_code == 204
    store(http, study_uid=study, series_uid=series, ProtocolName=None)
    assert http.get("/v2/series", params={"ProtocolName": protocol}).status_code == 204


def test_deleting_the_newest_instance_gives_its_study_and_series_values_back(
    http: httpx.Client,
) -> None:
    """Study- and series-level values are the newest instance's that has one; when a delete
    takes that instance, the study is found by the value of the newest that remains, no longer
    by the deleted one's (a probe found both backends kept the deleted value)."""
    added = add_tags(
        http,
        [{"path": "InstitutionName", "level": "Study"}, {"path": "StationName", "level": "Series"}],
    )
    wait_done(http, added["href"])
    mark = generate_uid()[-10:]
    old, new = f"Old{mark}", f"New{mark}"
    study, series, _ = store(http, InstitutionName=old, StationName=old)
    store(http, study_uid=study, series_uid=series, InstitutionName=None, StationName=None)
    _, _, newest = store(
        http, study_uid=study, series_uid=series, InstitutionName=new, StationName=new
    )

    def found(level: str, keyword: str, value: str) -> int:
        return http.get(f"/v2/{level}", params={keyword: value}).status_code

    assert (found("studies", "InstitutionName", new), found("studies", "InstitutionName", old)) == (
        200,
        204,
    )
    assert (found("series", "StationName", new), found("series", "StationName", old)) == (200, 204)
    assert http.delete(f"/v2/studies/{study}/series/{series}/instances/{newest}").status_code == 204
    # The newest remaining instance has neither; the one before it has the old values.
    assert (found("studies", "InstitutionName", new), found("studies", "InstitutionName", old)) == (
        204,
        200,
    )
    assert (found("series", "StationName", new), found("series", "StationName", old)) == (204, 200)
    shown = http.get(
        "/v2/studies", params={"InstitutionName": old, "includefield": "InstitutionName"}
    )
    assert [s["0020000D"]["Value"][0] for s in shown.json()] == [study]


@pytest.mark.parametrize(
    ("path", "level", "named"),
    [
        ("PatientName", "Study", "PatientName (00100010)"),
        ("ManufacturerModelName", "Series", "ManufacturerModelName (00081090)"),
        ("0020000D", "Study", "StudyInstanceUID (0020000D)"),
    ],
)
def test_add_a_tag_qido_already_supports_is_400_naming_it(
    http: httpx.Client, path: str, level: str, named: str
) -> None:
    response = http.post("/v2/extendedquerytags", json=[{"path": path, "level": level}])
    assert response.status_code == 400, response.text
    assert named in response.json()["message"]
    assert "already supported" in response.json()["message"]
    # no tag was recorded, so no reindex runs
    assert http.get(f"/v2/extendedquerytags/{named[-9:-1]}").status_code == 404


def test_store_warning_on_an_indexed_tag_is_not_an_indexing_error(http: httpx.Client) -> None:
    # given: a ready tag
    reference = add_tags(http, [{"path": "Laterality", "level": "Series"}])
    assert wait_done(http, reference["href"])[0]["status"] == "Completed"
    # when: v2 stores an instance whose value for it breaks its VR (a warning, not a failure)
    ds = make_dataset(Laterality="not a code string")
    response = http.post(
        "/v2/studies",
        content=multipart([to_bytes(ds)]),
        headers={"Content-Type": MULTIPART, "Accept": "application/dicom+json"},
    )
    assert response.status_code == 202, response.text
    assert "00081196" in response.json()["00081199"]["Value"][0]  # WarningReason
    # then: the tag has no errors, stays enabled, and the value is simply not searchable
    tag = http.get("/v2/extendedquerytags/00200060").json()
    assert "errors" not in tag
    assert tag["queryStatus"] == "Enabled"
    assert http.get("/v2/extendedquerytags/00200060/errors").json() == []
    found = http.get(
        "/v2/series",
        params={"StudyInstanceUID": ds.StudyInstanceUID, "Laterality": "not a code string"},
    )
    assert found.status_code == 204
    assert "erroneous-dicom-attributes" not in found.headers


def test_a_bulk_update_reindexes_the_attributes_it_changes(http: httpx.Client) -> None:
    """Extended query tags stay consistent: the new versions' values replace the old ones."""
    study, _, _ = store(http, Occupation="Baker")
    wait_done(http, add_tags(http, [{"path": "Occupation", "level": "Study"}])["href"])
    found = http.get("/v2/studies", params={"Occupation": "Baker", "StudyInstanceUID": study})
    assert found.status_code == 200
    response = http.post(
        "/v2/studies/$bulkUpdate",
        json={
            "studyInstanceUids": [study],
            "changeDataset": {"00102180": {"vr": "SH", "Value": ["Smith"]}},
        },
    )
    operation, _ = wait_done(http, response.json()["href"])
    assert operation["status"] == "Completed"
    updated = http.get("/v2/studies", params={"Occupation": "Smith", "StudyInstanceUID": study})
    assert [s["0020000D"]["Value"][0] for s in updated.json()] == [study]
    old = http.get("/v2/studies", params={"Occupation": "Baker", "StudyInstanceUID": study})
    assert old.status_code == 204


def test_an_age_that_is_not_one_is_400_not_an_empty_answer(http: httpx.Client) -> None:
    """A probe's PatientAge=030Y-040Y answered 204: no range of ages exists, and as a value
    it could match nothing."""
    added = http.get("/v2/extendedquerytags/00101010").status_code == 404
    if added:
        wait_done(http, add_tags(http, [{"Path": "PatientAge", "Level": "Study"}])["href"])
    try:
        study, _, _ = store(http, PatientAge="042Y")
        for bad in ["030Y-040Y", "42Y", "042"]:
            response = http.get("/v2/studies", params={"PatientAge": bad})
            assert response.status_code == 400, (bad, response.status_code)
            assert "invalid age" in response.json()["message"]
        found = http.get("/v2/studies", params={"PatientAge": "042Y", "StudyInstanceUID": study})
        assert [s["0020000D"]["Value"][0] for s in found.json()] == [study]
    finally:
        if added:  # other tests of this server add and delete PatientAge themselves
            assert http.delete("/v2/extendedquerytags/PatientAge").status_code == 204
