"""Elements pydicom has already converted (``DataElement``) to DICOM JSON attribute objects.

This follows ``DataElement.to_json_dict``, with the fixes the package docstring lists (empty
values as ``null``, person names with only their non-empty groups, never raising). Few
elements take this path when storing: those the caller read before the conversion, and all
of them when pydicom's configuration or hooks change how it decodes values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from pydicom.dataelem import DataElement
from pydicom.valuerep import DA, DT, TM, PersonName

from dicom_core.domain.dicomjson.values import (
    JsonObject,
    Unconvertible,
    attribute,
    json_int,
    person_name,
)

_INT_VRS: Final = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS: Final = frozenset({"DS", "FD", "FL"})


def converted_json(elem: DataElement, vr: str) -> JsonObject:
    """The attribute object of a converted element whose ``vr`` JSON carries (not SQ)."""
    try:
        values = _element_values(elem.value)
        if values is None:
            return {"vr": vr}
        out: list[Any]
        if vr == "PN":
            out = [person_name(name.components) for name in values]
        elif vr == "AT":
            out = [format(tag, "08X") for tag in values]
        elif vr in _INT_VRS:
            out = [_number_or_none(item, _int_value) for item in values]
        elif vr in _FLOAT_VRS:
            out = [_number_or_none(item, float) for item in values]
        else:
            out = [_text_value(item) for item in values]
    except Exception:  # a value that cannot be converted is left out, not fatal
        return {"vr": vr}
    return attribute(vr, out)


def _element_values(value: Any) -> list[Any] | None:
    """The values of a converted element as a list, or ``None`` when it is empty.

    Mirrors ``DataElement.VM`` and ``to_json_dict``: strings, bytes and person names are one
    value unless empty, other iterables hold their values, anything else is one value. A
    container holding a single value stays wrapped, as in ``to_json_dict`` (pydicom unwraps
    single values on assignment; only its AT reading of 5 to 7 bytes leaves one wrapped,
    and that element then has just its VR, whichever path converts it).
    """
    if value is None:
        return None
    if isinstance(value, str | bytes | PersonName):
        return [value] if value else None
    try:
        values = list(value)
    except TypeError:
        return [value]
    if len(values) == 1:
        return [value]
    return values or None


def _number_or_none(value: Any, number: Callable[[Any], int | float]) -> Any:
    """``int``/``float`` of a converted value, as ``to_json_dict``; blank text is empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return number(value)


def _int_value(value: Any) -> int:
    """``int()`` of a converted value, within JSON's integer range."""
    return json_int(int(value))


def _text_value(value: Any) -> Any:
    """A converted value of a string VR; "" is an empty value (F.2.5).

    DA/DT/TM objects (pydicom's ``datetime_conversion``) are written as their DICOM text, not
    as ISO dates; values of any other non-JSON type make the element unconvertible.
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, DA | DT | TM):
        return str(value) or None
    if isinstance(value, int | float):
        return value
    raise Unconvertible
