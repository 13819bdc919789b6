"""Retrieves as stored on make run's engine, where the host sends files with sendfile.

Every other end-to-end test goes through azure-functions-runtime, whose HTTP server streams
files as chunks. On the ``direct`` engine (``make run``) the front offers ASGI's zero-copy
extension and answers of stored files go out by descriptor (functions_host/zero_copy.py,
dicom_core/web/stored_body.py). What a client receives must not change: the same bytes, the
same headers, whole answers only.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.support.factories import make_dataset, multipart_parts
from tests.support.server import Server, start_server, stop_server
from tests.support.wado import Stored, part_syntax, parts, sample, store

pytestmark = pytest.mark.local_backend

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("zero-copy"), DICOM_HOST_ENGINE="direct")
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def series(direct: Server) -> list[Stored]:
    """Six instances of one series, 0.5 MB each but two, in three transfer syntaxes."""
    study, series_uid = generate_uid(), generate_uid()
    stored = []
    with direct.client() as client:
        for number in range(4):
            ds = make_dataset(
                study_uid=study, series_uid=series_uid, rows=512, columns=512, InstanceNumber=number
            )
            stored.append(store(client, ds))
        for name in ("MR_small_bigendian.dcm", "JPEG2000.dcm"):
            ds = sample(name)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
            stored.append(store(client, ds))
    return stored


@pytest.mark.parametrize("level", ["study", "series"])
def test_a_study_or_series_as_stored_is_every_file_byte_for_byte(
    backend: str, direct: Server, series: list[Stored], level: str
) -> None:
    path = series[0].study if level == "study" else series[0].series
    with direct.client() as client:
        response = client.get(path, headers={"Accept": AS_STORED})
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    received = parts(response)
    assert sorted(body for _, body in received) == sorted(s.data for s in series)
    by_data = {s.data: s for s in series}
    for headers, body in received:
        assert part_syntax(headers) == by_data[body].transfer_syntax
        assert headers["content-length"] == str(len(body))


@pytest.mark.parametrize("accept", ["application/dicom; transfer-syntax=*", AS_STORED])
def test_an_instance_as_stored_is_its_file(
    backend: str, direct: Server, series: list[Stored], accept: str
) -> None:
    stored = series[-1]
    with direct.client() as client:
        response = client.get(stored.instance, headers={"Accept": accept})
    assert response.status_code == 200
    body = parts(response)[0][1] if accept == AS_STORED else response.content
    assert body == stored.data
    if accept != AS_STORED:
        expected = f"application/dicom; transfer-syntax={stored.transfer_syntax}"
        assert response.headers["content-type"] == expected


def test_a_transcoded_study_still_streams_on_this_engine(
    backend: str, direct: Server, series: list[Stored]
) -> None:
    """Only answers of files as stored go by descriptor; a transcoded part is produced."""
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
    with direct.client() as client:
        response = client.get(series[-1].series, headers={"Accept": accept})
    assert response.status_code == 200
    received = parts(response)
    assert len(received) == len(series)
    assert {part_syntax(headers) for headers, _ in received} == {"1.2.840.10008.1.2.1"}


def test_a_slow_reader_gets_the_whole_series(
    backend: str, direct: Server, series: list[Stored]
) -> None:
    """A client that reads in small sips keeps the socket full, and every byte still comes."""
    host, port = direct.url.removeprefix("http://").split(":")
    path = series[0].series
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {AS_STORED}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines[1:])
        fields = {name.lower(): value for name, value in fields.items()}
        length = int(fields["content-length"])
        sips = 0
        while len(body) < length:
            more = sock.recv(16384)
            assert more, f"closed after {len(body)} of {length} bytes"
            body += more
            sips += 1
            if sips % 8 == 0:
                time.sleep(0.002)
    assert lines[0].startswith("HTTP/1.1 200")
    received = multipart_parts(body, fields["content-type"])
    assert sorted(payload for _, payload in received) == sorted(s.data for s in series)


def test_a_client_that_leaves_mid_series_does_not_hurt_the_next(
    backend: str, direct: Server, series: list[Stored]
) -> None:
    host, port = direct.url.removeprefix("http://").split(":")
    path = series[0].series
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {AS_STORED}\r\n\r\n".encode()
            )
            sock.recv(30000)
    with httpx.Client(base_url=direct.url, timeout=60) as client:
        response = client.get(series[0].series, headers={"Accept": AS_STORED})
    assert response.status_code == 200
    assert sorted(body for _, body in parts(response)) == sorted(s.data for s in series)
    assert "Traceback" not in direct.log_path.read_text()
