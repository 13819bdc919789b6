"""The front's ``http.response.zerocopysend``: files sent by the kernel, bytes as announced.

A real uvicorn server with the front's protocol and uvloop runs in a thread of the test
process, with a small ASGI app that answers with files; raw sockets read the answers, so that
a slow reader, a reader that leaves, and keep-alive can be played exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from functions_host.zero_copy import ZERO_COPY, _Region, _Writer
from tests.support.front_server import front_in_thread

FILE_SIZE = 700_000


def file_message(handle: Any, count: int, *, more: bool, offset: int = 0) -> dict[str, Any]:
    """The extension's message for ``count`` bytes of ``handle`` from ``offset``."""
    return {"type": ZERO_COPY, "file": handle, "offset": offset, "count": count, "more_body": more}


class FileApp:
    """Answers ``/files?n=K`` with K parts: a header, then the file by descriptor, then a
    trailer. ``/close-early`` closes and reuses each descriptor as soon as its send returns;
    ``/short`` announces more than its file holds; ``/chunked`` announces no length;
    ``/plain`` is an ordinary body; ``/offered`` says whether the scope offers the extension."""

    def __init__(self, folder: Path) -> None:
        self.files = []
        for n in range(4):
            path = folder / f"file{n}.bin"
            path.write_bytes(os.urandom(FILE_SIZE))
            self.files.append(path)
        self.decoy = folder / "decoy.bin"
        self.decoy.write_bytes(b"\xee" * FILE_SIZE)
        self.finished = 0
        self.decoys: list[int] = []
        self.failures: list[BaseException] = []

    def expected(self, count: int) -> bytes:
        return (
            b"".join(b"<part %d>" % n + self.files[n % 4].read_bytes() for n in range(count))
            + b"<end>"
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        query = parse_qs(scope["query_string"].decode())
        try:
            if path == "/offered":
                body = str(ZERO_COPY in scope.get("extensions", {})).encode()
                await self._start(send, len(body))
                await send({"type": "http.response.body", "body": body})
            elif path in {"/files", "/close-early"}:
                await self._files(send, int(query["n"][0]), reuse=path == "/close-early")
            elif path == "/short":
                await self._start(send, FILE_SIZE + 10)
                with self.files[0].open("rb") as handle:
                    await send(file_message(handle, FILE_SIZE + 10, more=False))
            elif path == "/chunked":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                with self.files[1].open("rb") as handle:
                    await send(file_message(handle, 5000, more=False, offset=100))
            elif path == "/plain":
                await self._start(send, 5)
                await send({"type": "http.response.body", "body": b"plain"})
            elif path == "/late-files":  # as /files, after a pause
                await asyncio.sleep(0.2)
                await self._files(send, int(query["n"][0]), reuse=False)
            elif path == "/bytes-then-file":  # the transport still holds bytes at the file
                lead = b"L" * (16 << 20)
                await self._start(send, len(lead) + FILE_SIZE)
                await send({"type": "http.response.body", "body": lead, "more_body": True})
                with self.files[3].open("rb") as handle:
                    await send(file_message(handle, FILE_SIZE, more=False))
            elif path == "/overflow":  # a failure of another kind than OSError
                await self._start(send, 10)
                with self.files[0].open("rb") as handle:
                    await send(file_message(handle, 10, more=False, offset=2**70))
            elif path == "/fail-then-send":  # a file shorter than its count, then another
                await self._start(send, 2 * FILE_SIZE + 10)
                with self.files[0].open("rb") as handle:
                    await send(file_message(handle, FILE_SIZE + 10, more=True))
                await asyncio.sleep(0.3)
                with self.files[1].open("rb") as handle:
                    await send(file_message(handle, FILE_SIZE, more=False))
            elif path == "/raise":  # the app fails after one file
                await self._start(send, 2 * FILE_SIZE)
                with self.files[0].open("rb") as handle:
                    await send(file_message(handle, FILE_SIZE, more=True))
                raise RuntimeError("the app failed mid-answer")
            elif path == "/no-offset":  # the file's position, moved past what was sent
                await self._start(send, 3000)
                with self.files[2].open("rb") as handle:
                    handle.seek(1000)
                    for _ in range(3):
                        await send(
                            {"type": ZERO_COPY, "file": handle, "count": 1000, "more_body": True}
                        )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception as exc:
            self.failures.append(exc)
            raise
        finally:
            self.finished += 1

    @staticmethod
    async def _start(send: Any, length: int) -> None:
        headers = [(b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def _files(self, send: Any, count: int, *, reuse: bool) -> None:
        await self._start(send, len(self.expected(count)))
        for n in range(count):
            await send({"type": "http.response.body", "body": b"<part %d>" % n, "more_body": True})
            handle = self.files[n % 4].open("rb")
            try:
                await send(file_message(handle, FILE_SIZE, more=True))
            finally:
                handle.close()
            if reuse:
                # The descriptor number is free again: a send still reading through it would
                # now read the decoy. The front must have taken its own duplicate.
                decoy = os.open(self.decoy, os.O_RDONLY)
                self.decoys.append(decoy)
        await send({"type": "http.response.body", "body": b"<end>", "more_body": False})


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FileApp:
    return FileApp(tmp_path_factory.mktemp("zero-copy"))


@pytest.fixture(scope="module")
def port(app: FileApp) -> Iterator[int]:
    with front_in_thread(app, loop="uvloop") as chosen:
        yield chosen
    for fd in app.decoys:
        os.close(fd)


def request(sock: socket.socket, path: str, method: str = "GET") -> None:
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())


def read_answer(
    sock: socket.socket, *, pause: float = 0.0, chunk: int = 65536
) -> tuple[bytes, bytes]:
    """The head and the body of one Content-Length answer (the body short if the server
    closed early)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(chunk)
        if not more:
            raise ConnectionError("closed before the head")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        if pause:
            time.sleep(pause)
        more = sock.recv(chunk)
        if not more:
            break
        body += more
    return head, body


def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(30)
    return sock


def test_the_front_offers_the_extension(port: int) -> None:
    with connect(port) as sock:
        request(sock, "/offered")
        assert read_answer(sock)[1] == b"True"


def test_files_arrive_whole_and_in_order_between_the_bytes(app: FileApp, port: int) -> None:
    with connect(port) as sock:
        request(sock, "/files?n=9")
        head, body = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == app.expected(9)


def test_a_slow_reader_gets_every_byte(app: FileApp, port: int) -> None:
    """A small receive buffer read slowly: the socket fills again and again, and the front
    waits for it instead of dropping or reordering bytes."""
    with connect(port, rcvbuf=8192) as sock:
        request(sock, "/files?n=3")
        _, body = read_answer(sock, pause=0.0005, chunk=4096)
    assert body == app.expected(3)


def test_a_descriptor_the_app_closes_and_reuses_after_send_does_not_leak_other_bytes(
    app: FileApp, port: int
) -> None:
    with connect(port, rcvbuf=16384) as sock:
        request(sock, "/close-early?n=8")
        _, body = read_answer(sock, pause=0.001)
    assert b"\xee" * 64 not in body
    assert body == app.expected(8)


def test_keep_alive_answers_after_a_zero_copy_answer(app: FileApp, port: int) -> None:
    with connect(port) as sock:
        request(sock, "/files?n=2")
        assert read_answer(sock)[1] == app.expected(2)
        request(sock, "/plain")
        assert read_answer(sock)[1] == b"plain"
        request(sock, "/files?n=1")
        assert read_answer(sock)[1] == app.expected(1)


def test_a_file_shorter_than_its_count_ends_the_connection_short(port: int) -> None:
    """The client can tell: fewer bytes than announced, then the connection closes."""
    with connect(port) as sock:
        request(sock, "/short")
        _, body = read_answer(sock)
        assert len(body) == FILE_SIZE
        assert sock.recv(100) == b""


def test_without_content_length_the_file_goes_out_chunked(app: FileApp, port: int) -> None:
    with connect(port) as sock:
        request(sock, "/chunked")
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            more = sock.recv(65536)
            assert more
            data += more
    head, _, chunked = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    body, rest = b"", chunked
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2 :]
    assert body == app.files[1].read_bytes()[100:5100]


def test_head_sends_the_length_and_no_body(port: int) -> None:
    with connect(port) as sock:
        request(sock, "/files?n=2", method="HEAD")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        request(sock, "/plain")
        assert read_answer(sock)[1] == b"plain"  # nothing of a body came in between
    assert head.startswith(b"HTTP/1.1 200")


def test_a_client_that_leaves_mid_answer_costs_nothing_after(app: FileApp, port: int) -> None:
    """The answer stops, its descriptors are released, and the server goes on serving."""
    before = len(os.listdir("/proc/self/fd"))
    finished = app.finished
    for _ in range(5):
        sock = connect(port, rcvbuf=8192)
        request(sock, "/files?n=12")
        sock.recv(20000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset
    deadline = time.monotonic() + 10
    while app.finished < finished + 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.finished == finished + 5
    with connect(port) as sock:
        request(sock, "/files?n=2")
        assert read_answer(sock)[1] == app.expected(2)
    deadline = time.monotonic() + 5
    while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(os.listdir("/proc/self/fd")) <= before


def read_to_the_end(sock: socket.socket) -> bytes:
    data = b""
    while more := sock.recv(65536):
        data += more
    return data


@pytest.mark.parametrize(
    ("bad", "status"),
    [(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"414"), (b"\x00garbage\r\n\r\n", b"400")],
)
def test_a_bad_request_pipelined_behind_a_file_answer_never_lands_inside_it(
    app: FileApp, port: int, bad: bytes, status: bytes
) -> None:
    """The refusal would have been written between the writer's bytes: the answer comes
    whole, then the refusal, as Kestrel answers them, and the connection closes."""
    with connect(port, rcvbuf=4096) as sock:
        request(sock, "/files?n=9")
        time.sleep(0.2)  # the answer has started and fills the socket
        sock.sendall(bad)
        head, _, rest = read_to_the_end(sock).partition(b"\r\n\r\n")
    expected = app.expected(9)
    assert head.startswith(b"HTTP/1.1 200") and rest[: len(expected)] == expected
    refusal = rest[len(expected) :]
    assert refusal.startswith(b"HTTP/1.1 " + status), refusal[:100]
    assert b"connection: close" in refusal.lower()


def test_a_failure_of_another_kind_ends_the_connection_short(port: int) -> None:
    """Nothing of a next answer may stand in for the body that failed."""
    with connect(port) as sock:
        request(sock, "/overflow")
        request(sock, "/plain")
        _, body = read_answer(sock)
        assert b"HTTP/1.1" not in body
        assert len(body) < 10
        assert sock.recv(100) == b""


def test_files_sent_after_a_failure_leave_no_descriptor_open(port: int) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with connect(port) as sock:
            request(sock, "/fail-then-send")
            _, body = read_answer(sock)
            assert len(body) == FILE_SIZE
    deadline = time.monotonic() + 5
    while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_an_app_failing_mid_answer_leaves_a_visibly_short_body(port: int) -> None:
    with connect(port) as sock:
        request(sock, "/raise")
        _, body = read_answer(sock)
        assert len(body) < 2 * FILE_SIZE
        assert sock.recv(100) == b""


def test_without_an_offset_the_file_position_moves_past_each_send(app: FileApp, port: int) -> None:
    with connect(port) as sock:
        request(sock, "/no-offset")
        _, body = read_answer(sock)
    assert body == app.files[2].read_bytes()[1000:4000]


def test_a_writer_cancelled_while_closing_still_releases_its_descriptors(tmp_path: Path) -> None:
    """A shutdown cancels a stalled answer twice: the second cancellation interrupts the
    writer's own close. Its descriptors must still be closed, once nothing uses them."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(4 << 20))

    async def scenario() -> tuple[int, int]:
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        source = os.open(path, os.O_RDONLY)
        before = len(os.listdir("/proc/self/fd"))
        writer = _Writer(os.dup(ours.fileno()), lambda: False, lambda: None)
        await writer.put(_Region(os.dup(source), 0, 4 << 20))
        await asyncio.sleep(0.2)  # the peer reads nothing: the writer waits for room
        closing = asyncio.create_task(writer.close())
        await asyncio.sleep(0)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        await asyncio.sleep(0.2)
        after = len(os.listdir("/proc/self/fd"))
        for fd in (source, ours.detach(), peer.detach()):
            os.close(fd)
        return before, after

    before, after = asyncio.run(scenario())
    assert after == before  # the socket's and the file's duplicates are closed


@pytest.mark.parametrize("spared", [0, 1], ids=["no-socket-duplicate", "no-file-duplicates"])
def test_out_of_descriptors_the_answer_still_comes_whole(
    app: FileApp, port: int, monkeypatch: pytest.MonkeyPatch, spared: int
) -> None:
    """Past the descriptor limit (after the status line went out) the files are read and
    sent as bytes instead: never a cut body for want of a duplicate."""
    real_dup = os.dup
    calls = 0

    def dup(fd: int) -> int:
        nonlocal calls
        calls += 1
        if calls > spared:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_dup(fd)

    monkeypatch.setattr(os, "dup", dup)
    with connect(port) as sock:
        request(sock, "/files?n=3")
        _, body = read_answer(sock)
    monkeypatch.undo()
    assert calls > spared
    assert body == app.expected(3)


def test_a_file_waits_for_the_bytes_the_transport_still_holds(app: FileApp, port: int) -> None:
    """Bytes sent before the first file may still sit in the transport's buffer when the
    file comes: the file goes out after them, never among them."""
    with connect(port, rcvbuf=65536) as sock:
        request(sock, "/bytes-then-file")
        time.sleep(0.3)  # the transport is holding most of the lead
        _, body = read_answer(sock, chunk=65536)
    assert body == b"L" * (16 << 20) + app.files[3].read_bytes()


def test_a_client_that_leaves_with_requests_pipelined_fails_no_send(
    app: FileApp, port: int
) -> None:
    """The connection closes while an older pipelined request is being answered: that
    answer's sends become no-ops, as for any client that leaves, instead of raising on the
    closed transport."""
    failures = len(app.failures)
    for _ in range(3):
        sock = connect(port)
        request(sock, "/late-files?n=3")
        request(sock, "/plain")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    time.sleep(0.6)
    assert app.failures[failures:] == []
