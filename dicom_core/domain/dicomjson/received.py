"""Checking a DICOM JSON dataset a client sent (PS3.18 F.2) before it is kept as sent.

UPS-RS stores workitem datasets as JSON and hands them back to other clients as they are, so a
malformed one would break every reader after it: a fuzzing probe stored ``"Value":
"not-a-list"``, sequence items that were numbers, InlineBinary that was not base64 and a PN
sent as DA, all answered 201, and pydicom's ``Dataset.from_json`` then failed on the workitem
retrieved. What this module refuses, with the attribute's path and the reason:

- an element that is not an object with a known "vr" and nothing but "Value",
  "InlineBinary" or "BulkDataURI" (at most one of the three);
- a "vr" that is not one of those the DICOM dictionary gives a public attribute;
- the command and file meta groups (0000, 0002), which are not part of a dataset;
- "Value" that is not an array, or whose items are not what the VR holds: objects for SQ
  (checked the same way, at every depth), person name objects for PN, numbers for binary
  numbers, 8 hexadecimal digits for AT, strings for text; ``null`` stands for an empty value;
- "Value" for a binary VR (those travel as InlineBinary, which must be base64), and
  BulkDataURI wherever the caller takes no bulk data;
- text values that break their VR's rule (dates, times, ages, numbers, UIDs, AEs), the rules
  STOW validates with.

It does not check lengths of LO, SH or PN, nor CS's character set: clients of worklists write
those loosely, and nothing downstream depends on them. The caller checks nesting depth first
(``dicom_core.domain.nesting``), so the walk here stays within its bounds.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from pydicom.datadict import dictionary_VR

from dicom_core.domain.validation.messages import json_type, show, tag_label
from dicom_core.domain.validation.vr_rules import INTEGER_RANGES, first_value_problem

#: Every VR of PS3.5 Table 6.2-1 that DICOM JSON may name.
VRS = frozenset({
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
    "UR", "US", "UT", "UV",
})  # fmt: skip
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_INTEGER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
_FLOAT_VRS = frozenset({"FL", "FD"})
#: Text VRs whose values are checked with STOW's rules (module docstring for the others).
_CHECKED_TEXT_VRS = frozenset({"AE", "AS", "DA", "DT", "TM", "UI"})
_ELEMENT_KEYS = frozenset({"vr", "Value", "InlineBinary", "BulkDataURI"})
_PN_GROUPS = frozenset({"Alphabetic", "Ideographic", "Phonetic"})
_HEX = frozenset("0123456789abcdefABCDEF")


class _Refused(Exception):
    """Why one element is refused, phrased to follow its path."""


def received_dataset_problem(dataset: Mapping[str, Any], *, bulk_data: bool = False) -> str | None:
    """The first problem of ``dataset`` as "(gggg,eeee) Keyword: reason" (nested elements
    named by their path), or None. ``bulk_data``: whether BulkDataURI is accepted."""
    stack: list[tuple[Mapping[str, Any], str]] = [(dataset, "")]
    while stack:
        current, path = stack.pop()
        for key, element in current.items():
            name = str(key)
            if len(name) != 8 or not set(name) <= _HEX:
                return f"{path}{show(name)} is not a tag of 8 hexadecimal digits"
            tag = int(name, 16)
            where = f"{path}{tag_label(tag)}"
            try:
                items = _element_items(tag, element, bulk_data=bulk_data)
            except _Refused as refused:
                return f"{where}: {refused}"
            for position, item in enumerate(items, start=1):
                stack.append((item, f"{where} item {position} > "))
    return None


def _element_items(tag: int, element: Any, *, bulk_data: bool) -> list[Mapping[str, Any]]:
    """Check one element; its sequence items, still to be checked."""
    group = tag >> 16
    if group in (0x0000, 0x0002):
        raise _Refused("command and file meta attributes are not part of a dataset")
    if not isinstance(element, Mapping):
        raise _Refused(f'must be a JSON object with a "vr", not {json_type(element)}')
    extra = sorted(set(element) - _ELEMENT_KEYS)
    if extra:
        raise _Refused(
            f"has {show(extra[0])}; an element has only vr, Value, InlineBinary, BulkDataURI"
        )
    vr = element.get("vr")
    if not isinstance(vr, str) or vr not in VRS:
        raise _Refused(f'"vr" {show(str(vr))} is not a DICOM VR')
    expected = _dictionary_vrs(tag)
    # UN: a sender that does not know the VR (a file read in implicit VR) may say so.
    if expected and vr not in expected and vr != "UN":
        raise _Refused(
            f'"vr" is "{vr}", but this attribute\'s VR is "{" or ".join(sorted(expected))}"'
        )
    given = [field for field in ("Value", "InlineBinary", "BulkDataURI") if field in element]
    if len(given) > 1:
        raise _Refused(f"has both {given[0]} and {given[1]}; give one")
    if "BulkDataURI" in element:
        if not bulk_data:
            raise _Refused("BulkDataURI is not accepted here; send the value as InlineBinary")
        if not isinstance(element["BulkDataURI"], str):
            raise _Refused("BulkDataURI must be a JSON string")
    if "InlineBinary" in element:
        _check_inline_binary(vr, element["InlineBinary"])
    if "Value" not in element:
        return []
    values = element["Value"]
    if not isinstance(values, list):
        raise _Refused(f'"Value" must be a JSON array, not {json_type(values)}')
    if vr in _BINARY_VRS:
        raise _Refused(f'{vr} values travel as InlineBinary, not as "Value"')
    if vr == "SQ":
        for position, item in enumerate(values, start=1):
            if not isinstance(item, Mapping):
                raise _Refused(f"item {position} must be a JSON object, not {json_type(item)}")
        return list(values)
    for position, item in enumerate(values, start=1):
        where = f"value {position} " if len(values) > 1 else "the value "
        if item is None:
            continue  # an empty value (F.2.5)
        reason = _value_problem(vr, item)
        if reason is not None:
            raise _Refused(where + reason)
    return []


def _dictionary_vrs(tag: int) -> frozenset[str]:
    """The VRs the dictionary gives a public attribute ("US or SS": both); empty for private
    and unknown ones, which may carry any VR."""
    if (tag >> 16) % 2 or (tag & 0xFFFF) == 0:
        return frozenset()
    try:
        known = str(dictionary_VR(tag))
    except KeyError:
        return frozenset()
    return frozenset(part.strip() for part in known.split(" or ")) & VRS


def _check_inline_binary(vr: str, value: Any) -> None:
    if vr not in _BINARY_VRS:
        raise _Refused(f'InlineBinary is for binary VRs; give {vr} values in "Value"')
    if not isinstance(value, str):
        raise _Refused(f"InlineBinary must be a JSON string of base64, not {json_type(value)}")
    try:
        # Line breaks and spaces, as MIME writers wrap base64, are not part of the data.
        base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _Refused("InlineBinary is not valid base64") from None


def _value_problem(vr: str, item: Any) -> str | None:
    """Why one non-null value does not suit ``vr``, phrased to follow "value n "."""
    if vr == "PN":
        return _person_name_problem(item)
    if vr in _INTEGER_VRS:
        if vr in ("UV", "SV") and isinstance(item, str):  # F.2.3.1: beyond 2^53, as text
            try:
                item = int(item)
            except ValueError:
                return f"{show(item)} is not an integer, which {vr} holds"
        if not isinstance(item, int) or isinstance(item, bool):
            return f"is {json_type(item)}; {vr} holds integers"
        low, high = INTEGER_RANGES[vr]
        if not low <= item <= high:
            return f"{item} is outside the range {low} to {high} of {vr}"
        return None
    if vr in _FLOAT_VRS:
        if not isinstance(item, int | float) or isinstance(item, bool):
            return f"is {json_type(item)}; {vr} holds numbers"
        return None
    if vr in ("IS", "DS"):
        if isinstance(item, bool) or not isinstance(item, int | float | str):
            return f"is {json_type(item)}; {vr} holds numbers"
        if vr == "IS" and isinstance(item, float) and not item.is_integer():
            return f"{item} is not an integer, which IS holds"
        if isinstance(item, str):
            reason = first_value_problem([item], vr)
            return None if reason is None else reason
        return None
    if vr == "AT":
        if not isinstance(item, str) or len(item) != 8 or not set(item) <= _HEX:
            return "must be a tag of 8 hexadecimal digits, as a JSON string"
        return None
    if not isinstance(item, str):
        return f"is {json_type(item)}; {vr} holds JSON strings"
    if vr in _CHECKED_TEXT_VRS:
        return first_value_problem([item], vr)
    return None


def _person_name_problem(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return (
            'must be a person name object such as {"Alphabetic": "Doe^Jane"},'
            f" not {json_type(item)}"
        )
    for group, text in item.items():
        if group not in _PN_GROUPS:
            return (
                f"has {show(str(group))}; a person name has only Alphabetic, Ideographic, Phonetic"
            )
        if not isinstance(text, str):
            return f"has a {group} that is {json_type(text)}, not a JSON string"
    return None
