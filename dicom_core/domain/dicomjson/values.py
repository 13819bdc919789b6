"""The shape of DICOM JSON attribute objects (PS3.18 F.2), shared by every conversion path.

Raw bytes, raw sequence items and values pydicom already converted all end up as the same
attribute objects. These rules say which VRs appear at all, how empty and multiple values are
written, and what a person name and an integer may be, so that the paths cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})

JsonObject = dict[str, Any]

# VRs that may appear as "vr" in the output: every DICOM VR except the binary ones.
JSON_VRS: Final = frozenset(
    {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH",
        "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UR", "US", "UT", "UV",
    }
)  # fmt: skip
# Dropped as soon as the VR is known, without converting the value. "US or OW" is not here:
# pydicom resolves LUT Data to US when the LUT Descriptor gives one entry, which is kept.
DROP_UNCONVERTED: Final = (BINARY_VRS - {"US or OW"}) | {"US or SS or OW"}
# pydicom adds 65536 to a negative first value of these (LUT descriptors read as SS), so
# they are left to pydicom.
LUT_DESCRIPTOR_TAGS: Final = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
_PN_GROUPS: Final = ("Alphabetic", "Ideographic", "Phonetic")
# orjson serialises integers in [-2**63, 2**64 - 1] only.
_JSON_INT_MIN: Final = -(1 << 63)
_JSON_INT_MAX: Final = (1 << 64) - 1


class Unconvertible(Exception):
    """A value that cannot become a JSON value: the element keeps only its VR."""


def attribute(vr: str, values: list[Any]) -> JsonObject:
    """The attribute object for already converted ``values`` (``None`` marks an empty value).

    A single empty value is an empty attribute, which F.2.5 writes without "Value"; pydicom
    reaches the same result through ``DataElement.is_empty``.
    """
    if len(values) == 1 and values[0] is None:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def string_attribute(vr: str, parts: list[str]) -> JsonObject:
    """Split string values, an empty one being ``null`` (F.2.5; pydicom wrote "")."""
    if len(parts) == 1:
        return {"vr": vr, "Value": parts} if parts[0] else {"vr": vr}
    return {"vr": vr, "Value": [part or None for part in parts]}


def person_name(groups: Iterable[str]) -> dict[str, str] | None:
    """One PN value as F.2.2 wants it: only its non-empty component groups, at most three.

    A value with no non-empty group is an empty value (``null``, F.2.5).
    """
    name = {key: text for key, text in zip(_PN_GROUPS, groups, strict=False) if text}
    return name or None


def json_int(value: int) -> int:
    """Refuse integers that orjson cannot write, so that serialising never raises."""
    if _JSON_INT_MIN <= value <= _JSON_INT_MAX:
        return value
    raise Unconvertible
