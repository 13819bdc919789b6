"""Request heads past the limits of Azure's front end, through the local host's front: 414 URI
Too Long for a request target over 8192 characters (the conformance statement's figure), 431
for headers over 32 KiB, both decided before any function runs (functions_host/front.py).

Requests go out through http.client, which sends any target as given (httpx refuses URLs of
64 KiB and more on the client side).
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from pydicom.uid import generate_uid

from tests.support.server import Server

LIMIT = 8192


def send(
    server: Server, target: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:
        connection.request("GET", target, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def padded(prefix: str, length: int) -> str:
    return prefix + "A" * (length - len(prefix))


def wado_frames_url(length: int) -> str:
    """A frame retrieve whose frame list makes the target exactly ``length`` characters."""
    base = f"/v2/studies/{generate_uid()}/series/{generate_uid()}/instances/{generate_uid()}"
    frames, number = f"{base}/frames/1", 2
    while len(frames) + len(f",{number}") <= length:
        frames += f",{number}"
        number += 1
    return frames + "0" * (length - len(frames))  # the last frame number grows a few digits


def assert_414(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 414
    assert headers["content-type"] == "application/json"
    message = json.loads(body)["message"]
    assert str(LIMIT) in message


def test_a_9000_character_wado_url_is_414(server: Server) -> None:
    target = wado_frames_url(9000)
    assert len(target) == 9000
    assert_414(
        *send(server, target, {"Accept": "multipart/related; type=application/octet-stream"})
    )


def test_a_64_kib_qido_url_is_414(server: Server) -> None:
    target = padded("/v2/studies?PatientID=", 64 * 1024)
    assert_414(*send(server, target))


@pytest.mark.parametrize("length", [LIMIT + 1, 100_000, 1 << 20])
def test_any_target_past_the_limit_is_414(server: Server, length: int) -> None:
    assert_414(*send(server, padded("/v2/studies?PatientID=", length)))


def test_a_target_of_exactly_the_limit_reaches_the_app(server: Server) -> None:
    status, _, body = send(server, padded("/v2/studies?PatientID=", LIMIT))
    assert (status, body) == (204, b"")


def test_headers_over_32_kib_are_431_and_under_it_are_served(server: Server) -> None:
    status, headers, body = send(server, "/v2/studies", {"X-Big": "b" * (33 * 1024)})
    assert status == 431
    assert "32768" in json.loads(body)["message"]
    status, _, _ = send(server, "/v2/studies?PatientID=none", {"X-Big": "b" * (30 * 1024)})
    assert status == 204


def test_the_server_serves_after_refusing(server: Server) -> None:
    assert_414(*send(server, padded("/v2/studies?PatientID=", 70_000)))
    status, _, _ = send(server, "/v2/studies?PatientID=none")
    assert status == 204
