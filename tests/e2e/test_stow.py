"""STOW-RS over HTTP against a real server process (conformance statement, "Store")."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from dicom_core.domain.nesting import MAX_SEQUENCE_DEPTH
from tests.support.factories import (
    make_dataset,
    make_instance,
    make_nested_instance,
    multipart,
    to_bytes,
)
from tests.support.server import Server

#: How long the cleanup queue may take to check and delete a refused store's file (its
#: message waits UNKNOWN_COMMIT_DELAY).
CLEANUP_WAIT_SECONDS = 60

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'
ACCEPT = {"Accept": "application/dicom+json"}


def post(
    client: httpx.Client, body: bytes, path: str = "/v2/studies", **headers: str
) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": MULTIPART, **ACCEPT, **headers})


def instance_path(ds: Dataset, version: str = "v2") -> str:
    return (
        f"/{version}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def seq(body: dict, tag: str) -> list[dict]:
    return body.get(tag, {}).get("Value", [])


def failure_reasons(response: httpx.Response) -> list[int]:
    return [item["00081197"]["Value"][0] for item in seq(response.json(), "00081198")]


def test_store_single_part_application_dicom_returns_200_with_retrieve_urls(
    client: httpx.Client,
) -> None:
    ds = make_dataset()
    response = client.post(
        "/v2/studies", content=to_bytes(ds), headers={"Content-Type": "application/dicom", **ACCEPT}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    [item] = seq(body, "00081199")
    assert item["00081150"]["Value"] == [ds.SOPClassUID]
    assert item["00081155"]["Value"] == [ds.SOPInstanceUID]
    expected = (
        f"{client.base_url}/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    assert item["00081190"]["Value"] == [expected]
    assert "00081190" not in body  # no study in the URL: no study RetrieveURL
    assert "00081198" not in body


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary',
        "multipart/related; type=application/dicom; boundary=DICOMwebBoundary",
        "multipart/related; boundary=DICOMwebBoundary",
        'multipart/related; boundary="DICOMwebBoundary"; type="application/dicom"',
        "multipart/related",
        'multipart/related; type="application/dicom"',
    ],
)
def test_store_multipart_content_type_variants_are_accepted(
    client: httpx.Client, content_type: str
) -> None:
    response = client.post(
        "/v2/studies",
        content=multipart([make_instance(), make_instance()]),
        headers={"Content-Type": content_type, **ACCEPT},
    )
    assert response.status_code == 200, response.text
    assert len(seq(response.json(), "00081199")) == 2


def test_store_to_study_url_sets_study_retrieve_url_and_rejects_other_studies(
    client: httpx.Client,
) -> None:
    study = generate_uid()
    good = make_dataset(study_uid=study)
    other = make_dataset()
    response = post(client, multipart([to_bytes(good), to_bytes(other)]), f"/v2/studies/{study}")
    assert response.status_code == 202
    body = response.json()
    assert body["00081190"]["Value"] == [f"{client.base_url}/v2/studies/{study}"]
    [failed] = seq(body, "00081198")
    assert failed["00081197"]["Value"] == [43265]
    assert failed["00081155"]["Value"] == [other.SOPInstanceUID]
    assert failed["00081150"]["Value"] == [other.SOPClassUID]
    assert [i["00081155"]["Value"][0] for i in seq(body, "00081199")] == [good.SOPInstanceUID]


def test_store_only_mismatched_study_returns_409(client: httpx.Client) -> None:
    response = post(client, multipart([make_instance()]), f"/v2/studies/{generate_uid()}")
    assert response.status_code == 409
    assert failure_reasons(response) == [43265]
    assert "00081190" not in response.json()


def test_store_retrieve_url_honours_forwarded_host_and_proto(client: httpx.Client) -> None:
    response = post(
        client,
        multipart([make_instance()]),
        **{"X-Forwarded-Host": "dicom.example.org", "X-Forwarded-Proto": "https"},
    )
    [item] = seq(response.json(), "00081199")
    assert item["00081190"]["Value"][0].startswith("https://dicom.example.org/v2/studies/")


def test_store_same_instance_twice_with_post_returns_45070_and_put_replaces(
    client: httpx.Client, server: Server
) -> None:
    ds = make_dataset(StudyDescription="first")
    assert post(client, multipart([to_bytes(ds)])).status_code == 200
    ds.StudyDescription = "second"
    again = post(client, multipart([to_bytes(ds)]))
    assert again.status_code == 409
    assert failure_reasons(again) == [45070]
    replaced = client.put(
        "/v2/studies",
        content=multipart([to_bytes(ds)]),
        headers={"Content-Type": MULTIPART, **ACCEPT},
    )
    assert replaced.status_code == 200
    url = instance_path(ds)
    stored = client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert b"second" in stored.content and b"first" not in stored.content
    files = [p for p in server.stored_files() if ds.SOPInstanceUID in p.name]
    assert len(files) == 1  # the replaced version's file is gone


def test_store_missing_required_attribute_fails_with_43264_naming_it(client: httpx.Client) -> None:
    ds = make_dataset(PatientID=None)
    response = post(client, multipart([to_bytes(ds)]))
    assert response.status_code == 409
    [failed] = seq(response.json(), "00081198")
    assert failed["00081197"]["Value"] == [43264]
    comments = [c["00000902"]["Value"][0] for c in seq(failed, "00741048")]
    assert any("PatientID" in c for c in comments)


def test_store_empty_patient_id_is_accepted(client: httpx.Client) -> None:
    assert post(client, multipart([make_instance(PatientID="")])).status_code == 200


@pytest.mark.parametrize("bad_uid", ["1.2.3.abc#", "1" * 65, "1.2.3 4"])
def test_store_malformed_sop_instance_uid_fails_with_43264(
    client: httpx.Client, bad_uid: str
) -> None:
    response = post(client, multipart([make_instance(sop_uid=bad_uid)]))
    assert response.status_code == 409
    assert failure_reasons(response) == [43264]
    [failed] = seq(response.json(), "00081198")
    # Left out: a validating DICOM JSON parser (fo-dicom's default) would fail the whole
    # answer on a malformed UI value. The comment names the attribute instead.
    assert "00081155" not in failed
    comments = [c["00000902"]["Value"][0] for c in seq(failed, "00741048")]
    assert comments and all(c.startswith("DICOM100: (0008,0018) SOPInstanceUID") for c in comments)


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_store_of_an_identifying_uid_with_two_values_fails_naming_it(
    client: httpx.Client, keyword: str
) -> None:
    """A fuzzing probe's StudyInstanceUID '1.2.3.999\\1.2.4' was stored under the first value,
    silently: the second could never find it."""
    ds = make_dataset()
    setattr(ds, keyword, [str(getattr(ds, keyword)), "1.2.4"])
    response = post(client, multipart([to_bytes(ds)]))
    assert response.status_code == 409
    [failed] = seq(response.json(), "00081198")
    assert failed["00081197"]["Value"] == [43264]
    comments = [c["00000902"]["Value"][0] for c in seq(failed, "00741048")]
    assert any(keyword in c and "2 values" in c for c in comments), comments


def test_store_v2_invalid_searchable_attribute_stores_with_warning(client: httpx.Client) -> None:
    ds = make_dataset(StudyDate="NotAValidDate")
    response = post(client, multipart([to_bytes(ds)]))
    assert response.status_code == 202
    [item] = seq(response.json(), "00081199")
    assert item["00081196"]["Value"] == [1]
    comments = [c["00000902"]["Value"][0] for c in seq(item, "00741048")]
    assert len(comments) == 1 and "NotAValidDate" in comments[0]
    # The conformance statement's "Store Error Codes" number leads, as in its example.
    assert comments[0].startswith("DICOM100: (0008,0020)"), comments
    url = instance_path(ds)
    assert (
        client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}).status_code
        == 200
    )


def test_store_v1_invalid_searchable_attribute_fails_with_43264(client: httpx.Client) -> None:
    response = post(client, multipart([make_instance(StudyDate="NotAValidDate")]), "/v1/studies")
    assert response.status_code == 409
    assert failure_reasons(response) == [43264]


def test_v1_0_prerelease_is_served_as_v1_and_its_links_stay_there(client: httpx.Client) -> None:
    """Azure still lists v1.0-prerelease beside v1 and v2, with v1's behaviour: an invalid
    searchable attribute fails the instance (v2 would store it with a warning), and the
    answer's links keep the version the client used."""
    refused = post(
        client, multipart([make_instance(StudyDate="NotAValidDate")]), "/v1.0-prerelease/studies"
    )
    assert refused.status_code == 409
    assert failure_reasons(refused) == [43264]

    ds = make_dataset()
    stored = post(client, multipart([to_bytes(ds)]), "/v1.0-prerelease/studies")
    assert stored.status_code == 200, stored.text
    [item] = seq(stored.json(), "00081199")
    url = item["00081190"]["Value"][0]
    assert url.endswith(instance_path(ds, "v1.0-prerelease"))
    assert (
        client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}).status_code
        == 200
    )
    found = client.get("/v1.0-prerelease/instances", params={"SOPInstanceUID": ds.SOPInstanceUID})
    assert found.status_code == 200 and len(found.json()) == 1
    feed = client.get("/v1.0-prerelease/changefeed", params={"includeMetadata": "false"})
    assert feed.status_code == 200 and len(feed.json()) <= 10  # v1's default page
    # API versioning reads 1.0 as 1 and 2.0 as 2.
    for version in ("v1.0", "v2.0"):
        found = client.get(f"/{version}/instances", params={"SOPInstanceUID": ds.SOPInstanceUID})
        assert found.status_code == 200 and len(found.json()) == 1, version


def test_store_implicit_vr_instance_is_rejected(client: httpx.Client) -> None:
    data = make_instance(transfer_syntax=ImplicitVRLittleEndian)
    response = post(client, multipart([data]))
    assert response.status_code == 409
    [failed] = seq(response.json(), "00081198")
    assert failed["00081197"]["Value"] == [43264]
    assert "implicit" in failed["00741048"]["Value"][0]["00000902"]["Value"][0].lower()


def test_a_failure_item_never_names_a_malformed_uid_whatever_the_failure(
    client: httpx.Client,
) -> None:
    """A review found the transfer syntax refusals passing malformed UIDs on: a validating
    DICOM JSON parser (fo-dicom's default) then refuses the whole answer."""
    data = make_instance(
        transfer_syntax=ImplicitVRLittleEndian, sop_uid="1.2.3.abc#", SOPClassUID="1.2.x y"
    )
    response = post(client, multipart([data]))
    assert response.status_code == 409
    [failed] = seq(response.json(), "00081198")
    assert failed["00081197"]["Value"] == [43264]
    assert "00081155" not in failed and "00081150" not in failed


def test_store_part_that_is_not_dicom_fails_with_43264(client: httpx.Client) -> None:
    response = post(client, multipart([b"this is not DICOM at all" * 20, make_instance()]))
    assert response.status_code == 202
    assert failure_reasons(response) == [43264]


def test_store_of_a_file_cut_inside_its_pixel_data_fails_with_43264_and_keeps_nothing(
    client: httpx.Client,
) -> None:
    """A probe's file cut 1,000 bytes short was stored (200), and its frames answered 424
    for good, as a damaged stored file would."""
    ds = make_dataset(rows=64, columns=64)
    response = post(client, multipart([to_bytes(ds)[:-1000]]))
    assert response.status_code == 409
    [failed] = seq(response.json(), "00081198")
    assert failed["00081197"]["Value"] == [43264]
    assert failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    [comment] = [c["00000902"]["Value"][0] for c in seq(failed, "00741048")]
    assert comment.startswith("DICOM100: (7FE0,0010) PixelData:"), comment
    assert client.get(instance_path(ds) + "/metadata").status_code == 404


def test_store_empty_body_returns_204(client: httpx.Client) -> None:
    assert post(client, b"").status_code == 204
    empty = client.post("/v2/studies", content=b"", headers={"Content-Type": "application/dicom"})
    assert empty.status_code == 204


@pytest.mark.parametrize(
    "content_type",
    ["application/json", 'multipart/related; type="application/json"; boundary=X', "text/plain"],
)
def test_store_unsupported_content_type_returns_415(
    client: httpx.Client, content_type: str
) -> None:
    response = client.post(
        "/v2/studies", content=make_instance(), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["message"]


def test_store_without_content_type_returns_415(client: httpx.Client) -> None:
    response = client.post("/v2/studies", content=make_instance(), headers={"Content-Type": ""})
    assert response.status_code == 415


def test_store_part_with_other_media_type_returns_415(client: httpx.Client) -> None:
    body = multipart([make_instance()], part_type="text/plain")
    assert post(client, body).status_code == 415


def test_store_unsupported_accept_returns_406(client: httpx.Client) -> None:
    response = post(client, multipart([make_instance()]), Accept="application/xml")
    assert response.status_code == 406


@pytest.mark.parametrize("cut", [10, 200, -40, -5])
def test_store_truncated_multipart_returns_400_and_stores_nothing(
    client: httpx.Client, server: Server, cut: int
) -> None:
    ds = make_dataset()
    body = multipart([to_bytes(make_dataset(study_uid=ds.StudyInstanceUID)), to_bytes(ds)])
    response = post(client, body[:cut])
    assert response.status_code == 400
    assert "multipart" in response.json()["message"].lower()
    assert (
        client.get(f"/v2/studies/{ds.StudyInstanceUID}", headers={"Accept": "*/*"}).status_code
        == 404
    )
    assert server.staged_files() == []


def test_store_wrong_boundary_returns_400(client: httpx.Client) -> None:
    body = multipart([make_instance()], boundary="Actual")
    assert post(client, body).status_code == 400


@pytest.mark.parametrize("study", ["not_a_uid", "1" * 65, "....", "1.2.3%234"])
def test_store_malformed_study_uid_in_url_returns_400(client: httpx.Client, study: str) -> None:
    response = post(client, multipart([make_instance()]), f"/v2/studies/{study}")
    assert response.status_code == 400
    assert "UID" in response.json()["message"]


def test_store_concurrent_posts_of_one_instance_store_it_once(
    client: httpx.Client, server: Server
) -> None:
    ds = make_dataset()
    body = multipart([to_bytes(ds)])

    def send(_: int) -> httpx.Response:
        with server.client() as own:
            return post(own, body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1 and statuses.count(409) == 7
    for response in results:
        if response.status_code == 409:
            assert failure_reasons(response)[0] in (45070, 45071)
    # A loser whose file was written (azure: reserve, upload, commit refused) cannot tell
    # whether an attempt of its commit landed, so the cleanup queue deletes its file once the
    # index is asked (BlobJanitor.delete_unless_named): one file is left, not at once.
    deadline = time.monotonic() + CLEANUP_WAIT_SECONDS
    while len(files := [p for p in server.stored_files() if ds.SOPInstanceUID in p.name]) > 1:
        assert time.monotonic() < deadline, f"{len(files)} files of one instance stayed"
        time.sleep(0.5)
    assert len(files) == 1


def test_store_zeroes_the_preamble(client: httpx.Client) -> None:
    ds = make_dataset()
    data = to_bytes(ds, preamble=b"MZ\x90\x00 malicious preamble")
    assert post(client, multipart([data])).status_code == 200
    url = instance_path(ds)
    stored = client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}).content
    assert stored[:128] == bytes(128)
    assert stored[128:] == data[128:]


@pytest.mark.parametrize(
    "quoted",
    [
        "see --DICOMwebBoundary above",  # no line break before it
        "line\r\n--DICOMwebBoundary-x",  # CRLF before it, then neither "--" nor a line break
        "line\r\n--DICOMwebBoundary--x",
        "line\n--DICOMwebBoundary\r\nnext",  # bare LF before it in a CRLF-framed body
    ],
)
def test_store_boundary_text_inside_instance_is_stored_byte_exact(
    client: httpx.Client, quoted: str
) -> None:
    # RFC 2046: only CRLF "--boundary" padding CRLF (or "--") delimits; an instance quoting the
    # boundary (here in an LT comment) is data, stored and served unchanged.
    ds = make_dataset(ImageComments=quoted)
    data = to_bytes(ds)
    assert b"--DICOMwebBoundary" in data
    response = post(client, multipart([data, make_instance()]))
    assert response.status_code == 200
    assert len(seq(response.json(), "00081199")) == 2
    stored = client.get(
        instance_path(ds), headers={"Accept": "application/dicom; transfer-syntax=*"}
    ).content
    assert stored[128:] == data[128:]


def content_depth(document: dict) -> int:
    """How many ContentSequence levels a DICOM JSON object holds (iteratively)."""
    levels = 0
    while "0040A730" in document:
        document = document["0040A730"]["Value"][0]
        levels += 1
    return levels


@pytest.mark.parametrize("defined_length", [False, True])
@pytest.mark.parametrize("depth", [10, MAX_SEQUENCE_DEPTH])
def test_store_nested_sequences_within_limit_are_stored_and_served(
    client: httpx.Client, depth: int, defined_length: bool
) -> None:
    ds, data = make_nested_instance(depth, defined_length=defined_length)
    response = post(client, multipart([data]))
    assert response.status_code == 200, response.text
    metadata = client.get(f"{instance_path(ds)}/metadata", headers=ACCEPT)
    assert metadata.status_code == 200
    [document] = metadata.json()
    assert content_depth(document) == depth
    series = client.get(
        f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata",
        headers=ACCEPT,
    )
    assert series.status_code == 200
    assert content_depth(series.json()[0]) == depth


@pytest.mark.parametrize("defined_length", [False, True])
@pytest.mark.parametrize("depth", [100, 1000])
def test_store_nested_sequences_past_limit_fail_with_43264_and_a_reason(
    client: httpx.Client, depth: int, defined_length: bool
) -> None:
    ds, data = make_nested_instance(depth, defined_length=defined_length)
    other = make_dataset()
    response = post(client, multipart([data, to_bytes(other)]))
    assert response.status_code == 202, response.text  # one stored, one failed
    assert failure_reasons(response) == [43264]
    [failed] = seq(response.json(), "00081198")
    [comment] = [item["00000902"]["Value"][0] for item in seq(failed, "00741048")]
    assert "nest" in comment
    assert f"at most {MAX_SEQUENCE_DEPTH}" in comment
    assert client.get(f"{instance_path(ds)}/metadata", headers=ACCEPT).status_code == 404
    assert client.get(f"{instance_path(other)}/metadata", headers=ACCEPT).status_code == 200


@pytest.mark.parametrize(
    "path", ["/studies", "/v3/studies", "/v1.1/studies", "/api/v2/studies", "/v2/nothing/here"]
)
def test_unknown_paths_return_404_naming_versions(client: httpx.Client, path: str) -> None:
    response = client.post(path, content=b"x", headers={"Content-Type": "application/dicom"})
    assert response.status_code == 404
    assert "/v2" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/partitions"),
        ("GET", "/v1/partitions"),
        ("POST", "/v2/partitions/Microsoft.Default/studies"),
        ("GET", "/v2/partitions/Microsoft.Default/studies?PatientID=1"),
        ("DELETE", "/v2/partitions/p1/studies/1.2.3"),
    ],
)
def test_partition_routes_answer_as_azure_does_with_the_feature_off(
    client: httpx.Client, method: str, path: str
) -> None:
    """Data partitions are not built: Azure with the feature off answers 400, not 404."""
    response = client.request(method, path, content=b"x" if method == "POST" else None)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "Data partitions feature is disabled."
