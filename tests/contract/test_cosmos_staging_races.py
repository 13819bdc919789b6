"""Races between overlapping runs of one bulk-update step on Cosmos DB's staged commit.

A run that stages a large study past ``STAGING_LEASE_SECONDS`` can be stripped by another run
(a redelivered message) while it is still alive. Three reviews of the fix for that found
readers' views going backwards; each test plays one interleaving by hand and checks that what
readers see never goes from a new version back to an old one, nor shows a study half updated:

- the stripped run strips its own versions while the other run stages and flips over them;
- the stripped run, still staging, writes over what the other run staged and flipped;
- the other run's strip goes on while the stripped run's flip lands.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from dicom_core.domain.model import InstanceKey
from dicom_core.storage.ports import IndexStore, NewVersion
from tests.contract.test_index_store import new_key, open_debts, store
from tests.contract.test_index_versions import fresh_blob_key, marked, step_versions
from tests.support.stores import Stores, StoresFactory


def mk(docs: list[bytes]) -> object:
    """The marker of the first of ``docs`` (what ``marked`` wrote), None when unmarked."""
    return orjson.loads(docs[0]).get("m")


async def markers(index: IndexStore, study: str, keys: list[InstanceKey]) -> list[object]:
    """What readers see of each instance: the marker of its current version."""
    return [mk(await index.get_metadata(study, k.series_uid, k.sop_uid, partition=1)) for k in keys]


async def lapsing_study(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, **limits: int
) -> tuple[IndexStore, str, list[InstanceKey], list[int]]:
    """On Cosmos DB (skipped elsewhere): a study of three instances, each in a series of
    its own, whose updates are staged (two versions a batch) and whose stagings lapse at once;
    ``limits`` set more of ``cosmos_staged_versions``'. The index, the study, its instances
    and their watermarks."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's staged commit")
    from dicom_core.storage.azure import cosmos_index, cosmos_staged_versions

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 2)
    monkeypatch.setattr(cosmos_staged_versions, "STAGING_LEASE_SECONDS", -1)
    for name, value in limits.items():
        monkeypatch.setattr(cosmos_staged_versions, name, value)
    index = stores.index
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(3)]
    return index, study, keys, [await store(index, k) for k in keys]


async def test_a_stripped_run_never_strips_what_another_run_made_visible(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicom_core.storage.azure import cosmos_staged_versions as sv

    index, study, keys, first = await lapsing_study(stores, monkeypatch, STAGE_CONCURRENCY=1)

    def run(marker: str) -> list[NewVersion]:
        return step_versions(keys, first, marker)

    async def view() -> list[object]:
        return [
            mk(await index.get_metadata(study, k.series_uid, k.sop_uid, partition=1)) for k in keys
        ]

    real_stage_one = sv.StagedVersions._stage_one
    real_settle = sv.StagedVersions.settle
    real_step = sv.StagedVersions._settle_step
    st: dict[str, object] = {"a": None, "n": 0}

    async def stage_one(self, c, placed, token, version, reservation):  # type: ignore[no-untyped-def]
        if st["a"] is None:
            st["a"] = token
        result = await real_stage_one(self, c, placed, token, version, reservation)
        if token == st["a"]:
            st["n"] = int(st["n"]) + 1  # type: ignore[arg-type]
            if st["n"] == 2:
                await real_settle(self, placed)  # another run strips A's staging (lease lapsed)
        return result

    async def step(self, placed, ids, commit, settled):  # type: ignore[no-untyped-def]
        if "_etag" not in commit and commit.get("token") == st["a"] and "b" not in st:
            # A's _strip_own, its ids read; run B now, and let A's strip batch run once B flipped
            async def settle(self2, placed2, *, own=None, committed_only=False):  # type: ignore[no-untyped-def]
                if own is not None and own != st["a"] and "before" not in st:
                    st["before"] = await view()
                    st["taken"] = await real_step(self, placed, ids, commit, settled)
                    st["after"] = await view()
                return await real_settle(self2, placed2, own=own, committed_only=committed_only)

            monkeypatch.setattr(sv.StagedVersions, "settle", settle)
            st["b"] = await index.commit_versions(run("B"))
            monkeypatch.setattr(sv.StagedVersions, "settle", real_settle)
            return st["taken"]
        return await real_step(self, placed, ids, commit, settled)

    monkeypatch.setattr(sv.StagedVersions, "_stage_one", stage_one)
    monkeypatch.setattr(sv.StagedVersions, "_settle_step", step)
    await index.commit_versions(run("A"))
    assert st["before"] == st["after"], "A's _strip_own stripped B's visible version"
    assert await view() == st["after"]


async def test_a_stripped_run_still_staging_never_overwrites_a_visible_version(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicom_core.storage.azure import cosmos_staged_versions as sv

    index, study, keys, first = await lapsing_study(stores, monkeypatch, STAGE_CONCURRENCY=1)

    def run(marker: str) -> list[NewVersion]:
        return step_versions(keys, first, marker)

    real_stage_one = sv.StagedVersions._stage_one
    real_settle = sv.StagedVersions.settle
    state: dict[str, object] = {"a_token": None, "a_calls": 0, "seen_after_flip": None}
    a_pending: list[tuple] = []

    async def stage_one(self, c, placed, token, version, reservation):  # type: ignore[no-untyped-def]
        if state["a_token"] is None:
            state["a_token"] = token
        if token == state["a_token"]:
            state["a_calls"] = int(state["a_calls"]) + 1  # type: ignore[arg-type]
            if state["a_calls"] == 2:
                # A's second instance: before A stages it, B (a rerun) runs. B's settle strips
                # A's first; B stages and flips; while B rolls forward, A stages this one.
                a_pending.append((self, c, placed, token, version, reservation))
                b = await index.commit_versions(run("B"))
                state["b_outcome"] = b
                return state["a_result"]
        return await real_stage_one(self, c, placed, token, version, reservation)

    async def settle(self, placed, *, own=None, committed_only=False):  # type: ignore[no-untyped-def]
        if own is not None and own != state["a_token"] and a_pending and "a_result" not in state:
            # B flipped: B's versions are visible now.
            before = [
                mk(await index.get_metadata(study, k.series_uid, k.sop_uid, partition=1))
                for k in keys
            ]
            args = a_pending[0]
            state["a_result"] = await real_stage_one(*args)  # the zombie stages
            after = [
                mk(await index.get_metadata(study, k.series_uid, k.sop_uid, partition=1))
                for k in keys
            ]
            state["seen"] = (before, after)
        return await real_settle(self, placed, own=own, committed_only=committed_only)

    monkeypatch.setattr(sv.StagedVersions, "_stage_one", stage_one)
    monkeypatch.setattr(sv.StagedVersions, "settle", settle)
    await index.commit_versions(run("A"))
    before, after = state["seen"]  # type: ignore[misc]
    assert before == after, f"a visible version went invisible: {before} -> {after}"
    assert await markers(index, study, keys) == after


async def test_a_flip_landing_during_a_strip_never_shows_a_study_half_updated(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicom_core.storage.azure import cosmos_staged_versions as sv

    index, study, keys, first = await lapsing_study(stores, monkeypatch, ROLL_FORWARD_VERSIONS=1)
    versions = [
        NewVersion(marked(k, "A", patient_id="A"), fresh_blob_key(k), wm)
        for k, wm in zip(keys, first, strict=True)
    ]
    real_flip = sv.StagedVersions._flip
    real_step = sv.StagedVersions._settle_step
    seen: dict[str, object] = {}

    async def flip(self, c, placed, token, staged):  # type: ignore[no-untyped-def]
        steps = 0

        async def step(self2, placed2, ids, commit, settled):  # type: ignore[no-untyped-def]
            nonlocal steps
            taken = await real_step(self2, placed2, ids, commit, settled)
            steps += 1
            if steps == 1:  # after B's first strip batch, A's flip lands
                seen["flip"] = await real_flip(self, c, placed, token, staged)
                seen["after_flip"] = [
                    mk(await index.get_metadata(study, k.series_uid, k.sop_uid, partition=1))
                    for k in keys
                ]
            return taken

        monkeypatch.setattr(sv.StagedVersions, "_settle_step", step)
        seen["B"] = await self.settle(placed)  # run B: A's lease lapsed
        monkeypatch.setattr(sv.StagedVersions, "_settle_step", real_step)
        return seen["flip"]

    monkeypatch.setattr(sv.StagedVersions, "_flip", flip)
    outcome = await index.commit_versions(versions)
    assert len(set(seen["after_flip"])) == 1, "half visible after the flip"  # type: ignore[arg-type]
    # Readers end where the outcome says: updated exactly when committed.
    final = await markers(index, study, keys)
    assert final == ["A" if k in outcome.committed else None for k in keys]


async def test_a_store_taking_over_a_flipped_update_s_reservation_never_owes_its_file(
    make_stores: StoresFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review found a takeover's blob debt owing a live file: a PUT took over a bulk
    update's lapsed reservation after the update's flip and before its roll-forward (the
    version under ``next`` is visible by then, and rolled forward whatever the reservation
    says), then failed; the debt sweep would have deleted the current version's file."""
    stores = await make_stores(DICOM_STALE_CREATE_SECONDS="1")
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's staged commit")
    from dicom_core.storage.azure import cosmos_index
    from dicom_core.storage.azure import cosmos_staged_versions as sv

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 2)
    index = stores.index
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(3)]
    versions = step_versions(keys, [await store(index, k) for k in keys], "B")
    settle = sv.StagedVersions.settle
    taken: list[tuple[str, ...]] = []

    async def settle_after_a_takeover(
        self: sv.StagedVersions, study: object, *, own: str | None = None, **options: bool
    ) -> object:
        if own is not None and not taken:  # flipped, not yet rolled forward
            await asyncio.sleep(1.5)  # the update's reservations lapse
            reservation = await index.begin_instance(keys[0], upsert=True)
            taken.append(reservation.abandoned_blob_keys)
            await index.abort_instance(reservation)  # its upload failed
        return await settle(self, study, own=own, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(sv.StagedVersions, "settle", settle_after_a_takeover)
    await index.commit_versions(versions)
    assert taken == [(versions[0].blob_key,)]
    record = await index.get_instance(keys[0])
    assert record is not None and record.blob_key == versions[0].blob_key
    owed = {blob for debt in await open_debts(index, study) for blob in debt.blob_keys}
    assert record.blob_key not in owed
