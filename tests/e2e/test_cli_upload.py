"""``dicomweb upload`` against a real server: a folder tree goes in, resumably, with a summary.

The command runs in process through its ``main`` (argv in, exit code out, the ``--json``
summary on stdout), and the server is checked through its own HTTP API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomweb_cli.__main__ import main
from tests.support.factories import make_dataset, to_bytes
from tests.support.server import Server


def write(path: Path, **kwargs: Any) -> str:
    ds = make_dataset(**kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_bytes(ds))
    return str(ds.SOPInstanceUID)


def upload(
    server: Server, capsys: pytest.CaptureFixture[str], journal: Path, *args: str
) -> tuple[int, dict[str, Any]]:
    code = main(["upload", "--url", server.url, "--journal", str(journal), "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def stored(client: httpx.Client, uid: str) -> bool:
    response = client.get("/v2/instances", params={"SOPInstanceUID": uid})
    return response.status_code == 200 and len(response.json()) == 1


def tree(root: Path) -> list[str]:
    """Four DICOM files (two without an extension, two nested) and a non-DICOM file."""
    study = make_dataset().StudyInstanceUID
    uids = [
        write(root / "a.dcm", study_uid=study),
        write(root / "IM000002", study_uid=study),
        write(root / "series" / "b.dcm", study_uid=study),
        write(root / "series" / "deeper" / "IM000004", study_uid=study),
    ]
    (root / "series" / "README.txt").write_text("not DICOM\n" * 20)
    (root / "fake.dcm").write_bytes(b"\0" * 64)
    return uids


def test_a_tree_is_stored_by_content_in_bounded_batches(
    server: Server, client: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uids = tree(tmp_path / "data")
    code, summary = upload(
        server, capsys, tmp_path / "journal", str(tmp_path / "data"), "--batch-mb", "0.001"
    )
    assert code == 0
    assert summary["found"] == 4
    assert (summary["stored"], summary["already_present"], summary["failed"]) == (4, 0, 0)
    assert summary["failures"] == [] and summary["warnings"] == []
    assert summary["bytes_sent"] > sum((tmp_path / "data" / p).stat().st_size for p in ["a.dcm"])
    assert all(stored(client, uid) for uid in uids)


def test_an_instance_already_stored_counts_as_present(
    server: Server, client: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "one.dcm")
    write(tmp_path / "two.dcm")
    response = client.post(
        "/v2/studies",
        content=(tmp_path / "one.dcm").read_bytes(),
        headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
    )
    assert response.status_code == 200
    code, summary = upload(server, capsys, tmp_path / "journal", str(tmp_path))
    assert code == 0
    assert (summary["stored"], summary["already_present"], summary["failed"]) == (1, 1, 0)


def test_an_interrupted_run_resumes_without_sending_again(
    server: Server, client: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uids = tree(tmp_path / "data")
    journal = tmp_path / "journal"
    code, first = upload(server, capsys, journal, str(tmp_path / "data"), "--limit", "3")
    assert code == 0 and first["stored"] == 3
    assert len(journal.read_text().splitlines()) == 3
    code, second = upload(server, capsys, journal, str(tmp_path / "data"))
    # Resent files would come back as already present (45070): none does.
    assert code == 0
    assert second["skipped_from_journal"] == 3
    assert (second["stored"], second["already_present"], second["failed"]) == (1, 0, 0)
    assert all(stored(client, uid) for uid in uids)
    code, third = upload(server, capsys, journal, str(tmp_path / "data"))
    assert (code, third["skipped_from_journal"], third["stored"]) == (0, 4, 0)


def test_failures_are_reported_with_their_reasons_and_fail_the_run(
    server: Server, client: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.dcm")
    bad = write(tmp_path / "no-patient-id.dcm", PatientID=None)
    (tmp_path / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage" * 10)
    journal = tmp_path / "journal"
    code, summary = upload(server, capsys, journal, str(tmp_path))
    assert code == 1
    assert (summary["stored"], summary["failed"]) == (1, 2)
    failures = {Path(f["path"]).name: f for f in summary["failures"]}
    assert failures["no-patient-id.dcm"]["sop_instance_uid"] == bad
    assert failures["no-patient-id.dcm"]["reason"] == 43264
    assert failures["no-patient-id.dcm"]["comments"]
    assert failures["garbage.dcm"]["reason"] is not None
    assert stored(client, good) and not stored(client, bad)
    # Failed files are not in the journal: the next run tries them again.
    assert len(journal.read_text().splitlines()) == 1


def test_the_human_summary_goes_to_stderr_and_an_unreachable_server_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.dcm")
    code = main(
        [
            "upload",
            str(tmp_path),
            "--url",
            "http://127.0.0.1:9",
            "--journal",
            str(tmp_path / "journal"),
            "--retries",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert "failed 1" in captured.err and "ConnectError" in captured.err
