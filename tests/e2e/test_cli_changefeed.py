"""``dicomweb changefeed`` against a real server: every entry once, in order, across pages,
and ``--follow`` printing a store made while it runs (as a separate process, stopped as a
service manager stops one)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from dicomweb_cli.__main__ import main
from tests.support.factories import make_dataset, multipart, to_bytes
from tests.support.server import ROOT, Server

MULTIPART = 'multipart/related; type="application/dicom"; boundary=DICOMwebBoundary'


def store_study(client: httpx.Client, count: int) -> list[str]:
    """``count`` instances of a new study in one STOW request; their SOP Instance UIDs."""
    first = make_dataset()
    datasets = [first] + [
        make_dataset(study_uid=first.StudyInstanceUID, series_uid=first.SeriesInstanceUID)
        for _ in range(count - 1)
    ]
    response = client.post(
        "/v2/studies",
        content=multipart([to_bytes(ds) for ds in datasets]),
        headers={"Content-Type": MULTIPART, "Accept": "application/dicom+json"},
    )
    assert response.status_code == 200, response.text
    return [str(ds.SOPInstanceUID) for ds in datasets]


def latest(client: httpx.Client) -> int:
    response = client.get("/v2/changefeed/latest", params={"includeMetadata": "false"})
    return int(response.json()["Sequence"]) if response.status_code == 200 else 0


def feed_through_the_api(client: httpx.Client, page: int) -> list[int]:
    """The feed's sequences read directly, with another page size: the reference."""
    found: list[int] = []
    while True:
        params = {"offset": str(found[-1] if found else 0), "limit": str(page)}
        params["includeMetadata"] = "false"
        entries = client.get("/v1/changefeed", params=params).json()
        if not entries:
            return found
        found.extend(int(entry["Sequence"]) for entry in entries)


def test_the_whole_feed_is_printed_once_in_order_across_pages(
    server: Server, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = store_study(client, 120)
    code = main(["changefeed", "--url", server.url])
    captured = capsys.readouterr()
    entries = [json.loads(line) for line in captured.out.splitlines()]
    sequences = [entry["Sequence"] for entry in entries]
    assert code == 0
    assert sequences == feed_through_the_api(client, 37)
    assert sequences == sorted(set(sequences)) and len(sequences) > 100
    ours = [e["SopInstanceUid"] for e in entries if e["SopInstanceUid"] in set(stored)]
    assert sorted(ours) == sorted(stored) and len(ours) == len(set(ours))
    assert all("Metadata" not in entry for entry in entries)
    assert f"last sequence: {sequences[-1]}" in captured.err
    # From an offset, with metadata: only what comes after it.
    code = main(
        ["changefeed", "--url", server.url, "--offset", str(sequences[-3]), "--include-metadata"]
    )
    tail = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [entry["Sequence"] for entry in tail] == sequences[-2:]
    assert all(entry["Metadata"]["00080018"]["Value"] for entry in tail)
    # An error answer is reported once, with the server's message, and fails the command.
    assert main(["changefeed", "--url", f"{server.url}/elsewhere"]) == 1
    assert capsys.readouterr().err.startswith("dicomweb changefeed: HTTP 404 {")


def lines_of(stream: IO[str]) -> queue.Queue[str]:
    """A queue that a thread fills with the stream's lines, so a test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for(lines: queue.Queue[str], sop_uid: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        entry: dict[str, Any] = json.loads(line)
        if entry["SopInstanceUid"] == sop_uid:
            return entry


def test_follow_prints_a_store_made_while_it_runs_and_stops_cleanly(
    server: Server, client: httpx.Client
) -> None:
    before = latest(client)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dicomweb_cli",
            "changefeed",
            "--url",
            server.url,
            "--offset",
            str(before),
            "--follow",
            "--interval",
            "0.2",
        ],
        cwd=Path(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = lines_of(process.stdout)
        time.sleep(1.0)  # it is following by now (or it will read the store as backlog)
        [sop_uid] = store_study(client, 1)
        entry = wait_for(lines, sop_uid)
        assert entry["Sequence"] > before and entry["Action"] == "create"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    last = int(err.rsplit("last sequence: ", 1)[1].split()[0])
    assert last >= entry["Sequence"]
