"""Bulk update of one study: rewrite each instance as a new version, commit them together.

``StudyUpdater.update_study`` is one step of a bulk update operation (``dicom_core.jobs``
drives the steps, one study each). For each instance of the study, as currently stored:

1. its file is copied to the staging area, its header read with pydicom, the request's
   attributes set (``dicom_core.domain.bulk_update.apply_changes``) and the header written to
   a new file with a zeroed preamble, followed by the stored pixel data bytes as they were;
2. the new file is parsed as a store parses it (new DICOM JSON, index attributes, frame
   offsets) and written to the blob store under a key of its own;
3. then all new versions of the study are committed in one ``commit_versions`` call: the
   unit of atomicity is the study where the index has transactions wide enough (the local
   index: one transaction), so a reader sees the study wholly before or wholly after.

An instance that cannot take the change (its character set cannot hold the new text, its file
no longer reads) fails its whole study, as Azure's update does: nothing of the study is
committed, its new files go, and the study is reported failed with no instance updated. One
case escapes: an instance stored or replaced while the step ran is updated in a later round,
after the rest was committed, and if it is the one that fails, the study is reported failed
with what was committed counted (Azure reads a study once, so it has no such round).

An instance whose values already are the request's is left as it is, and counted as updated:
a step repeated after its commit finds them so, writes nothing twice, and reports the same.
An instance replaced or deleted while the step ran (``VersionsCommitted.changed``, or its file
gone) is read again and retried, and one stored into the study meanwhile is updated too. A
step killed before its commit leaves its new files behind, unnamed by any version (as a
killed store does).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from dicom_core.domain.bulk_update import (
    BulkUpdateApplyError,
    BulkUpdateRequest,
    apply_changes,
)
from dicom_core.domain.deflate import Inflation, InflationDeferred, InflationGuard
from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.instance import DEFAULT_MAX_INFLATED, InstanceRejected, parse_instance
from dicom_core.domain.model import InstanceKey, InstanceRecord
from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.services.staging import StagingArea
from dicom_core.services.store import AfterCommit
from dicom_core.storage.ports import BlobNotFound, BlobStore, IndexStore, NewVersion

log = logging.getLogger(__name__)

#: How many times a study is read again for instances that changed under a step, and the
#: pause before each (times the round), so a store holding an instance can finish.
CHANGED_ROUNDS = 4
CHANGED_PAUSE = 0.2
_PREAMBLE = b"\x00" * 128
_COPY_CHUNK = 1 << 20


@dataclass(slots=True)
class StudyOutcome:
    """What one study's step did: instances updated, and what failed, per instance;
    ``found`` is False for a study with no stored instances (processed, not updated)."""

    found: bool = True
    instances_updated: int = 0
    errors: list[str] = field(default_factory=list)


def already_applied(dataset: Dataset, request: BulkUpdateRequest) -> bool:
    """Whether every attribute the request sets already holds the request's values."""
    for change in request.changes:
        element = dataset.get(change.tag)
        if element is None or change.vr != element.VR:
            return False
        value = element.value
        values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
        if tuple(str(v).rstrip(" \x00") for v in values) != change.values:
            return False
    return True


def _rewrite(source: Path, target: Path, request: BulkUpdateRequest) -> bool:
    """Write ``source`` with the request applied to ``target``; False if nothing would change.

    Only the header is read into pydicom (everything before Pixel Data): it is changed and
    written, then the rest of the file (pixel data and anything after it) is copied as bytes,
    so an instance of any size takes the memory of its header. The attributes the update
    may change are all top-level patient and study attributes, which come before Pixel Data.
    Runs in a worker thread.

    A Deflated Explicit VR Little Endian file has no such seam (its whole dataset is one
    deflate stream): it is read whole, inflated within ``DEFAULT_MAX_INFLATED`` (a store
    refuses more), changed and written deflated again.
    """
    with open(source, "rb") as stored:
        pixels_at: int | None
        try:
            guarded = InflationGuard(stored, DEFAULT_MAX_INFLATED, Inflation.DEFER)
            dataset = dcmread(guarded, stop_before_pixels=True)
            pixels_at = stored.tell()  # pydicom stops at the Pixel Data element's tag
        except InflationDeferred:  # deflated: read whole, nothing is copied after it
            stored.seek(0)
            dataset = dcmread(InflationGuard(stored, DEFAULT_MAX_INFLATED))
            pixels_at = None
        if already_applied(dataset, request):
            return False
        apply_changes(dataset, request)
        dataset.preamble = _PREAMBLE
        with open(target, "wb") as written:
            dataset.save_as(written, enforce_file_format=True)
            if pixels_at is not None:
                stored.seek(pixels_at)
                shutil.copyfileobj(stored, written, _COPY_CHUNK)
    return True


class StudyUpdater:
    def __init__(
        self,
        index: IndexStore,
        blobs: BlobStore,
        janitor: BlobJanitor,
        staging: StagingArea,
        *,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self._index = index
        self._blobs = blobs
        self._janitor = janitor
        self._staging = staging
        # Indexes extended query tags of committed versions where the index did not.
        self._after_commit = after_commit

    async def update_study(
        self, study_uid: str, request: BulkUpdateRequest, *, partition: int, operation_id: str
    ) -> StudyOutcome:
        outcome = StudyOutcome()
        # A commit a crash interrupted (Cosmos DB's staged commit) is finished first, so the
        # study is read as it stands and no reservation of that attempt is left behind.
        await self._index.settle_versions(
            study_uid, partition=partition, release=self._janitor.delete
        )
        records = await self._index.list_instances(study_uid, partition=partition)
        if not records:
            # Nothing to update is not a failure: Azure counts the study as processed and the
            # operation completes (its orchestration updates a study only when it finds
            # instances). So an update naming a study deleted or expired meanwhile succeeds.
            outcome.found = False
            return outcome
        seen = {record.key for record in records}
        for round_ in range(CHANGED_ROUNDS):
            changed = await self._round(records, request, operation_id, outcome)
            if changed is None:
                return outcome  # the study failed: nothing more of it is updated
            # Instances stored into the study while the round ran are updated too.
            added = [
                r
                for r in await self._index.list_instances(study_uid, partition=partition)
                if r.key not in seen
            ]
            seen.update(record.key for record in added)
            records = await self._current(changed) + added
            if not records:
                return outcome
            await asyncio.sleep(CHANGED_PAUSE * (round_ + 1))
        outcome.errors.extend(
            _instance_error(record.key, "It kept changing while the update ran.")
            for record in records
        )
        return outcome

    async def _round(
        self,
        records: Sequence[InstanceRecord],
        request: BulkUpdateRequest,
        operation_id: str,
        outcome: StudyOutcome,
    ) -> list[InstanceKey] | None:
        """Rewrite ``records`` and commit them together; the keys to read again (stored,
        replaced or deleted meanwhile), or None when an instance failed and nothing was
        committed."""
        versions: list[NewVersion] = []
        moved: list[InstanceKey] = []
        unchanged = 0
        failures: list[str] = []
        try:
            for record in records:
                try:
                    version = await self._new_version(record, request, operation_id)
                except BlobNotFound:
                    moved.append(record.key)  # a delete or a PUT took this version's file
                    continue
                except (
                    BulkUpdateApplyError,
                    InstanceRejected,
                    InvalidDicomError,
                    ValueError,
                ) as bad:
                    failures.append(_instance_error(record.key, _reason(bad)))
                    continue
                if version is None:
                    # Already holds the values: a repeated step after its commit counts the
                    # instance as before, so the results do not depend on where a crash fell.
                    unchanged += 1
                else:
                    versions.append(version)
        except Exception:
            # The step fails before its commit (a full disk, an outage): nothing names the
            # files it placed, and their keys are its own (a random token each), so they go
            # now rather than staying behind for good. Not after a failed commit: a commit
            # that failed midway may be rolled forward later (``settle_versions``).
            await self._discard(versions)
            raise
        if failures:
            await self._discard(versions)
            outcome.errors.extend(failures)
            return None
        outcome.instances_updated += unchanged
        if not versions:
            return moved
        committed = await self._index.commit_versions(versions, release=self._janitor.delete)
        outcome.instances_updated += len(committed.committed)
        if not committed.tags_indexed and self._after_commit is not None:
            await self._index_tags(versions, committed.committed, committed.watermarks)
        return [*moved, *committed.changed]

    async def _discard(self, versions: Sequence[NewVersion]) -> None:
        """Remove the files of versions never committed: nothing names them, and their keys
        are this step's own (a random token each)."""
        for placed in versions:
            await self._janitor.delete(placed.blob_key, unseen=True)

    async def _new_version(
        self, record: InstanceRecord, request: BulkUpdateRequest, operation_id: str
    ) -> NewVersion | None:
        """The updated instance, its file written; None when it already has the values.

        The file gets a key of its own (the operation, the version it rewrites and a random
        token), so two overlapping runs of one step never write, or delete, each other's
        file; ``NewVersion.claim`` (operation and version) is what a repeat shares.
        """
        source = self._staging.new_part(scratch=True)  # read, then removed
        target = self._staging.new_part(scratch=True)  # written by _rewrite, placed by put_file
        target.close()
        try:
            async for chunk in self._blobs.read_stream(record.blob_key):
                source.write(chunk)
            source.close()
            if not await asyncio.to_thread(_rewrite, source.path, target.path, request):
                return None
            key = record.key
            parsed = await asyncio.to_thread(parse_instance, target.path, partition=key.partition)
            claim = f"{operation_id}-{record.watermark}"
            blob_key = blob_key_for(
                key.study_uid, key.series_uid, key.sop_uid, f"{claim}-{uuid.uuid4().hex[:12]}"
            )
            await self._blobs.put_file(blob_key, target.path)
            return NewVersion(parsed, blob_key, record.watermark, claim=claim)
        finally:
            source.discard()
            self._staging.remove(target.path)

    async def _current(self, keys: Sequence[InstanceKey]) -> list[InstanceRecord]:
        found = [await self._index.get_instance(key) for key in keys]
        return [record for record in found if record is not None]

    async def _index_tags(
        self, versions: Sequence[NewVersion], keys: Sequence[InstanceKey], watermarks: Sequence[int]
    ) -> None:
        assert self._after_commit is not None
        metadata = {version.key: version.instance.metadata_json for version in versions}
        for key, watermark in zip(keys, watermarks, strict=True):
            try:
                await self._after_commit(key, watermark, metadata[key])
            except Exception:
                log.exception("indexing %s for extended query tags failed", key)


def _reason(refused: Exception) -> str:
    if isinstance(refused, InstanceRejected):
        return " ".join(refused.comments) or "The updated instance is not valid."
    if isinstance(refused, BulkUpdateApplyError):
        return str(refused)
    return f"The stored instance could not be read: {refused}"


def _instance_error(key: InstanceKey, reason: str) -> str:
    """One instance's line in the operation's errors, naming it as Azure's do."""
    return (
        f"{reason.rstrip('.')}. StudyInstanceUID: {key.study_uid}, SeriesInstanceUID:"
        f" {key.series_uid}, SOPInstanceUID: {key.sop_uid}"
    )
