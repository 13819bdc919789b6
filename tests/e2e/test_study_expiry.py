"""Study expiry over HTTP, on both backends: STOW's ``msdicom-expiry-*`` headers, and the
timer-triggered sweep that deletes expired studies as a DELETE would.

The module's server runs the expiry timer every second (``DICOM_EXPIRY_SCHEDULE``), so a
study stored with a 2-second expiry is gone a few seconds later. That a study is *kept* is
only shown after a study with a later expiry was seen gone: the sweep has then run past the
first study's old expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from pydicom.dataset import Dataset

from tests.e2e.test_change_feed import instance_path, latest_sequence, read_all
from tests.support.factories import make_dataset, to_bytes
from tests.support.server import Server, azure_environment, start_server, stop_server

TIME = "msdicom-expiry-time-milliseconds"
OPTION = "msdicom-expiry-option"
LEVEL = "msdicom-expiry-level"
ACCEPT = {"Accept": "application/dicom+json"}
EVERY_SECOND = "* * * * * *"
#: Longer than any wait below: how long the sweep may take to delete an expired study.
SWEEP_WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def expiring(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    env = azure_environment(request.getfixturevalue("emulators")) if backend == "azure" else {}
    server = start_server(
        tmp_path_factory.mktemp(f"expiry-{backend}"), DICOM_EXPIRY_SCHEDULE=EVERY_SECOND, **env
    )
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture()
def http(expiring: Server) -> Iterator[httpx.Client]:
    with expiring.client() as client:
        yield client


def expiry(milliseconds: int, *, full: bool = True) -> dict[str, str]:
    headers = {TIME: str(milliseconds)}
    if full:
        headers |= {OPTION: "RelativeToNow", LEVEL: "Study"}
    return headers


def store(
    client: httpx.Client,
    ds: Dataset,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    version: str = "v2",
) -> httpx.Response:
    return client.request(
        method,
        f"/{version}/studies",
        content=to_bytes(ds),
        headers={"Content-Type": "application/dicom", **ACCEPT, **(headers or {})},
    )


def stored(client: httpx.Client, ds: Dataset, headers: dict[str, str] | None = None) -> None:
    response = store(client, ds, headers)
    assert response.status_code == 200, response.text


def study_exists(client: httpx.Client, study: str) -> bool:
    response = client.get(f"/v2/studies/{study}/metadata", headers=ACCEPT)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def instances_of(client: httpx.Client, study: str) -> set[str]:
    response = client.get(f"/v2/studies/{study}/instances", params={"includefield": "00080018"})
    if response.status_code == 204:
        return set()
    assert response.status_code == 200, response.text
    return {item["00080018"]["Value"][0] for item in response.json()}


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SWEEP_WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {SWEEP_WAIT_SECONDS} s: {what}")
        time.sleep(0.25)


def files_of(server: Server, study: str) -> list[str]:
    return [str(getattr(f, "key", f)) for f in server.stored_files() if study in str(f)]


def test_a_study_with_a_2_second_expiry_is_deleted_and_the_change_feed_records_it(
    http: httpx.Client, expiring: Server
) -> None:
    # given: a study of two instances that expires 2 s after its store, and one that never does
    start = latest_sequence(http)
    study = make_dataset()
    second = make_dataset(study_uid=study.StudyInstanceUID)
    kept = make_dataset()
    stored(http, study, expiry(2000))
    stored(http, second, expiry(2000))
    stored(http, kept)
    uid = study.StudyInstanceUID
    assert instances_of(http, uid) == {study.SOPInstanceUID, second.SOPInstanceUID}

    # when: it expires
    wait_until(lambda: not study_exists(http, uid), f"expired study {uid} deleted")

    # then: gone from search and retrieve, its files too; a delete entry for each instance
    assert http.get("/v2/studies", params={"StudyInstanceUID": uid}).status_code == 204
    assert http.get(f"/v2/studies/{uid}", headers={"Accept": "*/*"}).status_code == 404
    assert http.get(instance_path(study), headers={"Accept": "*/*"}).status_code == 404
    wait_until(lambda: files_of(expiring, uid) == [], f"files of {uid} removed")
    entries = [
        e for e in read_all(http, start, includeMetadata="false") if e["StudyInstanceUid"] == uid
    ]
    assert sorted((e["Action"], e["SopInstanceUid"], e["State"]) for e in entries) == sorted(
        [
            (action, ds.SOPInstanceUID, "deleted")
            for ds in (study, second)
            for action in ("create", "delete")
        ]
    )
    # A study without expiry is left alone.
    assert instances_of(http, kept.StudyInstanceUID) == {kept.SOPInstanceUID}


def test_a_later_store_moves_or_clears_the_expiry(http: httpx.Client) -> None:
    # given: four studies stored with expiries, then stored to again
    cleared, postponed, advanced, witness = (make_dataset() for _ in range(4))
    stored(http, cleared, expiry(1000))
    stored(http, postponed, expiry(1000, full=False))
    stored(http, advanced, expiry(3_600_000))
    again = {
        "cleared": make_dataset(study_uid=cleared.StudyInstanceUID),
        "postponed": make_dataset(study_uid=postponed.StudyInstanceUID),
        "advanced": make_dataset(study_uid=advanced.StudyInstanceUID),
    }
    stored(http, again["cleared"])  # no headers: the study no longer expires
    response = store(http, again["postponed"], expiry(3_600_000), method="PUT")
    assert response.status_code == 200, response.text
    stored(http, again["advanced"], expiry(1000))
    # The witness expires after the first two studies' original expiries.
    stored(http, witness, expiry(2000))

    # when: the moved-up study and the witness are swept
    for ds in (advanced, witness):
        uid = ds.StudyInstanceUID
        wait_until(lambda uid=uid: not study_exists(http, uid), f"expired study {uid} deleted")

    # then: the sweep ran past the original expiries and kept both instances of the others
    for first in (cleared, postponed):
        name = "cleared" if first is cleared else "postponed"
        assert instances_of(http, first.StudyInstanceUID) == {
            first.SOPInstanceUID,
            again[name].SOPInstanceUID,
        }


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({TIME: "0"}, TIME),
        ({TIME: "-1000"}, TIME),
        ({TIME: "two seconds"}, TIME),
        ({TIME: "2000", OPTION: "Absolute"}, OPTION),
        ({TIME: "2000", LEVEL: "Series"}, LEVEL),
        ({OPTION: "RelativeToNow", LEVEL: "Study"}, f"{TIME} is required"),
    ],
)
def test_bad_expiry_headers_get_a_400_naming_the_header_and_store_nothing(
    http: httpx.Client, headers: dict[str, str], named: str
) -> None:
    ds = make_dataset()
    response = store(http, ds, headers)
    assert response.status_code == 400, response.text
    assert named in response.json()["message"]
    assert http.get(instance_path(ds), headers={"Accept": "*/*"}).status_code == 404


def test_v1_stores_ignore_the_expiry_headers(http: httpx.Client) -> None:
    ds = make_dataset()
    assert store(http, ds, {TIME: "not checked"}, version="v1").status_code == 200
    witness = make_dataset()
    stored(http, witness, expiry(1000))
    uid = witness.StudyInstanceUID
    wait_until(lambda: not study_exists(http, uid), f"expired study {uid} deleted")
    assert instances_of(http, ds.StudyInstanceUID) == {ds.SOPInstanceUID}
