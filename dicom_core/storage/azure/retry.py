"""Retries with backoff for transient Azure failures, and what the rest become.

Cosmos DB answers 429 (request rate too large), 449 (retry with: a concurrent update touched
the same resource), 408/503 (timeout, unavailable) when it is busy or failing over; Storage
answers 500/503 when busy; connections drop during failovers and emulator restarts. All of
these are worth a short retry with exponential backoff (honouring the server's retry-after).
When the failure outlasts the budget (``DICOM_AZURE_RETRY_SECONDS``) the operation ends in
``StorageUnavailable``, which the web layer answers with 503 and Retry-After.

Errors that are not transient pass through unchanged so that adapters can act on them (404,
409 and 412 are part of the protocols); ``unexpected`` turns whatever is left into an error
the web layer knows, so that an SDK exception never becomes a bare 500.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from dicom_core.errors import DependencyFailed
from dicom_core.storage.ports import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 449, 500, 502, 503, 504})


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error, if it carries one."""
    status = getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


def sub_status_of(exc: BaseException) -> int | None:
    """Cosmos DB's x-ms-substatus (1003: the container or database does not exist)."""
    sub = getattr(exc, "sub_status", None)
    if isinstance(sub, int):
        return sub
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    raw = headers.get("x-ms-substatus") if hasattr(headers, "get") else None
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientAuthenticationError):
        return False
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    if isinstance(exc, HttpResponseError):
        return status_of(exc) in TRANSIENT_STATUS
    return isinstance(exc, (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError))


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        headers = getattr(exc, "headers", None)
    if not headers or not hasattr(headers, "get"):
        return None
    for name, scale in (("x-ms-retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return float(raw) * scale
            except ValueError:
                continue
    return None


def unavailable(what: str, exc: BaseException) -> StorageUnavailable:
    return StorageUnavailable(f"{what} is not reachable right now ({type(exc).__name__})")


def unexpected(what: str, exc: BaseException) -> Exception:
    """The error to raise for an SDK failure that no protocol step expects."""
    if is_transient(exc):
        return unavailable(what, exc)
    if isinstance(exc, ClientAuthenticationError) or status_of(exc) in {401, 403}:
        return DependencyFailed(
            f"{what} refused the service's credentials; check its settings and role assignments."
        )
    status = status_of(exc)
    return DependencyFailed(f"{what} answered an unexpected error (status {status}).")


class RetryPolicy:
    """Exponential backoff with jitter within a time budget, for transient failures only."""

    def __init__(
        self, budget_seconds: float, *, first_delay: float = 0.1, max_delay: float = 2.0
    ) -> None:
        self.budget = budget_seconds
        self.first_delay = first_delay
        self.max_delay = max_delay

    async def run(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``operation``, retrying transient failures; StorageUnavailable past the budget."""
        deadline = time.monotonic() + self.budget
        delay = self.first_delay
        attempt = 0
        while True:
            attempt += 1
            try:
                return await operation()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                wait = _retry_after(exc) or delay * (0.5 + random.random())
                wait = min(wait, self.max_delay)
                if time.monotonic() + wait > deadline:
                    log.warning("%s failed %d time(s), giving up: %r", what, attempt, exc)
                    raise unavailable(what, exc) from exc
                log.info("%s failed (%r); retry %d in %.2fs", what, exc, attempt, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.max_delay)
