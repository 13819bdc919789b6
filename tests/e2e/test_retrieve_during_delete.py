"""Retrieving a study while it is deleted (issue [2/7] item 4): a 200 is never cut short.

Whole-study retrieves stream from several threads; once some have completed, the study is
deleted. Every answer must be the whole study (every part, byte for byte, and the closing
boundary) or a clean 404. A body that breaks off would at least have to be detectable (no
closing boundary, or a transport error), but since every file is opened before the status
line, none may break off at all; a well-formed multipart with fewer parts is never allowed.

On Blob Storage the files outlive the delete by ``DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS``, the
time an answer already streaming has to finish; the ``blob-cleanup`` queue deletes them then.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.support.factories import make_dataset, multipart, multipart_parts, to_bytes
from tests.support.server import Server, azure_environment, start_server, stop_server

INSTANCES = 20
RETRIEVES = 200
THREADS = 8
DELETE_AFTER = 20  # complete answers seen before the delete is sent
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'


@pytest.fixture(scope="module")
def delete_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    env: dict[str, str] = {}
    if backend == "azure":
        env = azure_environment(request.getfixturevalue("emulators"))
        env["DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS"] = "600"  # the default
    running = start_server(tmp_path_factory.mktemp(f"retrieve-delete-{backend}"), **env)
    try:
        yield running
    finally:
        stop_server(running)


def store_study(client: httpx.Client, *, rows: int = 256, columns: int = 512) -> tuple[str, dict]:
    """A study of ``INSTANCES`` instances (256 KiB of pixels each); returns its files by UID."""
    study = generate_uid()
    series = generate_uid()
    files: dict[str, bytes] = {}
    for number in range(INSTANCES):
        ds = make_dataset(
            study_uid=study, series_uid=series, rows=rows, columns=columns, InstanceNumber=number
        )
        files[ds.SOPInstanceUID] = to_bytes(ds)
    response = client.post(
        "/v2/studies",
        content=multipart(list(files.values())),
        headers={
            "Content-Type": STOW_TYPE,
            "Accept": "application/dicom+json",
        },
    )
    assert response.status_code == 200, response.text
    # The server keeps the file with its preamble zeroed.
    return study, {uid: bytes(128) + data[128:] for uid, data in files.items()}


def study_files(server: Server, study: str) -> list[str]:
    """The stored files of ``study`` (local paths or blob keys), read behind the service."""
    names = [str(getattr(f, "key", f)) for f in server.stored_files()]
    return [name for name in names if study in name]


def classify(server: Server, study: str, files: dict[str, bytes]) -> str:
    """Retrieve the study once; name what came back."""
    with server.client() as client:
        try:
            with client.stream("GET", f"/v2/studies/{study}", headers={"Accept": ACCEPT}) as answer:
                if answer.status_code == 404:
                    answer.read()
                    return "not_found"
                if answer.status_code != 200:
                    return f"status_{answer.status_code}"
                content_type = answer.headers["content-type"]
                body = b"".join(answer.iter_bytes())
        except httpx.TransportError:
            return "truncated_transport"  # the connection broke: a client sees the failure
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    if not body.rstrip(b"\r\n").endswith(f"\r\n--{boundary}--".encode()):
        return "truncated_no_closing_boundary"
    received = []
    for headers, payload in multipart_parts(body, content_type):
        if headers.get("content-length") != str(len(payload)):
            return "short_part"
        received.append(payload)
    if sorted(received) != sorted(files.values()):
        return "well_formed_but_wrong"  # the failure this test exists for
    return "complete"


def test_retrieves_during_a_delete_are_complete_or_404(delete_server: Server) -> None:
    race_a_delete(delete_server)


@pytest.fixture(scope="module")
def zero_copy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """make run's engine, where the host sends stored files with sendfile."""
    running = start_server(
        tmp_path_factory.mktemp("retrieve-delete-direct"), DICOM_HOST_ENGINE="direct"
    )
    try:
        yield running
    finally:
        stop_server(running)


@pytest.mark.local_backend
def test_zero_copy_retrieves_during_a_delete_are_complete_or_404(
    backend: str, zero_copy_server: Server
) -> None:
    """The files an answer sends by descriptor stay readable after the delete unlinks them."""
    race_a_delete(zero_copy_server)


def race_a_delete(delete_server: Server) -> None:
    with delete_server.client() as client:
        study, files = store_study(client)
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    enough = threading.Event()

    def retrieve(_: int) -> None:
        outcome = classify(delete_server, study, files)
        with lock:
            outcomes[outcome] += 1
            if outcomes["complete"] >= DELETE_AFTER:
                enough.set()

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(retrieve, n) for n in range(RETRIEVES)]
        # Hang guard only: the delete goes out once DELETE_AFTER answers are complete.
        assert enough.wait(timeout=300), dict(outcomes)
        with delete_server.client() as client:
            deleted = client.delete(f"/v2/studies/{study}")
        for future in futures:
            future.result()
    print(f"\n{delete_server.backend}: {dict(outcomes)}")
    assert deleted.status_code == 204, deleted.text
    assert sum(outcomes.values()) == RETRIEVES
    assert set(outcomes) <= {"complete", "not_found"}, dict(outcomes)
    assert outcomes["complete"] >= DELETE_AFTER and outcomes["not_found"] > 0, dict(outcomes)
    with delete_server.client() as client:
        assert client.get(f"/v2/studies/{study}", headers={"Accept": ACCEPT}).status_code == 404
    left = study_files(delete_server, study)
    if delete_server.backend == "azure":
        # Still there for answers that opened them; the cleanup queue deletes them later.
        assert len(left) == INSTANCES
    else:
        assert left == []


@pytest.mark.azure_backend
def test_deleted_blobs_are_removed_after_the_delay(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    env = azure_environment(request.getfixturevalue("emulators"))
    env["DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS"] = "2"
    server = start_server(tmp_path_factory.mktemp("delete-delay"), **env)
    try:
        with server.client() as client:
            study, _ = store_study(client, rows=16, columns=16)
            assert client.delete(f"/v2/studies/{study}").status_code == 204
            assert client.get(f"/v2/studies/{study}").status_code == 404
        deadline = time.monotonic() + 120  # hang guard: the queue pump deletes them
        while study_files(server, study):
            assert time.monotonic() < deadline, "deleted blobs were never removed"
            time.sleep(0.5)
    finally:
        stop_server(server)


def frame_or_rendering(server: Server, path: str, accept: str) -> str:
    """One frame or rendered request; name what came back."""
    with server.client() as client:
        answer = client.get(path, headers={"Accept": accept})
    if answer.status_code == 200 and answer.content:
        return "complete"
    if answer.status_code == 404:
        return "not_found"
    return f"status_{answer.status_code}"


@pytest.mark.parametrize(
    ("suffix", "accept"),
    [
        ("frames/1", "application/octet-stream; transfer-syntax=*"),
        ("rendered", "image/png"),
    ],
    ids=["frames", "rendered"],
)
def test_frames_and_renderings_during_a_delete_are_whole_or_404(
    delete_server: Server, suffix: str, accept: str
) -> None:
    """A file deleted between the index lookup and the read is a 404, not a 424."""
    with delete_server.client() as client:
        study, files = store_study(client, rows=64, columns=64)
        series = client.get(f"/v2/studies/{study}/series").json()[0]["0020000E"]["Value"][0]
    paths = [f"/v2/studies/{study}/series/{series}/instances/{uid}/{suffix}" for uid in files]
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    enough = threading.Event()

    def request(number: int) -> None:
        outcome = frame_or_rendering(delete_server, paths[number % len(paths)], accept)
        with lock:
            outcomes[outcome] += 1
            if outcomes["complete"] >= DELETE_AFTER:
                enough.set()

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(request, n) for n in range(RETRIEVES)]
        assert enough.wait(timeout=300), dict(outcomes)
        with delete_server.client() as client:
            assert client.delete(f"/v2/studies/{study}").status_code == 204
        for future in futures:
            future.result()
    print(f"\n{delete_server.backend} {suffix}: {dict(outcomes)}")
    assert set(outcomes) <= {"complete", "not_found"}, dict(outcomes)
    assert outcomes["not_found"] > 0, dict(outcomes)
