"""Retrieve metadata (conformance statement, "Retrieve metadata" and its cache validation)."""

from __future__ import annotations

import warnings

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.support.factories import make_dataset, to_bytes
from tests.support.wado import sample, store

ACCEPT = {"Accept": "application/dicom+json"}
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


def vrs(item: dict) -> set[str]:
    """Every VR in a DICOM JSON object, at any depth."""
    found: set[str] = set()
    for attribute in item.values():
        found.add(attribute["vr"])
        if attribute["vr"] == "SQ":
            for nested in attribute.get("Value", []):
                found |= vrs(nested)
    return found


def test_instance_metadata_is_dicom_json_without_binary_vrs(client: httpx.Client) -> None:
    ds = sample("OBXXXX1A.dcm")  # palette LUT data (OW) and pixel data (OB)
    ds.add_new(0x00091010, "LO", "creator")
    stored = store(client, ds)
    response = client.get(stored.instance + "/metadata", headers=ACCEPT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    [item] = response.json()
    assert item["00080018"] == {"vr": "UI", "Value": [ds.SOPInstanceUID]}
    assert item["00280010"] == {"vr": "US", "Value": [600]}
    assert not vrs(item) & BINARY_VRS
    assert "7FE00010" not in item and "00281201" not in item


def test_series_and_study_metadata_list_every_instance(client: httpx.Client) -> None:
    study, series = generate_uid(), generate_uid()
    in_series = [store(client, make_dataset(study_uid=study, series_uid=series)) for _ in range(3)]
    other = store(client, make_dataset(study_uid=study))
    series_items = client.get(in_series[0].series + "/metadata", headers=ACCEPT).json()
    assert [i["00080018"]["Value"][0] for i in series_items] == [
        s.ds.SOPInstanceUID for s in in_series
    ]
    study_items = client.get(in_series[0].study + "/metadata", headers=ACCEPT).json()
    assert {i["00080018"]["Value"][0] for i in study_items} == {
        s.ds.SOPInstanceUID for s in [*in_series, other]
    }


@pytest.mark.parametrize(
    "accept",
    [None, "application/dicom+json", "application/json", "*/*", "application/*",
     "image/png, application/dicom+json; q=0.5"],
)  # fmt: skip
def test_metadata_accept_variants_are_served(client: httpx.Client, accept: str | None) -> None:
    stored = store(client, make_dataset())
    headers = {"Accept": accept} if accept else {}
    assert client.get(stored.instance + "/metadata", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "accept",
    ["application/dicom", 'multipart/related; type="application/dicom+xml"', "image/jpeg",
     "application/dicom+json; q=0"],
)  # fmt: skip
def test_metadata_other_media_types_are_406(client: httpx.Client, accept: str) -> None:
    stored = store(client, make_dataset())
    response = client.get(stored.instance + "/metadata", headers={"Accept": accept})
    assert response.status_code == 406
    assert "application/dicom+json" in response.json()["message"]


@pytest.mark.parametrize("accept", ["foo", ";;", 'multipart/related; type="application/dicom'])
def test_an_accept_header_that_names_nothing_readable_is_406(
    client: httpx.Client, accept: str
) -> None:
    """The conformance statement answers 406 to an Accept header it does not support; a
    probe got 400 for one it could not read at all."""
    stored = store(client, make_dataset())
    response = client.get(stored.instance + "/metadata", headers={"Accept": accept})
    assert response.status_code == 406, response.text
    assert "names no media type that can be read" in response.json()["message"]


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_metadata_etag_gives_304_until_the_data_changes(client: httpx.Client, level: str) -> None:
    study, series = generate_uid(), generate_uid()
    stored = store(client, make_dataset(study_uid=study, series_uid=series))
    path = getattr(stored, level) + "/metadata"
    first = client.get(path, headers=ACCEPT)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')

    again = client.get(path, headers={**ACCEPT, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert (
        client.get(path, headers={**ACCEPT, "If-None-Match": f'"x", W/{etag}'}).status_code == 304
    )
    assert client.get(path, headers={**ACCEPT, "If-None-Match": '"other"'}).status_code == 200

    # then: a change to the resource changes the tag
    replacement = make_dataset(
        study_uid=study, series_uid=series, sop_uid=stored.ds.SOPInstanceUID, PatientName="New^Name"
    )
    assert (
        client.put(
            "/v2/studies",
            content=to_bytes(replacement),
            headers={"Content-Type": "application/dicom", **ACCEPT},
        ).status_code
        == 200
    )
    changed = client.get(path, headers={**ACCEPT, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()[0]["00100010"]["Value"] == [{"Alphabetic": "New^Name"}]


def test_metadata_of_unknown_resources_is_404(client: httpx.Client) -> None:
    stored = store(client, make_dataset())
    unknown = generate_uid()
    for path in (
        f"/v2/studies/{unknown}/metadata",
        f"{stored.study}/series/{unknown}/metadata",
        f"{stored.series}/instances/{unknown}/metadata",
    ):
        response = client.get(path, headers=ACCEPT)
        assert response.status_code == 404, path
        assert unknown in response.json()["message"]


def test_metadata_of_malformed_uid_is_400(client: httpx.Client) -> None:
    response = client.get("/v2/studies/1.2.3_4/metadata", headers=ACCEPT)
    assert response.status_code == 400


def test_metadata_accepts_the_original_version_header(client: httpx.Client) -> None:
    stored = store(client, make_dataset())
    response = client.get(
        stored.instance + "/metadata", headers={**ACCEPT, "msdicom-request-original": "true"}
    )
    assert response.status_code == 200


def test_metadata_keeps_a_trailing_nul_the_sender_padded_with(client: httpx.Client) -> None:
    # given: values padded with NULs instead of spaces, stored as is
    ds = make_dataset(PatientID=f"NUL-{generate_uid()[-12:]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about a NUL in a CS value
        ds.PatientName = "Doe^Jane\x00\x00"
        ds.StudyDescription = "Brain\x00"
        ds.Modality = "MR\x00\x00"
        ds.AccessionNumber = "  \x00\x00"  # padding only: still an empty value
        stored = store(client, ds)
    # when
    response = client.get(stored.instance + "/metadata", headers=ACCEPT)
    # then: "Retrieved metadata includes the null character" (conformance statement)
    assert response.status_code == 200
    [item] = response.json()
    assert item["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane\x00\x00"}]}
    assert item["00081030"] == {"vr": "LO", "Value": ["Brain\x00"]}
    assert item["00080060"] == {"vr": "CS", "Value": ["MR\x00\x00"]}
    assert item["00080050"] == {"vr": "SH"}
    assert item["00080018"] == {"vr": "UI", "Value": [ds.SOPInstanceUID]}  # UI pads with NUL
    # and searches still match the value without its padding
    found = client.get(
        "/v2/studies",
        params={"PatientID": ds.PatientID, "PatientName": "Doe^Jane", "StudyDescription": "Brain"},
        headers=ACCEPT,
    )
    assert found.status_code == 200, found.text
    assert [study["0020000D"]["Value"][0] for study in found.json()] == [ds.StudyInstanceUID]
    series = client.get(
        f"/v2/studies/{ds.StudyInstanceUID}/series", params={"Modality": "MR"}, headers=ACCEPT
    )
    assert series.status_code == 200, series.text
