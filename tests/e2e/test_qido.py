"""QIDO-RS over HTTP against a real server process (conformance statement, "Search (QIDO-RS)").

The server is shared by the whole session, so every test stores its own instances with values
no other test uses (a fresh PatientID, accession number or UID) and scopes its searches by them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.support.factories import make_dataset, multipart, to_bytes

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'
DICOM_JSON = "application/dicom+json"

STUDY_DEFAULTS = {
    "00080020",  # StudyDate
    "00080050",  # AccessionNumber
    "00081030",  # StudyDescription
    "00080090",  # ReferringPhysicianName
    "00100010",  # PatientName
    "00100020",  # PatientID
    "00100030",  # PatientBirthDate
    "0020000D",  # StudyInstanceUID
}
SERIES_DEFAULTS = {"00080060", "00081090", "0020000E", "00400244"}
INSTANCE_DEFAULTS = {"00080018"}


def unique(prefix: str) -> str:
    """A value no other test uses, short enough for an SH attribute (16 characters)."""
    return f"{prefix[:5]}-{uuid.uuid4().hex[:10]}"


def store(client: httpx.Client, *datasets: Dataset) -> None:
    response = client.post(
        "/v2/studies",
        content=multipart([to_bytes(ds) for ds in datasets]),
        headers={"Content-Type": MULTIPART, "Accept": DICOM_JSON},
    )
    assert response.status_code == 200, response.text


def search(client: httpx.Client, path: str, **headers: str) -> list[dict[str, Any]]:
    response = client.get(path, headers={"Accept": DICOM_JSON, **headers})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(DICOM_JSON)
    body = response.json()
    assert isinstance(body, list)
    return body


def value(result: dict[str, Any], tag: str) -> Any:
    return result[tag]["Value"][0]


def values(results: list[dict[str, Any]], tag: str) -> list[Any]:
    return [value(r, tag) for r in results]


@dataclass
class Study:
    """A study of two series (CT with two instances, SR with one), all values unique."""

    patient_id: str
    study_uid: str
    ct_series: str
    sr_series: str
    sops: list[str]


def full_dataset(**attrs: Any) -> Dataset:
    defaults: dict[str, Any] = {
        "PatientBirthDate": "19800101",
        "ReferringPhysicianName": "Referrer^Rita",
        "ManufacturerModelName": "Model X",
        "PerformedProcedureStepStartDate": "20240102",
        "SeriesDescription": "Axial",
        "SeriesNumber": 1,
        "StudyID": "S1",
        "PatientSex": "F",
        "SpecificCharacterSet": "ISO_IR 192",
    }
    return make_dataset(**{**defaults, **attrs})


@pytest.fixture()
def study(client: httpx.Client) -> Iterator[Study]:
    patient_id = unique("PID")
    study_uid, ct, sr = generate_uid(), generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    common = {"PatientID": patient_id, "study_uid": study_uid, "PatientName": "Doe^Jane"}
    store(
        client,
        full_dataset(**common, series_uid=ct, sop_uid=sops[0], Modality="CT", InstanceNumber=1),
        full_dataset(**common, series_uid=ct, sop_uid=sops[1], Modality="CT", InstanceNumber=2),
        full_dataset(**common, series_uid=sr, sop_uid=sops[2], Modality="SR", SeriesNumber=2),
    )
    yield Study(patient_id, study_uid, ct, sr, sops)


# -- routes and levels -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_six_routes_answer_under_both_versions(
    client: httpx.Client, study: Study, version: str
) -> None:
    s = study
    by_patient = f"PatientID={s.patient_id}"
    assert values(search(client, f"/{version}/studies?{by_patient}"), "0020000D") == [s.study_uid]
    assert len(search(client, f"/{version}/series?{by_patient}")) == 2
    assert len(search(client, f"/{version}/instances?{by_patient}")) == 3
    series = search(client, f"/{version}/studies/{s.study_uid}/series")
    assert sorted(values(series, "0020000E")) == sorted([s.ct_series, s.sr_series])
    assert len(search(client, f"/{version}/studies/{s.study_uid}/instances")) == 3
    instances = search(client, f"/{version}/studies/{s.study_uid}/series/{s.ct_series}/instances")
    assert sorted(values(instances, "00080018")) == sorted(s.sops[:2])


def test_default_attributes_per_resource(client: httpx.Client, study: Study) -> None:
    s = study
    key = f"PatientID={s.patient_id}"
    [one] = search(client, f"/v2/studies?{key}")
    assert set(one) == STUDY_DEFAULTS
    assert one["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    for result in search(client, f"/v2/series?{key}"):
        assert set(result) == STUDY_DEFAULTS | SERIES_DEFAULTS
    for result in search(client, f"/v2/instances?{key}"):
        assert set(result) == STUDY_DEFAULTS | SERIES_DEFAULTS | INSTANCE_DEFAULTS
    # Scoped resources return their own levels plus the UIDs of the URL.
    for result in search(client, f"/v2/studies/{s.study_uid}/series"):
        assert set(result) == SERIES_DEFAULTS | {"0020000D"}
    for result in search(client, f"/v2/studies/{s.study_uid}/instances"):
        assert set(result) == SERIES_DEFAULTS | INSTANCE_DEFAULTS | {"0020000D"}
    path = f"/v2/studies/{s.study_uid}/series/{s.ct_series}/instances"
    for result in search(client, path):
        assert set(result) == INSTANCE_DEFAULTS | {"0020000D", "0020000E"}


def test_matched_attributes_are_returned(client: httpx.Client, study: Study) -> None:
    [one] = search(client, f"/v2/studies?PatientID={study.patient_id}&ModalitiesInStudy=CT")
    assert one["00080061"] == {"vr": "CS", "Value": ["CT", "SR"]}
    results = search(
        client, f"/v2/studies/{study.study_uid}/instances?SOPInstanceUID={study.sops[2]}"
    )
    assert values(results, "00080018") == [study.sops[2]]


# -- includefield ------------------------------------------------------------------------------


def test_includefield_by_keyword_tag_repeated_and_comma_list(
    client: httpx.Client, study: Study
) -> None:
    path = (
        f"/v2/studies?PatientID={study.patient_id}&includefield=StudyTime"
        "&includefield=00200010,PatientSex&includefield=NumberOfStudyRelatedInstances"
        "&includefield=NumberOfStudyRelatedSeries,ModalitiesInStudy"
    )
    [one] = search(client, path)
    assert value(one, "00080030") == "101010"
    assert value(one, "00200010") == "S1"
    assert value(one, "00100040") == "F"
    assert one["00201208"] == {"vr": "IS", "Value": [3]}
    assert one["00201206"] == {"vr": "IS", "Value": [2]}
    assert one["00080061"] == {"vr": "CS", "Value": ["CT", "SR"]}


def test_includefield_all_adds_the_other_attributes_of_each_level(
    client: httpx.Client, study: Study
) -> None:
    [one] = search(client, f"/v2/studies?PatientID={study.patient_id}&includefield=all")
    assert set(one) >= STUDY_DEFAULTS
    for tag in ("00080005", "00080030", "00100040", "00200010", "00201208", "00080061"):
        assert tag in one, tag
    series = search(client, f"/v2/studies/{study.study_uid}/series?includefield=all")
    for result in series:
        for tag in ("00200011", "0008103E", "00201209"):
            assert tag in result
        assert "00080020" not in result  # a study attribute: not for a study's series
    by_series = {value(r, "0020000E"): value(r, "00201209") for r in series}
    assert by_series == {study.ct_series: 2, study.sr_series: 1}
    path = f"/v2/studies/{study.study_uid}/series/{study.ct_series}/instances?includefield=all"
    for result in search(client, path):
        for tag in ("00080016", "00200013", "00280010", "00280011", "00280100"):
            assert tag in result


def test_includefield_of_a_study_attribute_in_a_series_search(
    client: httpx.Client, study: Study
) -> None:
    path = f"/v2/studies/{study.study_uid}/series?includefield=StudyDescription"
    assert set(values(search(client, path), "00081030")) == {"Chest"}


# -- matching ----------------------------------------------------------------------------------


def test_person_name_matching_exact_fuzzy_and_wildcard(client: httpx.Client) -> None:
    family = unique("Fam").replace("-", "")
    accession = unique("ACC")
    store(client, make_dataset(PatientName=f"{family}^Jöhn", AccessionNumber=accession))
    scope = f"AccessionNumber={accession}"

    def found(query: str) -> bool:
        response = client.get(f"/v2/studies?{scope}&{query}")
        assert response.status_code in (200, 204), response.text
        return response.status_code == 200

    assert found(f"PatientName={family.upper()}^JOHN")
    assert not found(f"PatientName={family}")
    assert found(f"PatientName={family[:4].lower()}&fuzzymatching=true")
    assert found(f"PatientName=joh%20{family[:3]}&fuzzymatching=true")
    assert not found(f"PatientName={family[1:5]}&fuzzymatching=true")
    assert found(f"PatientName=*{family[2:6].lower()}*")  # what OHIF sends
    assert found(f"PatientName=*{family[2:6]}*&fuzzymatching=true")
    assert found(f"00100010={family}^J?hn")


def test_date_range_matching(client: httpx.Client) -> None:
    patient = unique("PID")
    for day in ("20230105", "20230110", "20230120"):
        store(client, make_dataset(PatientID=patient, StudyDate=day))
    base = f"/v2/studies?PatientID={patient}&StudyDate="

    def dates(query: str) -> list[str]:
        response = client.get(base + query)
        return sorted(values(response.json(), "00080020")) if response.status_code == 200 else []

    assert dates("20230105-20230110") == ["20230105", "20230110"]
    assert dates("20230110-") == ["20230110", "20230120"]
    assert dates("-20230105") == ["20230105"]
    assert dates("20230120") == ["20230120"]
    assert dates("20230121-") == []


def test_uid_lists_with_comma_or_backslash(client: httpx.Client) -> None:
    uids = [generate_uid() for _ in range(3)]
    store(client, *(make_dataset(study_uid=uid) for uid in uids))
    comma = search(client, f"/v2/studies?StudyInstanceUID={uids[0]},{uids[2]}")
    assert sorted(values(comma, "0020000D")) == sorted([uids[0], uids[2]])
    backslash = search(client, f"/v2/studies?StudyInstanceUID={uids[1]}%5C{uids[2]}")
    assert sorted(values(backslash, "0020000D")) == sorted(uids[1:])


def test_case_insensitive_but_accent_sensitive_strings(client: httpx.Client) -> None:
    patient = unique("pid")
    store(client, make_dataset(PatientID=patient, StudyDescription="Échographie"))
    assert client.get(f"/v2/studies?PatientID={patient.upper()}").status_code == 200
    base = f"/v2/studies?PatientID={patient}&StudyDescription="
    assert client.get(base + "ÉCHOGRAPHIE").status_code == 200
    assert client.get(base + "echographie").status_code == 204


def test_null_padded_values_match_with_or_without_padding(client: httpx.Client) -> None:
    patient = unique("PAD")
    ds = make_dataset(PatientID=patient + "\x00")
    store(client, ds)
    assert client.get(f"/v2/studies?PatientID={patient}").status_code == 200
    assert client.get(f"/v2/studies?PatientID={patient}%00").status_code == 200


def test_only_the_first_value_of_a_wrongly_multivalued_element_is_indexed(
    client: httpx.Client,
) -> None:
    first, second = unique("FIRST"), unique("SECOND")
    store(client, make_dataset(AccessionNumber=[first, second]))
    assert client.get(f"/v2/studies?AccessionNumber={first}").status_code == 200
    assert client.get(f"/v2/studies?AccessionNumber={second}").status_code == 204


def test_study_attributes_are_the_latest_instance_values(client: httpx.Client) -> None:
    study_uid, patient = generate_uid(), unique("PID")
    store(client, make_dataset(study_uid=study_uid, PatientID=patient, PatientName="Old^Name"))
    store(client, make_dataset(study_uid=study_uid, PatientID=patient, PatientName="New^Name"))
    [one] = search(client, f"/v2/studies?PatientID={patient}")
    assert value(one, "00100010") == {"Alphabetic": "New^Name"}
    assert client.get(f"/v2/studies?PatientID={patient}&PatientName=Old^Name").status_code == 204
    for result in search(client, f"/v2/instances?PatientID={patient}"):
        assert value(result, "00100010") == {"Alphabetic": "New^Name"}


# -- paging and status codes -------------------------------------------------------------------


def test_limit_offset_newest_first_and_204s(client: httpx.Client) -> None:
    patient = unique("PID")
    uids = [generate_uid() for _ in range(5)]
    for uid in uids:
        store(client, make_dataset(study_uid=uid, PatientID=patient))
    newest_first = list(reversed(uids))
    base = f"/v2/studies?PatientID={patient}"
    assert values(search(client, base), "0020000D") == newest_first
    assert values(search(client, base + "&limit=2&offset=1"), "0020000D") == newest_first[1:3]
    assert client.get(base + "&offset=5").status_code == 204
    assert client.get(base + "&offset=5").content == b""
    assert client.get(f"/v2/studies?PatientID={unique('none')}").status_code == 204


def test_limit_defaults_to_100_and_goes_up_to_200(client: httpx.Client) -> None:
    patient = unique("PID")
    store(client, *(make_dataset(PatientID=patient, InstanceNumber=n) for n in range(101)))
    base = f"/v2/studies?PatientID={patient}"
    assert len(search(client, base)) == 100
    assert len(search(client, base + "&limit=200")) == 101
    assert len(search(client, base + "&offset=100")) == 1


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("Foo=bar", "Foo"),
        ("PatientName=", "PatientName"),
        ("StudyDate=-", "StudyDate"),
        ("StudyDate=2024-01-01", "StudyDate"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("offset=" + "9" * 5000, "offset"),
        ("SOPInstanceUID=1.2.3", "SOPInstanceUID"),
        ("includefield=NoSuchKeyword", "NoSuchKeyword"),
        ("fuzzymatching=maybe", "fuzzymatching"),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(
    client: httpx.Client, query: str, named: str
) -> None:
    response = client.get(f"/v2/studies?{query}")
    assert response.status_code == 400
    assert named in response.json()["message"]


def test_a_uri_longer_than_8192_characters_is_414(client: httpx.Client) -> None:
    long_value = "A" * 8200
    assert client.get(f"/v2/studies?PatientID={long_value}").status_code == 414
    assert client.get(f"/v2/studies?PatientID={'A' * 8000}").status_code == 204


def test_an_invalid_uid_in_the_url_is_400(client: httpx.Client) -> None:
    response = client.get("/v2/studies/not_a_uid!/series")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", DICOM_JSON, "application/json", "application/*", "text/html, */*;q=0.1"],
)
def test_accept_headers_that_admit_json(
    client: httpx.Client, study: Study, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept else {}
    request = client.build_request("GET", f"/v2/studies?PatientID={study.patient_id}")
    for name in ("accept",):
        request.headers.pop(name, None)
    request.headers.update(headers)
    response = client.send(request)
    assert response.status_code == 200
    expected = "application/json" if accept == "application/json" else DICOM_JSON
    assert response.headers["content-type"].startswith(expected)


def test_accept_that_admits_no_json_is_406(client: httpx.Client) -> None:
    response = client.get("/v2/studies", headers={"Accept": "application/xml"})
    assert response.status_code == 406


# -- real clients ------------------------------------------------------------------------------


def test_ohif_study_list_and_series_list_requests(client: httpx.Client, study: Study) -> None:
    # What OHIF's DICOMweb data source sends (qido.js mapParams and seriesInStudy), with its
    # Azure configuration's wildcards.
    path = (
        f"/v2/studies?PatientName=*doe*&00100020=*{study.patient_id[4:]}*&limit=101&offset=0"
        "&fuzzymatching=false&includefield=00081030%2C00080060%2C00080090%2C00100030"
        "&StudyDate=19700102-20991231"
    )
    [one] = search(client, path)
    assert value(one, "0020000D") == study.study_uid
    assert value(one, "00081030") == "Chest"
    assert value(one, "00080060") in {"CT", "SR"}
    series = search(
        client, f"/v2/studies/{study.study_uid}/series?includefield=0008103E%2C00080021"
    )
    assert sorted(values(series, "0008103E")) == ["Axial", "Axial"]
    assert {value(r, "0020000D") for r in series} == {study.study_uid}


def test_dicomweb_client_searches(server_url: str, study: Study) -> None:
    from dicomweb_client.api import DICOMwebClient

    dw = DICOMwebClient(url=f"{server_url}/v2")
    found = dw.search_for_studies(search_filters={"PatientID": study.patient_id})
    assert [r["0020000D"]["Value"][0] for r in found] == [study.study_uid]
    series = dw.search_for_series(study.study_uid, fields=["SeriesNumber"])
    assert len(series) == 2
    instances = dw.search_for_instances(study.study_uid, study.ct_series, limit=1, offset=1)
    assert len(instances) == 1


@pytest.fixture()
def server_url(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")
