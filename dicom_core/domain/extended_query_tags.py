"""Extended query tags as values: validating what a client asks to index, and indexing values.

Pure functions over request JSON and an instance's precomputed DICOM JSON; no I/O. The
service (``dicom_core.services.extended_query_tags``) stores what these functions produce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicom_core.query.attributes import matching_for_vr
from dicom_core.query.conditions import QueryAttribute, QueryLevel
from dicom_core.query.matching import index_key

MAX_TAGS = 128


class QueryTagLevelValues(StrEnum):
    """Enumerated values for the level of an extended query tag."""

    STUDY = "Study"
    SERIES = "Series"
    INSTANCE = "Instance"


class QueryTagStatusValues(StrEnum):
    """Enumerated values for the status of an extended query tag."""

    ADDING = "Adding"
    READY = "Ready"
    DELETING = "Deleting"


class QueryStatusValues(StrEnum):
    """Enumerated values for the query status of an extended query tag."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"


# The spec's table: VR -> the matching types QIDO allows on it.
SUPPORTED_VRS: dict[str, frozenset[str]] = {
    "AE": frozenset({"single"}),
    "AS": frozenset({"single"}),
    "CS": frozenset({"single"}),
    "DA": frozenset({"single", "range"}),
    "DS": frozenset({"single"}),
    "DT": frozenset({"single", "range"}),
    "FD": frozenset({"single"}),
    "FL": frozenset({"single"}),
    "IS": frozenset({"single"}),
    "LO": frozenset({"single"}),
    "PN": frozenset({"single", "fuzzy"}),
    "SH": frozenset({"single"}),
    "SL": frozenset({"single"}),
    "SS": frozenset({"single"}),
    "TM": frozenset({"single", "range"}),
    "UI": frozenset({"single"}),
    "UL": frozenset({"single"}),
    "US": frozenset({"single"}),
}
# The VRs whose values the index keeps as numbers, so QIDO matches them by single value only.
# Indexing, both index adapters and the QIDO request check use this one set.
NUMERIC_VRS = frozenset({"DS", "FD", "FL", "IS", "SL", "SS", "UL", "US"})
_INTEGER_RANGES = {
    "SS": (-(2**15), 2**15 - 1),
    "US": (0, 2**16 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UL": (0, 2**32 - 1),
}
_MAX_LENGTHS = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "SH": 16,
    "TM": 14,
    "UI": 64,
}
_PATTERNS = {
    "AS": re.compile(r"\d{3}[DWMY]"),
    "DA": re.compile(r"\d{8}"),
    "TM": re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?"),
    "DT": re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?"),
    "UI": re.compile(r"[0-9.]{1,64}"),
    "CS": re.compile(r"[A-Z0-9 _]*"),
}
_QUERY_LEVELS = {
    "Study": QueryLevel.STUDY,
    "Series": QueryLevel.SERIES,
    "Instance": QueryLevel.INSTANCE,
}
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")


class QueryTagError(ValueError):
    """A request names a tag, VR or level that cannot be indexed (the web layer answers 400)."""


@dataclass(frozen=True, slots=True)
class QueryTagDefinition:
    """A validated tag to add: the 8-hex-digit path, its VR, level and private creator."""

    path: str
    vr: str
    level: QueryTagLevelValues
    private_creator: str | None = None


def _ci(entry: dict[str, Any], name: str) -> Any:
    """Field lookup ignoring case (input field names are case-insensitive)."""
    lowered = name.lower()
    for key, value in entry.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def is_private(path: str) -> bool:
    return int(path[:4], 16) % 2 == 1


def resolve_path(raw: str) -> str:
    """A tag path given as 8 hex digits or a standard keyword -> 8 upper-case hex digits."""
    if not isinstance(raw, str) or not raw.strip():
        raise QueryTagError("The tag path is missing or empty.")
    text = raw.strip()
    if _HEX_TAG.fullmatch(text):
        return text.upper()
    tag = tag_for_keyword(text)
    if tag is None:
        # Keywords are accepted case-insensitively too (PatientId for PatientID).
        tag = _keyword_ignoring_case(text)
    if tag is None:
        raise QueryTagError(f"The tag path '{raw}' is neither a tag (8 hex digits) nor a keyword.")
    return f"{tag:08X}"


def _keyword_ignoring_case(text: str) -> int | None:
    from pydicom._dicom_dict import DicomDictionary

    lowered = text.lower()
    for tag, entry in DicomDictionary.items():
        if str(entry[4]).lower() == lowered:
            return int(tag)
    return None


def standard_vr(path: str) -> str | None:
    try:
        return str(dictionary_VR(int(path, 16)))
    except KeyError:
        return None


def parse_definition(entry: Any) -> QueryTagDefinition:
    """Validate one element of the POST body; raises ``QueryTagError`` naming the problem."""
    if not isinstance(entry, dict):
        raise QueryTagError("Each extended query tag must be a JSON object.")
    path = resolve_path(_ci(entry, "path"))
    level_raw = _ci(entry, "level")
    level = next(
        (
            lv
            for lv in QueryTagLevelValues
            if isinstance(level_raw, str) and lv.value.lower() == level_raw.strip().lower()
        ),
        None,
    )
    if level is None:
        raise QueryTagError(
            f"The level '{level_raw}' of tag {path} is invalid; use Study, Series or Instance."
        )
    vr_raw = _ci(entry, "vr")
    vr = vr_raw.strip().upper() if isinstance(vr_raw, str) and vr_raw.strip() else None
    creator_raw = _ci(entry, "privateCreator")
    creator = creator_raw.strip() if isinstance(creator_raw, str) and creator_raw.strip() else None
    element = int(path[4:], 16)
    group = int(path[:4], 16)
    if group == 0xFFFE or group in (0x0000, 0x0002):
        raise QueryTagError(f"The tag {path} cannot be indexed.")
    if is_private(path):
        if element < 0x1000 or element > 0xFFFF or group < 0x0009:
            raise QueryTagError(
                f"The private tag {path} is not a private data element (use gggg,xxee with"
                " xx >= 10)."
            )
        if vr is None:
            raise QueryTagError(f"The private tag {path} needs a VR.")
        if creator is None:
            raise QueryTagError(f"The private tag {path} needs a PrivateCreator.")
        if len(creator) > 64 or "\\" in creator:
            raise QueryTagError(f"The PrivateCreator '{creator}' of tag {path} is invalid.")
    else:
        if creator is not None:
            raise QueryTagError(f"The standard tag {path} cannot have a PrivateCreator.")
        known = standard_vr(path)
        if known is None or keyword_for_tag(int(path, 16)) == "":
            raise QueryTagError(f"The tag {path} is not a known standard tag.")
        if known == "SQ":
            raise QueryTagError(f"The tag {path} is a sequence (SQ), which cannot be indexed.")
        if vr is None:
            vr = known
        elif vr not in known.split(" or "):
            raise QueryTagError(
                f"The VR '{vr}' of tag {path} does not match its VR in the standard ({known})."
            )
    if vr == "SQ":
        raise QueryTagError(f"The tag {path} is a sequence (SQ), which cannot be indexed.")
    if vr not in SUPPORTED_VRS:
        raise QueryTagError(
            f"The VR '{vr}' of tag {path} is not supported; supported VRs: "
            f"{', '.join(SUPPORTED_VRS)}."
        )
    return QueryTagDefinition(path=path, vr=vr, level=level, private_creator=creator)


def parse_definitions(body: Any) -> list[QueryTagDefinition]:
    if not isinstance(body, list) or not body:
        raise QueryTagError("The request body must be a non-empty JSON array of query tags.")
    definitions = [parse_definition(entry) for entry in body]
    paths = [d.path for d in definitions]
    dupes = sorted({p for p in paths if paths.count(p) > 1})
    if dupes:
        raise QueryTagError(f"The request names tag(s) more than once: {', '.join(dupes)}.")
    return definitions


def parse_query_status(body: Any) -> QueryStatusValues:
    if not isinstance(body, dict):
        raise QueryTagError("The request body must be a JSON object with a queryStatus.")
    raw = _ci(body, "queryStatus")
    for value in QueryStatusValues:
        if isinstance(raw, str) and raw.strip().lower() == value.value.lower():
            return value
    raise QueryTagError(f"The queryStatus '{raw}' is invalid; use Enabled or Disabled.")


@dataclass(frozen=True, slots=True)
class IndexedValue:
    """A value ready for the index: text (exact key), number, or a matching key (PN)."""

    text: str | None
    number: float | None
    norm: str | None


class InvalidValue(ValueError):
    """An instance's value cannot be indexed for a tag (recorded as an indexing error)."""


def _private_creator_matches(doc: dict[str, Any], path: str, creator: str | None) -> bool:
    if creator is None:
        return True
    group = path[:4]
    block = path[4:6]
    element = doc.get(f"{group}00{block}")
    values = element.get("Value") if isinstance(element, dict) else None
    return isinstance(values, list) and bool(values) and str(values[0]).strip() == creator


def query_attribute(path: str, vr: str, level: str, creator: str | None) -> QueryAttribute:
    """The QIDO attribute of an extended query tag (same matching rules as core attributes)."""
    keyword = "" if is_private(path) else keyword_for_tag(int(path, 16))
    return QueryAttribute(
        tag=path,
        keyword=keyword or path,
        vr=vr,
        level=_QUERY_LEVELS[level],
        matching=matching_for_vr(vr),
        extended=True,
        path=(path,),
        private_creator=creator,
    )


def extract_value(doc: dict[str, Any], attribute: QueryAttribute) -> IndexedValue | None:
    """The indexable value of ``path`` in an instance's DICOM JSON; None when absent or empty.

    Raises ``InvalidValue`` with a message when the value is present but invalid for ``vr``.
    """
    path, vr = attribute.tag, attribute.vr
    element = doc.get(path)
    if not isinstance(element, dict) or not _private_creator_matches(
        doc, path, attribute.private_creator
    ):
        return None
    values = element.get("Value")
    if not values:
        return None
    found_vr = element.get("vr")
    if (
        isinstance(found_vr, str)
        and found_vr not in (vr, "UN")
        and not (found_vr in ("OB", "OW") and vr in ("US", "SS"))
    ):
        raise InvalidValue(f"The value's VR {found_vr} does not match the tag's VR {vr}.")
    if len(values) > 1:
        raise InvalidValue("The value has more than one item (value multiplicity above 1).")
    return index_value(values[0], attribute)


def index_value(value: Any, attribute: QueryAttribute) -> IndexedValue | None:
    """Validate and normalise one value for the tag; raises ``InvalidValue`` when invalid."""
    vr = attribute.vr
    if value is None:
        return None
    if vr == "PN":
        if isinstance(value, dict):
            value = value.get("Alphabetic", "")
        # The stored metadata keeps a trailing NUL the sender padded with; it is not matched.
        text = str(value).rstrip(" \x00").strip()
        if not text:
            return None
        if len(text) > 64 * 5:
            raise InvalidValue("The person name is too long.")
        return IndexedValue(text=text, number=None, norm=index_key(attribute, text))
    if vr in NUMERIC_VRS:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidValue(f"The value '{value}' is not a valid {vr} number.") from exc
        if vr in _INTEGER_RANGES or vr == "IS":
            if number != int(number):
                raise InvalidValue(f"The value '{value}' is not an integer ({vr}).")
            low, high = _INTEGER_RANGES.get(vr, (-(2**31), 2**31 - 1))
            if not low <= number <= high:
                raise InvalidValue(f"The value '{value}' is out of range for {vr}.")
        return IndexedValue(text=None, number=number, norm=None)
    text = str(value).strip().rstrip("\x00").strip()
    if not text:
        return None
    limit = _MAX_LENGTHS.get(vr)
    if limit is not None and len(text) > limit:
        raise InvalidValue(f"Value length is not expected: '{text}' exceeds {limit} for {vr}.")
    pattern = _PATTERNS.get(vr)
    if pattern is not None and not pattern.fullmatch(text):
        raise InvalidValue(f"The value '{text}' is not a valid {vr}.")
    if "\\" in text:
        raise InvalidValue("The value has more than one item (value multiplicity above 1).")
    try:
        norm = index_key(attribute, text)
    except ValueError as exc:
        raise InvalidValue(f"The value '{text}' is not a valid {vr}.") from exc
    return IndexedValue(text=text, number=None, norm=norm)
