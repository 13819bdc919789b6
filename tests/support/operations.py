"""Polling a long-running operation over HTTP until it finishes."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_done(
    client: httpx.Client, href: str, timeout: float = 60
) -> tuple[dict[str, Any], list[int]]:
    """Poll an operation until it is done; returns it and the percentages seen on the way."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(href)
        body = response.json()
        seen.append(body["percentComplete"])
        if body["status"] in ("Completed", "Failed"):
            assert response.status_code == 200
            return body, seen
        assert response.status_code == 202, response.text
        time.sleep(0.05)
    raise AssertionError(f"operation {href} did not finish: {seen[-5:]}")
