"""Every retrieve request of the curl tutorial and of the ingest-and-query guide, as written.

The commands are the documents' own (shared/spec/dicomweb-curl-tutorial.md "Retrieve DICOM
(WADO)", shared/spec/ingest-and-query-guide.md "Step 5"), run by the real curl against a
server process of this module's own, because both documents use fixed UIDs. The tutorial's
whole-study, series and instance downloads are replayed by test_curl_tutorial.py; this
module adds its metadata and frame requests (the series-metadata URL is printed without the
slash after "studies", and works that way), the frame Accept variants its details list,
and the guide's retrieve, single-instance and rendered requests.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image
from pydicom import dcmread

from tests.support.curl import fill, run_curl, tutorial_server
from tests.support.factories import multipart_parts
from tests.support.server import Server
from tests.support.tutorial_files import COLUMNS, ROWS, STUDY_UID
from tests.support.wado import encode, read, sample

TUTORIAL_METADATA = [
    # Retrieve metadata of all instances in study
    'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/metadata" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
    # Retrieve metadata of all instances within a series (sic: no slash after "studies")
    'curl --request GET "{Service URL}/v{version}/studies1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series/1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652/metadata" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
    # Retrieve metadata of a single instance within a series of a study
    'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series/1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652/instances/1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395/metadata" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
]
TUTORIAL_FRAMES = 'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series/1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652/instances/1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395/frames/1" --header "Accept: multipart/related; type=\\"application/octet-stream\\"; transfer-syntax=1.2.840.10008.1.2.1" --header "Authorization: Bearer {token value}" --output "suppressWarnings.txt"'  # noqa: E501
TUTORIAL_FRAME_ACCEPT = (
    'multipart/related; type=\\"application/octet-stream\\"; transfer-syntax=1.2.840.10008.1.2.1'
)
# The frame Accept headers the tutorial's details list besides the command's own.
TUTORIAL_FRAME_ACCEPTS = [
    'multipart/related; type=\\"application/octet-stream\\"; transfer-syntax=*',
    'multipart/related; type=\\"application/octet-stream\\";',
]
# The guide's Step 5, its variables set as its Steps 3 and 4 set them.
GUIDE_ENV = {
    "TOKEN": "token",
    "STUDY_UID": "1.2.840.113619.2.55.3.604688.123456789",
    "SERIES_UID": "1.2.840.113619.2.55.3.604688.987654321",
    "INSTANCE_UID": "1.2.840.113619.2.55.3.604688.111222333",
}
GUIDE_RETRIEVE = """\
# Retrieve an entire study (all series and instances)
curl -s -H "Authorization: Bearer $TOKEN" \\
    -H "Accept: multipart/related; type=application/dicom" \\
    "${DICOM_URL}/v1/studies/${STUDY_UID}" \\
    --output study.dcm

# Retrieve a single instance
INSTANCE_UID="1.2.840.113619.2.55.3.604688.111222333"

curl -s -H "Authorization: Bearer $TOKEN" \\
    -H "Accept: application/dicom" \\
    "${DICOM_URL}/v1/studies/${STUDY_UID}/series/${SERIES_UID}/instances/${INSTANCE_UID}" \\
    --output single-image.dcm

# Retrieve as rendered image (JPEG or PNG) for web display
curl -s -H "Authorization: Bearer $TOKEN" \\
    -H "Accept: image/jpeg" \\
    "${DICOM_URL}/v1/studies/${STUDY_UID}/series/${SERIES_UID}/instances/${INSTANCE_UID}/rendered" \\
    --output image.jpg
"""  # noqa: E501


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server holding the tutorial's three files and the guide's study."""
    with tutorial_server(tmp_path_factory, "wado-guides") as (server, files):
        store_documents(server, files)
        yield server, files


def store_documents(server: Server, files: Path) -> None:
    """Store the tutorial's three files and the guide's study."""
    with server.client() as client:
        for path in sorted(files.glob("*.dcm")):
            response = client.post(
                "/v2/studies",
                content=path.read_bytes(),
                headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
            )
            assert response.status_code == 200, response.text
        # The guide's study: a JPEG 2000 CT slice (so the default syntax means transcoding)
        # and an uncompressed one, under the guide's UIDs.
        for name, sop in (("693_J2KR.dcm", GUIDE_ENV["INSTANCE_UID"]), ("CT_small.dcm", None)):
            ds = sample(name)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = (
                GUIDE_ENV["STUDY_UID"],
                GUIDE_ENV["SERIES_UID"],
            )
            if sop:
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            response = client.post(
                "/v2/studies",
                content=encode(ds),
                headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
            )
            assert response.status_code == 200, response.text


def run(command: str, server: Server, cwd: Path) -> tuple[int, bytes]:
    """Run a tutorial command with its placeholders filled; return status and body."""
    return run_curl(fill(command, server), cwd)


def test_tutorial_metadata_requests_work_as_written(documents: tuple[Server, Path]) -> None:
    server, files = documents
    expected = [3, 2, 1]
    for command, count in zip(TUTORIAL_METADATA, expected, strict=True):
        status, body = run(command, server, files)
        assert status == 200, (command, body)
        items = orjson.loads(body)
        assert len(items) == count
        assert {item["0020000D"]["Value"][0] for item in items} == {STUDY_UID}


@pytest.mark.parametrize("accept", [None, *TUTORIAL_FRAME_ACCEPTS])
def test_tutorial_frame_request_works_as_written(
    documents: tuple[Server, Path], accept: str | None
) -> None:
    server, files = documents
    command = TUTORIAL_FRAMES
    if accept is not None:
        command = command.replace(
            TUTORIAL_FRAME_ACCEPT,
            accept,
        )
    status, body = run(command, server, files)
    assert status == 200, body[:300]
    boundary = body.split(b"\r\n", 1)[0].decode()[2:]
    [(headers, frame)] = multipart_parts(body, f"multipart/related; boundary={boundary}")
    assert headers["content-type"] == (
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    )
    pixels = np.frombuffer(frame, dtype=np.uint8).reshape(ROWS, COLUMNS, 3)
    original = dcmread(files / "red-triangle.dcm").pixel_array
    np.testing.assert_array_equal(pixels, original)


def test_guide_retrieve_requests_work_as_written(documents: tuple[Server, Path]) -> None:
    server, files = documents
    script = f'DICOM_URL="{server.url}"\nset -e\n' + GUIDE_RETRIEVE
    subprocess.run(
        ["bash", "-c", script],
        cwd=files,
        check=True,
        timeout=60,
        env={**os.environ, **GUIDE_ENV},
    )
    study = (files / "study.dcm").read_bytes()
    boundary = study.split(b"\r\n", 1)[0].decode()[2:]
    parts = multipart_parts(study, f"multipart/related; boundary={boundary}")
    assert len(parts) == 2
    for headers, part in parts:
        assert headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        assert read(part).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"

    single = read((files / "single-image.dcm").read_bytes())
    assert single.SOPInstanceUID == GUIDE_ENV["INSTANCE_UID"]
    assert single.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    np.testing.assert_array_equal(single.pixel_array, sample("693_J2KR.dcm").pixel_array)

    jpeg = (files / "image.jpg").read_bytes()
    assert jpeg[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(jpeg)).size == (512, 512)
