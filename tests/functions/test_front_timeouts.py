"""The front's timeouts for request heads, as Kestrel's: a head that has started must arrive
whole within REQUEST_HEADERS_TIMEOUT (else 408), and a connection that sends nothing is closed
after the keep-alive timeout, as one idle after an answer is.

A real uvicorn server with the front's protocol runs in a thread of the test process, with
the timeouts shortened; raw sockets play the slow clients.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions_host import front
from tests.support.front_server import front_in_thread, read_all

HEAD_TIMEOUT = 0.5
IDLE_TIMEOUT = 1
#: How long a socket here waits for the server: far past both timeouts.
PATIENCE = 15


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Says hello; ``/slow`` takes longer than the head timeout to."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(3 * HEAD_TIMEOUT)
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    patch = pytest.MonkeyPatch()
    patch.setattr(front, "REQUEST_HEADERS_TIMEOUT", HEAD_TIMEOUT)
    patch.setattr(front, "NEW_CONNECTION_TIMEOUT", IDLE_TIMEOUT)
    with front_in_thread(hello, timeout_keep_alive=IDLE_TIMEOUT) as chosen:
        yield chosen
    patch.undo()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(PATIENCE)
    return sock


def test_a_head_that_trickles_in_is_answered_408_and_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /studies HTTP/1.1\r\nHost: test\r\n")
        time.sleep(HEAD_TIMEOUT / 2)
        sock.sendall(b"Accept: application/dicom+json\r\n")  # and then nothing more
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"connection: close" in head.lower()
    assert "did not arrive" in json.loads(body)["message"]


def test_a_connection_that_never_sends_is_closed(port: int) -> None:
    with connect(port) as sock:
        assert read_all(sock) == b""


def test_a_head_that_arrives_in_time_is_answered(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /studies HTTP/1.1\r\nHost: test\r\n")
        time.sleep(HEAD_TIMEOUT / 2)
        sock.sendall(b"\r\n")
        time.sleep(HEAD_TIMEOUT)  # past the head timeout: the answer is what counts
        sock.sendall(b"GET /again HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        answers = read_all(sock)
    assert answers.count(b"HTTP/1.1 200 OK") == 2 and b"408" not in answers


def test_blank_lines_do_not_keep_an_idle_connection_open(port: int) -> None:
    """The parser skips blank lines before a request: sent every so often, they must not
    restart the idle clock (a slowloris that never begins a request)."""
    with connect(port) as sock:
        closed_after = None
        start = time.monotonic()
        for _ in range(int(4 * IDLE_TIMEOUT / 0.25)):
            try:
                sock.sendall(b"\r\n")
            except OSError:
                closed_after = time.monotonic() - start
                break
            time.sleep(0.25)
        if closed_after is None:
            assert read_all(sock) == b""  # closed by now, with nothing to say
        assert closed_after is None or closed_after < 4 * IDLE_TIMEOUT


def test_a_head_pipelined_behind_a_slow_answer_gets_its_answer(port: int) -> None:
    """The head clock runs only while the front reads: a request pipelined behind an answer
    that takes longer than the head timeout is answered, not cut."""
    slow = b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n"
    with connect(port) as sock:
        # Two whole requests (the second waits, and the front stops reading behind it), and
        # the first line of a third, whose rest arrives a moment later and sits unread.
        sock.sendall(slow + slow + b"GET /third HTTP/1.1\r\n")
        time.sleep(HEAD_TIMEOUT / 5)
        sock.sendall(b"Host: test\r\nConnection: close\r\n\r\n")
        answers = read_all(sock)
    assert answers.count(b"HTTP/1.1 200 OK") == 3 and b"408" not in answers
