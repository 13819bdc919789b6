"""Large bodies: STOW streams to disk (bounded memory) and the request size limit holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.corpus import large_instance_file
from tests.support.factories import make_instance, multipart
from tests.support.memory import PeakSampler
from tests.support.server import Server, start_server, stop_server

GIB = 1024**3
MIB = 1024**2


def _file_body(path: Path, boundary: str) -> Iterator[bytes]:
    yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MIB):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.slow
def test_store_1gb_instance_keeps_server_memory_growth_under_200mb(
    server: Server, tmp_path: Path
) -> None:
    source = tmp_path / "large.dcm"
    large_instance_file(source, GIB)
    size = source.stat().st_size
    boundary = "LargeInstanceBoundary"
    with PeakSampler(server.process.pid) as sampler, server.client() as client:
        response = client.post(
            "/v2/studies",
            content=_file_body(source, boundary),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        )
    assert response.status_code == 200, response.text
    growth = sampler.peak - sampler.baseline
    assert growth < 200 * MIB, f"server memory grew by {growth / MIB:.0f} MiB"
    [stored] = [p for p in server.stored_files() if p.stat().st_size == size]
    with open(stored, "rb") as a, open(source, "rb") as b:
        a.seek(128)
        b.seek(128)
        assert a.read(MIB) == b.read(MIB)


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("limited"), DICOM_MAX_REQUEST_BYTES="100000", DICOM_MAX_PARTS="3"
    )
    yield running
    stop_server(running)


def test_store_body_over_declared_limit_returns_413(limited_server: Server) -> None:
    body = multipart([make_instance(rows=256, columns=256)])
    with limited_server.client() as client:
        response = client.post(
            "/v2/studies",
            content=body,
            headers={"Content-Type": "multipart/related; boundary=DICOMwebBoundary"},
        )
    assert response.status_code == 413
    assert "100000" in response.json()["message"]
    assert limited_server.stored_files() == []


def test_store_chunked_body_over_limit_returns_413_and_leaves_nothing(
    limited_server: Server,
) -> None:
    body = multipart([make_instance(rows=256, columns=256)])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    with limited_server.client() as client:
        response = client.post(
            "/v2/studies",
            content=chunks(),
            headers={"Content-Type": "multipart/related; boundary=DICOMwebBoundary"},
        )
    assert response.status_code == 413
    assert limited_server.stored_files() == []
    assert limited_server.staged_files() == []


def test_store_with_more_parts_than_the_limit_returns_413_and_stores_none(
    limited_server: Server,
) -> None:
    """The fuzzing probe held both workers for two minutes with 4 MB bodies of 100,000 tiny
    parts: each part costs a spool file and a parse, whatever its size."""
    headers = {"Content-Type": "multipart/related; boundary=DICOMwebBoundary"}
    with limited_server.client() as client:
        too_many = multipart([make_instance(rows=8, columns=8) for _ in range(4)])
        response = client.post("/v2/studies", content=too_many, headers=headers)
        assert response.status_code == 413
        assert "more than 3 parts" in response.json()["message"]
        assert limited_server.stored_files() == []
        assert limited_server.staged_files() == []
        enough = multipart([make_instance(rows=8, columns=8) for _ in range(3)])
        assert client.post("/v2/studies", content=enough, headers=headers).status_code == 200


def test_server_stops_cleanly_on_interrupt(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    assert httpx.get(running.url + "/v2/studies/1.2.3", timeout=5).status_code in (404, 406)
    assert stop_server(running) == 0
