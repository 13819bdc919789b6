"""Data partitions: the name rule, and which partition a request is in (Azure's five cases)."""

from __future__ import annotations

import pytest

from dicom_core.domain.partitions import (
    CANNOT_DISABLE,
    DEFAULT_PARTITION_KEY,
    FEATURE_DISABLED,
    PARTITION_MISSING,
    PARTITION_NOT_FOUND,
    Partition,
    name_key,
    name_problem,
)
from dicom_core.errors import BadRequest
from dicom_core.services.partitions import PartitionService
from dicom_core.settings import Settings, SettingsError
from tests.fakes.partitions import FakePartitionStore


@pytest.mark.parametrize(
    "name", ["a", "Microsoft.Default", "site-1_ct.2", ".", "..", "A" * 64, "0"]
)
def test_names_azure_accepts(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "it is empty"),
        ("A" * 65, "it has 65 characters; at most 64 are allowed"),
        ("a b", "it contains ' '"),
        ("caf\u00e9", "it contains '\u00e9'"),
        ("a/b", "it contains '/'"),
        ("a%2Fb", "it contains '%'"),
    ],
)
def test_names_azure_refuses_say_why(name: str, reason: str) -> None:
    problem = name_problem(name)
    assert problem is not None and problem.startswith(reason)


def test_names_compare_without_case() -> None:
    assert name_key("Site-A") == name_key("site-a") != name_key("site-b")


def test_an_entry_lists_as_azure_s_partition_entry() -> None:
    entry = Partition(3, "site-a", "2026-12-06T10:00:00.000000Z").to_json()
    assert entry == {
        "partitionKey": 3,
        "partitionName": "site-a",
        "createdDate": "2026-12-06T10:00:00.000000Z",
    }


def service(*, enabled: bool, store: FakePartitionStore | None = None) -> PartitionService:
    return PartitionService(store or FakePartitionStore(), enabled=enabled)


async def refused(call: object) -> str:
    with pytest.raises(BadRequest) as caught:
        await call  # type: ignore[misc]
    assert caught.value.status == 400
    return str(caught.value)


async def test_off_a_route_without_a_partition_is_in_the_default_one() -> None:
    partition = await service(enabled=False).resolve(None)
    assert partition.key == DEFAULT_PARTITION_KEY


async def test_off_a_partition_route_is_refused_even_for_a_store() -> None:
    assert await refused(service(enabled=False).resolve("a", create=True)) == FEATURE_DISABLED


async def test_on_a_route_without_a_partition_is_refused() -> None:
    assert await refused(service(enabled=True).resolve(None)) == PARTITION_MISSING


async def test_on_a_store_creates_the_partition_it_names_and_later_reads_find_it() -> None:
    store = FakePartitionStore()
    partitions = service(enabled=True, store=store)
    created = await partitions.resolve("Site-A", create=True)
    assert created.key > DEFAULT_PARTITION_KEY and created.name == "Site-A"
    assert await partitions.resolve("site-a") == created  # another spelling, same partition
    assert await service(enabled=True, store=store).resolve("SITE-A") == created


async def test_on_a_read_of_a_partition_no_store_created_is_a_400() -> None:
    assert await refused(service(enabled=True).resolve("nowhere")) == PARTITION_NOT_FOUND


async def test_a_miss_is_not_remembered() -> None:
    store = FakePartitionStore()
    partitions = service(enabled=True, store=store)
    await refused(partitions.resolve("later"))
    await store.get_or_add_partition("later")  # another instance of the app created it
    assert (await partitions.resolve("later")).name == "later"


async def test_an_invalid_name_is_refused_before_any_look_up() -> None:
    store = FakePartitionStore()
    message = await refused(service(enabled=True, store=store).resolve("a b", create=True))
    assert message.startswith("The specified PartitionName is invalid: it contains ' '")
    assert len(await store.list_partitions()) == 1


async def test_the_default_partition_can_be_named_explicitly() -> None:
    partition = await service(enabled=True).resolve("microsoft.default")
    assert partition.key == DEFAULT_PARTITION_KEY


async def test_listing_is_refused_when_off_and_starts_with_the_default_when_on() -> None:
    assert await refused(service(enabled=False).list_partitions()) == FEATURE_DISABLED
    store = FakePartitionStore()
    await store.get_or_add_partition("b")
    listed = await service(enabled=True, store=store).list_partitions()
    assert [p.name for p in listed] == ["Microsoft.Default", "b"]


async def test_turning_partitions_off_is_refused_once_another_partition_exists() -> None:
    store = FakePartitionStore()
    await service(enabled=False, store=store).check_startup()  # only the default: fine
    await store.get_or_add_partition("site-a")
    await service(enabled=True, store=store).check_startup()
    with pytest.raises(SettingsError, match=CANNOT_DISABLE):
        await service(enabled=False, store=store).check_startup()


def test_the_setting_is_read_on_both_backends_and_off_by_default() -> None:
    on = {"DICOM_DATA_PARTITIONS": "true"}
    assert Settings.from_mapping({"DICOM_STORAGE": "local", **on}).data_partitions
    assert Settings.from_mapping({"DICOM_STORAGE": "azure", **on}).data_partitions
    assert not Settings.from_mapping({"DICOM_STORAGE": "azure"}).data_partitions


async def test_names_come_from_the_registry_once_and_the_default_needs_none() -> None:
    store = FakePartitionStore()
    partitions = service(enabled=True, store=store)
    assert await partitions.names({DEFAULT_PARTITION_KEY}) == {1: "Microsoft.Default"}
    created = await store.get_or_add_partition("Site-A")
    assert await partitions.names({created.key, 1}) == {
        created.key: "Site-A",
        1: "Microsoft.Default",
    }
