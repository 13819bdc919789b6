"""``FakeIndexStore``: the index as two dicts, reservations and stored instances."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from dicom_core.domain.change_feed import ChangeAction
from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.model import InstanceKey, InstanceRecord, Reservation, StoredInstance
from dicom_core.query.conditions import QueryDescription, QueryLevel
from dicom_core.query.results import SearchMatch
from dicom_core.storage.ports import (
    InstanceBeingCreated,
    InstanceExists,
    OrphanSink,
    VersionedMetadata,
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
        self.search_results: list[SearchMatch] = []
        self.searches: list[tuple[QueryDescription, frozenset[QueryLevel]]] = []
        self._stale_after = stale_create_seconds
        self._watermarks = itertools.count(1)

    async def begin_instance(self, key: InstanceKey, *, upsert: bool) -> Reservation:
        if key in self.stored and not upsert:
            raise InstanceExists(key)
        abandoned: tuple[str, ...] = ()
        claim = self.claims.get(key)
        if claim is not None:
            if time.monotonic() - claim.at < self._stale_after:
                raise InstanceBeingCreated(key)
            abandoned = (claim.reservation.blob_key,)  # a crashed attempt: taken over
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
        self, reservation: Reservation, instance: StoredInstance
    ) -> list[str]:
        key = reservation.key
        claim = self.claims.get(key)
        if claim is None or claim.reservation.watermark != reservation.watermark:
            raise InstanceBeingCreated(key)
        replaced = self.stored.get(key)
        if replaced is not None and not reservation.upsert:
            raise InstanceExists(key)
        del self.claims[key]
        record = InstanceRecord(
            key=key,
            watermark=reservation.watermark,
            sop_class_uid=instance.sop_class_uid,
            transfer_syntax_uid=instance.transfer_syntax_uid,
            blob_key=reservation.blob_key,
            file_size=instance.file_size,
            frames=instance.frames,
            created_at=datetime.now(UTC).isoformat(),
        )
        self.stored[key] = (record, instance)
        self.feed.metadata[reservation.watermark] = instance.metadata_json
        self.feed.record(ChangeAction.CREATE, key, reservation.watermark)
        return [] if replaced is None else [replaced[0].blob_key]

    async def abort_instance(self, reservation: Reservation) -> None:
        claim = self.claims.get(reservation.key)
        if claim is not None and claim.reservation.watermark == reservation.watermark:
            del self.claims[reservation.key]

    async def get_instance(self, key: InstanceKey) -> InstanceRecord | None:
        entry = self.stored.get(key)
        return None if entry is None else entry[0]

    def _scope(
        self, study_uid: str, series_uid: str | None, sop_uid: str | None
    ) -> list[tuple[InstanceRecord, StoredInstance]]:
        """Stored instances the UIDs name, oldest first."""
        return sorted(
            (
                entry
                for key, entry in self.stored.items()
                if key.study_uid == study_uid
                and series_uid in (None, key.series_uid)
                and sop_uid in (None, key.sop_uid)
            ),
            key=lambda entry: entry[0].watermark,
        )

    async def list_instances(
        self, study_uid: str, series_uid: str | None = None
    ) -> list[InstanceRecord]:
        return [record for record, _ in self._scope(study_uid, series_uid, None)]

    async def get_metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[bytes]:
        return [
            instance.metadata_json for _, instance in self._scope(study_uid, series_uid, sop_uid)
        ]

    async def metadata_version(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> str | None:
        found = self._scope(study_uid, series_uid, sop_uid)
        return ",".join(str(record.watermark) for record, _ in found) or None

    async def get_versioned_metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> VersionedMetadata:
        found = self._scope(study_uid, series_uid, sop_uid)
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
        orphans: OrphanSink | None = None,
    ) -> list[str]:
        removed = self._scope(study_uid, series_uid, sop_uid)
        for record, _ in removed:  # in one step, as a transaction would
            del self.stored[record.key]
            self.feed.record(ChangeAction.DELETE, record.key, record.watermark)
        return [record.blob_key for record, _ in removed]

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
