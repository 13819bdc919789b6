"""The change feed over HTTP (Azure's "Change feed overview"), on both backends.

The session's server is shared with other tests, so each test reads the feed from the
latest sequence it saw before acting, and checks only what its own requests added.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from pydicom.dataset import Dataset

from tests.support.factories import make_dataset, to_bytes
from tests.support.server import ROOT, Server

ACCEPT = {"Accept": "application/dicom+json"}
EXAMPLE = ROOT / "examples" / "read_changefeed.py"


def store(client: httpx.Client, ds: Dataset, *, method: str = "POST") -> None:
    response = client.request(
        method,
        "/v2/studies",
        content=to_bytes(ds),
        headers={"Content-Type": "application/dicom", **ACCEPT},
    )
    assert response.status_code == 200, response.text


def instance_path(ds: Dataset) -> str:
    return (
        f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def latest_sequence(client: httpx.Client) -> int:
    response = client.get("/v2/changefeed/latest", params={"includeMetadata": "false"})
    if response.status_code == 204:
        return 0
    assert response.status_code == 200, response.text
    return int(response.json()["Sequence"])


def read_all(client: httpx.Client, after: int, **params: str) -> list[dict]:
    """Every entry after sequence ``after``, in v1 pages of 100."""
    entries: list[dict] = []
    while True:
        response = client.get(
            "/v1/changefeed", params={"offset": str(after), "limit": "100", **params}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        if not page:
            return entries
        entries.extend(page)
        after = page[-1]["Sequence"]


def test_store_replace_and_delete_appear_in_order_with_states(client: httpx.Client) -> None:
    start = latest_sequence(client)
    kept, gone = make_dataset(PatientID="FEED-1"), make_dataset(PatientID="FEED-2")
    store(client, kept)
    store(client, gone)
    kept.PatientID = "FEED-1-PUT"
    store(client, kept, method="PUT")
    assert client.delete(instance_path(gone)).status_code == 204

    entries = read_all(client, start)
    assert [(e["Action"], e["SopInstanceUid"], e["State"]) for e in entries] == [
        ("create", kept.SOPInstanceUID, "replaced"),
        ("create", gone.SOPInstanceUID, "deleted"),
        ("create", kept.SOPInstanceUID, "current"),
        ("delete", gone.SOPInstanceUID, "deleted"),
    ]
    assert [e["Sequence"] for e in entries] == list(range(start + 1, start + 5))
    first = entries[0]
    assert (first["StudyInstanceUid"], first["SeriesInstanceUid"]) == (
        kept.StudyInstanceUID,
        kept.SeriesInstanceUID,
    )
    assert datetime.fromisoformat(first["Timestamp"]).tzinfo is not None
    assert first["Timestamp"].endswith("Z")

    # Metadata is the current version's, as the metadata route serves it; none once deleted.
    current = client.get(instance_path(kept) + "/metadata", headers=ACCEPT).json()[0]
    for entry in entries:
        if entry["SopInstanceUid"] == kept.SOPInstanceUID:
            assert entry["Metadata"] == current
            assert entry["Metadata"]["00100020"]["Value"] == ["FEED-1-PUT"]
        else:
            assert "Metadata" not in entry
    plain = read_all(client, start, includeMetadata="false")
    assert [e["Sequence"] for e in plain] == [e["Sequence"] for e in entries]
    assert all("Metadata" not in e for e in plain)

    latest = client.get("/v2/changefeed/latest")
    assert latest.status_code == 200
    assert latest.headers["content-type"].startswith("application/json")
    assert latest.json() == entries[-1]


def test_v1_pages_by_sequence_and_v2_by_window_and_skip(client: httpx.Client) -> None:
    start = latest_sequence(client)
    datasets = [make_dataset() for _ in range(4)]
    for ds in datasets:
        store(client, ds)
    entries = read_all(client, start, includeMetadata="false")
    assert [e["SopInstanceUid"] for e in entries] == [ds.SOPInstanceUID for ds in datasets]

    page = client.get("/v1/changefeed", params={"offset": str(start + 1), "limit": "2"}).json()
    assert [e["Sequence"] for e in page] == [start + 2, start + 3]
    # v1 ignores the window.
    ignored = client.get(
        "/v1/changefeed",
        params={"offset": str(start), "startTime": "2999-01-01T00:00:00Z", "limit": "4"},
    ).json()
    assert len(ignored) == 4

    # v2: [second's time, fourth's time) holds the second and third; offset skips in it.
    window = {"startTime": entries[1]["Timestamp"], "endTime": entries[3]["Timestamp"]}
    got = client.get("/v2/changefeed", params={**window, "includeMetadata": "false"}).json()
    assert [e["Sequence"] for e in got] == [start + 2, start + 3]
    got = client.get("/v2/changefeed", params={**window, "offset": "1"}).json()
    assert [e["Sequence"] for e in got] == [start + 3]
    # Times in another zone mean the same instant.
    first = datetime.fromisoformat(entries[1]["Timestamp"]).astimezone(timezone(timedelta(hours=5)))
    zoned = {"startTime": first.isoformat(), "endTime": entries[3]["Timestamp"]}
    got = client.get("/v2/changefeed", params=zoned).json()
    assert [e["Sequence"] for e in got] == [start + 2, start + 3]
    # Without offset or window, v2 starts at the beginning of the feed.
    head = client.get("/v2/changefeed", params={"limit": "1"}).json()
    assert head[0]["Sequence"] == 1
    # Without a window, offset counts entries from the start of the feed at any depth, as
    # Microsoft's client sample pages (offset = entries read so far).
    deep = client.get("/v2/changefeed", params={"offset": str(start + 1), "limit": "2"}).json()
    assert [e["Sequence"] for e in deep] == [start + 2, start + 3]
    beyond = client.get("/v2/changefeed", params={"offset": "20000", "limit": "1"})
    assert beyond.status_code == 200


def test_parameter_names_match_in_any_case_as_microsofts_page_spells_them(
    client: httpx.Client,
) -> None:
    """The overview's request line reads ``endtime`` and ``includemetadata``; Azure's model
    binding ignores case, so a client copying it gets its window and no metadata."""
    start = latest_sequence(client)
    datasets = [make_dataset() for _ in range(3)]
    for ds in datasets:
        store(client, ds)
    entries = read_all(client, start, includeMetadata="false")
    got = client.get(
        "/v2/changefeed",
        params={
            "starttime": entries[0]["Timestamp"],
            "endtime": entries[2]["Timestamp"],
            "includemetadata": "false",
            "LIMIT": "5",
            "Offset": "1",
        },
    )
    assert got.status_code == 200, got.text
    assert [e["Sequence"] for e in got.json()] == [start + 2]
    assert "Metadata" not in got.json()[0]
    page = client.get("/v1/changefeed", params={"OFFSET": str(start), "Limit": "2"}).json()
    assert [e["Sequence"] for e in page] == [start + 1, start + 2]


def test_a_parameter_given_twice_in_any_case_is_a_400(client: httpx.Client) -> None:
    response = client.get("/v2/changefeed?limit=1&Limit=2")
    assert response.status_code == 400
    assert "limit" in response.json()["message"]


def test_a_time_finer_than_a_microsecond_bounds_the_window_exactly(
    client: httpx.Client,
) -> None:
    """A .NET client writes times to the tenth of a microsecond. 100 ns after an entry's
    time, a start leaves the entry out and an end takes it in; cut down to the microsecond,
    the start took it in and the end left the window empty (a 400)."""
    start = latest_sequence(client)
    for _ in range(2):
        store(client, make_dataset())
    first, second = read_all(client, start, includeMetadata="false")
    stamp = first["Timestamp"]
    assert len(stamp.split(".")[1]) == len("123456Z")
    finer = stamp.removesuffix("Z") + "1Z"
    later = client.get("/v2/changefeed", params={"startTime": finer, "includeMetadata": "false"})
    assert later.status_code == 200, later.text
    sequences = [e["Sequence"] for e in later.json()]
    assert first["Sequence"] not in sequences and second["Sequence"] in sequences
    window = {"startTime": stamp, "endTime": finer, "includeMetadata": "false"}
    exact = client.get("/v2/changefeed", params=window)
    assert exact.status_code == 200, exact.text
    assert first["Sequence"] in [e["Sequence"] for e in exact.json()]


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/v1/changefeed", {"limit": "0"}, "limit"),
        ("/v2/changefeed", {"offset": "2147483648"}, "offset"),
        ("/v1/changefeed", {"offset": "2147483648"}, "offset"),
        ("/v1/changefeed", {"limit": "101"}, "limit"),
        ("/v2/changefeed", {"limit": "201"}, "limit"),
        ("/v2/changefeed", {"limit": "ten"}, "limit"),
        ("/v1/changefeed", {"offset": "-1"}, "offset"),
        ("/v2/changefeed", {"includeMetadata": "yes"}, "includeMetadata"),
        ("/v2/changefeed/latest", {"includeMetadata": "1"}, "includeMetadata"),
        ("/v2/changefeed", {"startTime": "2024-01-01T00:00:00"}, "startTime"),
        ("/v2/changefeed", {"endTime": "yesterday"}, "endTime"),
        ("/v2/changefeed", {"startTime": "0001-01-01T00:00:00+01:00"}, "startTime"),
        (
            "/v2/changefeed",
            {"startTime": "2024-01-01T00:00:00Z", "offset": "10001"},
            "offset",
        ),
        (
            "/v2/changefeed",
            {"startTime": "2024-01-02T00:00:00Z", "endTime": "2024-01-01T00:00:00Z"},
            "start time",
        ),
    ],
)
def test_bad_parameters_get_a_400_naming_them(
    client: httpx.Client, path: str, params: dict[str, str], named: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400
    assert named in response.json()["message"]


def test_v1_and_v2_limits_have_their_documented_defaults_and_maxima(
    client: httpx.Client,
) -> None:
    for _ in range(11 - min(latest_sequence(client), 11)):
        store(client, make_dataset())
    assert len(client.get("/v1/changefeed").json()) == 10
    assert client.get("/v1/changefeed", params={"limit": "100"}).status_code == 200
    assert client.get("/v2/changefeed", params={"limit": "200"}).status_code == 200
    assert len(client.get("/v2/changefeed", params={"limit": "11"}).json()) == 11


def test_eight_concurrent_clients_leave_a_gap_free_feed(client: httpx.Client) -> None:
    start = latest_sequence(client)
    datasets = [make_dataset() for _ in range(32)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda ds: store(client, ds), datasets))
    entries = read_all(client, start, includeMetadata="false")
    assert [e["Sequence"] for e in entries] == list(range(start + 1, start + 33))
    assert sorted(e["SopInstanceUid"] for e in entries) == sorted(
        ds.SOPInstanceUID for ds in datasets
    )
    assert {e["Action"] for e in entries} == {"create"}


def test_a_window_in_the_future_is_empty(client: httpx.Client) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = client.get("/v2/changefeed", params={"startTime": tomorrow})
    assert response.status_code == 200
    assert response.json() == []


def test_the_readme_example_reads_every_change_once_in_order(
    client: httpx.Client, server: Server
) -> None:
    """examples/read_changefeed.py, as the README runs it: from a sequence, pages of 100."""
    start = latest_sequence(client)
    datasets = [make_dataset() for _ in range(150)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda ds: store(client, ds), datasets))
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--url", server.url, "--offset", str(start)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line.split() for line in run.stdout.splitlines()]
    assert [int(line[0]) for line in lines] == list(range(start + 1, start + 151))
    assert sorted(line[3] for line in lines) == sorted(ds.SOPInstanceUID for ds in datasets)
    assert {(line[1], line[2]) for line in lines} == {("create", "current")}
    assert run.stderr.strip() == f"last sequence: {start + 150}"
