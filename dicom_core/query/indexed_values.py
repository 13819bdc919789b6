"""The index forms of extended values: what QIDO compares for an extended query tag or an
external metadata tag (spec/extended-query-tags.md, spec/external-metadata.md).

Why this is query code and not domain code: a stored value becomes the same key a query value
becomes (``matching.index_key``), so the rules that validate and normalise the values of a tag
live beside the matching rules they must agree with. The tag definitions themselves (levels,
VRs, request validation) are domain (``dicom_core.domain.extended_query_tags``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import keyword_for_tag

from dicom_core.domain.extended_query_tags import QueryTagLevelValues, is_private
from dicom_core.domain.validation import INTEGER_RANGES, IS_RANGE
from dicom_core.query.attributes import matching_for_vr
from dicom_core.query.conditions import QueryAttribute, QueryLevel
from dicom_core.query.matching import index_key

NUMERIC_VRS = frozenset({"DS", "FD", "FL", "IS", "SL", "SS", "UL", "US"})
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
# Keyed by the level as stored (a str); the members compare and hash as their values.
_QUERY_LEVELS: dict[str, QueryLevel] = {
    QueryTagLevelValues.STUDY: QueryLevel.STUDY,
    QueryTagLevelValues.SERIES: QueryLevel.SERIES,
    QueryTagLevelValues.INSTANCE: QueryLevel.INSTANCE,
}


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
        if not math.isfinite(number):
            # NaN and infinities have no place in an index (and JSON has no way to say them).
            raise InvalidValue(f"The value '{value}' is not a finite {vr} number.")
        if vr in INTEGER_RANGES or vr == "IS":
            if number != int(number):
                raise InvalidValue(f"The value '{value}' is not an integer ({vr}).")
            low, high = INTEGER_RANGES.get(vr, IS_RANGE)
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
