"""``read_limited``: a body over the limit is refused before it is read, or as soon as the bytes
read pass the limit, never after reading it whole (an endless body shows the difference)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.requests import Request

from dicom_core.errors import BadRequest, PayloadTooLarge
from dicom_core.web.bodies import read_limited

CHUNK = 1024


class EndlessBody:
    """An ASGI ``receive`` that never ends its body, counting what it handed out."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self) -> MutableMapping[str, Any]:
        self.sent += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": True}


def request(receive: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or []}
    return Request(scope, receive)


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    body = EndlessBody()
    with pytest.raises(PayloadTooLarge, match="10000-byte limit"):
        asyncio.run(read_limited(request(body, [(b"content-length", b"10001")]), 10_000))
    assert body.sent == 0


def test_an_endless_chunked_body_is_refused_once_past_the_limit() -> None:
    body = EndlessBody()

    async def read() -> bytes:
        async with asyncio.timeout(10):  # hang guard: the old reader never returns
            return await read_limited(request(body), 10_000)

    with pytest.raises(PayloadTooLarge, match="10000-byte limit"):
        asyncio.run(read())
    assert body.sent == 10_000 // CHUNK + 1


def test_a_body_that_lies_about_its_length_is_still_counted() -> None:
    body = EndlessBody()
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_limited(request(body, [(b"content-length", b"10")]), 5000))
    assert body.sent == 5000 // CHUNK + 1


def test_a_body_at_the_limit_is_read_whole() -> None:
    parts = [b"a" * 600, b"b" * 400]

    async def receive() -> MutableMapping[str, Any]:
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    assert asyncio.run(read_limited(request(receive), 1000)) == b"a" * 600 + b"b" * 400


def test_a_client_that_disconnects_gets_400() -> None:
    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(BadRequest, match="disconnected"):
        asyncio.run(read_limited(request(receive), 1000))
