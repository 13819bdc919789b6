"""A dependency's failure leaves its cause in the log, which the client's answer leaves out.

The helper that found Cosmos DB's 409 race at startup saw 424s and nothing at all in the
server's output: the answer names the status, the operator needs the SDK's error.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.errors import DependencyFailed, NotFound
from dicom_core.settings import Settings
from dicom_core.storage.ports import StorageFull, StorageUnavailable
from dicom_core.web.context import handle
from dicom_core.web.gate import Gate


class SdkError(Exception):
    """Stands in for an SDK's exception (azure-cosmos, azure-storage)."""


class Container:
    """Just what ``handle`` asks of the app's service container."""

    def __init__(self) -> None:
        self._gate = Gate(Settings.from_mapping({}))

    def gate(self) -> Gate:
        return self._gate

    async def get(self) -> Any:
        return object()


def request() -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/v2/studies",
            "raw_path": b"/v2/studies",
            "query_string": b"",
            "headers": [],
            "server": ("127.0.0.1", 7071),
            "scheme": "http",
        }
    )


def raising(error: Exception) -> Any:
    async def handler(_request: Request, _services: Services) -> Response:
        try:
            raise SdkError("conflict (status 409)")
        except SdkError as cause:
            raise error from cause

    return handler


async def answer(error: Exception, caplog: pytest.LogCaptureFixture) -> Response:
    with caplog.at_level(logging.WARNING, logger="dicom_core.web.context"):
        return await handle(request(), Container(), raising(error))  # type: ignore[arg-type]


async def test_a_424_logs_the_sdk_error_it_came_from(caplog: pytest.LogCaptureFixture) -> None:
    response = await answer(DependencyFailed("Cosmos DB answered an unexpected error."), caplog)
    assert response.status_code == 424
    assert b"conflict" not in response.body  # the client's answer stays as it was
    [record] = caplog.records
    assert "GET /v2/studies answered 424" in record.getMessage()
    assert record.exc_info is not None
    assert "conflict (status 409)" in caplog.text  # the cause's traceback is logged


async def test_a_503_logs_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    response = await answer(StorageUnavailable("the index is locked"), caplog)
    assert response.status_code == 503
    [record] = caplog.records
    message = record.getMessage()
    assert "answered 503: the index is locked" in message
    assert "SdkError: conflict (status 409)" in message


async def test_a_full_disk_is_a_507_naming_it_and_logged_with_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a 503 with Retry-After: waiting does not help until someone makes room."""
    response = await answer(StorageFull("the disk is full (spooling the request body)"), caplog)
    assert response.status_code == 507
    assert "Retry-After" not in response.headers
    assert b"the disk is full (spooling the request body)" in response.body
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "answered 507: the disk is full" in record.getMessage()
    assert "SdkError: conflict (status 409)" in record.getMessage()


async def test_a_client_error_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    response = await answer(NotFound("The study is not stored."), caplog)
    assert response.status_code == 404
    assert caplog.records == []
