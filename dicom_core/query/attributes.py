"""The conformance statement's QIDO-RS tables, as data (spec: "Search (QIDO-RS)").

* Searchable attributes and the level whose entity holds each value
  (``CORE_CATALOG``; which resource may search which level is ``QueryResource.levels``).
* The attributes returned by default per level and the extra ones ``includefield=all`` adds
  (``DEFAULT_TAGS``, ``OTHER_TAGS``), plus the aggregates the service computes rather than
  reads from an instance (``COMPUTED_TAGS``).
* Attribute IDs: a keyword of the DICOM dictionary or ``{group}{element}`` in hex
  (PS3.18 6.7.1.1.1, the two encodings the service supports), parsed by
  ``dicom_core.domain.tags``.

The statement lists ReferringPhysicianName as "(0009, 0090)"; that is a typo for (0008,0090),
the tag of the keyword, which is what the service returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydicom.datadict import keyword_for_tag

from dicom_core.domain.tags import tag_of
from dicom_core.query.conditions import (
    QueryAttribute,
    QueryDescription,
    QueryLevel,
    TextMatching,
)

STUDY, SERIES, INSTANCE = QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.INSTANCE

# VRs compared as exact strings: identifiers and canonical date/time keys. Numbers too, until
# extended query tags bring numeric matching.
_EXACT_VRS = frozenset({"UI", "DA", "TM", "DT", "IS", "DS", "SL", "SS", "UL", "US", "FL", "FD"})


def matching_for_vr(vr: str) -> TextMatching:
    """PN compares without case or accents, other strings without case (statement notes)."""
    if vr == "PN":
        return TextMatching.PERSON_NAME
    if vr in _EXACT_VRS:
        return TextMatching.EXACT
    return TextMatching.CASE_INSENSITIVE


def describe_tag(tag: str) -> str:
    """``PatientName (00100010)`` for messages; the bare tag when it has no keyword."""
    keyword = keyword_for_tag(int(tag, 16))
    return f"{keyword} ({tag})" if keyword else tag


def _core(keyword: str, vr: str, level: QueryLevel, *, multiple: bool = False) -> QueryAttribute:
    return QueryAttribute(
        tag=tag_of(keyword),
        keyword=keyword,
        vr=vr,
        level=level,
        matching=matching_for_vr(vr),
        multiple=multiple,
    )


CORE_ATTRIBUTES: tuple[QueryAttribute, ...] = (
    _core("StudyInstanceUID", "UI", STUDY),
    _core("PatientName", "PN", STUDY),
    _core("PatientID", "LO", STUDY),
    _core("PatientBirthDate", "DA", STUDY),
    _core("AccessionNumber", "SH", STUDY),
    _core("ReferringPhysicianName", "PN", STUDY),
    _core("StudyDate", "DA", STUDY),
    _core("StudyDescription", "LO", STUDY),
    _core("ModalitiesInStudy", "CS", STUDY, multiple=True),
    _core("SeriesInstanceUID", "UI", SERIES),
    _core("Modality", "CS", SERIES),
    _core("PerformedProcedureStepStartDate", "DA", SERIES),
    _core("ManufacturerModelName", "LO", SERIES),
    _core("SOPInstanceUID", "UI", INSTANCE),
)


@dataclass(frozen=True)
class AttributeCatalog:
    """The attributes a search may test: the core ones, later plus extended query tags."""

    attributes: tuple[QueryAttribute, ...]
    _by_tag: Mapping[str, QueryAttribute] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_tag", {a.tag: a for a in self.attributes})

    def find(self, tag: str) -> QueryAttribute | None:
        return self._by_tag.get(tag)

    def with_extended(self, extra: Iterable[QueryAttribute]) -> AttributeCatalog:
        """A catalog with extended query tags added (core attributes keep their entries)."""
        added = [a for a in extra if a.tag not in self._by_tag]
        return AttributeCatalog((*self.attributes, *added))

    def searchable_at(self, levels: frozenset[QueryLevel]) -> list[QueryAttribute]:
        return [a for a in self.attributes if a.level in levels]


CORE_CATALOG = AttributeCatalog(CORE_ATTRIBUTES)


def _tags(*keywords: str) -> tuple[str, ...]:
    return tuple(tag_of(k) for k in keywords)


DEFAULT_TAGS: Mapping[QueryLevel, tuple[str, ...]] = {
    STUDY: _tags(
        "StudyDate",
        "AccessionNumber",
        "StudyDescription",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyInstanceUID",
    ),
    SERIES: _tags(
        "Modality",
        "ManufacturerModelName",
        "SeriesInstanceUID",
        "PerformedProcedureStepStartDate",
    ),
    INSTANCE: _tags("SOPInstanceUID"),
}

OTHER_TAGS: Mapping[QueryLevel, tuple[str, ...]] = {
    STUDY: _tags(
        "SpecificCharacterSet",
        "StudyTime",
        "InstanceAvailability",
        "TimezoneOffsetFromUTC",
        "AnatomicRegionsInStudyCodeSequence",
        "ProcedureCodeSequence",
        "NameOfPhysiciansReadingStudy",
        "AdmittingDiagnosesDescription",
        "ReferencedStudySequence",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "Occupation",
        "AdditionalPatientHistory",
        "PatientSex",
        "StudyID",
    ),
    SERIES: _tags(
        "SpecificCharacterSet",
        "TimezoneOffsetFromUTC",
        "SeriesNumber",
        "Laterality",
        "SeriesDate",
        "SeriesTime",
        "SeriesDescription",
        "PerformedProcedureStepStartTime",
        "RequestAttributesSequence",
    ),
    INSTANCE: _tags(
        "SpecificCharacterSet",
        "SOPClassUID",
        "InstanceAvailability",
        "TimezoneOffsetFromUTC",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
    ),
}

MODALITIES_IN_STUDY = tag_of("ModalitiesInStudy")
NUMBER_OF_STUDY_RELATED_SERIES = tag_of("NumberOfStudyRelatedSeries")
NUMBER_OF_STUDY_RELATED_INSTANCES = tag_of("NumberOfStudyRelatedInstances")
NUMBER_OF_SERIES_RELATED_INSTANCES = tag_of("NumberOfSeriesRelatedInstances")
INSTANCE_AVAILABILITY = tag_of("InstanceAvailability")

COMPUTED_TAGS: Mapping[str, QueryLevel] = {
    MODALITIES_IN_STUDY: STUDY,
    NUMBER_OF_STUDY_RELATED_SERIES: STUDY,
    NUMBER_OF_STUDY_RELATED_INSTANCES: STUDY,
    NUMBER_OF_SERIES_RELATED_INSTANCES: SERIES,
}
"""Aggregates over a study or series, computed by the index, never read from an instance."""


SUMMARY_TAGS: frozenset[str] = frozenset(
    tag for table in (DEFAULT_TAGS, OTHER_TAGS) for tags in table.values() for tag in tags
)
"""Every attribute a result may carry without a named ``includefield``: an index may keep a
per-instance document of just these, so that the common searches parse small documents."""


def _tag_levels() -> dict[str, frozenset[QueryLevel]]:
    levels: dict[str, set[QueryLevel]] = {}
    for table in (DEFAULT_TAGS, OTHER_TAGS):
        for level, tags in table.items():
            for tag in tags:
                levels.setdefault(tag, set()).add(level)
    for attribute in CORE_ATTRIBUTES:
        levels.setdefault(attribute.tag, set()).add(attribute.level)
    for tag, level in COMPUTED_TAGS.items():
        levels.setdefault(tag, set()).add(level)
    return {tag: frozenset(found) for tag, found in levels.items()}


TAG_LEVELS: Mapping[str, frozenset[QueryLevel]] = _tag_levels()
"""The levels an attribute belongs to, for the attributes these tables name."""


def source_level(tag: str, result_level: QueryLevel) -> QueryLevel:
    """Whose latest instance supplies ``tag`` in a result at ``result_level``.

    A study attribute in a series or instance result comes from the study's latest instance
    (the statement: study and series attributes are those of the latest stored instance); an
    attribute of the result's own level, or of a finer one, or one the tables do not name (a
    private tag, say), comes from the result entity's own latest instance.
    """
    levels = TAG_LEVELS.get(tag)
    if not levels:
        return result_level
    coarser = [level for level in levels if level <= result_level]
    return max(coarser) if coarser else result_level


def response_tags(query: QueryDescription) -> frozenset[str]:
    """Every attribute the results of ``query`` carry (statement, "Search response").

    The default attributes of each level the resource returns; with ``includefield=all`` the
    other attributes and the aggregates of those levels; every ``includefield`` attribute;
    every attribute the query matches on (the URL's UIDs among them). An aggregate of a level
    finer than the results (a series count in a study result) is left out.
    """
    levels = query.resource.levels
    wanted: set[str] = set()
    for level in levels:
        wanted.update(DEFAULT_TAGS[level])
        if query.include.all:
            wanted.update(OTHER_TAGS[level])
            wanted.update(tag for tag, at in COMPUTED_TAGS.items() if at is level)
    wanted.update(query.include.tags)
    wanted.update(condition.attribute.tag for condition in query.conditions)
    wanted.update(query.returned_tags)
    return frozenset(tag for tag in wanted if COMPUTED_TAGS.get(tag, query.level) <= query.level)


def document_tags(query: QueryDescription) -> frozenset[str]:
    """The attributes of ``response_tags`` read from stored instances (not computed)."""
    return frozenset(tag for tag in response_tags(query) if tag not in COMPUTED_TAGS)
