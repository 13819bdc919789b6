"""The documents of the Cosmos DB index, and how a store or a delete changes them.

Pure functions, no I/O: ``cosmos_index`` reads the current documents, asks this module for the
documents that should replace them, and writes those in one transactional batch guarded by
the ETags it read. Keeping the rules here lets unit tests check them without a server.

Summaries follow the local index (``storage/local/sqlite_index.py``): a series or study holds
the values of its latest stored instance (highest watermark: "the latest wins"), its counts,
and for a study the modalities of its series. Searches compare *matching keys*
(``dicom_core.query.matching.index_key``: PN normalised, other strings case-folded), stored at
index time because Cosmos DB has no case- or accent-insensitive collation.

Because a Cosmos query reads one document kind and cannot join, every series document carries
a copy of its study's keys (``sk``) and every instance document copies of its study's and its
series' keys (``sk``, ``rk``). Copies carry the version of the keys they hold (``skv``,
``rkv``: a summary's key version grows by one at each change), so that a propagation
that runs late never overwrites newer copies with older ones (``cosmos_index`` patches with
the condition "version below mine"). A study whose copies are being propagated is marked
``dirty``, in the same batch that changed its keys, so an interrupted propagation is finished
by the next write to the study.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dicom_core.domain.index_attributes import SERIES_KEYWORDS, STUDY_KEYWORDS
from dicom_core.domain.model import (
    FrameIndex,
    IndexAttributes,
    InstanceKey,
    InstanceRecord,
    Reservation,
    StoredInstance,
)
from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY
from dicom_core.storage.azure.cosmos_placement import PlacedStudy, placement_of
from dicom_core.storage.azure.cosmos_schema import (
    INSTANCE,
    METAPART,
    ORIGINAL,
    PENDING_CHANGE,
    SERIES,
    STUDY,
    STUDY_DOC_ID,
    instance_id,
    metapart_id,
    original_id,
    pending_change_id,
    reservation_id,
    series_id,
)

Doc = dict[str, Any]
Keys = dict[str, Any]

MODALITIES_KEY = "ModalitiesInStudy"
JOINED_SUFFIX = "_joined"
MODALITIES_JOINED = MODALITIES_KEY + JOINED_SUFFIX
# A document may hold at most 2 MB, and a transactional batch at most 2 MB in all. DICOM JSON
# compresses about tenfold; what is still larger goes into slices of its own.
INLINE_METADATA_CHARS = 1_000_000
METADATA_PART_CHARS = 1_000_000
# Real Cosmos takes at most 100 operations in one transactional batch.
MAX_BATCH_OPERATIONS = 100


# -- metadata --------------------------------------------------------------------------------


def pack_metadata(raw: bytes) -> str:
    """DICOM JSON as stored in a document: zlib-compressed, base64 text."""
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def unpack_metadata(packed: str) -> bytes:
    return zlib.decompress(base64.b64decode(packed))


def split_metadata(packed: str) -> list[str]:
    """Slices of a packed document too large to be inline (empty when it fits inline)."""
    if len(packed) <= INLINE_METADATA_CHARS:
        return []
    return [packed[i : i + METADATA_PART_CHARS] for i in range(0, len(packed), METADATA_PART_CHARS)]


def metapart_documents(study: PlacedStudy, watermark: int, parts: Sequence[str]) -> list[Doc]:
    return [
        {
            "id": metapart_id(watermark, n),
            **study.fields(),
            "kind": METAPART,
            "wm": watermark,
            "part": n,
            "data": data,
        }
        for n, data in enumerate(parts)
    ]


# -- matching keys ---------------------------------------------------------------------------


def _keys(
    values: Mapping[str, object], normalized: Mapping[str, str], keywords: Sequence[str]
) -> Keys:
    keys: Keys = {}
    for keyword in keywords:
        if keyword in normalized:
            keys[keyword] = normalized[keyword]
            continue
        value = values.get(keyword)
        if value is not None and value != "":
            keys[keyword] = str(value)
    return keys


def own_values(attributes: IndexAttributes) -> Doc:
    """What an instance contributes to summaries when it is the latest of its series/study."""
    modality = attributes.series.get("Modality")
    return {
        "sk": _keys(attributes.study, attributes.normalized, STUDY_KEYWORDS),
        "rk": _keys(attributes.series, attributes.normalized, SERIES_KEYWORDS),
        "modality": str(modality) if modality else None,
    }


# -- instance documents ----------------------------------------------------------------------


def instance_document(
    reservation: Reservation, instance: StoredInstance, *, now: str, packed: str, parts: int
) -> Doc:
    """The instance's document without its copies of summary keys (the plan adds those)."""
    key = reservation.key
    return {
        "id": instance_id(key.series_uid, key.sop_uid),
        "pk": key.study_uid,
        **placement_of(key.partition).fields(),
        "kind": INSTANCE,
        "study": key.study_uid,
        "series": key.series_uid,
        "sop": key.sop_uid,
        "wm": reservation.watermark,
        "sopClass": instance.sop_class_uid,
        "tsuid": instance.transfer_syntax_uid,
        "blobKey": reservation.blob_key,
        "size": instance.file_size,
        "nFrames": instance.frames.count if instance.frames else 0,
        "frames": instance.frames.to_json().decode() if instance.frames else None,
        "meta": None if parts else packed,
        "metaParts": parts,
        "own": own_values(instance.attributes),
        "createdAt": now,
        "updatedAt": now,
    }


RECORD_FIELDS = (
    "study, series, sop, dp, wm, sopClass, tsuid, blobKey, size, frames, createdAt, metaParts,"
    " _etag"
)


def document_partition(doc: Mapping[str, Any]) -> int:
    """The data partition a document belongs to: Microsoft.Default for every document
    without ``dp`` (``cosmos_placement``)."""
    return int(doc.get("dp") or DEFAULT_PARTITION_KEY)


def record_from_document(doc: Mapping[str, Any]) -> InstanceRecord:
    frames = doc.get("frames")
    return InstanceRecord(
        key=InstanceKey(
            str(doc["study"]),
            str(doc["series"]),
            str(doc["sop"]),
            partition=document_partition(doc),
        ),
        watermark=int(doc["wm"]),
        sop_class_uid=str(doc.get("sopClass") or ""),
        transfer_syntax_uid=str(doc.get("tsuid") or ""),
        blob_key=str(doc["blobKey"]),
        file_size=int(doc.get("size") or 0),
        frames=FrameIndex.from_json(frames) if frames else None,
        created_at=str(doc.get("createdAt") or ""),
    )


# -- summaries -------------------------------------------------------------------------------


def without_system_properties(doc: Mapping[str, Any]) -> Doc:
    """A document as read, without Cosmos's system properties (``_etag``, ``_ts``...), which
    a write must not send back."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def joined(values: Sequence[str]) -> str:
    """A list key as one string, each element between backslashes: ``\\ct\\mr\\``.

    For wildcard matching on any element with one RegexMatch (``cosmos_query``): the Cosmos
    DB server of the tests fails on subqueries over documents that lack the list, so
    ``EXISTS (SELECT ... IN list)`` is not an option. A backslash never occurs inside an
    element: it separates DICOM values, and only a value's first one is indexed.
    """
    return "\\" + "".join(f"{value}\\" for value in values)


def _with_modalities(base: Mapping[str, Any], series_map: Mapping[str, Mapping[str, Any]]) -> Keys:
    """Study keys: the latest instance's, plus ModalitiesInStudy from every series."""
    folded = sorted({entry["mk"] for entry in series_map.values() if entry.get("mk")})
    keys = {k: v for k, v in base.items() if k not in (MODALITIES_KEY, MODALITIES_JOINED)}
    keys[MODALITIES_KEY] = folded
    keys[MODALITIES_JOINED] = joined(folded)
    return keys


def _next_version(previous: Mapping[str, Any] | None, name: str, changed: bool) -> int:
    """Key versions only grow: each change of a summary's keys adds one (ETags serialise them)."""
    current = int(previous.get(name, 0)) if previous else 0
    return current + 1 if changed or previous is None else current


def _series_entry(series_doc: Mapping[str, Any]) -> Doc:
    return {
        "n": series_doc["count"],
        "wm": series_doc["latestWm"],
        "m": series_doc.get("modality"),
        "mk": series_doc["rk"].get("Modality"),
    }


def _new_series(
    study_uid: str, series_uid: str, previous: Mapping[str, Any] | None, now: str
) -> Doc:
    doc = without_system_properties(previous) if previous else {}
    doc.update(
        id=series_id(series_uid),
        pk=study_uid,
        kind=SERIES,
        study=study_uid,
        series=series_uid,
        updatedAt=now,
    )
    return doc


def _take_latest(series: Doc, instance: Mapping[str, Any]) -> None:
    own = instance["own"]
    series.update(
        latestWm=int(instance["wm"]),
        latestId=instance["id"],
        rk=own["rk"],
        lsk=own["sk"],
        modality=own["modality"],
    )


def _study(
    study_uid: str,
    previous: Mapping[str, Any] | None,
    series_map: dict[str, Doc],
    base_keys: Mapping[str, Any],
    latest_wm: int,
    latest_id: str,
    now: str,
) -> tuple[Doc, bool]:
    """The study summary, and whether its keys changed (copies then need updating)."""
    keys = _with_modalities(base_keys, series_map)
    changed = previous is None or keys != previous.get("sk")
    doc = without_system_properties(previous) if previous else {}
    doc.update(
        id=STUDY_DOC_ID,
        pk=study_uid,
        kind=STUDY,
        study=study_uid,
        latestWm=latest_wm,
        latestId=latest_id,
        sk=keys,
        kv=_next_version(previous, "kv", changed),
        series=series_map,
        numSeries=len(series_map),
        numInstances=sum(int(entry["n"]) for entry in series_map.values()),
        modalities=sorted({e["m"] for e in series_map.values() if e.get("m")}),
        dirty=bool(previous and previous.get("dirty")),
        updatedAt=now,
    )
    return doc, changed and previous is not None


@dataclass(slots=True)
class BatchPlan:
    """Operations for one transactional batch, each named for error handling.

    ``propagate``: the batch changes keys that other documents of the study copy (or finds
    the study already ``dirty``), so copies must be brought up to date after it.
    """

    operations: list[tuple[Any, ...]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    propagate: bool = False
    removed_blob_keys: list[str] = field(default_factory=list)
    study_removed: bool = False
    """A delete's batch removes the study's last instance (and its summary)."""

    def add(self, name: str, operation: tuple[Any, ...]) -> None:
        self.operations.append(operation)
        self.names.append(name)

    def put(self, name: str, doc: Doc, previous: Mapping[str, Any] | None) -> None:
        """Create ``doc``, or replace ``previous`` only if it is unchanged since it was read."""
        if previous is None:
            self.add(name, ("create", (doc,)))
        else:
            self.add(name, ("replace", (doc["id"], doc), {"if_match_etag": previous["_etag"]}))

    def remove(self, name: str, previous: Mapping[str, Any]) -> None:
        self.add(name, ("delete", (previous["id"],), {"if_match_etag": previous["_etag"]}))


def change_order(action: str, watermark: int) -> int:
    """Where a change of an instance stands among the changes of that instance.

    The changes of one instance are serialised: a store commits only while it holds the
    instance's reservation, reservations (and so watermarks) are taken one after the other,
    and a delete removes the version current at that moment. So the versions of an instance
    are committed in watermark order, and the delete of a version falls after its commit and
    before the commit of the next version (which would otherwise have been the one deleted).
    Ordering by (version, delete after store) is therefore the order of the changes, whatever
    the order of the requests' other steps: a store may take its watermark, then a delete of
    the older version may commit, and only then the store. A counter value taken by the
    delete would put the delete after the store there. Across instances the order does not
    matter. ``2 * watermark`` stays far below 2**53, so the number is exact in JSON.
    """
    return 2 * watermark + (1 if action == "delete" else 0)


def pending_change_document(action: str, key: InstanceKey, watermark: int, now: str) -> Doc:
    """A change recorded in its own batch, for ``cosmos_change_feed``'s sequencer."""
    return {
        "id": pending_change_id(),
        "pk": key.study_uid,
        **placement_of(key.partition).fields(),
        "kind": PENDING_CHANGE,
        "action": action,
        "study": key.study_uid,
        "series": key.series_uid,
        "sop": key.sop_uid,
        "wm": watermark,
        "ord": change_order(action, watermark),
        "ts": now,
    }


def plan_commit(
    *,
    reservation: Reservation,
    reservation_etag: str,
    instance_doc: Doc,
    old_instance: Mapping[str, Any] | None,
    series_doc: Mapping[str, Any] | None,
    study_doc: Mapping[str, Any] | None,
    now: str,
    updating: bool = False,
    old_original: Mapping[str, Any] | None = None,
    expires_at: str | None = None,
) -> BatchPlan:
    """The batch that makes a reserved instance visible and updates its summaries.

    A newer instance (higher watermark) becomes its series' and study's latest; an older one
    that commits late only adds to the counts.

    Expiry. A store (``updating`` False) sets the study's ``expiresAt`` to ``expires_at``, or
    removes it when None: the last store to a study decides. A bulk update's version keeps it.

    Versions. A bulk update's version (``updating``) keeps the instance's original: the
    replaced document becomes the ``original`` document if there is none yet (its file and
    metadata slices stay), and the new document says ``hasOriginal``. A store (``updating``
    False) replaces every version: ``old_original``, the original document when the replaced
    one had one, is deleted in the same batch.
    """
    key = reservation.key
    wm = reservation.watermark

    series = _new_series(key.study_uid, key.series_uid, series_doc, now)
    series["count"] = int(series_doc["count"] if series_doc else 0) + (0 if old_instance else 1)
    if series_doc is None or wm > int(series_doc["latestWm"]):
        _take_latest(series, instance_doc)
    series_keys_changed = series_doc is not None and series["rk"] != series_doc["rk"]
    series["rkv"] = _next_version(series_doc, "rkv", series_doc is None or series_keys_changed)

    series_map: dict[str, Doc] = dict(study_doc["series"]) if study_doc else {}
    series_map[key.series_uid] = _series_entry(series)
    if study_doc is None or wm > int(study_doc["latestWm"]):
        base, latest_wm, latest_id = instance_doc["own"]["sk"], wm, instance_doc["id"]
    else:
        base = study_doc["sk"]
        latest_wm, latest_id = int(study_doc["latestWm"]), str(study_doc["latestId"])
    study, study_keys_changed = _study(
        key.study_uid, study_doc, series_map, base, latest_wm, latest_id, now
    )
    propagate = (
        bool(study["dirty"])
        or (series_keys_changed and series["count"] > 1)
        or (study_keys_changed and study["numInstances"] > 1)
    )
    study["dirty"] = propagate
    series["sk"], series["skv"] = study["sk"], study["kv"]
    # A new series or study of a partition other than Microsoft.Default says which.
    series.update(placement_of(key.partition).fields())
    study.update(placement_of(key.partition).fields())
    if not updating:
        if expires_at is None:
            study.pop("expiresAt", None)
        else:
            study["expiresAt"] = expires_at

    doc = dict(instance_doc)
    doc.update(sk=study["sk"], skv=study["kv"], rk=series["rk"], rkv=series["rkv"])

    plan = BatchPlan(propagate=propagate)
    if updating:
        assert old_instance is not None, "an update rewrites a stored version"
        doc["hasOriginal"] = True
        if not old_instance.get("hasOriginal"):
            plan.add("original", ("create", (original_document(old_instance),)))
    elif old_original is not None:
        plan.remove("original", old_original)
    plan.put("instance", doc, old_instance)
    plan.add(
        "reservation",
        (
            "delete",
            (reservation_id(key.series_uid, key.sop_uid),),
            {"if_match_etag": reservation_etag},
        ),
    )
    plan.put("series", series, series_doc)
    plan.put("study", study, study_doc)
    # A replacing store records create: the client sent a whole new instance.
    action = "update" if updating else "create"
    plan.add("change", ("create", (pending_change_document(action, key, wm, now),)))
    return plan


@dataclass(frozen=True, slots=True)
class VersionItem:
    """One instance's new version, ready for ``plan_versions``: its reservation (and the
    reservation's ETag), its new document, and the document it replaces."""

    reservation: Reservation
    reservation_etag: str
    instance_doc: Doc
    old_instance: Mapping[str, Any]


def plan_versions(
    items: Sequence[VersionItem],
    series_docs: Mapping[str, Mapping[str, Any]],
    study_doc: Mapping[str, Any],
    now: str,
) -> BatchPlan:
    """One batch that makes new versions of several instances of one study visible together.

    The instances' plans are chained (``plan_commit`` for each, given the summaries the ones
    before it would leave), and only the last summaries are written, each replacing the
    document read before under that document's ETag; every instance document, original,
    reservation and pending change of the chain goes in. So the batch is all of the study's
    versions or none of them.
    """
    etags = {uid: doc["_etag"] for uid, doc in series_docs.items()}
    series_now: dict[str, Mapping[str, Any]] = dict(series_docs)
    study_now: Mapping[str, Any] = study_doc
    combined = BatchPlan()
    for item in items:
        uid = item.reservation.key.series_uid
        plan = plan_commit(
            reservation=item.reservation,
            reservation_etag=item.reservation_etag,
            instance_doc=item.instance_doc,
            old_instance=item.old_instance,
            series_doc=series_now[uid],
            study_doc=study_now,
            now=now,
            updating=True,
        )
        for name, operation in zip(plan.names, plan.operations, strict=True):
            if name == "series":
                series_now[uid] = {**operation[1][1], "_etag": etags[uid]}
            elif name == "study":
                study_now = {**operation[1][1], "_etag": study_doc["_etag"]}
            else:
                combined.add(name, operation)
        combined.propagate = combined.propagate or plan.propagate
    for uid in sorted({item.reservation.key.series_uid for item in items}):
        combined.put("series", without_system_properties(series_now[uid]), series_docs[uid])
    combined.put("study", without_system_properties(study_now), study_doc)
    return combined


def original_document(replaced: Mapping[str, Any]) -> Doc:
    """The ``original`` document made of the instance document an update replaces."""
    doc = {k: v for k, v in replaced.items() if not k.startswith("_")}
    doc.update(id=original_id(str(replaced["series"]), str(replaced["sop"])), kind=ORIGINAL)
    doc.pop("hasOriginal", None)
    return doc


def plan_delete(
    *,
    study_doc: Mapping[str, Any],
    series_docs: Mapping[str, Mapping[str, Any]],
    removed: Sequence[Mapping[str, Any]],
    next_latest: Mapping[str, Mapping[str, Any] | None],
    now: str,
    originals: Mapping[str, Mapping[str, Any]] | None = None,
) -> BatchPlan:
    """The batch that removes ``removed`` (instance documents of one study) and updates summaries.

    ``originals`` holds, by instance document id, the original documents of those that have
    one: they go too, with their metadata slices and files.

    ``series_docs`` holds every series summary of the study; ``next_latest`` the newest
    remaining instance of each series whose latest instance is being removed while others
    remain (None when none remains). Each removal is recorded as a pending change.
    """
    study_uid = str(study_doc["study"])
    plan = BatchPlan()
    by_series: dict[str, list[Mapping[str, Any]]] = {}
    for doc in removed:
        by_series.setdefault(str(doc["series"]), []).append(doc)
        plan.remove("instance", doc)
        for n in range(int(doc.get("metaParts") or 0)):
            plan.add("metapart", ("delete", (metapart_id(int(doc["wm"]), n),)))
        key = InstanceKey(
            study_uid, str(doc["series"]), str(doc["sop"]), partition=document_partition(doc)
        )
        change = pending_change_document("delete", key, int(doc["wm"]), now)
        plan.add("change", ("create", (change,)))
        plan.removed_blob_keys.append(str(doc["blobKey"]))
        original = (originals or {}).get(str(doc["id"]))
        if original is not None:
            plan.add("original", ("delete", (original["id"],)))
            for n in range(int(original.get("metaParts") or 0)):
                plan.add("metapart", ("delete", (metapart_id(int(original["wm"]), n),)))
            plan.removed_blob_keys.append(str(original["blobKey"]))

    series_map: dict[str, Doc] = dict(study_doc["series"])
    new_series: dict[str, Mapping[str, Any]] = dict(series_docs)
    propagate = bool(study_doc.get("dirty"))
    removed_ids = {str(doc["id"]) for doc in removed}
    for series_uid, gone in by_series.items():
        current = series_docs[series_uid]
        remaining = int(current["count"]) - len(gone)
        if remaining <= 0:
            plan.remove("series", current)
            series_map.pop(series_uid, None)
            new_series.pop(series_uid, None)
            continue
        series = _new_series(study_uid, series_uid, current, now)
        series["count"] = remaining
        if current["latestId"] in removed_ids:
            successor = next_latest.get(series_uid)
            if successor is None:
                raise ValueError(f"series {series_uid} keeps instances but none was named latest")
            _take_latest(series, successor)
            if series["rk"] != current["rk"]:
                series["rkv"] = _next_version(current, "rkv", True)
                propagate = True
        new_series[series_uid] = series
        series_map[series_uid] = _series_entry(series)

    if not series_map:
        plan.remove("study", study_doc)
        plan.propagate = False
        plan.study_removed = True
        return plan
    if study_doc["latestId"] in removed_ids:
        latest_series = max(series_map, key=lambda uid: (int(series_map[uid]["wm"]), uid))
        latest = new_series[latest_series]
        base, latest_wm, latest_id = latest["lsk"], int(latest["latestWm"]), str(latest["latestId"])
    else:
        base = study_doc["sk"]
        latest_wm, latest_id = int(study_doc["latestWm"]), str(study_doc["latestId"])
    study, study_keys_changed = _study(
        study_uid, study_doc, series_map, base, latest_wm, latest_id, now
    )
    propagate = propagate or study_keys_changed
    study["dirty"] = propagate
    for series_uid in by_series:
        kept = new_series.get(series_uid)
        if kept is not None:
            updated = dict(kept)
            updated["sk"], updated["skv"] = study["sk"], study["kv"]
            plan.put("series", updated, series_docs[series_uid])
    plan.put("study", study, study_doc)
    plan.propagate = propagate
    return plan
