"""The change feed on Cosmos DB: pending changes, the sequencer, and the ``ChangeFeedStore``.

A change feed needs sequences that strictly increase with no gap, and an entry may become
visible only together with every entry of a lower sequence, or a reader going forward from
the last sequence it saw would skip one (``dicom_core.domain.change_feed``). A transactional
batch spans one logical partition, and a store or a delete runs its batch in its study's
partition, so the entry cannot get its place in the feed there. Hence an outbox and a
sequencer:

1. The batch of each change creates a *pending change* in the study's partition, in the
   container of the study's data partition (``cosmos_placement``; ``kind``
   "pendingchange", ``cosmos_docs.pending_change_document``): what happened, to which
   instance and version, when, and ``ord``, which orders the changes of one instance
   (``cosmos_docs.change_order``). It is durable with the change, or absent with it.
2. The sequencer (``sequence_pending``) takes pending changes in ``ord`` order and, in one
   transactional batch in the feed's own partition (``system`` container, ``pk``
   "changefeed"), creates their entries with the sequences after the head's ``last``,
   moves the ``cur`` (current version) of the earlier entries of the same instances, and
   replaces the head under its ETag. All or nothing: two sequencers racing cannot both
   succeed (one replaces the head the other read, or creates it first), and an entry's id is
   its pending change's id, so a change sequenced twice conflicts. Then it deletes the pending
   changes it sequenced; one left behind by a crash is recognised next time by its entry.
3. Stores and deletes run the sequencer on their study's pending changes after their batch
   (best effort: the pending change is durable, so a store never fails because sequencing
   did), and every read of the feed runs it on all pending changes first, so that a reader
   sees every change committed before its read.

Why a reader never skips an entry: sequences are given out only by a batch that moves the
head from ``last`` to ``last + n`` and creates exactly the entries ``last + 1 .. last + n``,
atomically; so whenever an entry is visible, so is every lower one. What a reader cannot see
yet is a change not sequenced yet, and that gets a sequence above every visible one.

Why ``ord`` keeps each instance's changes in order: see ``cosmos_docs.change_order``. A round
takes a prefix of the pending changes by ``ord`` (all of them, or one study's), so every
earlier change of an instance it takes is either in the round, before it, or sequenced already
(an earlier change of an instance commits earlier, in the same partition, so it is visible to
the query whenever the later one is). The order across instances is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosResourceNotFoundError

from dicom_core.domain.change_feed import ChangeAction, ChangeFeedEntry
from dicom_core.domain.model import InstanceKey
from dicom_core.storage.azure.cosmos_docs import (
    MAX_BATCH_OPERATIONS,
    document_partition,
    without_system_properties,
)
from dicom_core.storage.azure.cosmos_io import (
    ContainerGone,
    delete_if_present,
    first_item,
    query_items,
    read_item,
)
from dicom_core.storage.azure.cosmos_placement import (
    PlacedStudy,
    document_placement,
    placement_of,
)
from dicom_core.storage.azure.cosmos_schema import (
    FEED,
    FEED_HEAD,
    FEED_HEAD_ID,
    FEED_PARTITION,
    PENDING_CHANGE,
    instance_id,
)
from dicom_core.storage.azure.cosmos_session import Containers, CosmosSession, unpack_metadata
from dicom_core.storage.ports import StorageUnavailable
from dicom_core.storage.ports.change_feed import ChangeQuery

log = logging.getLogger(__name__)

Doc = dict[str, Any]
Key = tuple[str, str, str, str]

BATCH_OPERATIONS = MAX_BATCH_OPERATIONS
"""Operations in one batch of the sequencer: entries, moved entries and the head."""
PENDING_PER_ROUND = BATCH_OPERATIONS - 1
"""Pending changes a round reads (TOP): as many as one batch can sequence."""
READER_SECONDS = 30.0
"""How long a reader's sequencer keeps trying after losing races (then 503)."""
WRITER_LOSSES = 1
"""Lost races after which a store's or delete's sequencer stops (the winner, the next
sequencer or a reader takes what it leaves). One retry: it clears a change left sequenced
in its study by a crash (the retry looks for entries). More cost requests and hardly help:
measured with 32 clients storing at once on the test server, three retries took 19.5 Cosmos
requests a store and left 60% of the changes to readers, one took 13.6 and left 77%; a
reader takes up to 99 waiting changes in one batch anyway."""
MAX_ROUNDS = 20
"""Batches of one run at most, so that a reader under a flood of writes still answers."""

_ENTRY_FIELDS = "c.seq, c.ts, c.action, c.dp, c.study, c.series, c.sop, c.wm, c.cur"


class _Lost(Exception):
    """A sequencer batch lost a race (another sequencer moved the head or an entry, or the
    change was sequenced already); the round reads again."""


def _key(doc: Mapping[str, Any]) -> Key:
    """An instance's identity in a pending change or an entry: its data partition (``dp``,
    empty for Microsoft.Default) and UIDs; the same UIDs in two partitions are two."""
    return (str(doc.get("dp") or ""), str(doc["study"]), str(doc["series"]), str(doc["sop"]))


def _target(pending: Mapping[str, Any]) -> int | None:
    """The instance's current version once ``pending`` has happened (None: deleted)."""
    return None if pending["action"] == ChangeAction.DELETE.value else int(pending["wm"])


# -- planning (pure) -------------------------------------------------------------------------


@dataclass(slots=True)
class SequencingPlan:
    """What one round writes: new entries, earlier entries whose ``cur`` moves, the head.

    ``taken`` are the pending changes the batch sequences (a prefix of those offered). When
    not even the first fits in one batch (its instance has more entries than a batch can
    move), ``taken`` is empty and ``moves`` holds the moves of that first change alone,
    for ``_move_ahead``.
    """

    entries: list[Doc] = field(default_factory=list)
    moves: list[tuple[Doc, int | None]] = field(default_factory=list)
    taken: list[Mapping[str, Any]] = field(default_factory=list)
    last: int = 0

    def operations(self, head: Mapping[str, Any] | None) -> list[tuple[Any, ...]]:
        """The batch: entries, moved entries (each under its ETag), then the head."""
        ops: list[tuple[Any, ...]] = [("create", (entry,)) for entry in self.entries]
        for entry, current in self.moves:
            moved = without_system_properties(entry)
            moved["cur"] = current
            ops.append(("replace", (moved["id"], moved), {"if_match_etag": entry["_etag"]}))
        new_head = {"id": FEED_HEAD_ID, "pk": FEED_PARTITION, "kind": FEED_HEAD, "last": self.last}
        if head is None:
            ops.append(("create", (new_head,)))
        else:
            ops.append(("replace", (FEED_HEAD_ID, new_head), {"if_match_etag": head["_etag"]}))
        return ops


def _apply(
    pending: Sequence[Mapping[str, Any]], earlier: Mapping[Key, Sequence[Doc]], last: int
) -> SequencingPlan:
    """Sequence ``pending`` in order after ``last``, given the entries of their instances.

    Each change sets its version on every entry of its instance (earlier ones, and those
    created before it in this batch) and on its own, or None for a delete: the instance's
    version now, as ``dicom_core.domain.change_feed`` says (create, delete, create reads
    replaced, replaced, current).
    """
    current: dict[str, int | None] = {}
    living: dict[Key, list[str]] = {k: [str(e["id"]) for e in v] for k, v in earlier.items()}
    created: dict[str, Doc] = {}
    for n, change in enumerate(pending, start=1):
        key, target = _key(change), _target(change)
        for entry_id in living.get(key, []):
            if entry_id in created:
                created[entry_id]["cur"] = target
            else:
                current[entry_id] = target
        created[str(change["id"])] = {
            "id": change["id"],
            "pk": FEED_PARTITION,
            **document_placement(change).fields(),
            "kind": FEED,
            "seq": last + n,
            "action": change["action"],
            "study": change["study"],
            "series": change["series"],
            "sop": change["sop"],
            "wm": int(change["wm"]),
            "ts": change["ts"],
            "cur": target,
        }
        living[key] = [*living.get(key, []), str(change["id"])]
    moves = [
        (entry, current[str(entry["id"])])
        for entries in earlier.values()
        for entry in entries
        if str(entry["id"]) in current and current[str(entry["id"])] != entry.get("cur")
    ]
    return SequencingPlan(list(created.values()), moves, list(pending), last + len(pending))


def plan_sequencing(
    pending: Sequence[Mapping[str, Any]],
    entries: Sequence[Doc],
    head: Mapping[str, Any] | None,
    *,
    budget: int,
) -> SequencingPlan:
    """The longest prefix of ``pending`` (by ``ord``, none sequenced yet) that one batch of
    ``budget`` operations sequences; ``entries`` holds the entries of their instances."""
    last = int(head["last"]) if head is not None else 0
    wanted = {_key(change) for change in pending}
    earlier: dict[Key, list[Doc]] = {}
    for entry in entries:
        if _key(entry) in wanted:
            earlier.setdefault(_key(entry), []).append(entry)
    best: SequencingPlan | None = None
    for n in range(1, len(pending) + 1):
        plan = _apply(pending[:n], earlier, last)
        if len(plan.entries) + len(plan.moves) + 1 > budget:
            break
        best = plan
    if best is not None:
        return best
    first = _apply(pending[:1], earlier, last)
    return SequencingPlan(moves=first.moves, last=last)


# -- the sequencer ---------------------------------------------------------------------------


async def sequence_pending(c: Containers, *, study: PlacedStudy | None = None) -> int:
    """Give pending changes their entries in the feed; returns how many it sequenced.

    With ``study``, the pending changes of that study (after a store or delete there: one
    single-partition query in the study's container; after ``WRITER_LOSSES`` lost races it
    leaves the rest to the next sequencer). Without, all of them (before a read: a
    cross-partition query on each index container; it retries lost races for up to
    ``READER_SECONDS``, then raises ``StorageUnavailable``). Either way at most ``MAX_ROUNDS``
    batches.
    """
    reader = study is None
    if reader and not await _anything_pending(c):
        return 0
    pauses = _pauses(reader)
    sequenced = rounds = 0
    while rounds < MAX_ROUNDS:
        pending = await _read_pending(c, study)
        if not pending:
            break
        try:
            done = await _round(c, pending)
        except _Lost:
            pause = next(pauses, None)
            if pause is not None:
                await asyncio.sleep(pause)
                continue
            if reader:
                message = "the change feed could not be brought up to date"
                raise StorageUnavailable(message) from None
            break
        rounds += 1
        sequenced += done
        if len(pending) < PENDING_PER_ROUND and done == len(pending):
            break  # everything visible when the round began is in the feed
    return sequenced


def _pauses(reader: bool) -> Iterator[float]:
    """The pause after each lost race: exponential with full jitter (5 ms up to 400 ms);
    bounded in time for a reader, in number for a writer."""
    deadline = time.monotonic() + READER_SECONDS
    ceiling = 0.005
    losses = 0
    while time.monotonic() < deadline and (reader or losses < WRITER_LOSSES):
        losses += 1
        yield random.uniform(0, ceiling)
        ceiling = min(ceiling * 2, 0.4)


async def _anything_pending(c: Containers) -> bool:
    """Whether any change waits: one plain query, where the ``TOP`` and ``ORDER BY`` of
    ``_read_pending`` across partitions take three round trips (refused, plan, per range).
    Both index containers hold pending changes (``cosmos_placement``)."""
    for container in (c.index, c.partitioned):
        probe = await first_item(
            container, "SELECT c.id FROM c WHERE c.kind = @kind", {"@kind": PENDING_CHANGE}
        )
        if probe is not None:
            return True
    return False


_PENDING_FIELDS = "c.id, c.pk, c.dp, c.action, c.study, c.series, c.sop, c.wm, c.ord, c.ts"


async def _read_pending(c: Containers, study: PlacedStudy | None) -> list[Doc]:
    """The first pending changes by ``ord``: of one study, or of all (a cross-partition
    query on each index container, merged: a prefix by ``ord`` of all of them)."""
    if study is not None:
        params: dict[str, object] = {"@n": PENDING_PER_ROUND, "@kind": PENDING_CHANGE}
        where = study.where(params)
        return await query_items(
            study.container(c),
            f"SELECT TOP @n {_PENDING_FIELDS} FROM c WHERE {where} AND c.kind = @kind"
            " ORDER BY c.ord",
            params,
            partition=study.key,
        )
    found = await asyncio.gather(
        *(
            query_items(
                container,
                f"SELECT TOP @n {_PENDING_FIELDS} FROM c WHERE c.kind = @kind ORDER BY c.ord",
                {"@n": PENDING_PER_ROUND, "@kind": PENDING_CHANGE},
            )
            for container in (c.index, c.partitioned)
        )
    )
    merged = sorted((doc for docs in found for doc in docs), key=lambda doc: int(doc["ord"]))
    return merged[:PENDING_PER_ROUND]


async def _round(c: Containers, pending: list[Doc]) -> int:
    """Sequence what one batch can of ``pending``; returns how many of them are done (those
    sequenced now, and those found sequenced already)."""
    # Even a create looks up its instance's entries: one stored again after a delete sets its
    # version on the entries of its earlier life too.
    head, entries = await asyncio.gather(
        read_item(c.system, FEED_HEAD_ID, FEED_PARTITION), _read_entries(c, pending)
    )
    existing = {str(entry["id"]) for entry in entries}
    already = [p for p in pending if str(p["id"]) in existing]
    if already:
        await _drop_pending(c, already)
        pending = [p for p in pending if str(p["id"]) not in existing]
        if not pending:
            return len(already)
    plan = plan_sequencing(pending, entries, head, budget=BATCH_OPERATIONS)
    if not plan.taken:
        await _move_ahead(c, plan.moves)
        return len(already)
    await _execute(c, plan.operations(head))
    await _drop_pending(c, plan.taken)
    return len(already) + len(plan.taken)


async def _read_entries(c: Containers, pending: Sequence[Mapping[str, Any]]) -> list[Doc]:
    """Entries of ``pending`` (sequenced already) and every entry of their instances.

    By SOP Instance UID, the indexed field of the three (the caller keeps the entries of
    the exact study, series and SOP instance): a key field of the three would add a fifth to
    every entry of a partition that is limited in size.
    """
    return await query_items(
        c.system,
        "SELECT * FROM c WHERE c.pk = @pk AND c.kind = @kind AND (ARRAY_CONTAINS(@ids, c.id)"
        " OR ARRAY_CONTAINS(@sops, c.sop))",
        {
            "@pk": FEED_PARTITION,
            "@kind": FEED,
            "@ids": sorted({str(p["id"]) for p in pending}),
            "@sops": sorted({str(p["sop"]) for p in pending}),
        },
        partition=FEED_PARTITION,
    )


async def _execute(c: Containers, operations: list[tuple[Any, ...]]) -> None:
    try:
        await c.system.execute_item_batch(batch_operations=operations, partition_key=FEED_PARTITION)
    except CosmosBatchOperationError as exc:
        if exc.status_code in {404, 409, 412}:
            raise _Lost(str(exc.error_index)) from exc
        raise  # throttled or failing: the caller's retry policy decides
    except CosmosResourceNotFoundError as exc:
        raise ContainerGone(str(exc)) from exc


async def _move_ahead(c: Containers, moves: Sequence[tuple[Doc, int | None]]) -> None:
    """Move the entries of one instance to its next version in batches of their own,
    when there are more than one batch can hold beside the new entry.

    Safe before that version's entry exists: the change is committed already (its pending
    change says so), so ``cur`` is the instance's current version either way; the round that
    follows finds these entries moved and only creates the entry.
    """
    operations: list[tuple[Any, ...]] = []
    for entry, current in moves:
        moved = without_system_properties(entry)
        moved["cur"] = current
        operations.append(("replace", (moved["id"], moved), {"if_match_etag": entry["_etag"]}))
    for start in range(0, len(operations), BATCH_OPERATIONS):
        await _execute(c, operations[start : start + BATCH_OPERATIONS])


async def _drop_pending(c: Containers, pending: Sequence[Mapping[str, Any]]) -> None:
    """Best effort: a pending change left behind is recognised by its entry next time."""
    by_study: dict[PlacedStudy, list[str]] = {}
    for change in pending:
        study = document_placement(change).study(str(change["pk"]))
        by_study.setdefault(study, []).append(str(change["id"]))

    async def drop(study: PlacedStudy, ids: list[str]) -> None:
        container = study.container(c)
        if len(ids) > 1:
            operations = [("delete", (pending_id,)) for pending_id in ids]
            for start in range(0, len(operations), BATCH_OPERATIONS):
                with contextlib.suppress(CosmosBatchOperationError):
                    await container.execute_item_batch(
                        batch_operations=operations[start : start + BATCH_OPERATIONS],
                        partition_key=study.key,
                    )
                    continue
                # One of them was gone already (another sequencer's cleanup): one by one.
                for pending_id in ids[start : start + BATCH_OPERATIONS]:
                    await delete_if_present(container, pending_id, study.key)
            return
        await delete_if_present(container, ids[0], study.key)

    try:
        await asyncio.gather(*(drop(study, ids) for study, ids in by_study.items()))
    except Exception:
        log.warning("could not delete %d sequenced pending changes", len(pending), exc_info=True)


# -- reading ---------------------------------------------------------------------------------


def _entry(doc: Mapping[str, Any], metadata: bytes | None = None) -> ChangeFeedEntry:
    current = doc.get("cur")
    return ChangeFeedEntry(
        sequence=int(doc["seq"]),
        timestamp=str(doc["ts"]),
        action=ChangeAction(str(doc["action"])),
        key=InstanceKey(
            str(doc["study"]),
            str(doc["series"]),
            str(doc["sop"]),
            partition=document_partition(doc),
        ),
        watermark=int(doc["wm"]),
        current_watermark=None if current is None else int(current),
        metadata=metadata,
    )


async def _metadata(c: Containers, docs: Sequence[Mapping[str, Any]]) -> list[bytes | None]:
    """The DICOM JSON of each entry's current version (None once deleted or replaced since),
    read concurrently, once per version."""
    versions = {(_key(doc), int(doc["cur"])) for doc in docs if doc.get("cur") is not None}

    async def read(key: Key, watermark: int) -> bytes | None:
        dp, study_uid, series, sop = key
        study = document_placement({"dp": dp}).study(study_uid)
        container = study.container(c)
        found = await read_item(container, instance_id(series, sop), study.key)
        if found is None or int(found["wm"]) != watermark:
            return None
        return await unpack_metadata(container, study, found)

    ordered = sorted(versions)
    answers = await asyncio.gather(*(read(key, wm) for key, wm in ordered))
    found = dict(zip(ordered, answers, strict=True))
    return [None if doc.get("cur") is None else found[(_key(doc), int(doc["cur"]))] for doc in docs]


class CosmosChangeFeedStore:
    """``ChangeFeedStore`` on the feed partition of the ``system`` container."""

    def __init__(self, session: CosmosSession) -> None:
        self._session = session

    async def read_changes(self, query: ChangeQuery) -> list[ChangeFeedEntry]:
        return await self._session.run(lambda c: self._read(c, query))

    async def _read(self, c: Containers, query: ChangeQuery) -> list[ChangeFeedEntry]:
        await sequence_pending(c)
        clauses = ["c.pk = @pk", "c.kind = @kind", "c.seq > @after"]
        params: dict[str, object] = {
            "@pk": FEED_PARTITION,
            "@kind": FEED,
            "@after": query.after_sequence,
            # No OFFSET in the Cosmos DB test server; on Cosmos it reads the skipped rows too.
            "@n": query.skip + query.limit,
        }
        if query.start_time is not None:
            clauses.append("c.ts >= @start")
            params["@start"] = query.start_time
        if query.end_time is not None:
            clauses.append("c.ts < @end")
            params["@end"] = query.end_time
        if query.partition is not None:
            # One partition's entries: the same sequences, with gaps where others' are.
            clauses.append(placement_of(query.partition).system_where(params))
        docs = await query_items(
            c.system,
            f"SELECT TOP @n {_ENTRY_FIELDS} FROM c WHERE {' AND '.join(clauses)} ORDER BY c.seq",
            params,
            partition=FEED_PARTITION,
        )
        return await self._entries(c, docs[query.skip :], query.include_metadata)

    async def latest_change(
        self, *, include_metadata: bool = False, partition: int | None = None
    ) -> ChangeFeedEntry | None:
        return await self._session.run(lambda c: self._latest(c, include_metadata, partition))

    async def _latest(
        self, c: Containers, include_metadata: bool, partition: int | None
    ) -> ChangeFeedEntry | None:
        await sequence_pending(c)
        params: dict[str, object] = {"@pk": FEED_PARTITION, "@kind": FEED}
        where = "c.pk = @pk AND c.kind = @kind"
        if partition is not None:
            where += " AND " + placement_of(partition).system_where(params)
        docs = await query_items(
            c.system,
            f"SELECT TOP 1 {_ENTRY_FIELDS} FROM c WHERE {where} ORDER BY c.seq DESC",
            params,
            partition=FEED_PARTITION,
        )
        entries = await self._entries(c, docs, include_metadata)
        return entries[0] if entries else None

    async def _entries(
        self, c: Containers, docs: Sequence[Mapping[str, Any]], include_metadata: bool
    ) -> list[ChangeFeedEntry]:
        if not include_metadata:
            return [_entry(doc) for doc in docs]
        metadata = await _metadata(c, docs)
        return [_entry(doc, data) for doc, data in zip(docs, metadata, strict=True)]
