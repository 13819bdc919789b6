"""``dicomweb download`` without the DICOMweb server: UID checks, routes, and the answer's
parts placed by their own UIDs, against a small aiohttp server that answers what a test
scripts (including answers the real server never gives: bad UIDs, foreign instances)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dicomweb_cli.__main__ import main
from dicomweb_cli.download import Downloader, DownloadSummary, Scope, read_uids
from dicomweb_cli.service import dicom_root, partition_problem
from dicomweb_cli.uids import uid_problem
from tests.support.factories import make_dataset, multipart, to_bytes

BOUNDARY = "test-boundary-1234"


def test_uids_follow_the_services_rule_and_never_name_a_parent_folder() -> None:
    assert uid_problem("1.2.840.10008.1.2.1") is None
    assert uid_problem("1.2-abc.DEF") is None
    for bad in ["", "..", ".", "1/2", "1.2 ", "a" * 65, "1\\2", "é"]:
        assert uid_problem(bad) is not None, bad


def test_a_scope_checks_its_uids_and_names_its_route() -> None:
    assert Scope("1.2").path == "/studies/1.2"
    assert Scope("1.2", "1.3").path == "/studies/1.2/series/1.3"
    assert Scope("1.2", "1.3", "1.4").path == "/studies/1.2/series/1.3/instances/1.4"
    assert Scope("1.2", "1.3", "1.4").problem() is None
    assert "study UID" in str(Scope("../x").problem())
    assert "series UID" in str(Scope("1.2", "..").problem())
    assert "instance UID" in str(Scope("1.2", "1.3", "1/4").problem())
    assert Scope("1.2").holds("1.2", "9", "9") and not Scope("1.2").holds("1.3", "9", "9")
    assert not Scope("1.2", "1.3").holds("1.2", "1.4", "9")


def test_the_root_holds_the_version_and_a_partition() -> None:
    assert dicom_root("http://host:7071/") == "http://host:7071/v2"
    assert dicom_root("https://h", "Part-1.a_b") == "https://h/v2/partitions/Part-1.a_b"
    assert partition_problem("Microsoft.Default") is None
    for bad in ["", "..", "a/b", "a b", "x" * 65]:
        assert partition_problem(bad) is not None, bad


def test_uids_are_read_from_the_header_of_a_downloaded_file(tmp_path: Path) -> None:
    ds = make_dataset()
    (tmp_path / "a").write_bytes(to_bytes(ds))
    uids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    assert read_uids(tmp_path / "a") == uids
    (tmp_path / "b").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    assert read_uids(tmp_path / "b") is None


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture()
async def serve() -> AsyncIterator[Callable[[Answer], TestServer]]:
    """Starts an aiohttp server whose every GET is answered by the function given."""
    servers: list[TestServer] = []

    def start(answer: Answer) -> TestServer:
        app = web.Application()
        app.router.add_get("/{tail:.*}", answer)
        server = TestServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def multipart_answer(parts: list[bytes]) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        if "/studies/" not in request.path:  # the QIDO count
            return web.Response(status=204)
        return web.Response(
            body=multipart(parts, BOUNDARY),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
            },
        )

    return answer


async def download(server: TestServer, scope: Scope, out: Path) -> DownloadSummary:
    await server.start_server()
    summary = DownloadSummary("x", scope, out)
    async with aiohttp.ClientSession() as session:
        root = str(server.make_url("/v2"))
        return await Downloader(session, root, scope, out, summary).run()


async def test_parts_are_named_by_their_own_uids(
    serve: Callable[[Answer], TestServer], tmp_path: Path
) -> None:
    first = make_dataset()
    second = make_dataset(study_uid=first.StudyInstanceUID)
    data = [to_bytes(first), to_bytes(second)]
    summary = await download(
        serve(multipart_answer(data)), Scope(str(first.StudyInstanceUID)), tmp_path / "out"
    )
    assert summary.ok, summary.error
    for ds, sent in zip([first, second], data, strict=True):
        path = tmp_path / "out" / ds.StudyInstanceUID / ds.SeriesInstanceUID
        assert (path / f"{ds.SOPInstanceUID}.dcm").read_bytes() == sent
    assert summary.bytes_received == sum(map(len, data))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [first.StudyInstanceUID]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("a study UID that climbs", "study UID '..' has no digits or letters"),
        ("a SOP UID with a slash", "SOP instance UID"),
        ("another study", "not one asked for"),
        ("not DICOM", "is not a DICOM instance"),
    ],
)
async def test_a_part_that_cannot_be_named_safely_stops_the_download(
    serve: Callable[[Answer], TestServer], tmp_path: Path, case: str, message: str
) -> None:
    asked = make_dataset()
    if case == "a study UID that climbs":
        part = to_bytes(make_dataset(study_uid=".."))
    elif case == "a SOP UID with a slash":
        part = to_bytes(make_dataset(study_uid=asked.StudyInstanceUID, sop_uid="1/../../x"))
    elif case == "another study":
        part = to_bytes(make_dataset())
    else:
        part = b"plain text, no DICOM here" * 10
    out = tmp_path / "deep" / "out"
    summary = await download(
        serve(multipart_answer([part])), Scope(str(asked.StudyInstanceUID)), out
    )
    assert not summary.ok and message in str(summary.error)
    # Nothing is left behind: no file, no temporary part, nothing outside the folder.
    assert list(out.iterdir()) == []
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["out"]


async def test_a_refusal_is_an_error_with_its_status_and_writes_nothing(
    serve: Callable[[Answer], TestServer], tmp_path: Path
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": "Study 1.2 was not found."}, status=404)

    summary = await download(serve(answer), Scope("1.2"), tmp_path / "out")
    assert summary.status == 404 and "not found" in str(summary.error)
    assert not (tmp_path / "out").exists()


async def test_a_body_cut_short_is_an_error_and_leaves_no_partial_file(
    serve: Callable[[Answer], TestServer], tmp_path: Path
) -> None:
    ds = make_dataset()
    body = multipart([to_bytes(ds)], BOUNDARY)

    async def answer(request: web.Request) -> web.StreamResponse:
        if "/studies/" not in request.path:
            return web.Response(status=204)
        response = web.StreamResponse(
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
            }
        )
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    summary = await download(serve(answer), Scope(str(ds.StudyInstanceUID)), tmp_path / "out")
    assert not summary.ok and summary.files == []
    assert list((tmp_path / "out").iterdir()) == []


def test_a_bad_partition_name_is_a_usage_error_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["search", "studies", "--url", "http://127.0.0.1:9", "--partition", "a/b"])
    assert code == 2 and "is not a partition name" in capsys.readouterr().err
