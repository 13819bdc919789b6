"""Cosmos DB's staged commit of a large study's versions under the faults a real deployment
meets: a batch whose answer is lost, two runs of one step overlapping, a delete between the
flip and the roll forward, and a reader racing the last roll-forward batch. (The staged
commit's ordinary path and its crash points: test_index_versions.)"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from azure.core.exceptions import ServiceResponseError

from dicom_core.domain.model import InstanceKey
from dicom_core.query.conditions import QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.storage.ports import IndexStore, StorageUnavailable, VersionsCommitted
from tests.contract.test_index_store import new_key, store
from tests.contract.test_index_versions import update
from tests.support.stores import Stores


@pytest.fixture
def staged(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> Stores:
    """The azure backend, committing any study of more than two versions in stages."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's staged commit")
    from dicom_core.storage.azure import cosmos_index

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 2)
    return stores


async def four_instances(index: IndexStore, **kwargs: Any) -> tuple[list[InstanceKey], list[int]]:
    study = new_key().study_uid
    series = new_key().series_uid
    keys = [new_key(study, series) for _ in range(4)]
    return keys, [await store(index, key, **kwargs) for key in keys]


async def no_visible_file_is_obsolete(index: IndexStore, outcome: VersionsCommitted) -> None:
    keys = list(outcome.committed) + list(outcome.changed)
    visible = {r.blob_key for r in [await index.get_instance(k) for k in keys] if r}
    assert not visible & set(outcome.obsolete_blob_keys), "a visible file would be deleted"


def answer_lost_once(index: IndexStore, monkeypatch: pytest.MonkeyPatch, which: str) -> list[str]:
    """The first batch with an operation named ``which`` runs, then its answer is lost."""
    execute = index._execute  # type: ignore[attr-defined]
    lost: list[str] = []

    async def lossy(c: object, pk: str, plan: Any) -> object:
        result = await execute(c, pk, plan)
        if which in plan.names and not lost:
            lost.append(which)
            raise ServiceResponseError("the connection dropped after the batch ran")
        return result

    monkeypatch.setattr(index, "_execute", lossy)
    return lost


@pytest.mark.parametrize("which", ["commit", "change"])  # the flip; a roll-forward batch
async def test_a_batch_whose_answer_is_lost_commits_once_and_keeps_its_files(
    staged: Stores, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    index = staged.index
    keys, first = await four_instances(index)
    lost = answer_lost_once(index, monkeypatch, which)
    new, outcome = await update(index, keys, first, "v2")
    assert lost == [which]
    assert set(outcome.committed) == set(keys) and outcome.changed == ()
    assert all(w > 0 for w in new)
    await no_visible_file_is_obsolete(index, outcome)


async def test_a_second_run_settling_during_the_roll_forward_takes_no_file_away(
    staged: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one step: the other run's settle rolls the study forward while this one
    does; each version is committed once and every visible file stays."""
    index = staged.index
    keys, first = await four_instances(index)
    study = keys[0].study_uid
    execute = index._execute  # type: ignore[attr-defined]
    raced: list[str] = []

    async def racing(c: object, pk: str, plan: Any) -> object:
        if "change" in plan.names and "commit" not in plan.names and not raced:
            raced.append("settle")
            await index.settle_versions(study, partition=1)  # the other run, all of it
        return await execute(c, pk, plan)

    monkeypatch.setattr(index, "_execute", racing)
    new, outcome = await update(index, keys, first, "v2")
    assert raced and set(outcome.committed) == set(keys)
    assert all(w > 0 for w in new)
    await no_visible_file_is_obsolete(index, outcome)


async def test_a_fresh_staging_of_another_run_is_left_alone(
    staged: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run that finds the study staging under another token waits (503, its
    message comes back) rather than strip what the first run is still staging."""
    from dicom_core.storage.azure import cosmos_staged_versions

    monkeypatch.setattr(cosmos_staged_versions, "STAGE_CONCURRENCY", 1)
    index = staged.index
    keys, first = await four_instances(index)
    study = keys[0].study_uid
    real = cosmos_staged_versions.StagedVersions._stage_one
    refused: list[str] = []

    async def stage_one(self: Any, *args: Any) -> str:
        result = await real(self, *args)
        if not refused:
            with pytest.raises(StorageUnavailable, match="staging"):
                await index.settle_versions(study, partition=1)
            refused.append("settle")
        return result

    monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "_stage_one", stage_one)
    _, outcome = await update(index, keys, first, "v2")
    assert refused and set(outcome.committed) == set(keys)
    left = staged._cosmos(
        "SELECT c.id FROM c WHERE c.pk = @pk AND ((c.kind = 'commit' AND c.state != 'done')"
        " OR c.kind = 'reservation' OR IS_DEFINED(c.next))",
        {"@pk": study},
    )
    assert left == []


async def crash_after_the_flip(
    index: IndexStore, keys: list[InstanceKey], first: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run an update of ``keys`` that dies right after its flip."""
    from dicom_core.storage.azure import cosmos_staged_versions

    real_settle = cosmos_staged_versions.StagedVersions._settle_chunk

    async def crash(*args: object, **kwargs: object) -> int:
        raise asyncio.CancelledError  # the process dies: nothing after it runs

    monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "_settle_chunk", crash)
    with pytest.raises(asyncio.CancelledError):
        await update(index, keys, first, "v2")
    monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "_settle_chunk", real_settle)


async def test_a_delete_between_the_flip_and_the_roll_forward_keeps_the_new_keys(
    staged: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting the latest instance of a study that reads as updated (flipped, not rolled
    forward): the study keeps the updated PatientID, in its summary and in QIDO."""
    index = staged.index
    keys, first = await four_instances(index, patient_id="v1")
    study = keys[0].study_uid
    await crash_after_the_flip(index, keys, first, monkeypatch)
    records = {key: await index.get_instance(key) for key in keys}
    latest = max(keys, key=lambda key: records[key].watermark)  # type: ignore[union-attr]

    await index.delete_instances(study, latest.series_uid, latest.sop_uid, partition=1)
    summary = await staged.raw_study_summary(study)
    assert summary is not None and (summary["instances"], summary["patient_id"]) == (3, "v2")
    for patient, expected in (("v2", [study]), ("v1", [])):
        query = parse_query([("PatientID", patient)], QueryResource.ALL_STUDIES, partition=1)
        assert [m.study_uid for m in await index.search(query) if m.study_uid == study] == expected


async def test_a_read_racing_the_last_roll_forward_batch_sees_the_new_version(
    staged: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader reads an instance document with its staged version, the roll forward then
    finishes, and only then does the reader read the commit document: it still answers the
    new version (the commit document stays as a done tombstone)."""
    from dicom_core.storage.azure import cosmos_staged_versions

    index = staged.index
    keys, first = await four_instances(index)
    study = keys[0].study_uid
    await crash_after_the_flip(index, keys, first, monkeypatch)
    monkeypatch.setattr(cosmos_staged_versions, "STAGING_LEASE_SECONDS", -1)
    real_read_commit = cosmos_staged_versions.read_commit

    async def late(container: Any, pk: str) -> object:
        monkeypatch.setattr(cosmos_staged_versions, "read_commit", real_read_commit)
        await index.settle_versions(
            study, partition=1
        )  # the roll forward ends between the two reads
        return await real_read_commit(container, pk)

    monkeypatch.setattr(cosmos_staged_versions, "read_commit", late)
    raced = await index.get_instance(keys[0])
    after = await index.get_instance(keys[0])
    assert raced is not None and after is not None
    assert raced.watermark == after.watermark


async def test_qido_json_is_keyed_by_the_version_read_not_the_summary_read_before(
    staged: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A QIDO reads a study's summary, an update commits, then the QIDO reads the latest
    instance's JSON: the match names the version of the JSON it carries, so the summary
    cache never keeps the new JSON under the old version (or the old under the new)."""
    from dicom_core.query.conditions import QueryLevel
    from dicom_core.storage.azure import cosmos_query
    from dicom_core.storage.azure.cosmos_schema import STUDY_DOC_ID

    index = staged.index
    keys, first = await four_instances(index)
    study = keys[0].study_uid
    real_read = cosmos_query.read_item
    updated: list[list[int]] = []

    async def then_update(container: Any, item: str, pk: str) -> object:
        found = await real_read(container, item, pk)
        if item == STUDY_DOC_ID and pk == study and not updated:
            new, _ = await update(index, keys, first, "v2")  # between the two reads
            updated.append(new)
        return found

    monkeypatch.setattr(cosmos_query, "read_item", then_update)
    query = parse_query([("StudyInstanceUID", study)], QueryResource.ALL_INSTANCES, partition=1)
    found = await index.search(query, metadata=frozenset({QueryLevel.STUDY}))
    assert updated and found
    for match in found:
        document = orjson.loads(match.study_metadata or b"{}")
        assert document.get("m") == "v2"  # the JSON read after the update
        assert match.study_watermark == max(updated[0])  # and the version it is
