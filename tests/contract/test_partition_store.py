"""The ``PartitionStore`` contract, on every backend: ``Microsoft.Default`` is always there
with key 1, new partitions get small keys from 2 upwards, names are compared without case
(the first spelling is kept), and racing first stores of one name get one partition."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME
from tests.support.stores import MEMORY, Stores, StoresFactory


def partition_name() -> str:
    return f"Part-{uuid.uuid4().hex[:12]}"


async def test_the_default_partition_is_listed_first_with_key_1(stores: Stores) -> None:
    listed = await stores.partitions.list_partitions()
    assert [(p.key, p.name) for p in listed] == [(DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME)]
    # Its creation time is recorded once, not made up by each listing.
    again = await stores.partitions.list_partitions()
    assert again[0].created_at == listed[0].created_at
    assert await stores.raw_partitions() == [(DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME)]


async def test_every_creation_time_is_written_alike(stores: Stores) -> None:
    """``createdDate`` as ``utc_timestamp`` writes it, Microsoft.Default's too: a listing
    never mixes precisions (the local seed once gave milliseconds, the others microseconds)."""
    await stores.partitions.get_or_add_partition(partition_name())
    shape = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
    for partition in await stores.partitions.list_partitions():
        assert shape.fullmatch(partition.created_at or ""), partition


async def test_the_default_partition_is_found_by_name_and_never_takes_a_new_key(
    stores: Stores,
) -> None:
    for name in (DEFAULT_PARTITION_NAME, "microsoft.DEFAULT"):
        found = await stores.partitions.get_partition(name)
        added = await stores.partitions.get_or_add_partition(name)
        assert found is not None and found.key == added.key == DEFAULT_PARTITION_KEY
        assert added.name == DEFAULT_PARTITION_NAME
    assert len(await stores.partitions.list_partitions()) == 1


async def test_new_partitions_get_distinct_ascending_keys_from_2(stores: Stores) -> None:
    names = [partition_name() for _ in range(3)]
    added = [await stores.partitions.get_or_add_partition(name) for name in names]
    keys = [p.key for p in added]
    assert all(isinstance(key, int) and key >= 2 for key in keys)
    assert keys == sorted(set(keys))
    assert [p.name for p in added] == names
    listed = await stores.partitions.list_partitions()
    assert [(p.key, p.name) for p in listed] == [
        (DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME),
        *((p.key, p.name) for p in added),
    ]
    assert await stores.raw_partitions() == [(p.key, p.name) for p in listed]


async def test_get_or_add_is_idempotent(stores: Stores) -> None:
    name = partition_name()
    first = await stores.partitions.get_or_add_partition(name)
    assert await stores.partitions.get_or_add_partition(name) == first
    assert await stores.partitions.get_partition(name) == first
    assert first.created_at
    assert len(await stores.partitions.list_partitions()) == 2


async def test_names_match_without_case_and_keep_the_first_spelling(stores: Stores) -> None:
    first = await stores.partitions.get_or_add_partition("MyPart")
    assert await stores.partitions.get_or_add_partition("mypart") == first
    assert await stores.partitions.get_or_add_partition("MYPART") == first
    assert await stores.partitions.get_partition("myPART") == first
    assert first.name == "MyPart"
    assert [p.name for p in await stores.partitions.list_partitions()] == [
        DEFAULT_PARTITION_NAME,
        "MyPart",
    ]


async def test_an_unknown_partition_is_none_and_is_not_created(stores: Stores) -> None:
    assert await stores.partitions.get_partition(partition_name()) is None
    assert len(await stores.partitions.list_partitions()) == 1


async def test_names_made_of_dots_are_partitions_like_any_other(stores: Stores) -> None:
    """Azure's rule allows ``.`` and ``..``; they must never act as path segments."""
    one = await stores.partitions.get_or_add_partition(".")
    two = await stores.partitions.get_or_add_partition("..")
    assert one.key != two.key
    assert await stores.partitions.get_partition(".") == one
    assert await stores.partitions.get_partition("..") == two
    assert await stores.partitions.get_partition("...") is None


async def test_racing_first_stores_of_one_name_get_one_partition(stores: Stores) -> None:
    name = partition_name()
    added = await asyncio.gather(*(stores.partitions.get_or_add_partition(name) for _ in range(16)))
    assert len({p.key for p in added}) == 1
    assert len({p.created_at for p in added}) == 1
    listed = await stores.partitions.list_partitions()
    assert [p.name for p in listed].count(name) == 1
    assert [n for _, n in await stores.raw_partitions()].count(name) == 1


async def test_racing_first_stores_of_different_names_get_distinct_keys(stores: Stores) -> None:
    names = [partition_name() for _ in range(8)]
    added = await asyncio.gather(*(stores.partitions.get_or_add_partition(n) for n in names))
    assert [p.name for p in added] == names
    keys = {p.key for p in added}
    assert len(keys) == 8 and min(keys) >= 2
    assert {p.key for p in await stores.partitions.list_partitions()} == {1, *keys}


async def test_partitions_survive_a_reopen_of_the_store(make_stores: StoresFactory) -> None:
    stores = await make_stores()
    if stores.backend == MEMORY:
        pytest.skip("the fakes keep nothing beyond their own objects")
    # given
    default = (await stores.partitions.list_partitions())[0]
    added = await stores.partitions.get_or_add_partition(partition_name())
    await stores.close()
    # when: the same database (local) or account (azure), through a new connection or client
    reopened = await make_stores()
    # then
    assert await reopened.partitions.list_partitions() == [default, added]
    assert await reopened.partitions.get_partition(added.name.upper()) == added
    later = await reopened.partitions.get_or_add_partition(partition_name())
    assert later.key > added.key
