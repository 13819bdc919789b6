"""The pieces of ``dicomweb`` without a server: for upload, finding files by content, the
multipart/related writer, reading STOW answers, batching, the journal and the retries; for
search, its routes, query parameters and table cells."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from dicomweb_cli import answers
from dicomweb_cli.files import (
    DicomFile,
    find_dicom_files,
    is_dicom,
    meta_sop_instance_uid,
    sop_instance_uid,
)
from dicomweb_cli.journal import Journal
from dicomweb_cli.multipart import FileChangedError, MultipartRelated
from dicomweb_cli.search import UsageError, cell, query_params, search_path
from dicomweb_cli.upload import RetryPolicy, Uploader, batches, retry_after_seconds
from tests.support.factories import make_dataset, multipart_parts, to_bytes


def write_instance(path: Path, **kwargs: object) -> str:
    ds = make_dataset(**kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_bytes(ds))
    return str(ds.SOPInstanceUID)


def test_files_are_found_by_preamble_and_magic_not_by_name(tmp_path: Path) -> None:
    write_instance(tmp_path / "a.dcm")
    write_instance(tmp_path / "nested" / "deeper" / "IM000001")
    (tmp_path / "notes.dcm").write_bytes(b"not dicom at all" * 20)
    (tmp_path / "short").write_bytes(b"\0" * 130)
    (tmp_path / "DICM-late").write_bytes(b"\0" * 200 + b"DICM")
    found = [f.path for f in find_dicom_files([tmp_path, tmp_path / "a.dcm"])]
    assert found == [
        (tmp_path / "a.dcm").resolve(),
        (tmp_path / "nested/deeper/IM000001").resolve(),
    ]
    assert not is_dicom(tmp_path / "missing")


def test_the_sop_instance_uid_is_read_from_the_header(tmp_path: Path) -> None:
    uid = write_instance(tmp_path / "x")
    assert sop_instance_uid(tmp_path / "x") == uid
    (tmp_path / "broken").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 10)
    assert sop_instance_uid(tmp_path / "broken") is None


def test_the_sop_instance_uid_comes_from_the_meta_group_or_else_the_dataset(
    tmp_path: Path,
) -> None:
    ds = make_dataset()
    data = to_bytes(ds)
    assert meta_sop_instance_uid(data[:4096]) == ds.SOPInstanceUID
    assert meta_sop_instance_uid(data[:140]) is None  # cut short: pydicom decides
    assert meta_sop_instance_uid(b"\0" * 128 + b"DICM" + b"\x08\x00\x18\x00UI") is None
    # given: a meta group without (0002,0003) (renumbered (0002,0004)): the dataset decides
    renumbered = data.replace(b"\x02\x00\x03\x00UI", b"\x02\x00\x04\x00UI", 1)
    assert meta_sop_instance_uid(renumbered) is None
    (tmp_path / "no-meta-uid").write_bytes(renumbered)
    assert sop_instance_uid(tmp_path / "no-meta-uid") == ds.SOPInstanceUID


async def test_a_file_whose_meta_group_disagrees_is_mapped_by_its_dataset_uid(
    tmp_path: Path,
) -> None:
    ds = make_dataset()
    uid = str(ds.SOPInstanceUID)
    other = uid[:-1] + ("2" if uid.endswith("1") else "1")
    # The first occurrence of the UID is the meta group's: it now names another instance.
    (tmp_path / "a").write_bytes(to_bytes(ds).replace(uid.encode(), other.encode(), 1))
    file = next(find_dicom_files([tmp_path]))
    assert sop_instance_uid(file.path) == other
    answer = {"00081199": {"vr": "SQ", "Value": [item(str(ds.SOPInstanceUID))]}}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    journal = Journal(tmp_path / "journal")
    async with httpx.AsyncClient(transport=transport) as client:
        summary = await Uploader(client, "http://server/v2", journal).run([[file]])
    journal.close()
    assert summary.ok and summary.results[0].sop_uid == ds.SOPInstanceUID


async def collect(body: MultipartRelated) -> bytes:
    return b"".join([chunk async for chunk in body])


async def test_the_multipart_body_frames_each_file_and_knows_its_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dicomweb_cli.multipart.CHUNK_BYTES", 7)
    contents = [b"first file\r\n--x", b"", b"third" * 50]
    paths = []
    for index, content in enumerate(contents):
        paths.append(tmp_path / str(index))
        paths[-1].write_bytes(content)
    body = MultipartRelated(paths, [len(c) for c in contents])
    data = await collect(body)
    assert len(data) == body.content_length
    assert data == await collect(body)  # a retry sends the same bytes again
    parts = multipart_parts(data, body.content_type)
    assert [payload for _, payload in parts] == contents
    assert all(headers["content-type"] == "application/dicom" for headers, _ in parts)
    assert body.content_type.startswith('multipart/related; type="application/dicom"; boundary=')


async def test_a_file_that_changed_size_fails_its_request(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    with pytest.raises(FileChangedError):
        await collect(MultipartRelated([tmp_path / "f"], [4]))
    with pytest.raises(FileChangedError):
        await collect(MultipartRelated([tmp_path / "f"], [6]))


def item(uid: str | None, **tags: object) -> dict[str, object]:
    found: dict[str, object] = {}
    if uid:
        found["00081155"] = {"vr": "UI", "Value": [uid]}
    for tag, value in tags.items():
        found[tag] = value
    return found


def test_a_stow_answer_is_read_back_onto_the_files_sent() -> None:
    comment = {"vr": "SQ", "Value": [{"00000902": {"vr": "LO", "Value": ["bad date"]}}]}
    answer = {
        "00081199": {
            "vr": "SQ",
            "Value": [
                item("1.1"),
                item("1.2", **{"00081196": {"vr": "US", "Value": [1]}, "00741048": comment}),
            ],
        },
        "00081198": {
            "vr": "SQ",
            "Value": [
                item("1.3", **{"00081197": {"vr": "US", "Value": [45070]}}),
                item("1.4", **{"00081197": {"vr": "US", "Value": [43264]}, "00741048": comment}),
                item(None, **{"00081197": {"vr": "US", "Value": [272]}}),
            ],
        },
    }
    found = answers.outcomes(answer, ["1.1", "1.2", "1.3", "1.4", None, "1.9"])
    assert found == [
        answers.Outcome(answers.STORED),
        answers.Outcome(answers.STORED, 1, ("bad date",)),
        answers.Outcome(answers.PRESENT, 45070),
        answers.Outcome(answers.FAILED, 43264, ("bad date",)),
        answers.Outcome(answers.FAILED, 272),
        answers.Outcome(answers.FAILED, None, ("the server's answer does not name it",)),
    ]


def test_batches_are_bounded_and_a_large_file_goes_alone() -> None:
    files = [DicomFile(Path(str(i)), size, 0) for i, size in enumerate([4, 4, 3, 20, 1])]
    grouped = batches(files, 10)
    assert [[f.size for f in group] for group in grouped] == [[4, 4], [3], [20], [1]]


def test_retry_after_is_seconds_or_a_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_the_journal_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    file = DicomFile(tmp_path / "a", 10, 5)
    journal = Journal(path)
    journal.record([(file, "1.2", answers.STORED)])
    journal.close()
    with path.open("a") as stream:
        stream.write('{"path": "cut sh')
    again = Journal(path)
    assert file in again and len(again) == 1
    assert DicomFile(tmp_path / "a", 11, 5) not in again  # changed since: sent again
    assert json.loads(path.read_text().splitlines()[0])["sop_instance_uid"] == "1.2"


async def test_429_and_503_and_lost_connections_are_retried_as_the_server_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = write_instance(tmp_path / "a")
    file = next(find_dicom_files([tmp_path]))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    answers_in_turn: list[httpx.Response | Exception] = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.ConnectError("refused"),
        httpx.Response(503),
        httpx.Response(200, json={"00081199": {"vr": "SQ", "Value": [item(uid)]}}),
    ]
    bodies: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(len(request.read()))
        answer = answers_in_turn.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    journal = Journal(tmp_path / "journal")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        uploader = Uploader(
            client, "http://server", journal, retry=RetryPolicy(attempts=4, base_seconds=1)
        )
        summary = await uploader.run([[file]])
    journal.close()
    assert summary.ok and summary.to_json()["stored"] == 1
    assert slept[0] == 7.0 and 0.5 <= slept[1] <= 2.0 and 1.0 <= slept[2] <= 4.0
    assert len(set(bodies)) == 1 and bodies[0] > file.size
    assert file in Journal(tmp_path / "journal")


async def test_a_request_that_keeps_failing_fails_its_files(tmp_path: Path) -> None:
    write_instance(tmp_path / "a")
    file = next(find_dicom_files([tmp_path]))
    transport = httpx.MockTransport(lambda request: httpx.Response(503, text="busy"))
    journal = Journal(tmp_path / "journal")
    async with httpx.AsyncClient(transport=transport) as client:
        uploader = Uploader(
            client, "http://server", journal, retry=RetryPolicy(attempts=2, base_seconds=0.001)
        )
        summary = await uploader.run([[file]])
    journal.close()
    assert not summary.ok
    assert summary.to_json()["failures"][0]["comments"] == ["HTTP 503: busy"]
    assert file not in Journal(tmp_path / "journal")


def test_search_routes_follow_the_level_and_scope() -> None:
    assert search_path("studies", None, None) == "/studies"
    assert search_path("series", "1.2", None) == "/studies/1.2/series"
    assert search_path("series", None, None) == "/series"
    assert search_path("instances", "1.2", "1.3") == "/studies/1.2/series/1.3/instances"
    assert search_path("instances", "1.2", None) == "/studies/1.2/instances"
    assert search_path("instances", None, None) == "/instances"
    for level, study, series in [
        ("studies", "1", None),
        ("series", "1", "2"),
        ("instances", None, "2"),
    ]:
        with pytest.raises(UsageError):
            search_path(level, study, series)


def test_search_terms_become_query_parameters_in_order() -> None:
    params = query_params(
        ["PatientName=doe", "00080060=CT", "Modality=MR", "AccessionNumber="],
        fuzzy=True,
        include=["StudyTime", "all"],
        limit=5,
        offset=10,
    )
    assert params == [
        ("PatientName", "doe"),
        ("00080060", "CT"),
        ("Modality", "MR"),
        ("AccessionNumber", ""),
        ("includefield", "StudyTime"),
        ("includefield", "all"),
        ("fuzzymatching", "true"),
        ("limit", "5"),
        ("offset", "10"),
    ]
    with pytest.raises(UsageError):
        query_params(["PatientName"], fuzzy=False, include=[], limit=None, offset=None)


def test_search_cells_show_names_and_several_values() -> None:
    dataset = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00080061": {"vr": "CS", "Value": ["CT", "PT"]},
        "00201208": {"vr": "IS", "Value": [3]},
        "00081030": {"vr": "LO"},
    }
    assert [cell(dataset, tag) for tag in ["00100010", "00080061", "00201208", "00081030"]] == [
        "Doe^Jane",
        "CT\\PT",
        "3",
        "",
    ]
