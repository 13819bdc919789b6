"""The local index adapter: ``IndexStore`` on SQLite (see ``schema.py`` for the tables)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from dicom_core.domain.change_feed import ChangeAction
from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.model import (
    FrameIndex,
    InstanceKey,
    InstanceRecord,
    Reservation,
    StoredInstance,
    StudyKey,
)
from dicom_core.domain.timestamps import seconds_since, timestamp_of, utc_timestamp
from dicom_core.query.attributes import SUMMARY_TAGS, document_tags
from dicom_core.query.conditions import QueryDescription, QueryLevel
from dicom_core.query.results import SearchMatch
from dicom_core.storage.local.schema import (
    INSTANCE_COLUMNS,
    SERIES_COLUMNS,
    SERIES_NORMALIZED_COLUMNS,
    STUDY_COLUMNS,
    STUDY_NORMALIZED_COLUMNS,
)
from dicom_core.storage.local.sqlite_blob_debts import forget_debt, read_debts, record_debt
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_query import (
    RARE_MODALITY_ROWS,
    compile_search,
    modality_probe,
)
from dicom_core.storage.ports import (
    BlobDebt,
    BlobRelease,
    InstanceBeingCreated,
    InstanceChanged,
    InstanceExists,
    NewVersion,
    VersionedMetadata,
    VersionsCommitted,
    settle_debt,
    settled_keys,
)

CREATING, CREATED, ORIGINAL = 0, 1, 2
"""Instance row statuses: a reservation, the current version, and the original version a
bulk update keeps (at most one per instance, beside its current version)."""

# Picks, per instance, the version ``original=True`` reads: the kept original if there is one,
# else the current version.
_ORIGINAL_OR_CURRENT = (
    f"(status = {ORIGINAL} OR (status = {CREATED} AND NOT EXISTS (SELECT 1 FROM instance o"
    " WHERE o.sop_uid = instance.sop_uid AND o.series_uid = instance.series_uid"
    " AND o.study_uid = instance.study_uid AND o.partition_key = instance.partition_key"
    f" AND o.status = {ORIGINAL})))"
)


def _versions(original: bool) -> str:
    """The WHERE clause choosing the version of each instance a read serves."""
    return _ORIGINAL_OR_CURRENT if original else f"status = {CREATED}"


_RECORD_COLUMNS = (
    "partition_key, study_uid, series_uid, sop_uid, watermark, sop_class_uid,"
    " transfer_syntax_uid, blob_key, file_size, frames, created_at"
)
_STUDY_ATTR_COLUMNS = [*STUDY_COLUMNS.values(), *STUDY_NORMALIZED_COLUMNS.values()]
_SERIES_ATTR_COLUMNS = [*SERIES_COLUMNS.values(), *SERIES_NORMALIZED_COLUMNS.values()]
_STUDY_SELECT = ", ".join(_STUDY_ATTR_COLUMNS)
_STUDY_MARKS = ", ".join("?" for _ in _STUDY_ATTR_COLUMNS)
_SERIES_SELECT = ", ".join(_SERIES_ATTR_COLUMNS)
_SERIES_MARKS = ", ".join("?" for _ in _SERIES_ATTR_COLUMNS)
# ModalitiesInStudy from the study's series summaries (parameters: partition, study UID).
_MODALITIES_OF_STUDY = (
    "SELECT group_concat(modality, '\\') FROM (SELECT DISTINCT modality FROM series"
    " WHERE partition_key = ? AND study_uid = ? AND modality IS NOT NULL AND modality != ''"
    " ORDER BY modality)"
)


def _pick(values: dict[str, object], columns: list[str]) -> list[object]:
    return [values[column] for column in columns]


def _changed(
    columns: list[str], current: tuple[Any, ...], values: dict[str, object]
) -> dict[str, object]:
    """The columns whose new value differs from the stored one, with their new values."""
    return {
        column: values[column]
        for column, old in zip(columns, current, strict=True)
        if old != values[column]
    }


def _assignments(changed: dict[str, object]) -> str:
    """', a = ?, b = ?' for an UPDATE's SET list (empty when nothing changed)."""
    return "".join(f", {column} = ?" for column in changed)


def _record(row: tuple[Any, ...]) -> InstanceRecord:
    (partition, study, series, sop, watermark, sop_class, ts, blob_key, size, frames, created) = row
    return InstanceRecord(
        key=InstanceKey(str(study), str(series), str(sop), partition=int(partition)),
        watermark=int(watermark),
        sop_class_uid=str(sop_class or ""),
        transfer_syntax_uid=str(ts or ""),
        blob_key=str(blob_key),
        file_size=int(size or 0),
        frames=FrameIndex.from_json(frames) if frames else None,
        created_at=str(created),
    )


def _point_entries_at(conn: sqlite3.Connection, key: InstanceKey, watermark: int | None) -> None:
    """Set the instance's version now on each of its change feed entries (None: deleted).

    ``INDEXED BY``: without statistics SQLite's planner ranks the partition's index
    (``partition_key, sequence``) as high as the instance's, and took it, which read every
    entry of the partition on each store and delete, inside the writers' lock.
    """
    conn.execute(
        "UPDATE change_feed INDEXED BY change_feed_by_instance SET current_watermark = ?"
        " WHERE sop_uid = ? AND series_uid = ? AND study_uid = ? AND partition_key = ?",
        (watermark, key.sop_uid, key.series_uid, key.study_uid, key.partition),
    )


def _scope(
    partition: int, study_uid: str, series_uid: str | None, sop_uid: str | None
) -> tuple[str, tuple[object, ...]]:
    """The WHERE clause (and its parameters) of the instance rows the UIDs name in the
    partition; it leads with the columns of the instance_by_series index."""
    clauses, params = ["partition_key = ?", "study_uid = ?"], [partition, study_uid]
    if series_uid is not None:
        clauses.append("series_uid = ?")
        params.append(series_uid)
    if sop_uid is not None:
        clauses.append("sop_uid = ?")
        params.append(sop_uid)
    return " AND ".join(clauses), tuple(params)


class CommitHook(Protocol):
    """Runs inside an instance's write transaction, after its row is committed-to-be (the
    extended query tags index the instance's values there)."""

    def index_in_transaction(
        self, conn: sqlite3.Connection, key: InstanceKey, watermark: int, metadata_json: bytes
    ) -> None: ...


class SqliteIndexStore:
    def __init__(
        self,
        db: SqliteDatabase,
        *,
        stale_create_seconds: float = 3600,
        rare_modality_rows: int | None = None,
        hooks: tuple[CommitHook, ...] = (),
    ) -> None:
        """``rare_modality_rows`` replaces the per-level limits of ``RARE_MODALITY_ROWS``
        (tests use it to take either ModalitiesInStudy route). ``hooks`` run in the
        transaction of each new version ``commit_versions`` commits."""
        self._db = db
        self._hooks = hooks
        self._stale_seconds = stale_create_seconds
        self._rare_modality_rows = rare_modality_rows

    @property
    def database(self) -> SqliteDatabase:
        """The shared database, for stores that must write in the same transactions."""
        return self._db

    # -- writes -----------------------------------------------------------------------------

    async def begin_instance(self, key: InstanceKey, *, upsert: bool) -> Reservation:
        return await self._db.run(lambda: self._begin(key, upsert))

    def _begin(self, key: InstanceKey, upsert: bool) -> Reservation:
        with self._db.transaction() as conn:
            return self.reserve(conn, key, upsert=upsert)

    def reserve(
        self,
        conn: sqlite3.Connection,
        key: InstanceKey,
        *,
        upsert: bool,
        blob_key: str | None = None,
    ) -> Reservation:
        """Claim ``key`` in the caller's write transaction (``begin_instance``'s body).

        The file's key is made from the new watermark unless the caller already placed the
        file under ``blob_key``.
        """
        now = utc_timestamp()
        # A reservation's updated_at is when it was last held: made or renewed.
        rows = conn.execute(
            "SELECT watermark, status, updated_at, blob_key FROM instance"
            " WHERE partition_key = ? AND study_uid = ? AND series_uid = ? AND sop_uid = ?",
            (key.partition, key.study_uid, key.series_uid, key.sop_uid),
        ).fetchall()
        abandoned: list[str] = []
        for watermark, status, held_at, old_blob in rows:
            if status == CREATED and not upsert:
                raise InstanceExists(key)
            if status == CREATING:
                if not self._is_stale(held_at):
                    raise InstanceBeingCreated(key)
                # A crashed attempt: take over its reservation; its file is deleted.
                conn.execute("DELETE FROM instance WHERE watermark = ?", (watermark,))
                abandoned.append(str(old_blob))
        if abandoned:
            # Owed from this very step, which is what stops naming them: the commit releases
            # them, but a store that fails or dies before then would leave them for good.
            record_debt(conn, StudyKey(key.study_uid, partition=key.partition), abandoned)
        cursor = conn.execute(
            "INSERT INTO instance (partition_key, study_uid, series_uid, sop_uid, status,"
            " blob_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.partition,
                key.study_uid,
                key.series_uid,
                key.sop_uid,
                CREATING,
                blob_key or "",
                now,
                now,
            ),
        )
        watermark = int(cursor.lastrowid or 0)
        if blob_key is None:
            blob_key = blob_key_for(key.study_uid, key.series_uid, key.sop_uid, watermark)
            conn.execute(
                "UPDATE instance SET blob_key = ? WHERE watermark = ?", (blob_key, watermark)
            )
        return Reservation(
            key=key,
            watermark=watermark,
            blob_key=blob_key,
            upsert=upsert,
            abandoned_blob_keys=tuple(abandoned),
        )

    def _is_stale(self, held_at: str) -> bool:
        return seconds_since(held_at) > self._stale_seconds

    async def renew_instance(self, reservation: Reservation) -> None:
        def renew() -> None:
            with self._db.transaction() as conn:
                renewed = conn.execute(
                    "UPDATE instance SET updated_at = ? WHERE watermark = ? AND status = ?",
                    (utc_timestamp(), reservation.watermark, CREATING),
                ).rowcount
            if renewed != 1:
                raise InstanceBeingCreated(reservation.key)

        await self._db.run(renew)

    async def commit_instance(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        *,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> list[str]:
        debt = await self._db.run(lambda: self._commit(reservation, instance, expires_at))
        return await settled_keys(debt, release, self.forget_blob_debt)

    def _commit(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        expires_at: datetime | None = None,
    ) -> BlobDebt | None:
        with self._db.transaction() as conn:
            replaced = self.finish(conn, reservation, instance, expires_at=expires_at)
            return self.owe(conn, reservation.key, [*replaced, *reservation.abandoned_blob_keys])

    @staticmethod
    def owe(
        conn: sqlite3.Connection, key: InstanceKey, blob_keys: Sequence[str]
    ) -> BlobDebt | None:
        """The debt of the files a commit made obsolete, in its transaction (None: none)."""
        if not blob_keys:
            return None
        return record_debt(conn, StudyKey(key.study_uid, partition=key.partition), blob_keys)

    def finish(
        self,
        conn: sqlite3.Connection,
        reservation: Reservation,
        instance: StoredInstance,
        *,
        based_on: int | None = None,
        expires_at: datetime | None = None,
    ) -> list[str]:
        """Make a reserved instance visible in the caller's write transaction.

        ``commit_instance``'s body: returns the blob keys of the versions it replaced. A store
        (``based_on`` None) replaces every version, the original too: the client sent a whole
        new instance; and it sets the study's expiry to ``expires_at`` (None: never). A bulk
        update's version (``based_on``, the current version it was made from;
        ``InstanceChanged`` if that is no longer current) keeps the original and the expiry.
        """
        key = reservation.key
        attrs = instance.attributes
        values: dict[str, object] = {
            "status": CREATED,
            "sop_class_uid": instance.sop_class_uid,
            "transfer_syntax_uid": instance.transfer_syntax_uid,
            "file_size": instance.file_size,
            "number_of_frames": instance.frames.count if instance.frames else 0,
            "frames": instance.frames.to_json() if instance.frames else None,
            "metadata": instance.metadata_json,
            "updated_at": utc_timestamp(),
        }
        for keyword, column in STUDY_COLUMNS.items():
            values[column] = attrs.study.get(keyword)
        for keyword, column in STUDY_NORMALIZED_COLUMNS.items():
            values[column] = attrs.normalized.get(keyword)
        for keyword, column in SERIES_COLUMNS.items():
            values[column] = attrs.series.get(keyword)
        for keyword, column in SERIES_NORMALIZED_COLUMNS.items():
            values[column] = attrs.normalized.get(keyword)
        for keyword, column in INSTANCE_COLUMNS.items():
            values[column] = attrs.instance.get(keyword)
        assignments = ", ".join(f"{column} = ?" for column in values)
        replaced = conn.execute(
            "SELECT watermark, blob_key FROM instance WHERE partition_key = ? AND study_uid = ?"
            " AND series_uid = ? AND sop_uid = ? AND status = ?",
            (key.partition, key.study_uid, key.series_uid, key.sop_uid, CREATED),
        ).fetchall()
        if replaced and not reservation.upsert:
            raise InstanceExists(key)
        obsolete = self._retire(conn, key, replaced, based_on)
        updated = conn.execute(
            f"UPDATE instance SET {assignments} WHERE watermark = ? AND status = ?",
            (*values.values(), reservation.watermark, CREATING),
        ).rowcount
        if updated != 1:
            raise InstanceBeingCreated(key)
        if replaced or not self._add_to_summaries(conn, key, reservation.watermark, values):
            self._refresh_summaries(conn, key.partition, key.study_uid, key.series_uid)
        if based_on is None:
            expiry = None if expires_at is None else timestamp_of(expires_at)
            conn.execute(
                "UPDATE study SET expires_at = ? WHERE partition_key = ? AND study_uid = ?"
                " AND expires_at IS NOT ?",
                (expiry, key.partition, key.study_uid, expiry),
            )
        # Every earlier entry of the instance, a delete's too, now points at this version.
        _point_entries_at(conn, key, reservation.watermark)
        action = ChangeAction.CREATE if based_on is None else ChangeAction.UPDATE
        conn.execute(
            "INSERT INTO change_feed (timestamp, action, partition_key, study_uid, series_uid,"
            " sop_uid, watermark, current_watermark) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                utc_timestamp(),
                action.value,
                key.partition,
                key.study_uid,
                key.series_uid,
                key.sop_uid,
                reservation.watermark,
                reservation.watermark,
            ),
        )
        return obsolete

    @staticmethod
    def _retire(
        conn: sqlite3.Connection,
        key: InstanceKey,
        replaced: list[tuple[Any, ...]],
        based_on: int | None,
    ) -> list[str]:
        """Take the instance's stored versions out of the way of a new one; returns the blob
        keys of the versions dropped."""
        if based_on is not None:
            if [int(row[0]) for row in replaced] != [based_on]:
                raise InstanceChanged(key)
            kept = conn.execute(
                "SELECT 1 FROM instance WHERE partition_key = ? AND study_uid = ?"
                " AND series_uid = ? AND sop_uid = ? AND status = ?",
                (key.partition, key.study_uid, key.series_uid, key.sop_uid, ORIGINAL),
            ).fetchone()
            if kept is None:
                # The first update: the current version becomes the original, file and all.
                conn.execute(
                    "UPDATE instance SET status = ? WHERE watermark = ?", (ORIGINAL, based_on)
                )
                return []
        else:
            originals = conn.execute(
                "SELECT watermark, blob_key FROM instance WHERE partition_key = ?"
                " AND study_uid = ? AND series_uid = ? AND sop_uid = ? AND status = ?",
                (key.partition, key.study_uid, key.series_uid, key.sop_uid, ORIGINAL),
            ).fetchall()
            replaced = replaced + originals
        for old_watermark, _ in replaced:
            conn.execute("DELETE FROM instance WHERE watermark = ?", (old_watermark,))
        return [str(blob_key) for _, blob_key in replaced]

    async def settle_versions(
        self, study_uid: str, *, partition: int, release: BlobRelease | None = None
    ) -> list[str]:
        return []  # a commit of versions is one transaction: nothing is ever left half done

    async def commit_versions(
        self, versions: Sequence[NewVersion], *, release: BlobRelease | None = None
    ) -> VersionsCommitted:
        committed, debt = await self._db.run(lambda: self._commit_versions(versions))
        await settled_keys(debt, release, self.forget_blob_debt)
        return committed

    def _commit_versions(
        self, versions: Sequence[NewVersion]
    ) -> tuple[VersionsCommitted, BlobDebt | None]:
        with self._db.transaction() as conn:
            committed = self.finish_versions(conn, versions)
            if not versions:
                return committed, None
            return committed, self.owe(conn, versions[0].key, committed.obsolete_blob_keys)

    def finish_versions(
        self, conn: sqlite3.Connection, versions: Sequence[NewVersion]
    ) -> VersionsCommitted:
        """``commit_versions``'s body, in the caller's write transaction: one transaction
        for all of them, so readers see every new version or none. Each is reserved and
        committed at once, with its extended query tag values (``hooks``)."""
        committed: list[InstanceKey] = []
        watermarks: list[int] = []
        changed: list[InstanceKey] = []
        obsolete: list[str] = []
        for version in versions:
            conn.execute("SAVEPOINT version")
            try:
                reservation = self.reserve(
                    conn, version.key, upsert=True, blob_key=version.blob_key
                )
                replaced = self.finish(
                    conn, reservation, version.instance, based_on=version.based_on
                )
                for hook in self._hooks:
                    hook.index_in_transaction(
                        conn, version.key, reservation.watermark, version.instance.metadata_json
                    )
            except (InstanceChanged, InstanceBeingCreated):
                conn.execute("ROLLBACK TO version")
                changed.append(version.key)
                obsolete.append(version.blob_key)
            else:
                # Only now: a rollback to the savepoint restores a taken-over reservation,
                # whose file must then stay.
                obsolete += [*reservation.abandoned_blob_keys, *replaced]
                committed.append(version.key)
                watermarks.append(reservation.watermark)
            conn.execute("RELEASE version")
        return VersionsCommitted(
            committed=tuple(committed),
            watermarks=tuple(watermarks),
            changed=tuple(changed),
            obsolete_blob_keys=tuple(obsolete),
            tags_indexed=True,
        )

    async def abort_instance(self, reservation: Reservation) -> None:
        def abort() -> None:
            with self._db.transaction() as conn:
                conn.execute(
                    "DELETE FROM instance WHERE watermark = ? AND status = ?",
                    (reservation.watermark, CREATING),
                )

        await self._db.run(abort)

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
        """One transaction, with the debt of its files. With ``expired_by``, the study's
        expiry is checked in that transaction."""
        expiry = None if expired_by is None else timestamp_of(expired_by)
        debt = await self._db.run(
            lambda: self._delete(partition, study_uid, series_uid, sop_uid, expiry)
        )
        if debt is None:
            return []
        await settle_debt(debt, release, self.forget_blob_debt)
        return list(debt.blob_keys)

    async def blob_debts(self, recorded_before: datetime, limit: int) -> list[BlobDebt]:
        return await read_debts(self._db, recorded_before, limit)

    async def forget_blob_debt(self, debt: BlobDebt) -> None:
        await forget_debt(self._db, debt)

    def _delete(
        self,
        partition: int,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        expired_by: str | None = None,
    ) -> BlobDebt | None:
        """The transaction; the debt of the files it freed, or None when nothing matched."""
        where, params = _scope(partition, study_uid, series_uid, sop_uid)
        with self._db.transaction() as conn:
            if expired_by is not None:
                expired = conn.execute(
                    "SELECT 1 FROM study WHERE partition_key = ? AND study_uid = ?"
                    " AND expires_at <= ?",
                    (partition, study_uid, expired_by),
                ).fetchone()
                if expired is None:
                    return None  # a store moved or cleared the expiry, or the study is gone
            rows = conn.execute(
                f"SELECT watermark, series_uid, sop_uid, blob_key FROM instance"
                f" WHERE {where} AND status = ? ORDER BY watermark",
                (*params, CREATED),
            ).fetchall()
            if not rows:
                return None
            originals = conn.execute(
                f"SELECT blob_key FROM instance WHERE {where} AND status = ?",
                (*params, ORIGINAL),
            ).fetchall()
            conn.execute(
                f"DELETE FROM instance WHERE {where} AND status IN (?, ?)",
                (*params, CREATED, ORIGINAL),
            )
            now = utc_timestamp()
            for _, series, sop, _ in rows:
                key = InstanceKey(study_uid, series, sop, partition=partition)
                _point_entries_at(conn, key, None)
            conn.executemany(
                "INSERT INTO change_feed (timestamp, action, partition_key, study_uid,"
                " series_uid, sop_uid, watermark, current_watermark)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                [
                    (now, ChangeAction.DELETE.value, partition, study_uid, series, sop, watermark)
                    for watermark, series, sop, _ in rows
                ],
            )
            for series in sorted({row[1] for row in rows}):
                self._refresh_summaries(conn, partition, study_uid, series)
            conn.execute(f"DELETE FROM eqt_value WHERE {where}", params)
            if series_uid is None and sop_uid is None:
                conn.execute(
                    "DELETE FROM external_metadata WHERE partition_key = ? AND study_uid = ?",
                    (partition, study_uid),
                )
            freed = [str(row[3]) for row in rows] + [str(row[0]) for row in originals]
            return record_debt(conn, StudyKey(study_uid, partition=partition), freed)

    def _add_to_summaries(
        self,
        conn: sqlite3.Connection,
        key: InstanceKey,
        watermark: int,
        values: dict[str, object],
    ) -> bool:
        """Count a newly stored instance into its series and study summaries, if it can be.

        It can when the instance is the latest of its study: its values become the summaries'
        (latest wins) and the counts go up by one, with no recount of the series. Only the
        columns whose values change are written, so the summaries' indexes are left alone
        unless an attribute really changed (most instances of a series repeat its values).
        Returns False, having written nothing, when a later instance is already counted (the
        two-step protocol can commit out of order); the caller then recomputes.
        """
        study = conn.execute(
            f"SELECT latest_watermark, {_STUDY_SELECT} FROM study"
            " WHERE partition_key = ? AND study_uid = ?",
            (key.partition, key.study_uid),
        ).fetchone()
        if study is not None and int(study[0]) > watermark:
            return False
        now = utc_timestamp()
        series = conn.execute(
            f"SELECT {_SERIES_SELECT} FROM series"
            " WHERE partition_key = ? AND study_uid = ? AND series_uid = ?",
            (key.partition, key.study_uid, key.series_uid),
        ).fetchone()
        new_series = series is None
        if new_series:
            conn.execute(
                f"INSERT INTO series (partition_key, study_uid, series_uid, latest_watermark,"
                f" {_SERIES_SELECT}, num_instances, updated_at)"
                f" VALUES (?, ?, ?, ?, {_SERIES_MARKS}, 1, ?)",
                (
                    key.partition,
                    key.study_uid,
                    key.series_uid,
                    watermark,
                    *_pick(values, _SERIES_ATTR_COLUMNS),
                    now,
                ),
            )
            modality_changed = True
        else:
            changed = _changed(_SERIES_ATTR_COLUMNS, series, values)
            conn.execute(
                "UPDATE series SET latest_watermark = ?, num_instances = num_instances + 1,"
                f" updated_at = ?{_assignments(changed)}"
                " WHERE partition_key = ? AND study_uid = ? AND series_uid = ?",
                (watermark, now, *changed.values(), key.partition, key.study_uid, key.series_uid),
            )
            modality_changed = "modality" in changed
        if study is None:
            conn.execute(
                f"INSERT INTO study (partition_key, study_uid, latest_watermark, {_STUDY_SELECT},"
                f" modalities, num_series, num_instances, updated_at)"
                f" VALUES (?, ?, ?, {_STUDY_MARKS}, ({_MODALITIES_OF_STUDY}), 1, 1, ?)",
                (
                    key.partition,
                    key.study_uid,
                    watermark,
                    *_pick(values, _STUDY_ATTR_COLUMNS),
                    key.partition,
                    key.study_uid,
                    now,
                ),
            )
            return True
        changed = _changed(_STUDY_ATTR_COLUMNS, study[1:], values)
        modalities = f", modalities = ({_MODALITIES_OF_STUDY})" if modality_changed else ""
        conn.execute(
            "UPDATE study SET latest_watermark = ?, num_series = num_series + ?,"
            f" num_instances = num_instances + 1, updated_at = ?{_assignments(changed)}"
            f"{modalities} WHERE partition_key = ? AND study_uid = ?",
            (
                watermark,
                int(new_series),
                now,
                *changed.values(),
                *((key.partition, key.study_uid) if modality_changed else ()),
                key.partition,
                key.study_uid,
            ),
        )
        return True

    def _refresh_summaries(
        self, conn: sqlite3.Connection, partition: int, study_uid: str, series_uid: str
    ) -> None:
        """Recompute the series and study summaries from their latest stored instance."""
        latest = conn.execute(
            f"SELECT watermark, {_SERIES_SELECT} FROM instance WHERE partition_key = ?"
            " AND study_uid = ? AND series_uid = ? AND status = ?"
            " ORDER BY watermark DESC LIMIT 1",
            (partition, study_uid, series_uid, CREATED),
        ).fetchone()
        now = utc_timestamp()
        if latest is None:
            conn.execute(
                "DELETE FROM series WHERE partition_key = ? AND study_uid = ? AND series_uid = ?",
                (partition, study_uid, series_uid),
            )
        else:
            (count,) = conn.execute(
                "SELECT count(*) FROM instance WHERE partition_key = ? AND study_uid = ?"
                " AND series_uid = ? AND status = ?",
                (partition, study_uid, series_uid, CREATED),
            ).fetchone()
            updates = ", ".join(f"{c} = excluded.{c}" for c in _SERIES_ATTR_COLUMNS)
            conn.execute(
                f"INSERT INTO series (partition_key, study_uid, series_uid, latest_watermark,"
                f" {_SERIES_SELECT}, num_instances, updated_at)"
                f" VALUES (?, ?, ?, ?, {_SERIES_MARKS}, ?, ?)"
                f" ON CONFLICT (partition_key, study_uid, series_uid) DO UPDATE SET"
                f" latest_watermark = excluded.latest_watermark, {updates},"
                f" num_instances = excluded.num_instances, updated_at = excluded.updated_at",
                (partition, study_uid, series_uid, *latest, count, now),
            )
        latest_study = conn.execute(
            f"SELECT watermark, {_STUDY_SELECT} FROM instance WHERE partition_key = ?"
            " AND study_uid = ? AND status = ? ORDER BY watermark DESC LIMIT 1",
            (partition, study_uid, CREATED),
        ).fetchone()
        if latest_study is None:
            conn.execute(
                "DELETE FROM study WHERE partition_key = ? AND study_uid = ?",
                (partition, study_uid),
            )
            return
        num_series, num_instances, modalities = conn.execute(
            f"SELECT count(*), coalesce(sum(num_instances), 0), ({_MODALITIES_OF_STUDY})"
            " FROM series WHERE partition_key = ? AND study_uid = ?",
            (partition, study_uid, partition, study_uid),
        ).fetchone()
        updates = ", ".join(f"{c} = excluded.{c}" for c in _STUDY_ATTR_COLUMNS)
        conn.execute(
            f"INSERT INTO study (partition_key, study_uid, latest_watermark, {_STUDY_SELECT},"
            f" modalities, num_series, num_instances, updated_at)"
            f" VALUES (?, ?, ?, {_STUDY_MARKS}, ?, ?, ?, ?)"
            f" ON CONFLICT (partition_key, study_uid) DO UPDATE SET"
            f" latest_watermark = excluded.latest_watermark,"
            f" {updates}, modalities = excluded.modalities, num_series = excluded.num_series,"
            f" num_instances = excluded.num_instances, updated_at = excluded.updated_at",
            (partition, study_uid, *latest_study, modalities, num_series, num_instances, now),
        )

    # -- reads ------------------------------------------------------------------------------

    async def expired_studies(self, now: datetime, limit: int) -> list[StudyKey]:
        def read() -> list[StudyKey]:
            rows = (
                self._db.connection()
                .execute(
                    "SELECT partition_key, study_uid FROM study WHERE expires_at <= ?"
                    " ORDER BY expires_at LIMIT ?",
                    (timestamp_of(now), limit),
                )
                .fetchall()
            )
            return [StudyKey(str(study), partition=int(key)) for key, study in rows]

        return await self._db.run(read)

    async def get_instance(
        self, key: InstanceKey, *, original: bool = False
    ) -> InstanceRecord | None:
        def read() -> InstanceRecord | None:
            row = (
                self._db.connection()
                .execute(
                    f"SELECT {_RECORD_COLUMNS} FROM instance WHERE partition_key = ?"
                    " AND study_uid = ? AND series_uid = ? AND sop_uid = ?"
                    f" AND {_versions(original)}",
                    (key.partition, key.study_uid, key.series_uid, key.sop_uid),
                )
                .fetchone()
            )
            return _record(row) if row else None

        return await self._db.run(read)

    async def list_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> list[InstanceRecord]:
        where, params = _scope(partition, study_uid, series_uid, None)

        def read() -> list[InstanceRecord]:
            rows = (
                self._db.connection()
                .execute(
                    f"SELECT {_RECORD_COLUMNS} FROM instance WHERE {where}"
                    f" AND {_versions(original)} ORDER BY watermark",
                    params,
                )
                .fetchall()
            )
            return [_record(row) for row in rows]

        return await self._db.run(read)

    async def get_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
    ) -> list[bytes]:
        where, params = _scope(partition, study_uid, series_uid, sop_uid)

        def read() -> list[bytes]:
            rows = (
                self._db.connection()
                .execute(
                    f"SELECT metadata FROM instance WHERE {where} AND status = ?"
                    " ORDER BY watermark",
                    (*params, CREATED),
                )
                .fetchall()
            )
            return [bytes(row[0]) for row in rows]

        return await self._db.run(read)

    async def metadata_version(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> str | None:
        where, params = _scope(partition, study_uid, series_uid, sop_uid)

        def read() -> str | None:
            # instance_by_series covers study, series, status and watermark: an index-only
            # scan, no row (and no metadata) is read.
            row = (
                self._db.connection()
                .execute(
                    "SELECT group_concat(watermark, ',') FROM (SELECT watermark FROM instance"
                    f" WHERE {where} AND {_versions(original)} ORDER BY watermark)",
                    params,
                )
                .fetchone()
            )
            return None if row is None or row[0] is None else f"{self._db.identity}:{row[0]}"

        return await self._db.run(read)

    async def get_versioned_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> VersionedMetadata:
        where, params = _scope(partition, study_uid, series_uid, sop_uid)

        def read() -> VersionedMetadata:
            rows = (
                self._db.connection()
                .execute(
                    f"SELECT watermark, metadata FROM instance WHERE {where}"
                    f" AND {_versions(original)} ORDER BY watermark",
                    params,
                )
                .fetchall()
            )
            return VersionedMetadata(
                version=(
                    f"{self._db.identity}:{','.join(str(row[0]) for row in rows)}" if rows else None
                ),
                documents=tuple(bytes(row[1]) for row in rows),
            )

        return await self._db.run(read)

    async def search(
        self,
        query: QueryDescription,
        *,
        metadata: frozenset[QueryLevel] = frozenset(),
        cached: Callable[[int], bool] | None = None,
    ) -> list[SearchMatch]:
        """QIDO-RS: the page of matches, newest first (compiled by ``sqlite_query``).

        When every attribute the results read from documents is a summary attribute, the
        small per-instance summary documents stand in for the full DICOM JSON. They come with
        the page's rows in one query, so ``cached`` would save nothing and is not used.
        """
        summary = document_tags(query) <= SUMMARY_TAGS
        compiled = compile_search(query, metadata, summary=summary)
        levels = sorted(metadata)
        # A ModalitiesInStudy search starts from the modality's series when that route has few
        # rows to sort (sqlite_query.RARE_MODALITY_ROWS): counted first, up to the limit.
        limit = self._rare_modality_rows
        if limit is None:
            limit = RARE_MODALITY_ROWS[query.level]
        probe = modality_probe(query, limit)
        rare = (
            None
            if probe is None
            else compile_search(query, metadata, summary=summary, rare_modality=True)
        )

        def read() -> list[SearchMatch]:
            conn = self._db.connection()
            chosen = compiled
            if probe is not None and rare is not None:
                (count,) = conn.execute(probe.sql, probe.params).fetchone()
                if int(count) < limit:
                    chosen = rare
            rows = conn.execute(chosen.sql, chosen.params).fetchall()
            return [_search_match(row, levels) for row in rows]

        return await self._db.run(read)

    async def close(self) -> None:
        """Closes the database: the index owns it, and the queue, workitem and tag stores built
        on it are closed with the index (``Backend.close``). Closing twice is harmless."""
        self._db.close()


def _int(value: object) -> int:
    assert isinstance(value, int | str | float), value
    return int(value)


def _optional_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _document(value: object) -> bytes | None:
    """A metadata column as UTF-8 bytes (summary documents are stored as text)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"unexpected metadata column type {type(value).__name__}")


def _search_match(row: tuple[object, ...], levels: list[QueryLevel]) -> SearchMatch:
    """A result row (columns of ``sqlite_query.compile_search``) as a ``SearchMatch``."""
    documents: list[bytes | None] = [None, None, None]
    for position, level in enumerate(levels, start=11):
        documents[level] = _document(row[position])
    modalities = row[8]
    return SearchMatch(
        study_uid=str(row[0]),
        series_uid=None if row[1] is None else str(row[1]),
        sop_uid=None if row[2] is None else str(row[2]),
        study_watermark=_int(row[3]),
        series_watermark=_optional_int(row[4]),
        instance_watermark=_optional_int(row[5]),
        study_series=_int(row[6] or 0),
        study_instances=_int(row[7] or 0),
        modalities=tuple(str(modalities).split("\\")) if modalities else (),
        series_instances=_optional_int(row[9]),
        study_metadata=documents[QueryLevel.STUDY],
        series_metadata=documents[QueryLevel.SERIES],
        instance_metadata=documents[QueryLevel.INSTANCE],
    )
