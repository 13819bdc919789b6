"""The curl tutorial (shared/spec/dicomweb-curl-tutorial.md), replayed as written.

Each command is the tutorial's own, with {Service URL}, {version} and {path-to-dicoms}
substituted, run by the real curl against a real server process of its own (the tutorial's
fixed UIDs must not meet other tests' data). Only observation flags are appended, to read
the status code. Later issues append their requests to the same walk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.curl import fill, run_curl, tutorial_server
from tests.support.server import Server

STOW = [
    # Store instances using multipart/related
    'curl --location --request POST "{Service URL}/v{version}/studies" --header "Accept: application/dicom+json" --header "Content-Type: multipart/related; type=\\"application/dicom\\"" --header "Authorization: Bearer {token value}" --form "file1=@{path-to-dicoms}/red-triangle.dcm;type=application/dicom" --trace-ascii "trace.txt"',  # noqa: E501
    # Store instances for a specific study
    'curl --request POST "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420" --header "Accept: application/dicom+json" --header "Content-Type: multipart/related; type=\\"application/dicom\\"" --header "Authorization: Bearer {token value}" --form "file1=@{path-to-dicoms}/blue-circle.dcm;type=application/dicom"',  # noqa: E501
    # Store single instance
    'curl --location --request POST "{Service URL}/v{version}/studies" --header "Accept: application/dicom+json" --header "Content-Type: application/dicom" --header "Authorization: Bearer {token value}" --data-binary "@{path-to-dicoms}/green-square.dcm"',  # noqa: E501
]
UPSERT = [
    'curl --location --request PUT "{Service URL}/v{version}/studies" --header "Accept: application/dicom+json" --header "Content-Type: multipart/related; type=\\"application/dicom\\"" --header "Authorization: Bearer {token value}" --form "file1=@{path-to-dicoms}/red-triangle.dcm;type=application/dicom" --trace-ascii "trace.txt"',  # noqa: E501
    'curl --request PUT "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420" --header "Accept: application/dicom+json" --header "Content-Type: multipart/related; type=\\"application/dicom\\"" --header "Authorization: Bearer {token value}" --form "file1=@{path-to-dicoms}/blue-circle.dcm;type=application/dicom"',  # noqa: E501
    'curl --location --request PUT "{Service URL}/v{version}/studies" --header "Accept: application/dicom+json" --header "Content-Type: application/dicom" --header "Authorization: Bearer {token value}" --data-binary "@{path-to-dicoms}/green-square.dcm"',  # noqa: E501
]
RETRIEVE = [
    'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420" --header "Accept: multipart/related; type=\\"application/dicom\\"; transfer-syntax=*" --header "Authorization: Bearer {token value}" --output "suppressWarnings.txt"',  # noqa: E501
    'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series/1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652" --header "Accept: multipart/related; type=\\"application/dicom\\"; transfer-syntax=*" --header "Authorization: Bearer {token value}" --output "suppressWarnings.txt"',  # noqa: E501
    'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series/1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652/instances/1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395" --header "Accept: application/dicom; transfer-syntax=*" --header "Authorization: Bearer {token value}" --output "suppressWarnings.txt"',  # noqa: E501
]
DELETE = [
    'curl --request DELETE "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series/1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652/instances/1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395" --header "Authorization: Bearer {token value}"',  # noqa: E501
    'curl --request DELETE "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series/1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652" --header "Authorization: Bearer {token value}"',  # noqa: E501
    # The tutorial's last command is garbled ("curl--request", an unclosed quote and a cut
    # UID); this is the request it describes: delete the whole study.
    'curl --request DELETE "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420" --header "Authorization: Bearer {token value}"',  # noqa: E501
]


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    with tutorial_server(tmp_path_factory, "tutorial") as running:
        yield running


def run(command: str, server: Server, files: Path, version: str = "2") -> tuple[int, bytes]:
    return run_curl(fill(command, server, version=version, files=files), files)


def test_curl_tutorial_store_retrieve_upsert_and_delete_work_as_written(
    tutorial: tuple[Server, Path],
) -> None:
    server, files = tutorial
    for command in STOW:
        status, body = run(command, server, files)
        assert status == 200, (command, body)
    for command in RETRIEVE:
        status, body = run(command, server, files)
        assert status == 200, (command, body)
        assert b"DICM" in body
    for command in UPSERT:
        status, body = run(command, server, files)
        assert status == 200, (command, body)
    for command in DELETE:
        status, body = run(command, server, files)
        assert status == 204, (command, body)
    status, _ = run(RETRIEVE[0], server, files)
    assert status == 404
    assert server.stored_files() == []


def test_curl_tutorial_store_reports_conflict_when_stored_twice(
    tutorial: tuple[Server, Path],
) -> None:
    server, files = tutorial
    assert run(STOW[2], server, files, version="1")[0] == 200
    status, body = run(STOW[2], server, files, version="1")
    assert status == 409 and b"45070" in body
    assert run(DELETE[2], server, files, version="1")[0] == 204
