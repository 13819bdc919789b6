"""The Cosmos DB containers of the azure backend: partition keys, indexing, document shapes.

Declared here once; the adapter creates missing containers from these specs when it may
(key-based connections: the emulator, development accounts), and the Bicep templates declare
the same policies for identity-based deployments, where the app's identity has data-plane
rights only. ``tests/contract`` checks that both agree.

Container ``index`` (``DICOM_COSMOS_INDEX_CONTAINER``), partition key ``/pk`` = the
StudyInstanceUID, so every document of a study sits in one logical partition: a store or a
delete updates the instance, its series and study summaries and the change feed in one
transactional batch, and a study-scoped read is a single-partition query. Document kinds
(``kind``), with their ``id`` inside the partition:

- ``instance`` (``i|{series}|{sop}``): a fully stored instance. Identity, watermark, blob key,
  file size, frame byte ranges (``frames``), the precomputed DICOM JSON (``meta``: zlib then
  base64; or ``metaParts`` documents when it would not fit), the instance's own attribute
  values (``own``) and copies of the matching keys of its study (``sk``) and series (``rk``)
  summaries, so that an instance-level QIDO is one query without joins.
- ``reservation`` (``r|{series}|{sop}``): the claim of a store in progress (status
  "creating"), created with create-only semantics; ``owner`` tells retries of the same store
  apart from a competing one.
- ``series`` (``s|{series}``): the series summary. Matching keys of its latest instance
  (``rk``), that instance's study keys (``lsk``, to recompute the study after deletes), a copy
  of the study's keys (``sk``), the latest watermark and instance id, the instance count.
- ``study`` (``study``): the study summary. Matching keys of its latest instance (``sk``,
  including ``ModalitiesInStudy`` as a list of folded modalities and, for wildcard matching,
  as one joined string ``ModalitiesInStudy_joined``), per-series counts and
  modalities (``series``), totals, raw ``modalities``, and ``dirty`` while copies of changed
  keys are being propagated to its series and instances.
- ``feed`` (``f|{seq}``): a change feed entry (create, update, delete) with its sequence.
- ``metapart`` (``m|{watermark}|{n}``): a slice of DICOM JSON too large for one document.
- ``original`` (``v|{series}|{sop}``): the version of an instance first stored, kept when a
  bulk update rewrote it (the instance document then says ``hasOriginal``); the same fields
  as an instance document, read only for ``msdicom-request-original``. QIDO and the reindex
  read ``instance`` documents only, so they never see it.

Container ``system`` (``DICOM_COSMOS_SYSTEM_CONTAINER``), partition key ``/pk``: counters
(``pk`` "counter": ``watermark``, ``changefeed``; atomic ``incr`` patches), workitems
(``cosmos_workitems``), and extended query tags, their operations, errors and values, and
external metadata (``cosmos_eqt``; every path of ``system`` is indexed, so they need no
declaration here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARTITION_KEY_PATH = "/pk"

INSTANCE = "instance"
RESERVATION = "reservation"
SERIES = "series"
STUDY = "study"
FEED = "feed"
METAPART = "metapart"
ORIGINAL = "original"

STUDY_DOC_ID = "study"
COUNTER_PARTITION = "counter"
WATERMARK_COUNTER = "watermark"
FEED_COUNTER = "changefeed"


def instance_id(series_uid: str, sop_uid: str) -> str:
    return f"i|{series_uid}|{sop_uid}"


def reservation_id(series_uid: str, sop_uid: str) -> str:
    return f"r|{series_uid}|{sop_uid}"


def original_id(series_uid: str, sop_uid: str) -> str:
    return f"v|{series_uid}|{sop_uid}"


def series_id(series_uid: str) -> str:
    return f"s|{series_uid}"


def feed_id(sequence: int) -> str:
    return f"f|{sequence:020d}"


def metapart_id(watermark: int, part: int) -> str:
    return f"m|{watermark}|{part}"


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """A container as the adapter creates it and Bicep declares it."""

    setting: str
    default_name: str
    partition_key: str
    indexing_policy: dict[str, Any]
    unique_keys: list[dict[str, Any]] = field(default_factory=list)


def _asc(*paths: str) -> list[dict[str, str]]:
    return [{"path": p, "order": "ascending"} for p in paths]


def _desc_last(*paths: str) -> list[dict[str, str]]:
    *first, last = paths
    return [*_asc(*first), {"path": last, "order": "descending"}]


# Opt-in indexing: only what queries filter or sort on is indexed, so the large fields (the
# compressed DICOM JSON, frame ranges, per-series maps) cost no index writes.
INDEX_CONTAINER = ContainerSpec(
    setting="DICOM_COSMOS_INDEX_CONTAINER",
    default_name="index",
    partition_key=PARTITION_KEY_PATH,
    indexing_policy={
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [
            {"path": "/kind/?"},
            {"path": "/series/?"},
            {"path": "/sop/?"},
            {"path": "/wm/?"},
            {"path": "/latestWm/?"},
            {"path": "/seq/?"},
            {"path": "/sk/*"},
            {"path": "/rk/*"},
        ],
        "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
        # QIDO sorts each kind newest first, and study-scoped reads list a series oldest
        # first; equality filters followed by ORDER BY need these composite indexes.
        "compositeIndexes": [
            _desc_last("/kind", "/latestWm"),
            _desc_last("/kind", "/wm"),
            _asc("/kind", "/series", "/wm"),
            _asc("/kind", "/seq"),
        ],
    },
)

SYSTEM_CONTAINER = ContainerSpec(
    setting="DICOM_COSMOS_SYSTEM_CONTAINER",
    default_name="system",
    partition_key=PARTITION_KEY_PATH,
    indexing_policy={
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/*"}],
        "excludedPaths": [{"path": '/"_etag"/?'}],
    },
)

CONTAINERS = (INDEX_CONTAINER, SYSTEM_CONTAINER)
