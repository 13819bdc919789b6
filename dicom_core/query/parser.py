"""QIDO-RS query strings to ``QueryDescription``s (conformance statement, "Search (QIDO-RS)").

The parser is where every rule about what a client may ask is enforced, so that compilers
never see a bad request: keys are attribute IDs (keyword or 8 hex digits) searchable at the
resource's levels, or one of ``includefield`` (any number, comma lists too), ``limit``
(1 to 200, default 100), ``offset`` (0 to ``MAX_OFFSET``) and ``fuzzymatching`` (true or
false), each of the last three at most once. Anything else is a 400 whose message names the
parameter: an unknown or unsearchable attribute, an attribute given twice, an empty value, a
bad date or time, a range without bounds (``-``), a bad limit or offset.

Values become condition keys here (``matching.index_key``): DA/TM/DT single values or ranges
(``a-b``, ``a-``, ``-b``); UID lists separated by ``,`` or ``\\``; ModalitiesInStudy lists
likewise (any one modality matches); fuzzy prefix-word matching for person names when
``fuzzymatching=true``; wildcards ``*`` and ``?`` on other strings; exact matching otherwise.
A value made only of ``*`` is universal matching: no condition, but the attribute is
returned, as PS3.4 C.2.2.2.3 has it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dicom_core.domain.integers import decimal_integer
from dicom_core.domain.tags import parse_attribute_id, tag_of
from dicom_core.errors import BadRequest
from dicom_core.query.attributes import (
    CORE_CATALOG,
    AttributeCatalog,
    describe_tag,
)
from dicom_core.query.conditions import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Condition,
    FuzzyMatch,
    IncludeFields,
    ListMatch,
    QueryAttribute,
    QueryDescription,
    QueryResource,
    RangeMatch,
    TextMatching,
    ValueMatch,
    WildcardMatch,
)
from dicom_core.query.matching import (
    clean_value,
    date_key,
    datetime_key,
    has_wildcard,
    text_key,
    time_key,
)

INCLUDEFIELD = "includefield"
LIMIT = "limit"
OFFSET = "offset"
FUZZYMATCHING = "fuzzymatching"
_SINGLE_PARAMETERS = (LIMIT, OFFSET, FUZZYMATCHING)
MAX_OFFSET = 10_000
"""The largest ``offset`` of a search (QIDO, workitems, extended query tag errors).

Each index pages newest first, so a page at ``offset`` reads ``offset + limit`` entries: on
Cosmos DB a ``SELECT TOP (offset + limit)`` that an unbounded offset turns into a read of the
whole index, charged in request units, for a page that is usually empty. Past 10,000 results a
client narrows its query (a date range, a modality) instead of paging; Azure's own service takes
any 32-bit offset, but its index is SQL Server, where the cost is its own. A larger offset is a
400 naming this maximum."""
_ALL = "all"
_STUDY_UID = tag_of("StudyInstanceUID")
_SERIES_UID = tag_of("SeriesInstanceUID")


def parse_query(
    params: Iterable[tuple[str, str]],
    resource: QueryResource,
    *,
    partition: int,
    study_uid: str | None = None,
    series_uid: str | None = None,
    catalog: AttributeCatalog = CORE_CATALOG,
) -> QueryDescription:
    """Parse a query string's (key, value) pairs, repeated keys kept, for one resource.

    ``partition`` is the data partition searched; ``study_uid`` and ``series_uid`` are the
    (already validated) UIDs of the resource URL.
    Raises ``BadRequest`` naming the offending parameter.
    """
    singles: dict[str, tuple[str, str]] = {}
    includes: list[tuple[str, str]] = []
    filters: list[tuple[str, str]] = []
    for key, value in params:
        name = key.lower()
        if name == INCLUDEFIELD:
            includes.append((key, value))
        elif name in _SINGLE_PARAMETERS:
            if name in singles:
                raise BadRequest(f"The query parameter '{key}' may be given only once.")
            singles[name] = (key, value)
        else:
            filters.append((key, value))

    fuzzy = parse_fuzzy(singles.get(FUZZYMATCHING))
    limit = parse_int(singles.get(LIMIT), DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    offset = parse_int(singles.get(OFFSET), 0, minimum=0, maximum=MAX_OFFSET)
    include = parse_includes(includes)

    conditions: list[Condition] = []
    universal: list[str] = []
    seen: dict[str, str] = {}
    for key, value in filters:
        attribute = _searchable(key, resource, catalog)
        if attribute.tag in seen:
            raise BadRequest(
                f"The attribute {describe_tag(attribute.tag)} is given twice"
                f" ('{seen[attribute.tag]}' and '{key}'); give each attribute once."
            )
        seen[attribute.tag] = key
        condition = parse_condition(attribute, key, value, fuzzy)
        if condition is None:
            universal.append(attribute.tag)
        else:
            conditions.append(condition)

    for uid, tag in ((study_uid, _STUDY_UID), (series_uid, _SERIES_UID)):
        if uid is None:
            continue
        scope = catalog.find(tag)
        assert scope is not None
        conditions.append(ValueMatch(scope, uid))

    return QueryDescription(
        resource=resource,
        partition=partition,
        conditions=tuple(conditions),
        include=include,
        fuzzy=fuzzy,
        limit=limit,
        offset=offset,
        study_uid=study_uid,
        series_uid=series_uid,
        returned_tags=tuple(universal),
    )


# -- parameters --------------------------------------------------------------------------------


def parse_fuzzy(given: tuple[str, str] | None) -> bool:
    if given is None:
        return False
    key, value = given
    lowered = value.strip().lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    raise BadRequest(f"The query parameter '{key}' must be true or false, got '{value}'.")


def parse_int(
    given: tuple[str, str] | None, default: int, *, minimum: int, maximum: int | None
) -> int:
    if given is None:
        return default
    key, value = given
    allowed = f"from {minimum} to {maximum}" if maximum is not None else f"of {minimum} or more"
    text = value.strip()
    if not text:
        raise BadRequest(
            f"The query parameter '{key}' has an empty value; give an integer {allowed}."
        )
    number = decimal_integer(text)
    if number is None or number < minimum or (maximum is not None and number > maximum):
        raise BadRequest(
            f"The query parameter '{key}' must be an integer {allowed}, got '{value}'."
        )
    return number


def parse_includes(includes: list[tuple[str, str]]) -> IncludeFields:
    """``includefield`` values: attribute IDs, comma lists of them, or ``all``.

    Any tag may be asked for, private ones too; a mixture of IDs and ``all`` means ``all``
    (conformance statement). An ID that is neither a keyword nor a tag is a 400.
    """
    tags: list[str] = []
    everything = False
    for key, value in includes:
        items = [item.strip() for item in value.split(",")]
        if not any(items):
            raise BadRequest(
                f"The query parameter '{key}' has an empty value; give attribute keywords or"
                " tags, or 'all'."
            )
        for item in items:
            if not item:
                continue
            if item.lower() == _ALL:
                everything = True
                continue
            tag = parse_attribute_id(item)
            if tag is None:
                raise BadRequest(
                    f"The {key} value '{item}' is neither a DICOM attribute keyword nor a tag"
                    " of 8 hexadecimal digits."
                )
            if tag not in tags:
                tags.append(tag)
    if everything:
        return IncludeFields(all=True)
    return IncludeFields(tags=tuple(tags))


# -- attributes and values ---------------------------------------------------------------------


def _searchable(key: str, resource: QueryResource, catalog: AttributeCatalog) -> QueryAttribute:
    tag = parse_attribute_id(key)
    if tag is None:
        raise BadRequest(
            f"Unknown query parameter '{key}': it is neither a DICOM attribute keyword or tag"
            " nor one of includefield, limit, offset, fuzzymatching."
        )
    attribute = catalog.find(tag)
    levels = resource.levels
    if attribute is not None and attribute.level in levels:
        return attribute
    here = ", ".join(a.keyword for a in catalog.searchable_at(levels))
    if attribute is None:
        raise BadRequest(
            f"The attribute '{key}' ({describe_tag(tag)}) is not searchable; searchable here:"
            f" {here}."
        )
    raise BadRequest(
        f"The attribute '{key}' is not searchable in a search for {resource.value};"
        f" searchable here: {here}."
    )


def parse_condition(attribute: QueryAttribute, key: str, raw: str, fuzzy: bool) -> Condition | None:
    value = clean_value(raw)
    if not value:
        raise BadRequest(
            f"The query parameter '{key}' has an empty value; searching for empty values is not"
            " supported."
        )
    if attribute.vr in _TEMPORAL:
        return _temporal_condition(attribute, key, value)
    if attribute.vr == "UI" or attribute.multiple:
        items = [clean_value(item) for item in value.replace("\\", ",").split(",")]
        items = [item for item in items if item]
        if not items:
            raise BadRequest(f"The query parameter '{key}' has no value in its list '{raw}'.")
        keys = tuple(dict.fromkeys(text_key(attribute.matching, item) for item in items))
        if len(keys) > 1:
            return ListMatch(attribute, keys)
        if attribute.vr == "UI":
            return ValueMatch(attribute, keys[0])
        value = items[0]
    if set(value) <= {"*"}:
        return None  # universal matching
    if attribute.vr == "AS" and not has_wildcard(value) and not _AGE.fullmatch(value):
        # An age is matched as a single value; '030Y-040Y' is no range here, and as a value
        # it could only ever match nothing.
        raise BadRequest(
            f"The query parameter '{key}' has an invalid age '{value}': use nnnD, nnnW, nnnM or"
            " nnnY (such as 042Y); ranges of ages are not supported."
        )
    search_key = text_key(attribute.matching, value)
    if not search_key:
        raise BadRequest(
            f"The query parameter '{key}' has no name in its value '{raw}'; searching for empty"
            " values is not supported."
        )
    if fuzzy and attribute.matching is TextMatching.PERSON_NAME:
        words = tuple(word for word in search_key.split(" ") if set(word) != {"*"})
        return FuzzyMatch(attribute, words) if words else None
    if has_wildcard(value):
        return WildcardMatch(attribute, search_key)
    return ValueMatch(attribute, search_key)


_AGE = re.compile(r"[0-9]{3}[DWMY]")

_TEMPORAL = {
    "DA": ("date", "YYYYMMDD"),
    "TM": ("time", "HHMMSS[.FFFFFF]"),
    "DT": ("date-time", "YYYYMMDDHHMMSS[.FFFFFF]"),
}


def _bound(vr: str, text: str, *, upper: bool) -> str:
    if vr == "DA":
        return date_key(text)
    if vr == "TM":
        return time_key(text, upper=upper)
    return datetime_key(text, upper=upper)


def _temporal_condition(attribute: QueryAttribute, key: str, value: str) -> Condition:
    """A DA/TM/DT value or range. A single TM or DT stands for the span it names."""
    what, shape = _TEMPORAL[attribute.vr]

    def bad(detail: str) -> BadRequest:
        return BadRequest(
            f"The query parameter '{key}' has an invalid {what} '{value}': {detail}. Use"
            f" {shape}, or a range {shape}-{shape} (either bound may be left out)."
        )

    if value == "-":
        raise bad("a range needs at least one bound")
    for lower_text, upper_text in _range_splits(attribute.vr, value):
        try:
            lower = _bound(attribute.vr, lower_text, upper=False) if lower_text else None
            upper = _bound(attribute.vr, upper_text, upper=True) if upper_text else None
        except ValueError:
            continue
        if lower is not None and upper is not None and lower > upper:
            raise bad("the range ends before it starts")
        return RangeMatch(attribute, lower, upper)
    try:
        if attribute.vr == "DA":
            return ValueMatch(attribute, date_key(value))
        lower = _bound(attribute.vr, value, upper=False)
        upper = _bound(attribute.vr, value, upper=True)
    except ValueError as exc:
        raise bad(str(exc)) from exc
    return RangeMatch(attribute, lower, upper)


def _range_splits(vr: str, value: str) -> list[tuple[str, str]]:
    """Ways to read ``value`` as ``lower-upper``. A DT may carry a ``-ZZXX`` UTC offset, so for
    DT every hyphen is a candidate and a value that parses whole is not a range."""
    if "-" not in value:
        return []
    if vr != "DT":
        if value.count("-") != 1:
            return [("?", "?")]  # never parses: reported as an invalid value
        lower, _, upper = value.partition("-")
        return [(lower, upper)]
    try:
        datetime_key(value)
        return []
    except ValueError:
        pass
    return [(value[:i], value[i + 1 :]) for i, ch in enumerate(value) if ch == "-"]
