"""The ``OperationStore`` contract on every backend: starting an operation with its first
message, what it holds, and freeing that when it finishes."""

from __future__ import annotations

import uuid

import pytest

from dicom_core.domain.operations import OperationKind, OperationStatusValues
from dicom_core.storage.ports import Continuation, OperationConflict, OperationProgress
from tests.support.stores import Stores


async def start(stores: Stores, queue: str, holds: list[str]) -> str:
    operation_id = uuid.uuid4().hex
    await stores.operations.start_operation(
        operation_id,
        OperationKind.REINDEX,
        checkpoint={"at": 0},
        first=Continuation(queue, {"operationId": operation_id}),
        holds=holds,
    )
    return operation_id


async def test_a_started_operation_is_recorded_with_its_first_message(stores: Stores) -> None:
    queue = stores.queue_name()
    operation_id = await start(stores, queue, ["1.2.3"])
    record = await stores.operations.get_operation(operation_id)
    assert record is not None
    assert (record.type, record.status, record.percent_complete) == (
        OperationKind.REINDEX.value,
        OperationStatusValues.NOT_STARTED,
        0,
    )
    assert record.checkpoint == {"at": 0}
    assert await stores.raw_messages(queue) == [{"operationId": operation_id}]


async def test_a_held_resource_refuses_a_second_operation_until_the_first_finishes(
    stores: Stores,
) -> None:
    queue = stores.queue_name()
    first = await start(stores, queue, ["1.2.3", "1.2.4"])
    with pytest.raises(OperationConflict) as refused:
        await start(stores, queue, ["1.2.9", "1.2.4"])
    assert (refused.value.resource, refused.value.operation_id) == ("1.2.4", first)
    await start(stores, queue, ["1.2.9"])  # nothing else was taken by the refused start

    done = OperationProgress(OperationStatusValues.COMPLETED, 100, {"at": 1})
    assert await stores.operations.compare_and_set_checkpoint(first, {"at": 0}, done, None)
    second = await start(stores, queue, ["1.2.4"])
    await stores.operations.fail_operation(second)
    record = await stores.operations.get_operation(second)
    assert record is not None and record.status == OperationStatusValues.FAILED
    await start(stores, queue, ["1.2.4", "1.2.3"])


async def test_a_hold_released_while_a_start_reads_it_is_read_again(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cosmos DB: the finished holder's release deletes the hold between the start's read and
    its batch (404 in the batch): the start reads again and takes it."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's hold documents")
    from dicom_core.storage.azure import cosmos_operations

    queue = stores.queue_name()
    first = await start(stores, queue, ["1.2.5"])
    done = OperationProgress(OperationStatusValues.COMPLETED, 100, {"at": 1})
    assert await stores.operations.compare_and_set_checkpoint(first, {"at": 0}, done, None)
    read_item = cosmos_operations.read_item
    stale = {"id": cosmos_operations.hold_id("1.2.5"), "operationId": first, "_etag": '"gone"'}
    served: list[str] = []

    async def before_the_release(container: object, item_id: str, partition: str) -> object:
        if item_id == stale["id"] and not served:
            served.append(item_id)
            return stale  # what the start read just before the release deleted it
        return await read_item(container, item_id, partition)

    monkeypatch.setattr(cosmos_operations, "read_item", before_the_release)
    second = await start(stores, queue, ["1.2.5"])
    assert served and second != first


async def test_a_start_cut_by_a_crash_frees_its_holds_once_abandoned(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cosmos DB: a start whose process died between its batch and its first message keeps
    its holds until ABANDONED_START_SECONDS have passed; the next start then marks it Failed
    and takes them. (Locally the record and its message are one SQLite transaction.)"""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's two-step start")
    import asyncio

    from dicom_core.storage.azure import cosmos_operations

    queue = stores.queue_name()
    real_send = stores.queue.send

    async def crash(*args: object, **kwargs: object) -> None:
        raise asyncio.CancelledError  # not an Exception: nothing runs after it, as in a crash

    monkeypatch.setattr(stores.queue, "send", crash)
    cut = uuid.uuid4().hex
    with pytest.raises(asyncio.CancelledError):
        await stores.operations.start_operation(
            cut,
            OperationKind.REINDEX,
            checkpoint={"at": 0},
            first=Continuation(queue, {"operationId": cut}),
            holds=["1.2.77"],
        )
    monkeypatch.setattr(stores.queue, "send", real_send)
    with pytest.raises(OperationConflict) as refused:
        await start(stores, queue, ["1.2.77"])  # too early to call it abandoned
    assert refused.value.operation_id == cut

    monkeypatch.setattr(cosmos_operations, "ABANDONED_START_SECONDS", -1)
    taker = await start(stores, queue, ["1.2.77"])
    record = await stores.operations.get_operation(cut)
    assert record is not None and record.status == OperationStatusValues.FAILED
    assert await stores.raw_messages(queue) == [{"operationId": taker}]
