"""``FakeIndexStore``: the index as two dicts, reservations and stored instances."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dicom_core.domain.change_feed import ChangeAction
from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.model import (
    InstanceKey,
    InstanceRecord,
    Reservation,
    StoredInstance,
    StudyKey,
)
from dicom_core.query.conditions import QueryDescription, QueryLevel
from dicom_core.query.results import SearchMatch
from dicom_core.storage.ports import (
    BlobDebt,
    BlobRelease,
    InstanceBeingCreated,
    InstanceExists,
    NewVersion,
    VersionedMetadata,
    VersionsCommitted,
    settle_debt,
)
from tests.fakes.change_feed import FakeChangeFeedStore


@dataclass(frozen=True, slots=True)
class _Claim:
    reservation: Reservation
    at: float


class FakeIndexStore:
    """The ``IndexStore`` port's two-step store, reads and deletes.

    ``search`` does not evaluate QIDO conditions (that is the compilers' contract, held to
    ``dicom_core.query.matching`` by the property tests): it records each query in
    ``searches`` and answers ``search_results``, which a test prepares.
    """

    def __init__(
        self,
        *,
        stale_create_seconds: float = 3600,
        feed: FakeChangeFeedStore | None = None,
    ) -> None:
        self.feed = feed or FakeChangeFeedStore()
        """Where changes are recorded, as the adapters write the feed with each change."""
        self.claims: dict[InstanceKey, _Claim] = {}
        self.stored: dict[InstanceKey, tuple[InstanceRecord, StoredInstance]] = {}
        self.originals: dict[InstanceKey, tuple[InstanceRecord, StoredInstance]] = {}
        """The first version of each instance a bulk update rewrote."""
        self.expiries: dict[StudyKey, datetime] = {}
        """Each expiring study's expiry, as the last store to it set it."""
        self.search_results: list[SearchMatch] = []
        self.searches: list[tuple[QueryDescription, frozenset[QueryLevel]]] = []
        self.renewals = 0
        """Reservation leases renewed (``renew_instance``)."""
        self.debts: dict[str, BlobDebt] = {}
        """Blob debts not yet settled, by id."""
        self._debt_ids = itertools.count(1)
        self._stale_after = stale_create_seconds
        self._watermarks = itertools.count(1)

    async def renew_instance(self, reservation: Reservation) -> None:
        claim = self.claims.get(reservation.key)
        if claim is None or claim.reservation.watermark != reservation.watermark:
            raise InstanceBeingCreated(reservation.key)
        self.claims[reservation.key] = _Claim(claim.reservation, time.monotonic())
        self.renewals += 1

    async def begin_instance(self, key: InstanceKey, *, upsert: bool) -> Reservation:
        if key in self.stored and not upsert:
            raise InstanceExists(key)
        abandoned: tuple[str, ...] = ()
        claim = self.claims.get(key)
        if claim is not None:
            if time.monotonic() - claim.at < self._stale_after:
                raise InstanceBeingCreated(key)
            abandoned = (claim.reservation.blob_key,)  # a crashed attempt: taken over
            self.record_debt(StudyKey(key.study_uid, partition=key.partition), abandoned)
        watermark = next(self._watermarks)
        reservation = Reservation(
            key=key,
            watermark=watermark,
            blob_key=blob_key_for(key.study_uid, key.series_uid, key.sop_uid, watermark),
            upsert=upsert,
            abandoned_blob_keys=abandoned,
        )
        self.claims[key] = _Claim(reservation, time.monotonic())
        return reservation

    async def commit_instance(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        *,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> list[str]:
        key = reservation.key
        claim = self.claims.get(key)
        if claim is None or claim.reservation.watermark != reservation.watermark:
            raise InstanceBeingCreated(key)
        replaced = self.stored.get(key)
        if replaced is not None and not reservation.upsert:
            raise InstanceExists(key)
        del self.claims[key]
        record = self._record(reservation, instance)
        self.stored[key] = (record, instance)
        self.feed.metadata[reservation.watermark] = instance.metadata_json
        self.feed.record(ChangeAction.CREATE, key, reservation.watermark)
        study = StudyKey(key.study_uid, partition=key.partition)
        if expires_at is None:
            self.expiries.pop(study, None)
        else:
            self.expiries[study] = expires_at
        original = self.originals.pop(key, None)
        obsolete = [entry[0].blob_key for entry in (replaced, original) if entry is not None]
        return await self._owe(key, [*obsolete, *reservation.abandoned_blob_keys], release)

    async def _owe(
        self, key: InstanceKey, blob_keys: Sequence[str], release: BlobRelease | None
    ) -> list[str]:
        """A commit's debt of the files it made obsolete, settled as the adapters do."""
        if not blob_keys:
            return []
        debt = self.record_debt(StudyKey(key.study_uid, partition=key.partition), blob_keys)
        await settle_debt(debt, release, self.forget_blob_debt)
        return list(blob_keys)

    async def settle_versions(
        self, study_uid: str, *, partition: int, release: BlobRelease | None = None
    ) -> list[str]:
        return []  # commits are atomic here

    async def commit_versions(
        self, versions: Sequence[NewVersion], *, release: BlobRelease | None = None
    ) -> VersionsCommitted:
        committed: list[InstanceKey] = []
        watermarks: list[int] = []
        changed: list[InstanceKey] = []
        obsolete: list[str] = []
        for version in versions:  # in one step, as a transaction would
            key = version.key
            current = self.stored.get(key)
            claim = self.claims.get(key)
            held = claim is not None and time.monotonic() - claim.at < self._stale_after
            if current is None or current[0].watermark != version.based_on or held:
                changed.append(key)
                obsolete.append(version.blob_key)
                continue
            if key in self.originals:
                obsolete.append(current[0].blob_key)
            else:
                self.originals[key] = current
            reservation = Reservation(
                key=key,
                watermark=next(self._watermarks),
                blob_key=version.blob_key,
                upsert=True,
            )
            self.stored[key] = (self._record(reservation, version.instance), version.instance)
            self.feed.metadata[reservation.watermark] = version.instance.metadata_json
            self.feed.record(ChangeAction.UPDATE, key, reservation.watermark)
            committed.append(key)
            watermarks.append(reservation.watermark)
        if versions:
            await self._owe(versions[0].key, obsolete, release)
        return VersionsCommitted(
            committed=tuple(committed),
            watermarks=tuple(watermarks),
            changed=tuple(changed),
            obsolete_blob_keys=tuple(obsolete),
            tags_indexed=False,
        )

    @staticmethod
    def _record(reservation: Reservation, instance: StoredInstance) -> InstanceRecord:
        return InstanceRecord(
            key=reservation.key,
            watermark=reservation.watermark,
            sop_class_uid=instance.sop_class_uid,
            transfer_syntax_uid=instance.transfer_syntax_uid,
            blob_key=reservation.blob_key,
            file_size=instance.file_size,
            frames=instance.frames,
            created_at=datetime.now(UTC).isoformat(),
        )

    async def abort_instance(self, reservation: Reservation) -> None:
        claim = self.claims.get(reservation.key)
        if claim is not None and claim.reservation.watermark == reservation.watermark:
            del self.claims[reservation.key]

    async def get_instance(
        self, key: InstanceKey, *, original: bool = False
    ) -> InstanceRecord | None:
        entry = self.stored.get(key)
        if entry is not None and original:
            entry = self.originals.get(key, entry)
        return None if entry is None else entry[0]

    def _scope(
        self,
        partition: int,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        original: bool = False,
    ) -> list[tuple[InstanceRecord, StoredInstance]]:
        """Stored instances the UIDs name in the partition, oldest first (``original``:
        their originals)."""
        return sorted(
            (
                self.originals.get(key, entry) if original else entry
                for key, entry in self.stored.items()
                if key.partition == partition
                and key.study_uid == study_uid
                and series_uid in (None, key.series_uid)
                and sop_uid in (None, key.sop_uid)
            ),
            key=lambda entry: entry[0].watermark,
        )

    async def list_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> list[InstanceRecord]:
        found = self._scope(partition, study_uid, series_uid, None, original)
        return [record for record, _ in found]

    async def get_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
    ) -> list[bytes]:
        found = self._scope(partition, study_uid, series_uid, sop_uid)
        return [instance.metadata_json for _, instance in found]

    async def metadata_version(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> str | None:
        found = self._scope(partition, study_uid, series_uid, sop_uid, original)
        return ",".join(str(record.watermark) for record, _ in found) or None

    async def get_versioned_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> VersionedMetadata:
        found = self._scope(partition, study_uid, series_uid, sop_uid, original)
        return VersionedMetadata(
            version=",".join(str(record.watermark) for record, _ in found) or None,
            documents=tuple(instance.metadata_json for _, instance in found),
        )

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        release: BlobRelease | None = None,
        expired_by: datetime | None = None,
    ) -> list[str]:
        study = StudyKey(study_uid, partition=partition)
        if expired_by is not None:
            expiry = self.expiries.get(study)
            if expiry is None or expiry > expired_by:
                return []
        removed = self._scope(partition, study_uid, series_uid, sop_uid)
        blob_keys = [record.blob_key for record, _ in removed]
        for record, _ in removed:  # in one step, as a transaction would
            del self.stored[record.key]
            original = self.originals.pop(record.key, None)
            if original is not None:
                blob_keys.append(original[0].blob_key)
            self.feed.record(ChangeAction.DELETE, record.key, record.watermark)
        if not self._scope(partition, study_uid, None, None):
            self.expiries.pop(study, None)  # the study is gone, and its expiry with it
        if blob_keys:
            debt = self.record_debt(study, blob_keys)
            await settle_debt(debt, release, self.forget_blob_debt)
        return blob_keys

    def record_debt(self, study: StudyKey, blob_keys: Sequence[str]) -> BlobDebt:
        """What a step does with the files it frees, in the step."""
        debt = BlobDebt(
            id=str(next(self._debt_ids)),
            study=study,
            blob_keys=tuple(blob_keys),
            recorded_at=datetime.now(UTC),
        )
        self.debts[debt.id] = debt
        return debt

    async def blob_debts(self, recorded_before: datetime, limit: int) -> list[BlobDebt]:
        due = [debt for debt in self.debts.values() if debt.recorded_at < recorded_before]
        return sorted(due, key=lambda debt: debt.recorded_at)[:limit]

    async def forget_blob_debt(self, debt: BlobDebt) -> None:
        self.debts.pop(debt.id, None)

    async def expired_studies(self, now: datetime, limit: int) -> list[StudyKey]:
        due = sorted((at, study) for study, at in self.expiries.items() if at <= now)
        return [study for _, study in due[:limit]]

    async def search(
        self,
        query: QueryDescription,
        *,
        metadata: frozenset[QueryLevel] = frozenset(),
        cached: Callable[[int], bool] | None = None,
    ) -> list[SearchMatch]:
        self.searches.append((query, metadata))
        return list(self.search_results)

    async def close(self) -> None:
        return None
