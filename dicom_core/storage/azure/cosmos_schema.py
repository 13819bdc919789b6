"""The Cosmos DB containers of the azure backend: partition keys, indexing, document shapes.

Declared here once; the adapter creates missing containers from these specs when it may
(key-based connections: the emulator, development accounts), and the Bicep templates declare
the same policies for identity-based deployments, where the app's identity has data-plane
rights only. ``tests/infra/test_bicep.py`` checks that both agree.

Container ``index`` (``DICOM_COSMOS_INDEX_CONTAINER``), partition key ``/pk`` = the
StudyInstanceUID, so every document of a study sits in one logical partition: a store or a
delete updates the instance, its series and study summaries and records the change (a pending
change, below) in one transactional batch, and a study-scoped read is a single-partition
query. Document kinds (``kind``), with their ``id`` inside the partition:

- ``instance`` (``i|{series}|{sop}``): a fully stored instance. Identity, watermark, blob key,
  file size, frame byte ranges (``frames``), the precomputed DICOM JSON (``meta``: zlib then
  base64; or ``metaParts`` documents when it would not fit), the instance's own attribute
  values (``own``) and copies of the matching keys of its study (``sk``) and series (``rk``)
  summaries, so that an instance-level QIDO is one query without joins.
- ``reservation`` (``r|{series}|{sop}``): the claim of a store in progress (status
  "creating"), created with create-only semantics; ``owner`` tells retries of the same store
  apart from a competing one. A lease: ``heldAt`` (``createdAt`` until then) is when its store
  last renewed it, and one not renewed for the lease time is an interrupted store's.
- ``series`` (``s|{series}``): the series summary. Matching keys of its latest instance
  (``rk``), that instance's study keys (``lsk``, to recompute the study after deletes), a copy
  of the study's keys (``sk``), the latest watermark and instance id, the instance count.
- ``study`` (``study``): the study summary. Matching keys of its latest instance (``sk``,
  including ``ModalitiesInStudy`` as a list of folded modalities and, for wildcard matching,
  as one joined string ``ModalitiesInStudy_joined``), per-series counts and
  modalities (``series``), totals, raw ``modalities``, and ``dirty`` while copies of changed
  keys are being propagated to its series and instances. ``expiresAt``, when the last store
  to the study asked for an expiry: the time the expiry sweep deletes it (``utc_timestamp``
  text, which sorts as time does); absent for never.
- ``pendingchange`` (``p|{token}``): a change (create, update, delete) written in the batch of
  the change itself, waiting for the sequencer to give it its place in the change feed
  (``cosmos_change_feed``). ``ord`` (``cosmos_docs.change_order``; ORDER is a reserved word of
  Cosmos SQL) orders the changes of one instance; ``wm`` is the version it records, ``ts``
  its time. Deleted once its feed entry exists.
- ``metapart`` (``m|{watermark}|{n}``): a slice of DICOM JSON too large for one document.
- ``blobdebt`` (``d|{token}``): the files (``blobs``) a delete's or a commit's batch stopped
  naming, written in that batch and deleted once they were handed to the janitor
  (``cosmos_blob_debts``); ``ord`` is when it was written, in epoch milliseconds, so the debt
  sweep takes the oldest first through the ``/kind``, ``/ord`` composite index.
- ``original`` (``v|{series}|{sop}``): the version of an instance first stored, kept when a
  bulk update rewrote it (the instance document then says ``hasOriginal``); the same fields
  as an instance document, read only for ``msdicom-request-original``. QIDO and the reindex
  read ``instance`` documents only, so they never see it.

Container ``system`` (``DICOM_COSMOS_SYSTEM_CONTAINER``), partition key ``/pk``: counters
(``pk`` "counter": ``watermark``; atomic ``incr`` patches), workitems (``cosmos_workitems``),
extended query tags, their operations, errors and values, and external metadata
(``cosmos_eqt``), and the change feed (every path of ``system`` is indexed, so they need no
declaration here). The change feed is one logical partition, ``pk`` "changefeed", so that the
sequencer appends entries and moves the head in one transactional batch:

- ``feedhead`` (``head``): ``last``, the highest sequence given out; every batch of the
  sequencer replaces it under its ETag, which is what serialises sequencers;
- ``feed`` (the ``p|{token}`` id of the pending change it sequenced, so that sequencing one
  change twice conflicts): ``seq``, ``action``, ``study``, ``series``, ``sop``, ``wm``, ``ts``
  and ``cur``, the instance's current version (None once deleted; the sequencer moves it);
  ``dp`` when the instance is not Microsoft.Default's, copied from its pending change (which
  the study's own container holds: ``index`` or ``partitioned``).

Cursors (``kind`` "cursor", ``pk`` "cursor", ``id`` the cursor's name): how far a job that
follows the change feed got (``position``, the event publisher's last published sequence),
replaced under their ETag so that a move is a compare-and-set (``cosmos_cursors``).

Data partitions (``kind`` "partition", ``pk`` "partitions", ``id`` ``n|{name_key}``, the
folded name behind a prefix so that names such as ``.`` and ``..`` never form a path segment of
their own in a request URL): ``key``, ``name`` (the first spelling stored) and ``createdAt``
(``cosmos_partitions``). A partition is created create-only, so of two first stores of one name
one conflicts and reads the other's document. Keys come from the counter ``partition`` seeded at
1 (``Microsoft.Default``'s key), so new partitions get 2, 3, ...; a key taken by the loser of
such a race is never used (Azure's keys have gaps too). ``Microsoft.Default``'s document is
created, create-only, the first time the registry is read.

Container ``partitioned`` (``DICOM_COSMOS_PARTITIONED_CONTAINER``): the data of partitions
other than Microsoft.Default; see docs/azure-backend.md and ``cosmos_placement``, the one module
that knows which container and key a partition's documents have. Its
partition key is hierarchical (MultiHash, version 2): ``/dp``, the data partition's key as a
string, then ``/pk``, the StudyInstanceUID. Its documents are those of ``index`` (same kinds,
ids and fields) plus ``dp``, so a study's documents still share one logical partition
(``[dp, study]``: batches unchanged) and a QIDO of one data partition names the prefix
``[dp]``, which Cosmos routes to the physical partitions holding it, instead of every one.
``index`` keeps Microsoft.Default's data as it is: a container's partition key cannot change
once it exists.

A logical partition holds at most 20 GB (data and index). An entry is about 0.4 KB of JSON
with 64-character UIDs, 0.6 KB with its system properties, and about 1 KB stored with every
path indexed, so one feed partition holds some 20 million changes: a deployment storing 10,000
instances a day fills it in about five years. What would lift the limit: feed partitions by
epoch (``changefeed|{seq // N}``, each with its own head, the sequencer opening the next when
one is full; readers query the epochs their range covers), or moving entries older than a
retention period out of the container.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Literal

PARTITION_KEY_PATH = "/pk"
DATA_PARTITION_KEY_PATH = "/dp"

INSTANCE = "instance"
RESERVATION = "reservation"
SERIES = "series"
STUDY = "study"
PENDING_CHANGE = "pendingchange"
METAPART = "metapart"
ORIGINAL = "original"
COMMIT = "commit"
BLOB_DEBT = "blobdebt"
FEED = "feed"
FEED_HEAD = "feedhead"
CURSOR = "cursor"

STUDY_DOC_ID = "study"
COMMIT_DOC_ID = "commit"
COUNTER_PARTITION = "counter"
WATERMARK_COUNTER = "watermark"
FEED_PARTITION = "changefeed"
FEED_HEAD_ID = "head"
CURSOR_PARTITION = "cursor"
DATA_PARTITION = "partition"
DATA_PARTITIONS_PARTITION = "partitions"
PARTITION_COUNTER = "partition"


def instance_id(series_uid: str, sop_uid: str) -> str:
    return f"i|{series_uid}|{sop_uid}"


def reservation_id(series_uid: str, sop_uid: str) -> str:
    return f"r|{series_uid}|{sop_uid}"


def original_id(series_uid: str, sop_uid: str) -> str:
    return f"v|{series_uid}|{sop_uid}"


def series_id(series_uid: str) -> str:
    return f"s|{series_uid}"


def pending_change_id() -> str:
    """A new pending change's id; its feed entry takes the same id."""
    return f"p|{uuid.uuid4().hex}"


def data_partition_id(folded_name: str) -> str:
    return f"n|{folded_name}"


def metapart_id(watermark: int, part: int) -> str:
    return f"m|{watermark}|{part}"


PartitionKeyKind = Literal["Hash", "MultiHash"]
HASH: Final = "Hash"
MULTI_HASH: Final = "MultiHash"
"""A hierarchical partition key: several paths, each hashed on its own (version 2 only)."""


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """A container as the adapter creates it and Bicep declares it."""

    setting: str
    default_name: str
    partition_key_paths: list[str]
    """One path (``kind`` Hash), or up to three from the top of the hierarchy (MultiHash)."""
    indexing_policy: dict[str, Any]
    unique_keys: list[dict[str, Any]] = field(default_factory=list)
    kind: PartitionKeyKind = HASH

    def partition_key(self) -> dict[str, Any]:
        """The ARM ``partitionKey`` definition, as Bicep declares it.

        A hierarchical key must say version 2. Single-path keys say no version, as Bicep
        declared them before specs had a kind: a deployed container's partition key cannot
        change.
        """
        version = {"version": 2} if self.kind == MULTI_HASH else {}
        return {"paths": list(self.partition_key_paths), "kind": self.kind, **version}


def _asc(*paths: str) -> list[dict[str, str]]:
    return [{"path": p, "order": "ascending"} for p in paths]


def _desc_last(*paths: str) -> list[dict[str, str]]:
    *first, last = paths
    return [*_asc(*first), {"path": last, "order": "descending"}]


# Opt-in indexing: only what queries filter or sort on is indexed, so the large fields (the
# compressed DICOM JSON, frame ranges, per-series maps) cost no index writes.
_INDEXED_PATHS = [
    {"path": "/kind/?"},
    {"path": "/series/?"},
    {"path": "/sop/?"},
    {"path": "/wm/?"},
    {"path": "/latestWm/?"},
    {"path": "/ord/?"},
    {"path": "/expiresAt/?"},
    {"path": "/sk/*"},
    {"path": "/rk/*"},
]
_NOT_INDEXED = [{"path": "/*"}, {"path": '/"_etag"/?'}]
# Study-scoped reads list a series oldest first, the change feed's sequencer takes pending
# changes in order, and the expiry sweep takes expired studies earliest first.
_STUDY_AND_SWEEP_COMPOSITES = [
    _asc("/kind", "/series", "/wm"),
    _asc("/kind", "/ord"),
    _asc("/kind", "/expiresAt"),
]

INDEX_CONTAINER = ContainerSpec(
    setting="DICOM_COSMOS_INDEX_CONTAINER",
    default_name="index",
    partition_key_paths=[PARTITION_KEY_PATH],
    indexing_policy={
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": _INDEXED_PATHS,
        "excludedPaths": _NOT_INDEXED,
        # QIDO sorts each kind newest first, and the reads above sort too; equality filters
        # followed by ORDER BY need these composite indexes.
        "compositeIndexes": [
            _desc_last("/kind", "/latestWm"),
            _desc_last("/kind", "/wm"),
            *_STUDY_AND_SWEEP_COMPOSITES,
        ],
    },
)

# The data of partitions other than Microsoft.Default (``cosmos_placement``); see
# docs/azure-backend.md. The index container's documents plus ``dp``; a QIDO of one data
# partition filters on dp first, then sorts each kind newest first.
PARTITIONED_CONTAINER = ContainerSpec(
    setting="DICOM_COSMOS_PARTITIONED_CONTAINER",
    default_name="partitioned",
    partition_key_paths=[DATA_PARTITION_KEY_PATH, PARTITION_KEY_PATH],
    kind=MULTI_HASH,
    indexing_policy={
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [*_INDEXED_PATHS, {"path": "/dp/?"}],
        "excludedPaths": _NOT_INDEXED,
        "compositeIndexes": [
            _desc_last("/dp", "/kind", "/latestWm"),
            _desc_last("/dp", "/kind", "/wm"),
            *_STUDY_AND_SWEEP_COMPOSITES,
        ],
    },
)

SYSTEM_CONTAINER = ContainerSpec(
    setting="DICOM_COSMOS_SYSTEM_CONTAINER",
    default_name="system",
    partition_key_paths=[PARTITION_KEY_PATH],
    indexing_policy={
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/*"}],
        "excludedPaths": [{"path": '/"_etag"/?'}],
    },
)

CONTAINERS = (INDEX_CONTAINER, SYSTEM_CONTAINER, PARTITIONED_CONTAINER)
