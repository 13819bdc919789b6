"""External metadata over HTTP (spec/external-metadata.md): STOW headers, metadata, QIDO.

The server is the module's own (one per backend), since tag VRs are fixed service-wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.server import Server, backend_server

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'
META = {"msdicom-request-meta": "true"}


@pytest.fixture(scope="module")
def meta_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    with backend_server("external-metadata", backend, tmp_path_factory, request) as running:
        yield running


@pytest.fixture()
def http(meta_server: Server) -> Iterator[httpx.Client]:
    with meta_server.client() as client:
        yield client


def post(
    client: httpx.Client, headers: dict[str, str], version: str = "v2", **dataset: Any
) -> tuple[Any, str]:
    """STOW one new instance (``dataset`` sets its attributes) with ``headers``."""
    ds = make_dataset(**dataset)
    response = client.post(
        f"/{version}/studies",
        content=multipart([to_bytes(ds)]),
        headers={"Content-Type": MULTIPART, "Accept": "application/dicom+json", **headers},
    )
    return response, ds.StudyInstanceUID


def test_store_retrieve_and_search(http: httpx.Client) -> None:
    word = f"Name{generate_uid()[-6:]}"
    response, study = post(
        http,
        {
            "msdicom-meta-CS-001912FF": "CS",
            "msdicom-meta-PN-00191100": word,
            "msdicom-meta-DA-001900FF": "20241231",
        },
    )
    assert response.status_code == 200, response.text

    plain = http.get(f"/v2/studies/{study}/metadata").json()[0]
    assert "00191100" not in plain
    meta = http.get(f"/v2/studies/{study}/metadata", headers=META).json()[0]
    assert meta["00191100"] == {"vr": "PN", "Value": [{"Alphabetic": word}]}
    assert meta["00190011"] == {"vr": "LO", "Value": ["Microsoft"]}
    assert meta["001912FF"] == {"vr": "CS", "Value": ["CS"]}
    assert meta["00190012"] == {"vr": "LO", "Value": ["Microsoft"]}
    # (0019,00FF), the spec's own example, lies in the creators' block (0019,0010-00FF): it
    # has no creator of its own, and (0019,0000) would be the group's length.
    assert meta["001900FF"] == {"vr": "DA", "Value": ["20241231"]}
    assert "00190000" not in meta
    v1 = http.get(f"/v1/studies/{study}/metadata", headers=META).json()[0]
    assert "00191100" not in v1

    found = http.get("/v2/studies", params={"00191100": word}, headers=META)
    assert found.status_code == 200, found.text
    [result] = found.json()
    assert result["0020000D"]["Value"] == [study]
    assert result["00191100"]["Value"] == [{"Alphabetic": word}]
    ranged = http.get(
        "/v2/studies",
        params={"001900FF": "20241201-20250101", "StudyInstanceUID": study},
        headers=META,
    )
    assert ranged.status_code == 200
    assert http.get("/v2/studies", params={"00191100": word}).status_code == 400


def test_conflicting_vr_or_bad_value_fails_the_whole_transaction(
    meta_server: Server, http: httpx.Client
) -> None:
    before = len(meta_server.stored_files())
    response, _ = post(http, {"msdicom-meta-LO-00211001": "first"})
    assert response.status_code == 200
    conflict, study = post(http, {"msdicom-meta-SH-00211001": "second"})
    assert conflict.status_code == 409, conflict.text
    bad, _ = post(http, {"msdicom-meta-DA-00211003": "not-a-date"})
    assert bad.status_code == 400
    assert "00211003" in bad.json()["message"]
    for header in ("msdicom-meta-SQ-00211005", "msdicom-meta-LO-00100010", "msdicom-meta-LO-1"):
        rejected, _ = post(http, {header: "x"})
        assert rejected.status_code == 400, header
    assert len(meta_server.stored_files()) == before + 1
    assert http.get(f"/v2/studies/{study}/metadata").status_code == 404


def test_updates_the_value_and_wins_over_an_extended_query_tag(http: httpx.Client) -> None:
    study = generate_uid()
    for value in ("old", "new"):
        response, _ = post(http, {"msdicom-meta-LO-00231001": value}, study_uid=study)
        assert response.status_code == 200
    meta = http.get(f"/v2/studies/{study}/metadata", headers=META).json()
    assert {m["00231001"]["Value"][0] for m in meta} == {"new"}
    added = http.post(
        "/v2/extendedquerytags",
        json=[{"path": "00231001", "vr": "LO", "privateCreator": "Other", "level": "Study"}],
    )
    assert added.status_code == 202
    found = http.get(
        "/v2/studies", params={"00231001": "new", "StudyInstanceUID": study}, headers=META
    )
    assert found.status_code == 200, found.text


def test_metadata_etag_follows_the_external_elements_it_carries(http: httpx.Client) -> None:
    """A store into another series of the study that changes the study's external value
    leaves this series' instances as they were, but not its metadata with external elements:
    a revalidation of that must be a 200 with the new value, not a 304."""
    study, series = generate_uid(), generate_uid()

    def stow(series_uid: str, value: str) -> None:
        headers = {"msdicom-meta-LO-00271001": value}
        response, _ = post(http, headers, study_uid=study, series_uid=series_uid)
        assert response.status_code == 200, response.text

    stow(series, "first")
    path = f"/v2/studies/{study}/series/{series}/metadata"
    with_meta = http.get(path, headers=META)
    plain = http.get(path)
    assert with_meta.headers["etag"] != plain.headers["etag"]
    assert (
        http.get(path, headers={**META, "If-None-Match": with_meta.headers["etag"]}).status_code
        == 304
    )

    stow(generate_uid(), "second")
    assert http.get(path, headers={"If-None-Match": plain.headers["etag"]}).status_code == 304
    again = http.get(path, headers={**META, "If-None-Match": with_meta.headers["etag"]})
    assert again.status_code == 200
    assert again.json()[0]["00271001"]["Value"] == ["second"]
    assert again.headers["etag"] != with_meta.headers["etag"]


def test_deleting_the_study_deletes_its_external_metadata(http: httpx.Client) -> None:
    ds = make_dataset()
    body = multipart([to_bytes(ds)])
    headers = {"Content-Type": MULTIPART, "Accept": "application/dicom+json"}
    stored = http.post("/v2/studies", content=body, headers={**headers, META_LO: "kept?"})
    assert stored.status_code == 200
    study = ds.StudyInstanceUID
    assert http.delete(f"/v2/studies/{study}").status_code == 204
    assert http.post("/v2/studies", content=body, headers=headers).status_code == 200
    meta = http.get(f"/v2/studies/{study}/metadata", headers=META).json()[0]
    assert "00251001" not in meta


META_LO = "msdicom-meta-LO-00251001"
