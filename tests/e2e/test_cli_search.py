"""``dicomweb search`` against a real server: QIDO at each level, as a table or DICOM JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicomweb_cli.__main__ import main
from tests.support.factories import make_dataset, to_bytes
from tests.support.server import Server


@pytest.fixture()
def stored_study(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, str]:
    """Two instances of one series of a new study, stored with ``dicomweb upload``."""
    first = make_dataset(PatientName="Search^Cli", Modality="MR")
    second = make_dataset(
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
        PatientName="Search^Cli",
        Modality="MR",
    )
    for index, ds in enumerate([first, second]):
        (tmp_path / f"IM{index}").write_bytes(to_bytes(ds))
    journal = str(tmp_path / "journal")
    assert main(["upload", str(tmp_path), "--url", server.url, "--journal", journal, "--json"]) == 0
    capsys.readouterr()
    return {
        "study": str(first.StudyInstanceUID),
        "series": str(first.SeriesInstanceUID),
        "patient": str(first.PatientID),
    }


def test_studies_are_listed_one_per_line(
    server: Server, stored_study: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "search",
            "studies",
            "--url",
            server.url,
            "-q",
            f"StudyInstanceUID={stored_study['study']}",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    # Not a terminal: tab-separated, headings first.
    assert code == 0 and len(lines) == 2
    assert lines[0].split("\t")[:3] == ["StudyInstanceUID", "PatientName", "PatientID"]
    assert lines[1].split("\t")[:3] == [
        stored_study["study"],
        "Search^Cli",
        stored_study["patient"],
    ]


def test_instances_of_a_series_come_as_dicom_json(
    server: Server, stored_study: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    scope = ["--study", stored_study["study"], "--series", stored_study["series"]]
    code = main(["search", "instances", "--url", server.url, *scope, "--json", "--limit", "1"])
    matches = json.loads(capsys.readouterr().out)
    assert code == 0 and len(matches) == 1
    assert matches[0]["0020000E"]["Value"] == [stored_study["series"]]


def test_no_match_is_an_empty_answer_and_a_bad_query_fails(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "series", "--url", server.url, "-q", "Modality=XX", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["search", "studies", "--url", server.url, "--limit", "0"]) == 1
    assert "HTTP 400" in capsys.readouterr().err
    assert main(["search", "studies", "--url", server.url, "--series", "1.2"]) == 2
