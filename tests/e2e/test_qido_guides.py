"""Every search request of the curl tutorial and of the ingest-and-query guide, as written.

The requests are the documents' own (shared/spec/dicomweb-curl-tutorial.md "Query DICOM
(QIDO)", shared/spec/ingest-and-query-guide.md "Step 4"), run by the real curl against a
server process of this module's own: the documents use fixed UIDs that must not meet other
tests' data. The guide pipes into ``jq`` with filter syntax the jq of this machine (1.6) does
not parse, so the curl part runs as written and the filter's question is asked in Python.
The guide's requests carry no Accept header, and must work that way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.curl import fill, run_curl, tutorial_server
from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.server import Server
from tests.support.tutorial_files import TUTORIAL_FILES

TUTORIAL_QIDO = [
    'curl --request GET "{Service URL}/v{version}/studies?StudyInstanceUID=1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
    'curl --request GET "{Service URL}/v{version}/series?SeriesInstanceUID=1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
    'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series?SeriesInstanceUID=1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
    'curl --request GET "{Service URL}/v{version}/instances?SOPInstanceUID=1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
    'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/instances?SOPInstanceUID=1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
    'curl --request GET "{Service URL}/v{version}/studies/1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420/series/1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652/instances?SOPInstanceUID=1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395" --header "Accept: application/dicom+json" --header "Authorization: Bearer {token value}"',  # noqa: E501
]
# The guide's Step 4 snippets, as written up to their jq pipe, in order.
GUIDE_QIDO = [
    'curl -s -H "Authorization: Bearer $TOKEN" \\\n    "${DICOM_URL}/v1/studies?PatientName=Smith"',
    'curl -s -H "Authorization: Bearer $TOKEN" \\\n'
    '    "${DICOM_URL}/v1/studies?StudyDate=20260101-20260216"',
    'curl -s -H "Authorization: Bearer $TOKEN" \\\n'
    '    "${DICOM_URL}/v1/studies?ModalitiesInStudy=CT"',
    'STUDY_UID="1.2.840.113619.2.55.3.604688.123456789"\n\n'
    'curl -s -H "Authorization: Bearer $TOKEN" \\\n'
    '    "${DICOM_URL}/v1/studies/${STUDY_UID}/series"',
    'SERIES_UID="1.2.840.113619.2.55.3.604688.987654321"\n\n'
    'curl -s -H "Authorization: Bearer $TOKEN" \\\n'
    '    "${DICOM_URL}/v1/studies/${STUDY_UID}/series/${SERIES_UID}/instances"',
]
GUIDE_STUDY = "1.2.840.113619.2.55.3.604688.123456789"
GUIDE_SERIES = "1.2.840.113619.2.55.3.604688.987654321"


@pytest.fixture(scope="module")
def guide_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    with tutorial_server(tmp_path_factory, "qido-guides") as (server, files):
        store_guide_documents(server, files)
        yield server, files


def store_guide_documents(server: Server, files: Path) -> None:
    """Store the tutorial's three files and the guide's CT study."""
    parts = [(files / f.name).read_bytes() for f in TUTORIAL_FILES]
    parts += [
        to_bytes(
            make_dataset(
                study_uid=GUIDE_STUDY,
                series_uid=GUIDE_SERIES,
                PatientName="Smith",
                StudyDate="20260210",
                Modality="CT",
                SeriesDescription="Chest 1.25 mm",
            )
        )
    ]
    response = httpx.post(
        f"{server.url}/v2/studies",
        content=multipart(parts),
        headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("version", ["1", "2"])
def test_curl_tutorial_searches_work_as_written(
    guide_server: tuple[Server, Path], version: str
) -> None:
    server, files = guide_server
    expected_uids = ["0020000D", "0020000E", "0020000E", "00080018", "00080018", "00080018"]
    for command, tag in zip(TUTORIAL_QIDO, expected_uids, strict=True):
        filled = fill(command, server, version=version)
        status, body = run_curl(filled, files)
        assert status == 200, (command, body)
        results = json.loads(body)
        assert len(results) == 1, command
        query_value = filled.split("?")[1].split("=")[1].split('"')[0]
        assert results[0][tag]["Value"] == [query_value]


def test_ingest_guide_searches_work_as_written_without_accept(
    guide_server: tuple[Server, Path],
) -> None:
    server, files = guide_server
    env = {"PATH": "/usr/bin:/bin", "DICOM_URL": server.url, "TOKEN": "token"}
    # The snippets run as one shell session would: a variable set in one is used later.
    assignments = ""
    answers: list[list[dict[str, object]]] = []
    for snippet in GUIDE_QIDO:
        status, body = run_curl(assignments + snippet, files, env)
        assert status == 200, (snippet, body)
        answers.append(json.loads(body))
        assignments += "".join(
            line + "\n" for line in snippet.splitlines() if re.match(r"[A-Z_]+=", line)
        )
    by_name, by_date, by_modality, series, instances = answers
    # jq '.[].["00100010"]': the patient names
    assert [r["00100010"] for r in by_name] == [{"vr": "PN", "Value": [{"Alphabetic": "Smith"}]}]
    # jq length
    assert len(by_date) == 1
    # jq '.[].["0020000D"]': the study UIDs
    assert [r["0020000D"]["Value"][0] for r in by_modality] == [GUIDE_STUDY]
    # jq '.[].["0008103E"]["Value"][0]': the series descriptions (not a default attribute, so
    # null, as on the Azure service; includefield=SeriesDescription returns it)
    assert len(series) == 1 and "0020000E" in series[0]
    # jq length
    assert len(instances) == 1
    described = httpx.get(
        f"{server.url}/v1/studies/{GUIDE_STUDY}/series?includefield=SeriesDescription"
    ).json()
    assert described[0]["0008103E"]["Value"] == ["Chest 1.25 mm"]
