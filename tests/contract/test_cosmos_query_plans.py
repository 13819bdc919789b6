"""Cross-partition queries on the Cosmos DB test server take the path they take on real Cosmos.

Real Cosmos answers a cross-partition query with ORDER BY, TOP or an aggregate with 400 and
sub-status 1004; the SDK then fetches the query plan, sends the plan's rewritten query to each
partition key range, and merges (ORDER BY), cuts (TOP) and sums (COUNT) their answers itself.
``tools/emulators/cosmos.js`` (Fix 5) makes the test server do the same, over several partition
key ranges; these tests hold it to that, through the SDK the azure backend uses, and check that
the backend's own cross-partition searches page correctly over several ranges. Each test fails
on the server's old behaviour (one range, every query answered whole, no plans), which sends
none of the requests recorded here. See docs/azure-backend.md, "Query plans". One test holds the
server's SQL parser to linear time in the nesting of parentheses (Fix 6), which plans' rewritten
queries deepen.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from pydicom.uid import generate_uid

from dicom_core.query.conditions import QueryResource
from dicom_core.query.parser import parse_query
from tests.contract.test_index_store import new_key, store
from tests.support.stores import Stores
from tools.emulators.launcher import COSMOS_KEY, Emulators

STUDIES = 12
INSTANCES = 36


@dataclass
class Exchange:
    """One request the SDK sent and what came back."""

    status: int
    plan_request: bool
    range_id: str | None
    partition_key: str | None
    sub_status: str | None
    body: Any


@dataclass
class Recorder:
    exchanges: list[Exchange] = field(default_factory=list)

    def __call__(self, response: Any) -> None:
        request = response.http_request
        if "/docs" not in request.url or request.method != "POST":
            return
        headers: Mapping[str, str] = request.headers
        reply = response.http_response
        try:
            body = json.loads(reply.text())
        except ValueError:
            body = None
        self.exchanges.append(
            Exchange(
                status=reply.status_code,
                plan_request=str(headers.get("x-ms-cosmos-is-query-plan-request")).lower()
                == "true",
                range_id=headers.get("x-ms-documentdb-partitionkeyrangeid"),
                partition_key=headers.get("x-ms-documentdb-partitionkey"),
                sub_status=reply.headers.get("x-ms-substatus"),
                body=body,
            )
        )

    def range_answers(self) -> dict[str, list[Any]]:
        """The rows each partition key range answered, by range id."""
        found: dict[str, list[Any]] = {}
        for exchange in self.exchanges:
            if exchange.range_id is not None and exchange.status == 200:
                found.setdefault(exchange.range_id, []).extend(exchange.body["Documents"])
        return found

    def assert_planned(self) -> None:
        """The query went the way of real Cosmos: refused whole, planned, run per range."""
        first = self.exchanges[0]
        assert (first.status, first.sub_status) == (400, "1004"), first
        assert any(e.plan_request and e.status == 200 for e in self.exchanges)
        assert len(self.range_answers()) > 1


@dataclass
class Server:
    container: ContainerProxy
    recorder: Recorder


@pytest.fixture()
async def cosmos(emulators: Emulators) -> AsyncIterator[Server]:
    """A container of its own on the session's Cosmos DB server, and a record of the queries."""
    recorder = Recorder()
    client = CosmosClient(
        f"https://127.0.0.1:{emulators.cosmos_port}/", COSMOS_KEY, raw_response_hook=recorder
    )
    async with client:
        database = await client.create_database(f"plans-{uuid.uuid4().hex[:12]}")
        container = await database.create_container("c", PartitionKey(path="/pk"))
        for n in range(INSTANCES):
            # Watermarks interleave across studies, so no range holds a run of the order.
            await container.create_item(
                {"id": f"i{n}", "pk": f"study-{n % STUDIES}", "kind": "instance", "wm": n * 7 % 97}
            )
        await container.create_item({"id": "other", "pk": "study-0", "kind": "other", "wm": 500})
        recorder.exchanges.clear()
        yield Server(container, recorder)
        await client.delete_database(database)


async def query(
    container: ContainerProxy, sql: str, parameters: Mapping[str, object] | None = None, **kw: Any
) -> list[Any]:
    params = [{"name": k, "value": v} for k, v in (parameters or {}).items()]
    return [row async for row in container.query_items(sql, parameters=params, **kw)]


def watermarks() -> list[int]:
    return [n * 7 % 97 for n in range(INSTANCES)]


async def test_order_by_with_top_merges_the_ranges_newest_first(cosmos: Server) -> None:
    rows = await query(
        cosmos.container,
        "SELECT TOP @n c.pk, c.wm FROM c WHERE c.kind = @kind ORDER BY c.wm DESC",
        {"@n": 10, "@kind": "instance"},
        max_item_count=3,
    )

    assert [r["wm"] for r in rows] == sorted(watermarks(), reverse=True)[:10]
    assert all(set(r) == {"pk", "wm"} for r in rows)
    cosmos.recorder.assert_planned()
    answers = cosmos.recorder.range_answers()
    for range_rows in answers.values():
        # Each range answers in the order-by shape, already sorted and cut to TOP itself...
        assert all(set(r) == {"_rid", "orderByItems", "payload"} for r in range_rows)
        items = [r["orderByItems"][0]["item"] for r in range_rows]
        assert items == sorted(items, reverse=True) and len(items) <= 10
    # ...and the first ten come from more than one range: the SDK merged them.
    origin = {r["payload"]["wm"]: rid for rid, rs in answers.items() for r in rs}
    assert len({origin[r["wm"]] for r in rows}) > 1


async def test_order_by_select_star_reads_every_page_of_every_range(cosmos: Server) -> None:
    rows = await query(
        cosmos.container,
        "SELECT * FROM c WHERE c.kind = 'instance' ORDER BY c.wm",
        max_item_count=2,
    )

    assert [r["wm"] for r in rows] == sorted(watermarks())
    assert {r["id"] for r in rows} == {f"i{n}" for n in range(INSTANCES)}
    cosmos.recorder.assert_planned()
    pages = [e for e in cosmos.recorder.exchanges if e.range_id is not None]
    assert len(pages) > len(cosmos.recorder.range_answers())  # continuation within ranges


async def test_top_without_order_by_is_cut_by_the_sdk(cosmos: Server) -> None:
    rows = await query(cosmos.container, "SELECT TOP 5 c.id FROM c WHERE c.kind = 'instance'")

    assert len(rows) == 5
    cosmos.recorder.assert_planned()
    assert sum(len(rs) for rs in cosmos.recorder.range_answers().values()) > 5


async def test_count_is_summed_over_the_ranges(cosmos: Server) -> None:
    rows = await query(
        cosmos.container, "SELECT VALUE COUNT(1) FROM c WHERE c.kind = @kind", {"@kind": "instance"}
    )

    assert rows == [INSTANCES]
    cosmos.recorder.assert_planned()
    for range_rows in cosmos.recorder.range_answers().values():
        assert [list(r[0]) for r in range_rows] == [["item"]]


async def test_query_in_one_partition_is_answered_whole(cosmos: Server) -> None:
    rows = await query(
        cosmos.container,
        "SELECT TOP 2 c.wm FROM c WHERE c.pk = @pk AND c.kind = 'instance' ORDER BY c.wm DESC",
        {"@pk": "study-1"},
        partition_key="study-1",
    )

    expected = sorted((w for n, w in enumerate(watermarks()) if n % STUDIES == 1), reverse=True)
    assert [r["wm"] for r in rows] == expected[:2]
    assert [(e.status, e.plan_request, e.range_id) for e in cosmos.recorder.exchanges] == [
        (200, False, None)
    ]


async def test_plain_query_across_partitions_needs_no_plan(cosmos: Server) -> None:
    rows = await query(cosmos.container, "SELECT c.id FROM c WHERE c.kind = 'instance'")

    assert len(rows) == INSTANCES
    assert [(e.status, e.plan_request) for e in cosmos.recorder.exchanges] == [(200, False)]


async def test_ranges_hold_documents_by_their_effective_partition_key(cosmos: Server) -> None:
    container = cosmos.container
    ranges = [r async for r in container.read_feed_ranges()]
    assert len(ranges) > 1

    seen: set[str] = set()
    for feed_range in ranges:
        rows = await query(container, "SELECT c.id, c.pk FROM c", feed_range=feed_range)
        for row in rows:
            # The SDK hashes the key itself: the server must have put it in the same range.
            own = await container.feed_range_from_partition_key(row["pk"])
            assert await container.is_feed_range_subset(feed_range, own), row
            seen.add(row["id"])
    assert len(seen) == INSTANCES + 1


NESTING = 12


@pytest.fixture()
def own_cosmos(tmp_path: Path) -> Iterator[Emulators]:
    """A Cosmos DB server for one test: one that hangs keeps no other test waiting behind it."""
    server = Emulators(tmp_path)
    server.start_cosmos()
    try:
        yield server
    finally:
        server.stop_cosmos()


async def test_deeply_nested_conditions_are_answered(own_cosmos: Emulators) -> None:
    """The server parses in linear time (cosmos.js, Fix 6).

    Its SQL parser re-parsed the inside of each pair of parentheses once per precedence level,
    about ten times more work per level (7 levels took 265 s), and the rewritten query of a plan
    adds a level per AND. Without the fix, a parse of these 12 levels never ends; ``timeout``
    only turns that into a failure instead of a hang.
    """
    recorder = Recorder()
    condition = "c.wm >= @low"
    for _ in range(NESTING):
        condition = f"({condition} AND c.wm < @high)"
    client = CosmosClient(
        f"https://127.0.0.1:{own_cosmos.cosmos_port}/", COSMOS_KEY, raw_response_hook=recorder
    )
    async with client:
        database = await client.create_database("nested")
        container = await database.create_container("c", PartitionKey(path="/pk"))
        for n in range(8):
            await container.create_item({"id": f"i{n}", "pk": f"study-{n % 4}", "wm": n})
        recorder.exchanges.clear()

        rows = await query(
            container,
            f"SELECT TOP 3 c.id FROM c WHERE {condition} ORDER BY c.wm DESC",
            {"@low": 2, "@high": 6},
            timeout=120,
        )

    assert [r["id"] for r in rows] == ["i5", "i4", "i3"]
    recorder.assert_planned()


# -- the azure backend's own cross-partition searches (a contract for both backends) ----------


async def test_search_across_many_studies_pages_newest_first(stores: Stores) -> None:
    stores.require_search()
    index = stores.index
    patient = f"PAT-{generate_uid()[-12:]}"
    keys = []
    for n in range(STUDIES):
        study = generate_uid()
        keys.append(new_key(study))
        if n % 3 == 0:  # a second series now and then
            keys.append(new_key(study))
    for key in keys:
        await store(index, key, patient_id=patient)
    newest_studies = list(dict.fromkeys(k.study_uid for k in reversed(keys)))
    newest_instances = [k.sop_uid for k in reversed(keys)]

    def search(resource: QueryResource, limit: int, offset: int) -> Any:
        pairs = [("PatientID", patient), ("limit", str(limit)), ("offset", str(offset))]
        return index.search(parse_query(pairs, resource, partition=1))

    studies = await search(QueryResource.ALL_STUDIES, 5, 3)
    assert [m.study_uid for m in studies] == newest_studies[3:8]
    series = await search(QueryResource.ALL_SERIES, 4, 0)
    assert [m.series_uid for m in series] == [k.series_uid for k in reversed(keys)][:4]
    instances = await search(QueryResource.ALL_INSTANCES, 6, 10)
    assert [m.sop_uid for m in instances] == newest_instances[10:16]
    tail = await search(QueryResource.ALL_INSTANCES, 100, len(keys) - 2)
    assert [m.sop_uid for m in tail] == newest_instances[-2:]
