"""Containers with hierarchical partition keys behave on the Cosmos DB test server as on real
Cosmos, through the SDK the azure backend uses.

A MultiHash container (``{paths: ["/dp", "/pk"], kind: "MultiHash"}``, the ``partitioned``
container of data partitions) keys each document by every component of its key: one id may
be used once per full key. Point operations and transactional batches name the full key; a
query may name a prefix, which the SDK turns into a range of effective partition keys, so a
query of one data partition reads no other partition's documents.
``tools/emulators/cosmos.js`` (Fix 8) makes the server do this; the stock server keyed
documents by the first component only, so the second document of
``test_one_id_is_one_document_per_full_key`` was a 409 there. The last test checks that the
adapter creates the ``partitioned`` container with that key.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosResourceExistsError, CosmosResourceNotFoundError

from dicom_core.settings import Settings
from dicom_core.storage.azure.clients import CosmosClients
from dicom_core.storage.azure.cosmos_schema import PARTITIONED_CONTAINER
from dicom_core.storage.azure.cosmos_session import CosmosSession
from tests.support.azure_backdoor import cosmos_drop_database
from tools.emulators.launcher import COSMOS_KEY, Emulators

STUDIES = ("1.2.3", "1.2.4")
PARTITIONS = ("2", "3", "4", "5")


def doc(dp: str, study: str, **fields: Any) -> dict[str, Any]:
    return {"id": "study", "dp": dp, "pk": study, "kind": "study", "v": f"{dp}/{study}", **fields}


@pytest.fixture()
async def container(emulators: Emulators) -> AsyncIterator[ContainerProxy]:
    """A MultiHash container of its own, holding a ``study`` document per (dp, study)."""
    client = CosmosClient(f"https://127.0.0.1:{emulators.cosmos_port}/", COSMOS_KEY)
    async with client:
        database = await client.create_database(f"hpk-{uuid.uuid4().hex[:12]}")
        made = await database.create_container(
            "partitioned", PartitionKey(path=["/dp", "/pk"], kind="MultiHash")
        )
        for dp in PARTITIONS:
            for study in STUDIES:
                await made.create_item(doc(dp, study))
        yield made
        await client.delete_database(database)


async def values(container: ContainerProxy, sql: str, **kw: Any) -> list[str]:
    return sorted([row["v"] async for row in container.query_items(sql, **kw)])


async def test_one_id_is_one_document_per_full_key(container: ContainerProxy) -> None:
    # Same id, same first component, a second component of its own: a document of its own.
    await container.create_item(doc("2", "1.2.5"))
    with pytest.raises(CosmosResourceExistsError):
        await container.create_item(doc("2", "1.2.3"))


async def test_point_reads_by_full_key_find_their_own_document(container: ContainerProxy) -> None:
    for dp in PARTITIONS:
        for study in STUDIES:
            found = await container.read_item("study", partition_key=[dp, study])
            assert found["v"] == f"{dp}/{study}"
    with pytest.raises(CosmosResourceNotFoundError):
        await container.read_item("study", partition_key=["6", "1.2.3"])


async def test_writes_by_full_key_touch_their_own_document_only(container: ContainerProxy) -> None:
    await container.upsert_item(doc("2", "1.2.3", v="changed"))
    await container.delete_item("study", partition_key=["3", "1.2.3"])

    assert (await container.read_item("study", partition_key=["2", "1.2.3"]))["v"] == "changed"
    assert (await container.read_item("study", partition_key=["2", "1.2.4"]))["v"] == "2/1.2.4"
    with pytest.raises(CosmosResourceNotFoundError):
        await container.read_item("study", partition_key=["3", "1.2.3"])
    assert (await container.read_item("study", partition_key=["3", "1.2.4"]))["v"] == "3/1.2.4"


async def test_a_prefix_query_reads_only_that_first_component(container: ContainerProxy) -> None:
    # No filter on dp in the text: only the prefix key scopes the query.
    assert await values(container, "SELECT c.v FROM c", partition_key=["2"]) == [
        "2/1.2.3",
        "2/1.2.4",
    ]
    ordered = [
        row["v"]
        async for row in container.query_items(
            "SELECT c.v FROM c WHERE c.kind = 'study' ORDER BY c.v DESC", partition_key=["4"]
        )
    ]
    assert ordered == ["4/1.2.4", "4/1.2.3"]


async def test_a_full_key_query_reads_that_document(container: ContainerProxy) -> None:
    # The server answers a query naming a partition key from every document (cosmos.js gaps),
    # so the text names the key's fields, as the adapter's queries do.
    rows = await values(
        container,
        "SELECT c.v FROM c WHERE c.dp = '2' AND c.pk = '1.2.3'",
        partition_key=["2", "1.2.3"],
    )
    assert rows == ["2/1.2.3"]


async def test_a_transactional_batch_names_the_full_key(container: ContainerProxy) -> None:
    key = ["5", "1.2.3"]
    results = await container.execute_item_batch(
        [
            ("create", ({"id": "i|1", "dp": "5", "pk": "1.2.3", "kind": "instance", "v": "i"},)),
            ("replace", ("study", doc("5", "1.2.3", v="batched"))),
        ],
        partition_key=key,
    )

    assert len(results) == 2
    assert (await container.read_item("i|1", partition_key=key))["v"] == "i"
    assert (await container.read_item("study", partition_key=key))["v"] == "batched"
    # The other study of the same data partition is untouched.
    assert (await container.read_item("study", partition_key=["5", "1.2.4"]))["v"] == "5/1.2.4"


async def test_the_adapter_creates_the_partitioned_container_from_its_spec(
    emulators: Emulators,
) -> None:
    """Where the adapter may create containers, it creates ``partitioned`` as Bicep declares
    it (tests/infra compares the declaration with the same spec)."""
    settings = Settings.from_mapping(
        emulators.environment(database=f"hpk-{uuid.uuid4().hex[:12]}")
    ).azure
    session = CosmosSession(CosmosClients(settings), settings, create_resources=True)
    try:
        containers = await session.containers()
        properties = await containers.partitioned.read()
    finally:
        await session.close()
        cosmos_drop_database(settings)

    assert properties["id"] == settings.cosmos_partitioned_container == "partitioned"
    key = properties["partitionKey"]
    assert (key["paths"], key["kind"], key["version"]) == (["/dp", "/pk"], "MultiHash", 2)
    policy = properties["indexingPolicy"]
    assert policy["compositeIndexes"] == PARTITIONED_CONTAINER.indexing_policy["compositeIndexes"]
