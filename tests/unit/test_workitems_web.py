"""The UPS-RS handlers (``dicom_core.web.workitems``) with data partitions, called directly on
the fakes: each resolves the partition before anything else, works in it, and writes the
partition into the Location it answers with.

An end-to-end test of the partitioned routes needs ``DICOM_DATA_PARTITIONS`` on, which the
settings refuse until every index adapter keeps partitions apart; until then these tests
stand in for it (the route table is checked by tests/functions/test_azure_routing.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from pydicom.uid import generate_uid
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from dicom_core.bootstrap import Services
from dicom_core.domain.partitions import (
    DEFAULT_PARTITION_KEY,
    FEATURE_DISABLED,
    PARTITION_MISSING,
    PARTITION_NOT_FOUND,
)
from dicom_core.errors import BadRequest
from dicom_core.services.partitions import PartitionService
from dicom_core.services.workitems import WorkitemService
from dicom_core.web import workitems
from tests.fakes import FakeWorkitemStore
from tests.fakes.partitions import FakePartitionStore
from tests.support.ups import DICOM_JSON, STATE, TRANSACTION_UID, element, unique, workitem

HOST = "dicom.example"
LABEL = "00741204"

Handler = Callable[[Request, Services], Awaitable[Response]]


class App:
    """The services a workitem handler uses, on fakes, with partitions on or off."""

    def __init__(self, *, partitions: bool) -> None:
        self.store = FakeWorkitemStore()
        self.registry = FakePartitionStore()
        self.services = cast(
            Services,
            SimpleNamespace(
                settings=SimpleNamespace(max_json_body_bytes=1 << 20),
                workitems=WorkitemService(self.store),
                partitions=PartitionService(self.registry, enabled=partitions),
            ),
        )

    async def call(
        self, handler: Handler, method: str, path: str, *, query: str = "", body: Any = None
    ) -> Response:
        """``handler`` on a request for ``path`` (``/v2[/partitions/{name}]/workitems...``),
        with the path parameters the route template would give it."""
        version, *segments = path.strip("/").split("/")
        params: dict[str, str] = {"version": version.removeprefix("v")}
        if segments[0] == "partitions":
            params["partition"], segments = segments[1], segments[2:]
        assert segments[0] == "workitems", path
        if len(segments) > 1:
            params["workitem"] = segments[1]
        content = b"" if body is None else orjson.dumps(body)
        headers = [(b"host", HOST.encode()), (b"accept", DICOM_JSON.encode())]
        if body is not None:
            headers.append((b"content-type", DICOM_JSON.encode()))
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": content, "more_body": False}

        scope = {
            "type": "http",
            "method": method,
            "scheme": "http",
            "path": path,
            "query_string": query.encode(),
            "headers": headers,
            "path_params": params,
        }
        return await handler(Request(scope, receive), self.services)

    async def create(self, base: str, uid: str, label: str, patient: str) -> Response:
        dataset = workitem(patient_id=patient) | {LABEL: element("LO", label)}
        response = await self.call(workitems.create, "POST", base, query=uid, body=dataset)
        assert response.status_code == 201
        return response

    async def read(self, base: str, uid: str) -> dict[str, Any]:
        response = await self.call(workitems.retrieve, "GET", f"{base}/{uid}")
        assert response.status_code == 200
        dataset = orjson.loads(response.body)
        assert isinstance(dataset, dict)
        return cast(dict[str, Any], dataset)

    async def search(self, base: str, patient: str) -> list[dict[str, Any]]:
        response = await self.call(workitems.search, "GET", base, query=f"PatientID={patient}")
        if response.status_code == 204:
            return []
        assert response.status_code == 200
        return cast(list[dict[str, Any]], orjson.loads(response.body))


def label_of(dataset: dict[str, Any]) -> str:
    return str(dataset[LABEL]["Value"][0])


async def test_on_one_uid_created_in_two_partitions_is_two_independent_workitems() -> None:
    app = App(partitions=True)
    uid, patient = generate_uid(), unique()
    a, b = "/v2/partitions/Site-A/workitems", "/v2/partitions/Site-B/workitems"
    for base, label in ((a, "a"), (b, "b")):
        created = await app.create(base, uid, label, patient)
        # The workitem's URL is in its partition, as the request named it.
        assert created.headers["location"] == f"http://{HOST}{base}/{uid}"
        assert created.headers["content-location"] == created.headers["location"]
    # Create made both partitions, as Azure's implicit creation on workitem create does.
    keys = {name: p.key for name, p in app.registry.by_name.items()}
    assert set(keys) == {"microsoft.default", "site-a", "site-b"}
    assert {k for k, _ in app.store.records} == {keys["site-a"], keys["site-b"]}
    assert [label_of(await app.read(base, uid)) for base in (a, b)] == ["a", "b"]

    claim = {STATE: element("CS", "IN PROGRESS"), TRANSACTION_UID: element("UI", "1.2.3")}
    response = await app.call(workitems.change_state, "PUT", f"{a}/{uid}/state", body=claim)
    assert response.status_code == 200
    update = {LABEL: element("LO", "a2")}
    response = await app.call(workitems.update, "POST", f"{a}/{uid}", query="1.2.3", body=update)
    assert response.status_code == 200
    response = await app.call(workitems.cancel_request, "POST", f"{b}/{uid}/cancelrequest")
    assert response.status_code == 202

    found_a, found_b = await app.search(a, patient), await app.search(b, patient)
    assert [(label_of(d), d[STATE]["Value"][0]) for d in found_a] == [("a2", "IN PROGRESS")]
    assert [(label_of(d), d[STATE]["Value"][0]) for d in found_b] == [("b", "CANCELED")]


async def test_on_only_create_makes_a_partition() -> None:
    app = App(partitions=True)
    base = "/v2/partitions/Site-C/workitems"
    uid = generate_uid()
    others: list[tuple[Handler, str, str]] = [
        (workitems.search, "GET", base),
        (workitems.retrieve, "GET", f"{base}/{uid}"),
        (workitems.update, "POST", f"{base}/{uid}"),
        (workitems.change_state, "PUT", f"{base}/{uid}/state"),
        (workitems.cancel_request, "POST", f"{base}/{uid}/cancelrequest"),
    ]
    for handler, method, path in others:
        with pytest.raises(BadRequest) as refused:
            await app.call(handler, method, path, body={})
        assert refused.value.message == PARTITION_NOT_FOUND, handler
    assert "site-c" not in app.registry.by_name
    await app.create(base, uid, "c", unique())
    assert "site-c" in app.registry.by_name


@pytest.mark.parametrize(
    "handler",
    [
        workitems.create,
        workitems.search,
        workitems.retrieve,
        workitems.update,
        workitems.change_state,
        workitems.cancel_request,
    ],
)
@pytest.mark.parametrize(
    ("partitions", "path", "message"),
    [
        (True, "/v2/workitems/1.2.3", PARTITION_MISSING),
        (False, "/v2/partitions/Site-A/workitems/1.2.3", FEATURE_DISABLED),
    ],
)
async def test_the_partition_is_checked_before_the_request_itself(
    handler: Handler, partitions: bool, path: str, message: str
) -> None:
    """As Azure's filter runs before the action: a request with an unacceptable Accept, no
    body and no Content-Type still gets the partition's 400."""
    app = App(partitions=partitions)
    with pytest.raises(BadRequest) as refused:
        await app.call(handler, "POST", path, query="not a uid")
    assert refused.value.message == message
    assert app.registry.by_name.keys() == {"microsoft.default"}


async def test_off_workitems_are_microsoft_defaults_at_the_unpartitioned_urls() -> None:
    app = App(partitions=False)
    uid, patient = generate_uid(), unique()
    created = await app.create("/v2/workitems", uid, "d", patient)
    assert created.headers["location"] == f"http://{HOST}/v2/workitems/{uid}"
    assert list(app.store.records) == [(DEFAULT_PARTITION_KEY, uid)]
    assert [label_of(d) for d in await app.search("/v2/workitems", patient)] == ["d"]
