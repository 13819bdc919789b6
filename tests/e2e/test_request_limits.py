"""Request limits over HTTP: JSON bodies are refused (413) before they are held whole, and
search offsets have a maximum (400 naming it) instead of costing a scan of the index.

The body tests run against a server of their own with a small ``DICOM_MAX_JSON_BODY_BYTES``,
so that a body over the limit is a few kilobytes: what is checked is the status, the message
naming the limit, and that nothing was created.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.query.parser import MAX_OFFSET
from tests.support.server import Server, start_server, stop_server
from tests.support.ups import DICOM_JSON, HEADERS, new_workitem, unique, workitem

LIMIT = 4000


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("json-limit"), DICOM_MAX_JSON_BODY_BYTES=str(LIMIT)
    )
    yield running
    stop_server(running)


def padded_workitem(uid: str, size: int) -> bytes:
    """A valid create body of at least ``size`` bytes (a long Procedure Step Label)."""
    dataset = workitem(uid)
    dataset["00741204"] = {"vr": "LO", "Value": ["x" * size]}
    return orjson.dumps([dataset])


def chunked(body: bytes) -> Iterator[bytes]:
    """The body as an iterator: httpx sends it chunked, without a Content-Length."""
    for start in range(0, len(body), 1024):
        yield body[start : start + 1024]


def assert_413_naming_the_limit(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert str(LIMIT) in response.json()["message"]


def test_workitem_create_over_the_limit_by_content_length_is_413(limited: Server) -> None:
    uid = generate_uid()
    with limited.client() as client:
        response = client.post(
            f"/v2/workitems?{uid}", content=padded_workitem(uid, 3 * LIMIT), headers=HEADERS
        )
        assert_413_naming_the_limit(response)
        assert client.get(f"/v2/workitems/{uid}", headers={"Accept": DICOM_JSON}).status_code == 404


def test_workitem_create_chunked_over_the_limit_is_413(limited: Server) -> None:
    uid = generate_uid()
    body = padded_workitem(uid, 3 * LIMIT)
    with limited.client() as client:
        response = client.post(f"/v2/workitems?{uid}", content=chunked(body), headers=HEADERS)
        assert "content-length" not in response.request.headers
        assert_413_naming_the_limit(response)
        assert client.get(f"/v2/workitems/{uid}", headers={"Accept": DICOM_JSON}).status_code == 404


def test_workitem_update_and_state_change_over_the_limit_are_413(limited: Server) -> None:
    with limited.client() as client:
        uid = new_workitem(client)
        big = orjson.dumps([{"00741204": {"vr": "LO", "Value": ["x" * 3 * LIMIT]}}])
        update = client.post(f"/v2/workitems/{uid}", content=chunked(big), headers=HEADERS)
        assert_413_naming_the_limit(update)
        state = client.put(f"/v2/workitems/{uid}/state", content=big, headers=HEADERS)
        assert_413_naming_the_limit(state)


def test_a_workitem_under_the_limit_is_created(limited: Server) -> None:
    uid = generate_uid()
    body = padded_workitem(uid, 10)
    assert len(body) < LIMIT
    with limited.client() as client:
        response = client.post(f"/v2/workitems?{uid}", content=chunked(body), headers=HEADERS)
        assert response.status_code == 201, response.text


def eqt_body(size: int) -> bytes:
    tags = [{"path": "PatientAge", "vr": "AS", "level": "Study", "pad": "x" * size}]
    return orjson.dumps(tags)


@pytest.mark.parametrize("send", [lambda b: b, chunked], ids=["content-length", "chunked"])
def test_extended_query_tag_add_over_the_limit_is_413(limited: Server, send: Any) -> None:
    with limited.client() as client:
        response = client.post(
            "/v2/extendedquerytags",
            content=send(eqt_body(3 * LIMIT)),
            headers={"Content-Type": "application/json"},
        )
        assert_413_naming_the_limit(response)
        assert client.get("/v2/extendedquerytags").json() == []


def test_extended_query_tag_errors_offset_past_the_maximum_is_400(limited: Server) -> None:
    with limited.client() as client:
        response = client.get(f"/v2/extendedquerytags/PatientAge/errors?offset={MAX_OFFSET + 1}")
    assert response.status_code == 400
    assert str(MAX_OFFSET) in response.json()["message"]


# -- offsets, on each backend ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v2/studies", "/v2/series", "/v2/instances", "/v2/studies/{study}/series"]
)
def test_qido_offset_past_the_maximum_is_400_naming_it(client: httpx.Client, path: str) -> None:
    path = path.format(study=generate_uid())
    response = client.get(f"{path}?offset={MAX_OFFSET + 1}")
    assert response.status_code == 400
    message = response.json()["message"]
    assert "offset" in message and str(MAX_OFFSET) in message
    matching_nothing = f"PatientID={unique()}&" if path.count("/") == 2 else ""
    at_most = client.get(f"{path}?{matching_nothing}offset={MAX_OFFSET}")
    assert at_most.status_code == 204


def test_workitem_offset_past_the_maximum_is_400_naming_it(client: httpx.Client) -> None:
    accept = {"Accept": DICOM_JSON}
    response = client.get(f"/v2/workitems?offset={MAX_OFFSET + 1}", headers=accept)
    assert response.status_code == 400
    message = response.json()["message"]
    assert "offset" in message and str(MAX_OFFSET) in message
    at_most = client.get(f"/v2/workitems?PatientID={unique()}&offset={MAX_OFFSET}", headers=accept)
    assert at_most.status_code == 204


def test_workitem_search_through_a_sequence_returns_one_page(client: httpx.Client) -> None:
    """A condition inside a sequence is matched on the candidates (Cosmos): the page is still
    ``offset``, then ``limit``, newest first."""
    patient, accession = unique(), unique("A")
    made = [new_workitem(client, patient_id=patient, accession=accession) for _ in range(4)]
    newest_first = made[::-1]

    def page(query: str) -> list[str]:
        response = client.get(
            f"/v2/workitems?ReferencedRequestSequence.AccessionNumber={accession}&{query}",
            headers={"Accept": DICOM_JSON},
        )
        assert response.status_code == 200, response.text
        return [str(item["00080018"]["Value"][0]) for item in response.json()]

    assert page("limit=2") == newest_first[:2]
    assert page("limit=2&offset=1") == newest_first[1:3]
    assert page("limit=1&offset=3") == newest_first[3:]
    assert page(f"PatientID={patient}&limit=3") == newest_first[:3]


def test_a_stow_body_that_trickles_in_is_408_and_leaves_no_staging_file(limited: Server) -> None:
    """Kestrel's minimum body rate on the host (functions_host.front): a client declaring a
    large body and sending a few bytes held a connection and a staging file for ever."""
    address = urlsplit(limited.url)
    staging = limited.data_dir / "staging"
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.settimeout(60)
        sock.sendall(
            b"POST /v2/studies HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/related;"
            b' type="application/dicom"; boundary=b\r\nContent-Length: 1000000\r\n\r\n'
            b"--b\r\nContent-Type: application/dicom\r\n\r\n" + bytes(128) + b"DICM"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:300]
    deadline = time.monotonic() + 30
    while any(staging.glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(staging.glob("*.part"))
