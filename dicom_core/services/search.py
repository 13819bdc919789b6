"""Search (QIDO-RS, PS3.18 10.6): runs a parsed query on the index and builds the results.

The index answers from its summaries and hands back, per match, the precomputed DICOM JSON of
the latest stored instance of the match's study, series or the instance itself; the response
objects are cut from those documents, so no stored file is ever read. Which attributes a
result carries is the conformance statement's rule ("Search response"):

* the default attributes of each level the resource returns (All Series adds the study's,
  All Instances the study's and the series', Study's Instances the series');
* with ``includefield=all`` the "other" attributes of those levels and the aggregates;
* every ``includefield`` attribute (any tag, private ones too, when the instance has it);
* every attribute the query matched on, and the UIDs of the resource URL;
* the aggregates NumberOfStudyRelatedInstances, NumberOfStudyRelatedSeries,
  NumberOfSeriesRelatedInstances and ModalitiesInStudy (a real multi-value) when asked for,
  computed by the index rather than read from an instance.

Study attributes come from the study's latest instance and series attributes from the
series' latest instance, also in series and instance results ("the latest wins").

What a query may match on is decided per search (spec/extended-query-tags.md,
spec/external-metadata.md): the core attributes, the extended query tags whose query status
is enabled, and, when a v2 request asks for external metadata, its tags, which then win over
an extended query tag with the same path (and whose values each result then carries). An
extended tag of a numeric VR supports single value matching only, and fuzzy matching applies
to PN alone; a tag with indexing errors is named back to the client.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from dicom_core.domain.tags import tag_of
from dicom_core.errors import BadRequest
from dicom_core.query.attributes import (
    COMPUTED_TAGS,
    CORE_CATALOG,
    INSTANCE_AVAILABILITY,
    MODALITIES_IN_STUDY,
    NUMBER_OF_SERIES_RELATED_INSTANCES,
    NUMBER_OF_STUDY_RELATED_INSTANCES,
    NUMBER_OF_STUDY_RELATED_SERIES,
    SUMMARY_TAGS,
    AttributeCatalog,
    response_tags,
    source_level,
)
from dicom_core.query.conditions import (
    EXTERNAL_METADATA_PATH,
    FuzzyMatch,
    QueryDescription,
    QueryLevel,
    QueryResource,
    ValueMatch,
)
from dicom_core.query.indexed_values import NUMERIC_VRS
from dicom_core.query.parser import parse_query
from dicom_core.query.results import SearchMatch
from dicom_core.services.extended_query_tags import ExtendedQueryTagService
from dicom_core.services.external_metadata import FIRST_API_VERSION, ExternalMetadataService
from dicom_core.storage.ports import IndexStore

JsonDict = dict[str, Any]

# Every instance of a study (series) carries its UID, so any of its documents will do: the
# result's own one saves loading the study's (series') latest instance just for the UID.
_ENTITY_UIDS = frozenset({tag_of("StudyInstanceUID"), tag_of("SeriesInstanceUID")})
_ONLINE = {"vr": "CS", "Value": ["ONLINE"]}


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """Which attributes a search returns and where each comes from, decided once per query."""

    level: QueryLevel
    tags: tuple[str, ...]
    """Every returned tag, sorted (DICOM JSON objects list attributes in tag order)."""
    sources: dict[str, QueryLevel]
    """Tag -> the level whose latest-instance document supplies it (absent: computed)."""
    metadata_levels: frozenset[QueryLevel]

    @classmethod
    def for_query(cls, query: QueryDescription) -> ResponsePlan:
        level = query.level
        sources: dict[str, QueryLevel] = {}
        tags = sorted(response_tags(query))
        for tag in tags:
            if tag not in COMPUTED_TAGS:
                sources[tag] = level if tag in _ENTITY_UIDS else source_level(tag, level)
        return cls(
            level=level,
            tags=tuple(tags),
            sources=sources,
            metadata_levels=frozenset(sources.values()),
        )

    @property
    def summary_only(self) -> bool:
        """Whether every attribute read from documents is a summary attribute."""
        return set(self.sources) <= SUMMARY_TAGS

    def render(
        self,
        matches: Sequence[SearchMatch],
        cache: SummaryCache | None = None,
        held: Mapping[int, JsonDict] | None = None,
    ) -> list[JsonDict]:
        """The DICOM JSON result objects, in the order of ``matches`` (newest first).

        ``held``: the documents, by watermark, that the index was told were cached and so
        left out of the matches (taken from ``cache`` then, so that no eviction since can
        lose them).
        """
        shared = cache if cache is not None and self.summary_only else None
        local: dict[int, JsonDict] = dict(held or {})

        def document(watermark: int | None, raw: bytes | str | None) -> JsonDict:
            if watermark is None:
                return {}
            found = local.get(watermark)
            if found is None and shared is not None:
                found = shared.get(watermark)
            if found is None:
                if raw is None:
                    return {}
                found = _load(raw, self.summary_only)
                if shared is not None:
                    shared.put(watermark, found)
            local[watermark] = found
            return found

        return [self._render_one(match, document) for match in matches]

    def _render_one(
        self, match: SearchMatch, document: Callable[[int | None, bytes | str | None], JsonDict]
    ) -> JsonDict:
        loaded: dict[QueryLevel, JsonDict] = {}
        for level in self.metadata_levels:
            if level is QueryLevel.STUDY:
                loaded[level] = document(match.study_watermark, match.study_metadata)
            elif level is QueryLevel.SERIES:
                loaded[level] = document(match.series_watermark, match.series_metadata)
            else:
                loaded[level] = document(match.instance_watermark, match.instance_metadata)
        result: JsonDict = {}
        for tag in self.tags:
            source = self.sources.get(tag)
            if source is None:
                result[tag] = _computed(tag, match)
                continue
            element = loaded[source].get(tag)
            if element is not None:
                result[tag] = element
            elif tag == INSTANCE_AVAILABILITY:
                result[tag] = _ONLINE  # everything stored here is online
        return result


def _load(raw: bytes | str, summary: bool) -> JsonDict:
    document = orjson.loads(raw)
    if not isinstance(document, dict):
        return {}
    if summary and len(document) > len(SUMMARY_TAGS):
        return {tag: element for tag, element in document.items() if tag in SUMMARY_TAGS}
    return document


class SummaryCache:
    """Parsed summary documents of recently returned instances, by watermark.

    Why: a study list asks again and again for the same newest studies, and parsing their
    documents is most of a search's work. A watermark names one stored version of an
    instance whose metadata is written once and never changed (a re-store or an update gives
    a new watermark), so an entry cannot go stale; a deleted instance's entry is simply never
    asked for again. Only summary attributes are kept, so entries are small, and the size is
    bounded (least recently used entries go first).
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[int, JsonDict] = OrderedDict()

    def get(self, watermark: int) -> JsonDict | None:
        found = self._entries.get(watermark)
        if found is not None:
            self._entries.move_to_end(watermark)
        return found

    def put(self, watermark: int, document: JsonDict) -> None:
        self._entries[watermark] = document
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


def _count(value: int | None) -> JsonDict:
    return {"vr": "IS", "Value": [value or 0]}


def _multi(values: Iterable[str]) -> JsonDict:
    listed = list(values)
    return {"vr": "CS", "Value": listed} if listed else {"vr": "CS"}


def _computed(tag: str, match: SearchMatch) -> JsonDict:
    if tag == MODALITIES_IN_STUDY:
        return _multi(match.modalities)
    if tag == NUMBER_OF_STUDY_RELATED_INSTANCES:
        return _count(match.study_instances)
    if tag == NUMBER_OF_STUDY_RELATED_SERIES:
        return _count(match.study_series)
    assert tag == NUMBER_OF_SERIES_RELATED_INSTANCES
    return _count(match.series_instances)


@dataclass(frozen=True, slots=True)
class SearchCatalog:
    """What one search may match on, and what it needs to know about the extended tags."""

    attributes: AttributeCatalog
    erroneous: frozenset[str]
    """Paths of the queryable extended query tags with indexing errors."""
    external: ExternalMetadataService | None = None
    """Set when the results carry their studies' external metadata."""


@dataclass(frozen=True, slots=True)
class SearchResults:
    """The results of one search, and the extended query tags it used that have indexing
    errors (their values may be missing from some results)."""

    results: list[JsonDict]
    erroneous_tags: tuple[str, ...] = ()


class SearchService:
    """QIDO-RS searches over the index: parses the query against the catalog of the moment,
    checks what extended tags allow, searches, and adds external metadata when asked."""

    def __init__(
        self,
        index: IndexStore,
        cache: SummaryCache | None = None,
        *,
        query_tags: ExtendedQueryTagService,
        external_metadata: ExternalMetadataService,
    ) -> None:
        self._index = index
        self._cache = cache if cache is not None else SummaryCache()
        self._query_tags = query_tags
        self._external_metadata = external_metadata

    async def search_for(
        self,
        resource: QueryResource,
        parameters: Iterable[tuple[str, str]],
        *,
        partition: int,
        study_uid: str | None = None,
        series_uid: str | None = None,
        api_version: int,
        with_external_metadata: bool = False,
    ) -> SearchResults:
        """One QIDO-RS search in data partition ``partition``: ``parameters`` are the query
        string's pairs (repeated keys kept), ``study_uid`` and ``series_uid`` the (validated)
        UIDs of the resource URL.
        ``with_external_metadata`` is the client's ``msdicom-request-meta`` (v2 only)."""
        catalog = await self.catalog(
            with_external_metadata=with_external_metadata and api_version >= FIRST_API_VERSION
        )
        query = parse_query(
            parameters,
            resource,
            partition=partition,
            study_uid=study_uid,
            series_uid=series_uid,
            catalog=catalog.attributes,
        )
        erroneous = check_extended_conditions(query, catalog)
        results = await self.search(query)
        if catalog.external is not None and results:
            with_external = await catalog.external.add_to(results, partition=partition)
            if with_external is not None:
                results = with_external
        return SearchResults(results, erroneous)

    async def catalog(self, *, with_external_metadata: bool = False) -> SearchCatalog:
        """The core attributes, the queryable extended query tags and, when asked, the
        external metadata tags, which then win over a tag with the same path."""
        tags = await self._query_tags.queryable()
        attributes = [t.attribute for t in tags]
        external = self._external_metadata if with_external_metadata else None
        if external is not None:
            extra = await external.attributes()
            paths = {a.tag for a in extra}
            attributes = [a for a in attributes if a.tag not in paths] + extra
        return SearchCatalog(
            CORE_CATALOG.with_extended(attributes),
            frozenset(t.path for t in tags if t.error_count),
            external,
        )

    async def search(self, query: QueryDescription) -> list[JsonDict]:
        """The matching studies, series or instances as DICOM JSON objects, newest first.

        When the results need summary attributes only, the index is told which latest
        instances' documents the cache holds, so it need not read them again (on Cosmos DB a
        point read each); those are kept aside for this search as the index is told.
        """
        plan = ResponsePlan.for_query(query)
        held: dict[int, JsonDict] = {}
        cached = None
        if plan.summary_only:
            cache = self._cache

            def cached(watermark: int) -> bool:
                found = cache.get(watermark)
                if found is not None:
                    held[watermark] = found
                return found is not None

        matches = await self._index.search(query, metadata=plan.metadata_levels, cached=cached)
        return plan.render(matches, self._cache, held)


def check_extended_conditions(query: QueryDescription, catalog: SearchCatalog) -> tuple[str, ...]:
    """400 for a kind of matching that an extended tag's VR does not allow; else the tags the
    query matches on or returns that have indexing errors, sorted."""
    used: list[str] = []
    for condition in query.conditions:
        attribute = condition.attribute
        if not attribute.extended:
            continue
        if attribute.path[:1] != (EXTERNAL_METADATA_PATH,):  # external metadata has no errors
            used.append(attribute.tag)
        if attribute.vr in NUMERIC_VRS:
            if not isinstance(condition, ValueMatch):
                raise BadRequest(
                    f"The extended query tag {attribute.tag} ({attribute.vr}) supports single"
                    " value matching only."
                )
            try:
                float(condition.key)
            except ValueError as exc:
                raise BadRequest(
                    f"The value '{condition.key}' of {attribute.tag} is not a number."
                ) from exc
        elif isinstance(condition, FuzzyMatch) and attribute.vr != "PN":
            raise BadRequest(f"Fuzzy matching is not supported on {attribute.tag}.")
    return tuple(sorted(t for t in (*used, *query.returned_tags) if t in catalog.erroneous))
