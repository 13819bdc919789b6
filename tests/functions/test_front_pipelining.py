"""A bad request pipelined behind good ones: the front answers the good ones whole, then
refuses the bad one and closes, as Kestrel does. A probe of the runtime engine found the
refusal written into the middle of a 20 MB answer still going out, and a bad request sent in
one packet with a good one answered alone, the good one's answer lost.

A real uvicorn server with the front's protocol runs in a thread of the test process, answering
through the transport (the runtime engine's path; the zero-copy one is tested in
``test_zero_copy``); raw sockets play the clients.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.front_server import body_length_app, front_in_thread

PARTS = 5
PART = b"x" * 65536
GARBAGE = b"GARBAGE\r\n\r\n"


async def streaming(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/chunked``: a chunked body of PARTS parts, a moment apart; anything else: the same
    bytes with a Content-Length."""
    if scope["type"] != "http":
        return
    chunked = scope["path"] == "/chunked"
    headers = [] if chunked else [(b"content-length", str(PARTS * len(PART)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for n in range(PARTS):
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": PART, "more_body": n < PARTS - 1})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with front_in_thread(streaming) as chosen:
        yield chosen


def exchange(port: int, *sends: bytes) -> bytes:
    """Send each of ``sends`` a moment apart; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(15)
        for data in sends:
            sock.sendall(data)
            sock.recv(1, socket.MSG_PEEK)  # the answer has begun
        received = b""
        while more := sock.recv(65536):
            received += more
    return received


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def split_answer(data: bytes) -> tuple[bytes, bytes, bytes]:
    """The first answer's head and (de-chunked) body, and what follows it."""
    head, _, rest = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return head, rest[:length], rest[length:]
    body = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        body, rest = body + rest[:size], rest[size + 2 :]
        if size == 0:
            return head, body, rest


@pytest.mark.parametrize("path", ["/chunked", "/sized"])
def test_a_bad_request_behind_an_answer_going_out_is_refused_after_it(port: int, path: str) -> None:
    head, body, after = split_answer(exchange(port, get(path), GARBAGE))
    assert head.startswith(b"HTTP/1.1 200") and body == PART * PARTS
    assert after.startswith(b"HTTP/1.1 400 Bad Request"), after[:200]
    assert b"connection: close" in after.lower()


def test_a_bad_request_in_the_packet_of_good_ones_leaves_their_answers_whole(port: int) -> None:
    answers = exchange(port, get("/sized") + get("/chunked") + GARBAGE)
    head, body, rest = split_answer(answers)
    assert head.startswith(b"HTTP/1.1 200") and body == PART * PARTS
    head, body, rest = split_answer(rest)
    assert head.startswith(b"HTTP/1.1 200") and body == PART * PARTS
    assert rest.startswith(b"HTTP/1.1 400 Bad Request"), rest[:200]


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with front_in_thread(body_length_app()) as chosen:
        yield chosen


def send_and_read(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)  # a hang fails the test here
        sock.sendall(data)
        received = b""
        while more := sock.recv(65536):
            received += more
    return received


@pytest.mark.parametrize(
    "body", [b"5\r\nhello\r\nzz\r\nxx\r\n", b"FFFFFFFFFFFFFFFFFF\r\n"], ids=["bad size", "huge"]
)
def test_a_malformed_chunked_body_is_refused_at_once(echo_port: int, body: bytes) -> None:
    """A review found the first version of the deferral waiting for the answer of the very
    request whose body was broken: the connection hung for ever."""
    head = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert send_and_read(echo_port, head + body).startswith(b"HTTP/1.1 400")


def test_a_request_with_connection_upgrade_and_a_body_is_refused(echo_port: int) -> None:
    """The parser stops at an Upgrade request's head: its body would be lost (a STOW answered
    204 with nothing stored), so it is refused, as Kestrel refuses it."""
    request = (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    answer = send_and_read(echo_port, request)
    assert answer.startswith(b"HTTP/1.1 400") and b"cannot have content" in answer


def test_an_upgrade_request_is_answered_and_its_connection_closed(echo_port: int) -> None:
    """Nothing after its head is read, so nothing pipelined behind it can be answered: the
    connection closes after its answer instead of leaving the client waiting."""
    request = b"GET /echo HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    answer = send_and_read(echo_port, request + b"GET /echo HTTP/1.1\r\nHost: test\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1
    assert b"connection: close" in answer.lower()


def test_a_body_broken_after_its_answer_began_ends_the_connection_not_the_answer(
    port: int,
) -> None:
    """The streaming app answers without reading the body: when the body then breaks, a
    refusal would land inside that answer, so the connection ends, the answer cut short as a
    client can tell (fewer bytes than its Content-Length), never with a 400 inside it."""
    head = b"POST /sized HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = exchange(port, head, b"zz\r\nxx\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 400" not in answer
    body = answer.partition(b"\r\n\r\n")[2]
    assert len(body) < PARTS * len(PART)
