"""``GET /v{n}/operations/{id}`` (``dicom_core.web.operations``) called directly on a fake
operation store: 202 with a ``Location`` to poll while the operation runs, 200 without one
once it is done, as Azure's ``OperationsController`` answers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import orjson
import pytest
from starlette.requests import Request
from starlette.types import Message

from dicom_core.bootstrap import Services
from dicom_core.storage.ports import OperationRecord
from dicom_core.web import operations

OPERATION_ID = "1f0e2d3c4b5a69788796a5b4c3d2e1f0"


class Operations:
    def __init__(self, status: str) -> None:
        self.status = status

    async def get(self, operation_id: str) -> OperationRecord:
        assert operation_id == OPERATION_ID.upper()
        return OperationRecord(OPERATION_ID, "update", self.status, 50, (), None, "t0", "t1")


async def get(status: str) -> tuple[int, dict[str, str], dict[str, object]]:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": f"/v2/operations/{OPERATION_ID.upper()}",
        "query_string": b"",
        "headers": [(b"host", b"dicom.example")],
        "path_params": {"version": "2", "operationId": OPERATION_ID.upper()},
    }
    services = cast(Services, SimpleNamespace(operations=Operations(status)))
    response = await operations.operation(Request(scope, receive), services)
    return response.status_code, dict(response.headers), orjson.loads(response.body)


@pytest.mark.parametrize("status", ["NotStarted", "Running"])
async def test_an_unfinished_operation_is_a_202_that_says_where_to_poll(status: str) -> None:
    code, headers, body = await get(status)
    assert code == 202
    assert headers["location"] == f"http://dicom.example/v2/operations/{OPERATION_ID}"
    assert body["status"] == status


@pytest.mark.parametrize("status", ["Completed", "Failed"])
async def test_a_finished_operation_is_a_200_without_a_location(status: str) -> None:
    code, headers, body = await get(status)
    assert code == 200
    assert "location" not in headers
    assert body["status"] == status
