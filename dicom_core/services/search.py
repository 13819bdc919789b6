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
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from dicom_core.query.attributes import (
    COMPUTED_TAGS,
    INSTANCE_AVAILABILITY,
    MODALITIES_IN_STUDY,
    NUMBER_OF_SERIES_RELATED_INSTANCES,
    NUMBER_OF_STUDY_RELATED_INSTANCES,
    NUMBER_OF_STUDY_RELATED_SERIES,
    SUMMARY_TAGS,
    response_tags,
    source_level,
    tag_of,
)
from dicom_core.query.conditions import QueryDescription, QueryLevel
from dicom_core.query.results import SearchMatch
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
        self, matches: Sequence[SearchMatch], cache: SummaryCache | None = None
    ) -> list[JsonDict]:
        """The DICOM JSON result objects, in the order of ``matches`` (newest first)."""
        shared = cache if cache is not None and self.summary_only else None
        local: dict[int, JsonDict] = {}

        def document(watermark: int | None, raw: bytes | str | None) -> JsonDict:
            if watermark is None or raw is None:
                return {}
            found = local.get(watermark)
            if found is None and shared is not None:
                found = shared.get(watermark)
            if found is None:
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


class SearchService:
    """QIDO-RS searches over the index; the web layer hands it parsed queries."""

    def __init__(self, index: IndexStore, cache: SummaryCache | None = None) -> None:
        self._index = index
        self._cache = cache if cache is not None else SummaryCache()

    async def search(self, query: QueryDescription) -> list[JsonDict]:
        """The matching studies, series or instances as DICOM JSON objects, newest first."""
        plan = ResponsePlan.for_query(query)
        matches = await self._index.search(query, metadata=plan.metadata_levels)
        return plan.render(matches, self._cache)
