"""UPS-RS search (conformance statement, "Search Workitems"): the attribute catalog, the query
string parser and the matcher for workitem datasets.

The rules are QIDO's (``parser`` for values and ranges, ``matching`` for what a condition
means: PN folding, case-insensitive strings, DT keys, ``*``/``?`` wildcards, fuzzy prefix
words), applied to the workitem attributes the spec lists, including the attributes inside
sequences it names (``ReferencedRequestSequence.AccessionNumber``, or by tags
``0040A370.00080050``): a sequence attribute matches when any item's value does. What
differs from QIDO: ``limit`` goes up to 4000, and only the listed attributes are searchable.
``offset`` has QIDO's maximum (``parser.MAX_OFFSET``), for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dicom_core.domain.tags import parse_attribute_id
from dicom_core.errors import BadRequest
from dicom_core.query.conditions import (
    DEFAULT_LIMIT,
    Condition,
    IncludeFields,
    QueryAttribute,
    QueryLevel,
    TextMatching,
)
from dicom_core.query.matching import index_key, matches
from dicom_core.query.parser import (
    FUZZYMATCHING,
    INCLUDEFIELD,
    LIMIT,
    MAX_OFFSET,
    OFFSET,
    parse_condition,
    parse_fuzzy,
    parse_includes,
    parse_int,
)

MAX_WORKITEM_LIMIT = 4000


def _attribute(
    path: tuple[str, ...], keyword: str, vr: str, matching: TextMatching
) -> QueryAttribute:
    # ``level`` has no meaning for workitems; INSTANCE keeps the dataclass complete.
    return QueryAttribute(
        tag=path[-1],
        keyword=keyword,
        vr=vr,
        level=QueryLevel.INSTANCE,
        matching=matching,
        path=path,
    )


_CI = TextMatching.CASE_INSENSITIVE
WORKITEM_ATTRIBUTES: dict[tuple[str, ...], QueryAttribute] = {
    a.path: a
    for a in (
        _attribute(("00100010",), "PatientName", "PN", TextMatching.PERSON_NAME),
        _attribute(("00100020",), "PatientID", "LO", _CI),
        _attribute(
            ("0040A370", "00080050"), "ReferencedRequestSequence.AccessionNumber", "SH", _CI
        ),
        _attribute(
            ("0040A370", "00401001"),
            "ReferencedRequestSequence.RequestedProcedureID",
            "SH",
            _CI,
        ),
        _attribute(("00404005",), "ScheduledProcedureStepStartDateTime", "DT", TextMatching.EXACT),
        _attribute(
            ("00404025", "00080100"), "ScheduledStationNameCodeSequence.CodeValue", "SH", _CI
        ),
        _attribute(
            ("00404026", "00080100"), "ScheduledStationClassCodeSequence.CodeValue", "SH", _CI
        ),
        _attribute(
            ("00404027", "00080100"),
            "ScheduledStationGeographicLocationCodeSequence.CodeValue",
            "SH",
            _CI,
        ),
        _attribute(("00741000",), "ProcedureStepState", "CS", _CI),
        _attribute(("0020000D",), "StudyInstanceUID", "UI", TextMatching.EXACT),
    )
}

# Returned by every search besides the includefield ones, as Azure returns them
# (``WorkitemQueryResponseBuilder.RequiredReturnTags``, microsoft/dicom-server): what a
# worklist client lists, the patient's demographics included, so that it need not ask for
# them with includefield; and the top-level elements of the searchable attributes.
DEFAULT_RETURN_TAGS: frozenset[str] = frozenset(
    {path[0] for path in WORKITEM_ATTRIBUTES}
    | {
        "00080005",  # SpecificCharacterSet
        "00080016",  # SOPClassUID
        "00080018",  # SOPInstanceUID
        "00741200",  # ScheduledProcedureStepPriority
        "00741204",  # ProcedureStepLabel
        "00741202",  # WorklistLabel
        "00741210",  # ScheduledProcessingParametersSequence
        "00404025",  # ScheduledStationNameCodeSequence
        "00404026",  # ScheduledStationClassCodeSequence
        "00404027",  # ScheduledStationGeographicLocationCodeSequence
        "00404034",  # ScheduledHumanPerformersSequence
        "00404005",  # ScheduledProcedureStepStartDateTime
        "00404018",  # ScheduledWorkitemCodeSequence
        "00404041",  # InputReadinessState
        "00404021",  # InputInformationSequence
        "0020000D",  # StudyInstanceUID
        "00100010",  # PatientName
        "00100020",  # PatientID
        "00100021",  # IssuerOfPatientID
        "00100024",  # IssuerOfPatientIDQualifiersSequence
        "00101002",  # OtherPatientIDsSequence
        "00100030",  # PatientBirthDate
        "00100040",  # PatientSex
        "00380010",  # AdmissionID
        "00380014",  # IssuerOfAdmissionIDSequence
        "00081080",  # AdmittingDiagnosesDescription
        "00081084",  # AdmittingDiagnosesCodeSequence
        "0040A370",  # ReferencedRequestSequence
        "00102000",  # MedicalAlerts
        "001021C0",  # PregnancyStatus
        "00380050",  # SpecialNeeds
        "00741000",  # ProcedureStepState
        "00741002",  # ProcedureStepProgressInformationSequence
    }
)


@dataclass(frozen=True, slots=True)
class WorkitemQuery:
    partition: int = field(kw_only=True)
    """The data partition searched; no workitem of another partition matches."""
    conditions: tuple[Condition, ...] = ()
    include: IncludeFields = IncludeFields()
    fuzzy: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _path(key: str) -> tuple[str, ...]:
    parts = key.split(".")
    tags = tuple(parse_attribute_id(part) for part in parts)
    if any(tag is None for tag in tags):
        raise BadRequest(
            f"Unknown query parameter '{key}': it is neither a DICOM attribute keyword or tag"
            " (or a '.'-separated path of them) nor one of includefield, limit, offset,"
            " fuzzymatching."
        )
    return tuple(str(tag) for tag in tags)


def parse_workitem_query(items: Iterable[tuple[str, str]], *, partition: int) -> WorkitemQuery:
    """Parse ``GET ../workitems?...`` in data partition ``partition``; a 400 names any
    parameter that cannot be honoured."""
    includes: list[tuple[str, str]] = []
    singles: dict[str, tuple[str, str]] = {}
    filters: list[tuple[str, str, QueryAttribute]] = []
    seen: set[tuple[str, ...]] = set()
    for key, value in items:
        name = key.strip()
        lowered = name.lower()
        if lowered == INCLUDEFIELD:
            includes.append((name, value))
            continue
        if lowered in (LIMIT, OFFSET, FUZZYMATCHING):
            if lowered in singles:
                raise BadRequest(f"The query parameter '{lowered}' may be given only once.")
            singles[lowered] = (name, value)
            continue
        path = _path(name)
        attribute = WORKITEM_ATTRIBUTES.get(path)
        if attribute is None:
            searchable = ", ".join(a.keyword for a in WORKITEM_ATTRIBUTES.values())
            raise BadRequest(
                f"The attribute '{name}' is not searchable for workitems; searchable: {searchable}."
            )
        if path in seen:
            raise BadRequest(f"The attribute '{name}' is given more than once.")
        seen.add(path)
        filters.append((name, value, attribute))
    fuzzy = parse_fuzzy(singles.get(FUZZYMATCHING))
    conditions = []
    for name, value, attribute in filters:
        condition = parse_condition(attribute, name, value, fuzzy)
        if condition is not None:
            conditions.append(condition)
    return WorkitemQuery(
        partition=partition,
        conditions=tuple(conditions),
        include=parse_includes(includes),
        fuzzy=fuzzy,
        limit=parse_int(singles.get(LIMIT), DEFAULT_LIMIT, minimum=1, maximum=MAX_WORKITEM_LIMIT),
        offset=parse_int(singles.get(OFFSET), 0, minimum=0, maximum=MAX_OFFSET),
    )


def _strings(element: Any) -> list[str]:
    if not isinstance(element, Mapping):
        return []
    found: list[str] = []
    for value in element.get("Value") or []:
        if isinstance(value, Mapping):
            value = value.get("Alphabetic")
        if value is not None and str(value).strip():
            found.append(str(value).strip())
    return found


def attribute_values(dataset: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    """The values at ``path`` of a DICOM JSON dataset, through every item of its sequences."""
    head, *rest = path
    element = dataset.get(head)
    if not rest:
        return _strings(element)
    values: list[str] = []
    if isinstance(element, Mapping):
        for item in element.get("Value") or []:
            if isinstance(item, Mapping):
                values.extend(attribute_values(item, tuple(rest)))
    return values


def workitem_matches(query: WorkitemQuery, dataset: Mapping[str, Any]) -> bool:
    """Whether a workitem satisfies every condition of the query (the conditions are ANDed)."""
    for condition in query.conditions:
        values = attribute_values(dataset, condition.attribute.path)
        if not values or not matches(condition, values):
            return False
    return True


def path_name(path: tuple[str, ...]) -> str:
    """A catalog path as the indexes name it: ``0040A370.00080050``."""
    return ".".join(path)


def workitem_keys(dataset: Mapping[str, Any]) -> dict[str, list[str]]:
    """The matching keys of every searchable attribute of a workitem, by path name.

    What the indexes store so that they can compile conditions (keys per ``matching.index_key``:
    PN folded, other strings case-folded, DT canonical); a value that has no key (a malformed
    date-time) is left out, as it could never match.
    """
    keys: dict[str, list[str]] = {}
    for path, attribute in WORKITEM_ATTRIBUTES.items():
        found: list[str] = []
        for value in attribute_values(dataset, path):
            try:
                key = index_key(attribute, value)
            except ValueError:
                continue
            if key and key not in found:
                found.append(key)
        if found:
            keys[path_name(path)] = found
    return keys
