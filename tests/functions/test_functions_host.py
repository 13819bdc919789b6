"""The runtime-driven host: a small app (tests/functions/sample_app) served as Azure serves
it, through azure-functions-runtime, over HTTP, with queue messages on both backends."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dicom_core.bootstrap import build_job_queue
from dicom_core.settings import Settings
from tests.support.server import Server, azure_environment, start_server, stop_server

SAMPLE_APP = Path(__file__).with_name("sample_app")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("sample-host")
    received = tmp / "received"
    received.mkdir()
    running = start_server(tmp, app_dir=SAMPLE_APP, RECEIVED_DIR=str(received))
    try:
        yield running
    finally:
        stop_server(running)


def get(server: Server, path: str, method: str = "GET") -> httpx.Response:
    with server.client() as client:
        return client.request(method, path)


def test_routes_go_to_the_first_function_by_name_not_the_most_specific(sample: Server) -> None:
    # "things/special" is more specific, but a_thing sorts first and its template matches.
    answer = get(sample, "/things/special").json()
    assert answer["function"] == "a_thing"
    assert answer["params"] == {"thing": "special"}
    # With a method a_thing does not take, the next function in name order answers.
    assert get(sample, "/things/special", "DELETE").json()["function"] == "b_things_special"


def test_route_parameters_reach_the_function_through_the_invocation(sample: Server) -> None:
    answer = get(sample, "/STUDIES1.2.3/x?b=2&a=1&a=3").json()
    assert answer["function"] == "c_complex"
    assert answer["params"] == {"study": "1.2.3"}
    assert answer["query"] == [["a", "1"], ["a", "3"], ["b", "2"]]
    assert get(sample, "/Studies9/X/more").json()["params"] == {"study": "9", "rest": "more"}


def test_each_request_carries_an_invocation_id_and_forwarded_headers(sample: Server) -> None:
    first = get(sample, "/things/a").json()
    second = get(sample, "/things/b").json()
    assert first["invocation"] and first["invocation"] != second["invocation"]
    assert first["forwarded_host"] == sample.url.removeprefix("http://")
    assert first["forwarded_proto"] == "http"
    with sample.client() as client:
        spoofed = client.get("/things/c", headers={"x-ms-invocation-id": "mine"}).json()
    assert spoofed["invocation"] not in ("", "mine")


def raw_get(server: Server, head: bytes) -> dict[str, object]:
    """The sample's JSON answer to a request head sent as raw bytes (HTTP/1.0: read to EOF)."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)
        sock.sendall(b"GET /things/a HTTP/1.0\r\n" + head + b"\r\n")
        data = b""
        while more := sock.recv(65536):
            data += more
    answer: dict[str, object] = json.loads(data.partition(b"\r\n\r\n")[2])
    return answer


def test_the_forwarded_host_is_the_client_s_never_the_runtime_s_own(sample: Server) -> None:
    """A probe found the runtime's internal loopback port in STOW's RetrieveURLs for a request
    without a Host, with an empty one, or with an empty X-Forwarded-Host; with two Hosts the
    runtime took the last and the direct engine the first."""
    address = sample.url.removeprefix("http://")
    assert raw_get(sample, b"")["forwarded_host"] == address
    assert raw_get(sample, b"Host:\r\n")["forwarded_host"] == address
    assert raw_get(sample, b"Host: a.example\r\nX-Forwarded-Host:\r\n")["forwarded_host"] == (
        "a.example"
    )
    two = b"Host: first.example\r\nHost: second.example\r\n"
    assert raw_get(sample, two)["forwarded_host"] == "first.example"


def test_utf_8_header_values_reach_the_function_as_sent(sample: Server) -> None:
    """They were read as latin-1 and sent on as UTF-8: encoded twice. The function reads the
    bytes sent as ASGI servers do (latin-1), as on the direct engine."""
    sent = "café".encode()
    assert raw_get(sample, b"X-Probe: " + sent + b"\r\n")["probe"] == sent.decode("latin-1")


def test_a_websocket_upgrade_request_is_served_as_the_plain_request_it_is(
    sample: Server,
) -> None:
    """uvicorn took it for a WebSocket, which the app does not accept: a probe got 500."""
    upgrade = b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    upgrade += b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    assert raw_get(sample, upgrade)["params"] == {"thing": "a"}


def test_unmatched_paths_and_methods_reach_the_catch_all_last(sample: Server) -> None:
    answer = get(sample, "/no/such/thing")
    assert answer.status_code == 404
    assert answer.json()["function"] == "z_fallback"
    assert answer.json()["params"] == {"path": "no/such/thing"}
    # No function takes PATCH, the catch-all included: the host's own empty 404.
    bare = get(sample, "/things/a", "PATCH")
    assert bare.status_code == 404 and bare.content == b""


def test_request_and_response_bodies_stream_through_the_host(sample: Server) -> None:
    body = os.urandom(3 * 1024 * 1024) * 8  # 24 MiB

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    with sample.client() as client:
        echoed = client.post("/echo", content=chunks()).json()
        assert echoed == {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
        with client.stream("GET", "/stream/300") as streamed:
            assert streamed.status_code == 200
            total = hashlib.sha256()
            for chunk in streamed.iter_bytes():
                total.update(chunk)
    expected = hashlib.sha256(b"".join(bytes([n % 256]) * 65536 for n in range(300)))
    assert total.hexdigest() == expected.hexdigest()


def test_a_failing_function_gets_a_500_and_the_host_keeps_serving(sample: Server) -> None:
    for _ in range(3):
        assert get(sample, "/fail").status_code == 500
    assert get(sample, "/things/ok").status_code == 200


@pytest.fixture(params=["local", "azure"])
def queue_host(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Server, Settings, Path]]:
    backend = str(request.param)
    if backend not in os.environ.get("DICOM_TEST_BACKENDS", "local,azure"):
        pytest.skip(f"backend {backend} not selected")
    env = azure_environment(request.getfixturevalue("emulators")) if backend == "azure" else {}
    received = tmp_path / "received"
    received.mkdir()
    running = start_server(tmp_path, app_dir=SAMPLE_APP, RECEIVED_DIR=str(received), **env)
    settings = Settings.from_mapping(
        {"DICOM_STORAGE": backend, "DATA_DIR": str(running.data_dir), **env}
    )
    try:
        yield running, settings, received
    finally:
        stop_server(running)


def _records(folder: Path, count: int, timeout: float = 60) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"only {sorted(p.stem for p in folder.glob('*.json'))} arrived")


def test_queue_messages_arrive_with_trigger_metadata_and_retry_to_poison(
    queue_host: tuple[Server, Settings, Path],
) -> None:
    server, settings, received = queue_host

    async def send() -> None:
        queue = build_job_queue(settings)
        try:
            await queue.send("work", {"n": 1})
            await queue.send("work", {"n": 2, "fail": True})
        finally:
            await queue.close()

    asyncio.run(send())
    # host.json: maxDequeueCount 3, so the failing message is tried three times.
    records = _records(received, 4)
    assert set(records) == {"1-1", "2-1", "2-2", "2-3"}
    ok = records["1-1"]
    assert ok["body"] == {"n": 1}
    assert ok["id"] and ok["pop_receipt"]
    assert ok["insertion_time"] and ok["time_next_visible"]

    async def poisoned() -> list[dict[str, object]]:
        queue = build_job_queue(settings)
        try:
            for _ in range(100):
                parked = await queue.receive("work-poison")
                if parked:
                    return [m.body for m in parked]
                await asyncio.sleep(0.1)
            return []
        finally:
            await queue.close()

    assert asyncio.run(poisoned()) == [{"n": 2, "fail": True}]
    time.sleep(1)
    assert not (received / "2-4.json").exists()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same app on the direct engine (make run's): same routes, same function objects."""
    tmp = tmp_path_factory.mktemp("sample-direct")
    (tmp / "received").mkdir()
    running = start_server(
        tmp,
        app_dir=SAMPLE_APP,
        RECEIVED_DIR=str(tmp / "received"),
        DICOM_HOST_ENGINE="direct",
    )
    try:
        yield running
    finally:
        stop_server(running)


def test_the_direct_engine_routes_and_streams_as_the_runtime_does(
    sample: Server, direct: Server
) -> None:
    for path in ("/things/special", "/STUDIES1.2.3/x?b=2&a=1", "/Studies9/X/more", "/no/where"):
        through_runtime = get(sample, path)
        called_directly = get(direct, path)
        assert called_directly.status_code == through_runtime.status_code
        for key in ("function", "params", "path", "query"):
            assert called_directly.json()[key] == through_runtime.json()[key], (path, key)
    assert get(direct, "/things/special", "DELETE").json()["function"] == "b_things_special"
    assert get(direct, "/things/a", "PATCH").status_code == 404
    body = os.urandom(5 * 1024 * 1024)
    with direct.client() as client:
        assert (
            client.post("/echo", content=body).json()["sha256"] == hashlib.sha256(body).hexdigest()
        )
        assert len(client.get("/stream/40").content) == 40 * 65536


def test_the_direct_engine_answers_500_when_a_function_fails(direct: Server) -> None:
    assert get(direct, "/fail").status_code == 500
    assert get(direct, "/things/ok").status_code == 200


def test_a_timer_runs_on_its_schedule_in_one_process_only(tmp_path: Path) -> None:
    """The schedule comes from an app setting (%NAME%), each occurrence is invoked once
    however many serving processes there are, with the TimerInfo the host sends."""
    received = tmp_path / "received"
    received.mkdir()
    running = start_server(
        tmp_path,
        app_dir=SAMPLE_APP,
        RECEIVED_DIR=str(received),
        SAMPLE_TIMER_SCHEDULE="* * * * * *",  # every second
        DICOM_LOCAL_WORKERS="2",
    )
    try:
        ticks = received / "ticks"
        deadline = time.monotonic() + 60
        found: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(found) < 3:
            time.sleep(0.2)
            found = [json.loads(p.read_text()) for p in sorted(ticks.glob("*.json"))]
    finally:
        stop_server(running)
    assert len(found) >= 3, running.log_path.read_text()[-3000:]
    dues = [str(tick["status"]["LastUpdated"]) for tick in found]  # type: ignore[index]
    assert len(set(dues)) == len(dues)  # no occurrence ran twice
    assert len({tick["pid"] for tick in found}) == 1  # one process runs the timers
    later = [tick for tick in found if tick["status"]["Last"] != "0001-01-01T00:00:00+00:00"]  # type: ignore[index]
    assert later and all(str(t["status"]["Next"]) > str(t["status"]["LastUpdated"]) for t in later)  # type: ignore[index]


def test_a_timer_whose_schedule_setting_is_missing_is_disabled_not_fatal(
    sample: Server,
) -> None:
    """As the host marks such a function in error: the app's other functions serve."""
    assert get(sample, "/things/ok").status_code == 200
    assert "timer function tick is disabled" in sample.log_path.read_text()


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (("::1", 7071), "[::1]:7071"),
        (("127.0.0.1", 80), "127.0.0.1"),
        (("127.0.0.1", 7071), "127.0.0.1:7071"),
    ],
)
def test_the_address_named_for_a_request_without_host_is_a_url_s(
    server: tuple[str, int], expected: str
) -> None:
    """A review found http://::1:7955/v2 in RetrieveURLs on an IPv6 listener."""
    from functions_host.http import _server_address

    assert _server_address({"server": server, "scheme": "http"}) == expected


def test_a_client_leaving_mid_body_is_told_from_a_forwarding_failure() -> None:
    """aiohttp wraps the body's ClientGone in its own error; a probe found it logged as the
    runtime failing. An error naming itself as its cause ends the walk too."""
    import aiohttp

    from functions_host.http import ClientGone, _caused_by_client_gone

    try:
        try:
            raise ClientGone()
        except ClientGone as gone:
            raise aiohttp.ClientPayloadError("Failed to send bytes") from gone
    except aiohttp.ClientError as wrapped:
        assert _caused_by_client_gone(wrapped)
    looped = aiohttp.ClientError("the runtime closed the connection")
    looped.__cause__ = looped
    assert not _caused_by_client_gone(looped)
