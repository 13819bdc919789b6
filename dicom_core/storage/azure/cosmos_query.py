"""QIDO-RS on Cosmos DB: a ``QueryDescription`` compiled to one parameterised Cosmos SQL query.

The meaning of every condition is ``dicom_core.query.matching``; this module only translates
it (the property tests hold the translation to that reference, as they do the SQLite one).
Request values only ever travel as query parameters; the query text is assembled from this
module's fragments and the catalog's keywords, which are checked to be plain identifiers.

Each level reads one document kind of the data partition's container (``index`` for
Microsoft.Default, else ``partitioned`` with ``c.dp`` and the prefix key ``[dp]``; see
``cosmos_placement``): study summaries, series summaries, or instances. A series document carries
a copy of its study's matching keys and an instance document copies of its study's and series'
keys, so a search never joins: ``c.sk.<Keyword>`` are study keys (including the list
``ModalitiesInStudy``), ``c.rk.<Keyword>`` series keys, and the UIDs are ``c.pk`` (the study),
``c.series`` and ``c.sop``. Keys were case-folded (and for PN accent-stripped) at store time,
because Cosmos DB has no case-insensitive collation, so comparisons here are binary.

Paging: ``SELECT TOP (offset + limit) ... ORDER BY <latest watermark> DESC``, read in pages
with continuation tokens and with a projection of a few small fields; the first ``offset``
rows are skipped here. (The Cosmos DB server in our tests has no OFFSET/LIMIT; in real Cosmos
OFFSET charges for the rows it skips anyway.) Aggregates (counts, modalities) and the DICOM JSON
of the latest instances are then point reads for the page's rows only, run concurrently; the
JSON of a version the caller has cached is not read again (``cached``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dicom_core.query.conditions import (
    Condition,
    FuzzyMatch,
    ListMatch,
    QueryAttribute,
    QueryDescription,
    QueryLevel,
    RangeMatch,
    UnsupportedCondition,
    ValueMatch,
    WildcardMatch,
)
from dicom_core.query.results import SearchMatch
from dicom_core.storage.azure.cosmos_docs import JOINED_SUFFIX
from dicom_core.storage.azure.cosmos_io import MetadataGone, nothing, query_items, read_item
from dicom_core.storage.azure.cosmos_placement import PartitionKeyValue, Placement, placement_of
from dicom_core.storage.azure.cosmos_schema import (
    INSTANCE,
    SERIES,
    STUDY,
    STUDY_DOC_ID,
    series_id,
)
from dicom_core.storage.azure.cosmos_staged_versions import (
    NEXT,
    read_commit,
    visible,
    visible_document,
)

Doc = dict[str, Any]
Unpack = Callable[[str, Mapping[str, Any]], Awaitable[bytes]]

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_REGEX_SPECIAL = frozenset("\\^$.|?*+()[]{}")
# TOP takes a 32-bit integer; no index holds more rows than this.
MAX_TOP = 2**31 - 1
_PAGE_SIZE = 1000
_READ_CONCURRENCY = 32

_UID_FIELDS = {
    "StudyInstanceUID": "c.pk",
    "SeriesInstanceUID": "c.series",
    "SOPInstanceUID": "c.sop",
}
_KIND = {QueryLevel.STUDY: STUDY, QueryLevel.SERIES: SERIES, QueryLevel.INSTANCE: INSTANCE}
_PROJECTION = {
    QueryLevel.STUDY: "c.pk, c.latestWm, c.latestId, c.numSeries, c.numInstances, c.modalities",
    QueryLevel.SERIES: "c.pk, c.series, c.latestWm, c.latestId, c.count",
    # ``next``: a staged version, present only while a large study's bulk update commits.
    QueryLevel.INSTANCE: "c.pk, c.series, c.sop, c.id, c.wm, c.next",
}
_ORDER = {
    QueryLevel.STUDY: "c.latestWm",
    QueryLevel.SERIES: "c.latestWm",
    QueryLevel.INSTANCE: "c.wm",
}


@dataclass(frozen=True, slots=True)
class CompiledSearch:
    sql: str
    parameters: dict[str, object]
    partition: PartitionKeyValue | None
    """The study's partition key when the resource URL names the study (a single-partition
    query); else the data partition's prefix outside Microsoft.Default (``cosmos_placement``),
    or None (every partition of the ``index`` container)."""


class Parameters:
    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def add(self, value: object) -> str:
        name = f"@p{len(self.values)}"
        self.values[name] = value
        return name


def regex_for(pattern: str) -> str:
    """A DICOM wildcard pattern (``*`` any run, ``?`` one character) as a regex body.

    Only the characters special in both PCRE (real Cosmos) and JavaScript (the test server)
    regexes are escaped, so the same text means the same in both. A ``?`` (``.``) is one
    UTF-16 unit on the test server, so a character beyond the BMP takes two there
    (docs/azure-backend.md, "Matching keys").
    """
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def field_for(attribute: QueryAttribute) -> str:
    """Where a document of any searchable kind holds the attribute's matching key."""
    if attribute.extended:
        raise UnsupportedCondition(f"extended query tag {attribute.tag} is not indexed yet")
    uid_field = _UID_FIELDS.get(attribute.keyword)
    if uid_field is not None:
        return uid_field
    if not _IDENTIFIER.fullmatch(attribute.keyword):
        raise UnsupportedCondition(f"{attribute.keyword!r} is not a plain keyword")
    if attribute.level is QueryLevel.STUDY:
        return f"c.sk.{attribute.keyword}"
    if attribute.level is QueryLevel.SERIES:
        return f"c.rk.{attribute.keyword}"
    raise UnsupportedCondition(f"{attribute.keyword} is not kept in the Cosmos DB index")


def predicate(condition: Condition, field: str, params: Parameters) -> str:
    """The Cosmos SQL test of one key against one condition (see ``query/conditions.py``)."""
    if isinstance(condition, ValueMatch):
        return f"{field} = {params.add(condition.key)}"
    if isinstance(condition, ListMatch):
        names = ", ".join(params.add(key) for key in condition.keys)
        return f"{field} IN ({names})"
    if isinstance(condition, RangeMatch):
        # Missing keys compare as undefined (false); empty ones are never stored.
        tests = [f"{field} != ''"]
        if condition.lower is not None:
            tests.append(f"{field} >= {params.add(condition.lower)}")
        if condition.upper is not None:
            tests.append(f"{field} <= {params.add(condition.upper)}")
        return "(" + " AND ".join(tests) + ")"
    if isinstance(condition, WildcardMatch):
        pattern = condition.pattern
        body = pattern.rstrip("*")
        if body and not any(ch in "*?" for ch in body) and body != pattern:
            # prefix*: STARTSWITH can use the index, a regex cannot.
            return f"STARTSWITH({field}, {params.add(body)})"
        if not any(ch in "*?" for ch in pattern):
            return f"{field} = {params.add(pattern)}"
        return f"RegexMatch({field}, {params.add('^' + regex_for(pattern) + '$')}, 's')"
    if isinstance(condition, FuzzyMatch):
        # Each word at the start of the key or right after one of its single spaces.
        tests = []
        for word in condition.words:
            if any(ch in "*?" for ch in word):
                regex = "(^| )" + regex_for(word)
                tests.append(f"RegexMatch({field}, {params.add(regex)}, 's')")
            else:
                tests.append(
                    f"(STARTSWITH({field}, {params.add(word)})"
                    f" OR CONTAINS({field}, {params.add(' ' + word)}))"
                )
        return "(" + " AND ".join(tests) + ")"
    raise UnsupportedCondition(f"unknown condition {condition!r}")


def element_regex_for(pattern: str) -> str:
    """A wildcard pattern matching one whole element of a joined list key (``joined``)."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("[^\\\\]*")
        elif ch == "?":
            out.append("[^\\\\]")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "\\\\" + "".join(out) + "\\\\"


def _list_condition(condition: Condition, field: str, params: Parameters) -> str:
    """A condition on a list key (ModalitiesInStudy): any element may satisfy it.

    ARRAY_CONTAINS for values and UID-style lists; one RegexMatch on the joined form for
    wildcards. (Real Cosmos could use ``EXISTS (SELECT VALUE m FROM m IN list ...)``; the test
    server evaluates such subqueries on every document and fails where the list is missing.)
    """
    if isinstance(condition, ValueMatch):
        return f"ARRAY_CONTAINS({field}, {params.add(condition.key)})"
    if isinstance(condition, ListMatch):
        tests = [f"ARRAY_CONTAINS({field}, {params.add(key)})" for key in condition.keys]
        return "(" + " OR ".join(tests) + ")"
    if isinstance(condition, WildcardMatch):
        regex = element_regex_for(condition.pattern)
        return f"RegexMatch({field}{JOINED_SUFFIX}, {params.add(regex)}, 's')"
    raise UnsupportedCondition(
        f"{condition.attribute.keyword} supports value, list and wildcard matching only"
    )


def _condition(condition: Condition, params: Parameters) -> str:
    attribute = condition.attribute
    field = field_for(attribute)
    if attribute.multiple:
        return _list_condition(condition, field, params)
    return predicate(condition, field, params)


def compile_search(
    query: QueryDescription, restrictions: Sequence[tuple[str, Sequence[str]]] = ()
) -> CompiledSearch:
    """One query returning the identifiers of the first ``offset + limit`` matches.

    ``restrictions``: (field, UIDs) pairs the matches' field must be one of; how conditions
    on extended query tags, resolved beforehand against their value documents, take part.
    """
    level = query.level
    params = Parameters()
    clauses = [f"c.kind = {params.add(_KIND[level])}"]
    placement = placement_of(query.partition)
    partition: PartitionKeyValue | None = placement.scope()
    # The test server ignores the partition-key header on queries; real Cosmos scopes by it.
    # Naming the partition in the text too keeps both right.
    in_partition = placement.where(params.values)
    if in_partition is not None:
        clauses.append(in_partition)
    if query.study_uid is not None:
        partition = placement.key(query.study_uid)
        clauses.append(f"c.pk = {params.add(query.study_uid)}")
    clauses.extend(_condition(condition, params) for condition in query.conditions)
    clauses.extend(
        f"ARRAY_CONTAINS({params.add(list(uids))}, {field})" for field, uids in restrictions
    )
    top = params.add(min(query.offset + query.limit, MAX_TOP))
    sql = (
        f"SELECT TOP {top} {_PROJECTION[level]} FROM c WHERE {' AND '.join(clauses)}"
        f" ORDER BY {_ORDER[level]} DESC"
    )
    return CompiledSearch(sql=sql, parameters=params.values, partition=partition)


#: Rounds of re-reading a match's summaries while their latest instances keep vanishing.
_VANISHED_ATTEMPTS = 3


async def run_search(
    container: Any,
    query: QueryDescription,
    metadata: frozenset[QueryLevel],
    unpack: Unpack,
    restrictions: Sequence[tuple[str, Sequence[str]]] = (),
    cached: Callable[[int], bool] | None = None,
) -> list[SearchMatch]:
    """The page of matches, newest first, with aggregates and the requested metadata.

    Each latest instance's DICOM JSON is a point read of its own, unless ``cached`` says
    the caller holds that version already (``IndexStore.search``): then it is left out.
    """
    for wanted in metadata:
        if wanted > query.level:
            raise ValueError(f"a {query.level.label} search has no {wanted.label} metadata")
    compiled = compile_search(query, restrictions)
    placement = placement_of(query.partition)
    rows = await _visible_rows(container, placement, await _rows(container, compiled, query.offset))
    semaphore = asyncio.Semaphore(_READ_CONCURRENCY)

    async def point_read(item: str, pk: str) -> Doc | None:
        async with semaphore:
            key = placement.key(pk)
            doc = await read_item(container, item, key)
            # The commit document is read again here, not taken from the rows' reads: a
            # summary read after a flip names the new version, and so must its JSON.
            return await visible_document(container, key, doc)

    level = query.level
    studies: dict[str, Doc | None] = {}
    series: dict[tuple[str, str], Doc | None] = {}
    if level is QueryLevel.STUDY:
        studies = {str(row["pk"]): row for row in rows}
    else:
        pks = sorted({str(row["pk"]) for row in rows})
        found = await asyncio.gather(*(point_read(STUDY_DOC_ID, pk) for pk in pks))
        studies = dict(zip(pks, found, strict=True))
        if level is QueryLevel.SERIES:
            series = {(str(row["pk"]), str(row["series"])): row for row in rows}
        else:
            pairs = sorted({(str(row["pk"]), str(row["series"])) for row in rows})
            found_series = await asyncio.gather(
                *(point_read(series_id(uid), pk) for pk, uid in pairs)
            )
            series = dict(zip(pairs, found_series, strict=True))

    async def latest_metadata(
        pk: str, item: str | None, watermark: int, *, own: bool = False
    ) -> tuple[int, bytes] | None:
        """The JSON of ``item`` with the watermark of the version read, which is what the
        caller caches it under: a write between the summary's read and this one makes it
        differ from ``watermark``, and the JSON must not be kept as that version's.
        ``own``: the item is the matched instance itself, not a summary's latest."""
        if item is None or (cached is not None and cached(watermark)):
            return None
        doc = await point_read(item, pk)
        if doc is None:
            raise _Vanished(own)  # deleted since it was named
        async with semaphore:
            try:
                return int(doc["wm"]), await unpack(pk, doc)
            except MetadataGone:
                raise _Vanished(own) from None

    async def build(row: Doc) -> SearchMatch | None:
        pk = str(row["pk"])
        study = studies.get(pk)
        series_doc = None if level is QueryLevel.STUDY else series.get((pk, str(row["series"])))
        for _ in range(_VANISHED_ATTEMPTS):
            if study is None or (level is not QueryLevel.STUDY and series_doc is None):
                return None  # deleted between the query and the point read
            try:
                study_meta, series_meta, instance_meta = await asyncio.gather(
                    latest_metadata(pk, str(study["latestId"]), int(study["latestWm"]))
                    if QueryLevel.STUDY in metadata
                    else nothing(),
                    latest_metadata(pk, str(series_doc["latestId"]), int(series_doc["latestWm"]))
                    if series_doc is not None and QueryLevel.SERIES in metadata
                    else nothing(),
                    latest_metadata(pk, str(row["id"]), int(row["wm"]), own=True)
                    if level is QueryLevel.INSTANCE and QueryLevel.INSTANCE in metadata
                    else nothing(),
                )
                break
            except _Vanished as vanished:
                if vanished.own:
                    return None  # the matched instance itself was deleted meanwhile
                # A summary named a latest instance deleted since (a delete racing this
                # search): the study or series still exists, so read its summaries again
                # and take the attributes of its latest instance now. Never a match
                # without its attributes (which answered an empty object).
                study = await point_read(STUDY_DOC_ID, pk)
                if level is not QueryLevel.STUDY:
                    series_doc = await point_read(series_id(str(row["series"])), pk)
        else:
            return None  # still changing under this search: left out of this page
        assert study is not None
        study_watermark = study_meta[0] if study_meta else int(study["latestWm"])
        series_watermark = (
            series_meta[0]
            if series_meta
            else int(series_doc["latestWm"])
            if series_doc is not None
            else None
        )
        instance_watermark = (
            instance_meta[0]
            if instance_meta
            else int(row["wm"])
            if level is QueryLevel.INSTANCE
            else None
        )
        return SearchMatch(
            study_uid=pk,
            series_uid=None if level is QueryLevel.STUDY else str(row["series"]),
            sop_uid=str(row["sop"]) if level is QueryLevel.INSTANCE else None,
            study_watermark=study_watermark,
            series_watermark=series_watermark,
            instance_watermark=instance_watermark,
            study_series=int(study.get("numSeries") or 0),
            study_instances=int(study.get("numInstances") or 0),
            modalities=tuple(study.get("modalities") or ()),
            series_instances=int(series_doc["count"]) if series_doc is not None else None,
            study_metadata=study_meta[1] if study_meta else None,
            series_metadata=series_meta[1] if series_meta else None,
            instance_metadata=instance_meta[1] if instance_meta else None,
        )

    built = await asyncio.gather(*(build(row) for row in rows))
    return [match for match in built if match is not None]


class _Vanished(Exception):
    """A document the search named was deleted before it could be read; ``own`` when it
    is the matched instance itself rather than a summary's latest instance."""

    def __init__(self, own: bool) -> None:
        super().__init__(own)
        self.own = own


async def _visible_rows(container: Any, placement: Placement, rows: list[Doc]) -> list[Doc]:
    """Instance rows as readers see them: a row with a staged version whose study's commit
    has flipped is that version (watermark, identity), read through the commit document
    (once per study)."""
    staged = sorted({str(row["pk"]) for row in rows if row.get(NEXT)})
    if not staged:
        return rows
    found = await asyncio.gather(*(read_commit(container, placement.key(pk)) for pk in staged))
    commits = dict(zip(staged, found, strict=True))
    return [visible(row, commits[str(row["pk"])]) if row.get(NEXT) else row for row in rows]


async def _rows(container: Any, compiled: CompiledSearch, offset: int) -> list[Doc]:
    """The query's rows after the first ``offset``, read page by page."""
    rows = await query_items(
        container,
        compiled.sql,
        compiled.parameters,
        partition=compiled.partition,
        page_size=_PAGE_SIZE,
    )
    return rows[offset:]
