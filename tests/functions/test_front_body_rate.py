"""The front's minimum request body rate, as Kestrel's MinRequestBodyDataRate: after a grace
period, a body must bring MIN_BODY_RATE bytes for each second spent reading it, else 408 and
the connection closes, and the app reading it is told the client left.

A real uvicorn server with the front's protocol runs in a thread of the test process, with the
grace period shortened; raw sockets play the slow clients.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from functions_host import front
from tests.support.front_server import body_length_app, front_in_thread, read_all

GRACE = 0.6
CHECK = 0.1
PATIENCE = 15
EVENTS: list[str] = []


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    patch = pytest.MonkeyPatch()
    patch.setattr(front, "BODY_GRACE_SECONDS", GRACE)
    patch.setattr(front, "BODY_CHECK_SECONDS", CHECK)
    with front_in_thread(body_length_app(EVENTS)) as chosen:
        yield chosen
    patch.undo()


def post_head(length: int) -> bytes:
    return (
        b"POST /studies HTTP/1.1\r\nHost: test\r\nContent-Type: application/dicom\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_a_body_that_trickles_in_is_answered_408_and_the_app_told(port: int) -> None:
    EVENTS.clear()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(PATIENCE)
        sock.sendall(post_head(100_000) + b"0123456789")  # and then nothing more
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:200]
    assert b"connection: close" in head.lower()
    assert "slower than 240 bytes a second" in json.loads(body)["message"]
    deadline = time.monotonic() + PATIENCE
    while not EVENTS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert EVENTS == ["disconnect"]


def test_a_body_paced_above_the_rate_is_read_whole(port: int) -> None:
    chunk, chunks = b"x" * 200, 12  # 200 bytes every 0.1 s: 2,000 a second, for 1.2 s
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(PATIENCE)
        sock.sendall(post_head(len(chunk) * chunks))
        for _ in range(chunks):
            sock.sendall(chunk)
            time.sleep(0.1)
        sock.shutdown(socket.SHUT_WR)
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:200]
    assert body == str(len(chunk) * chunks).encode()


def test_a_request_without_a_body_is_not_timed(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(PATIENCE)
        sock.sendall(b"GET /studies HTTP/1.1\r\nHost: test\r\n\r\n")
        first = sock.recv(65536)
        time.sleep(3 * GRACE)  # an idle keep-alive connection after an answer: no 408
        sock.sendall(b"GET /studies HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        second = read_all(sock)
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
