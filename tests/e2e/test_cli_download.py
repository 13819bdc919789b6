"""``dicomweb download`` against a real server: a study, a series and an instance come back
byte for byte as stored (transfer-syntax=*, nothing transcoded), one file per instance.

The command runs in process through its ``main`` (argv in, exit code out, the ``--json``
summary on stdout), on both backends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from dicomweb_cli.__main__ import main
from tests.support.server import Server
from tests.support.wado import J2K_LOSSLESS, Stored, sample, store


@pytest.fixture()
def study(client: httpx.Client) -> list[Stored]:
    """Three instances of one study in two series: a small CT, and two JPEG 2000 instances
    (compressed as stored: a download that transcoded would change their bytes)."""
    ct = sample("CT_small.dcm")
    series = generate_uid()
    compressed = []
    for _ in range(2):
        ds = sample("MR_small_jp2klossless.dcm")
        ds.StudyInstanceUID, ds.SeriesInstanceUID = ct.StudyInstanceUID, series
        compressed.append(ds)
    assert str(compressed[0].file_meta.TransferSyntaxUID) == J2K_LOSSLESS
    return [store(client, ds) for ds in [ct, *compressed]]


def download(
    server: Server, capsys: pytest.CaptureFixture[str], out: Path, *uids: str
) -> tuple[int, dict[str, Any]]:
    code = main(["download", *uids, "--url", server.url, "--out", str(out), "--json"])
    return code, json.loads(capsys.readouterr().out)


def path_of(out: Path, stored: Stored) -> Path:
    ds = stored.ds
    return out / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"


def files_under(out: Path) -> list[Path]:
    return sorted(path for path in out.rglob("*") if path.is_file())


def test_a_study_downloads_byte_for_byte_one_file_per_instance(
    server: Server,
    study: list[Stored],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, summary = download(server, capsys, tmp_path, study[0].ds.StudyInstanceUID)
    assert code == 0, summary
    assert (summary["expected"], summary["downloaded"], summary["error"]) == (3, 3, None)
    assert files_under(tmp_path) == sorted(path_of(tmp_path, s) for s in study)
    for stored in study:
        assert path_of(tmp_path, stored).read_bytes() == stored.data
    assert summary["bytes_received"] >= sum(len(s.data) for s in study)


def test_a_series_and_an_instance_download_alone(
    server: Server,
    study: list[Stored],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    second = study[1].ds
    code, summary = download(
        server, capsys, tmp_path / "series", second.StudyInstanceUID, second.SeriesInstanceUID
    )
    assert (code, summary["expected"], summary["downloaded"]) == (0, 2, 2)
    assert files_under(tmp_path / "series") == sorted(
        path_of(tmp_path / "series", s) for s in study[1:]
    )
    code, summary = download(
        server,
        capsys,
        tmp_path / "one",
        second.StudyInstanceUID,
        second.SeriesInstanceUID,
        second.SOPInstanceUID,
    )
    assert (code, summary["downloaded"]) == (0, 1)
    assert files_under(tmp_path / "one") == [path_of(tmp_path / "one", study[1])]
    assert path_of(tmp_path / "one", study[1]).read_bytes() == study[1].data


def test_a_bad_uid_is_refused_before_any_request_or_path(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["download", "1.2.3", "../..", "--url", server.url, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert "the series UID '../..' has a character other than" in captured.err
    assert not out.exists()


def test_a_study_that_does_not_exist_fails_with_the_servers_404(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, summary = download(server, capsys, tmp_path / "out", generate_uid())
    assert code == 1
    assert summary["status"] == 404 and "not found" in summary["error"]
    assert summary["downloaded"] == 0 and not (tmp_path / "out").exists()
    # Without --json the reason is on stderr, for a person.
    code = main(["download", generate_uid(), "--url", server.url, "--out", str(tmp_path)])
    assert code == 1 and "HTTP 404 (not found)" in capsys.readouterr().err
