"""DICOM JSON (PS3.18 F.2) of a dataset, without bulk data, for metadata and QIDO responses.

The conformance statement leaves binary VRs out of metadata entirely (not even as
BulkDataURI), so they are dropped here, at every depth. The result is computed once at store
time and kept with the instance; metadata requests never re-read the stored file.

Why this module does not simply call pydicom's ``DataElement.to_json_dict`` per element: doing
so first turns every raw element into a ``DataElement`` holding value objects (``IS``,
``DSfloat``, ``PersonName``, ``UID``...), parses raw sequences into item datasets, and then
unpicks it all again, about 25 us an element, which capped store throughput. Elements still in
the raw form ``dcmread`` leaves them in (sequences of defined length included) are therefore
converted here straight from their bytes, following pydicom's decoding rules (the same
padding strips, the same character set handling, the same retry as text when a number does
not parse) so the values match what pydicom would give. Everything unusual goes through
pydicom's own conversion instead, so the result does not depend on which path was taken:
ambiguous VRs (their VR depends on other elements), LUT descriptors (pydicom adjusts their
first value), deferred values, sequences not laid out plainly, elements already converted,
and any pydicom configuration or hook that changes decoding.

Where pydicom's JSON is wrong per PS3.18 F.2, or where it raised, this module differs on
purpose (each case is tested in tests/unit/test_dicomjson.py):

* F.2.2: a person name carries only its *non-empty* component groups; pydicom always writes
  "Alphabetic", even as "" (``=山田^太郎`` gave ``{"Alphabetic": "", "Ideographic": ...}``).
* F.2.5: an empty value inside a multi-valued attribute is ``null``. pydicom wrote "" for
  strings, and for IS, DS and PN it failed on the empty value and dropped every value of the
  attribute (``1\\\\3`` gave ``{"vr": "IS"}`` instead of ``[1, null, 3]``).
* F.2.3: "vr" must be a real VR. An element whose VR stays ambiguous after pydicom's
  correction (the retired "US or SS or OW" of Gray LUT Data, which pydicom wrote as
  InlineBinary, or a correction that fails) is left out like the other binary VRs.
* Never raising: pydicom raised for numeric values whose length is not a multiple of the value
  size, for IS values such as "inf", and for failed VR corrections; such elements become
  ``{"vr": VR}``. Integers outside what JSON numbers here can carry (orjson's 64-bit range,
  far outside IS's 32-bit range anyway) also become ``{"vr": VR}`` instead of making
  ``dataset_json_bytes`` raise.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson
import pydicom.valuerep
from pydicom import config
from pydicom._dicom_dict import DicomDictionary  # the table pydicom's VR lookup reads first
from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks, raw_element_value, raw_element_vr
from pydicom.tag import BaseTag
from pydicom.valuerep import (
    DA,
    DT,
    EXPLICIT_VR_LENGTH_16,
    EXPLICIT_VR_LENGTH_32,
    TM,
    DSfloat,
    PersonName,
)

from dicom_core.domain.charsets import (
    DEFAULT_ENCODINGS,
    DEFAULT_REPERTOIRE,
    SPECIFIC_CHARACTER_SET,
    dataset_encodings,
    decode_text,
    raw_item_encodings,
)

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})

JsonObject = dict[str, Any]
_RawConverter = Callable[[str, bytes, bool, list[str]], JsonObject]

# VRs that may appear as "vr" in the output: every DICOM VR except the binary ones.
_JSON_VRS: Final = frozenset(
    {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH",
        "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UR", "US", "UT", "UV",
    }
)  # fmt: skip
# Dropped as soon as the VR is known, without converting the value. "US or OW" is not here:
# pydicom resolves LUT Data to US when the LUT Descriptor gives one entry, which is kept.
_DROP_UNCONVERTED: Final = (BINARY_VRS - {"US or OW"}) | {"US or SS or OW"}
# pydicom adds 65536 to a negative first value of these (LUT descriptors read as SS), so
# they are left to pydicom.
_LUT_DESCRIPTOR_TAGS: Final = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
_PN_GROUPS: Final = ("Alphabetic", "Ideographic", "Phonetic")
_INT_VRS: Final = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS: Final = frozenset({"DS", "FD", "FL"})
# orjson serialises integers in [-2**63, 2**64 - 1] only.
_JSON_INT_MIN: Final = -(1 << 63)
_JSON_INT_MAX: Final = (1 << 64) - 1


class _Unconvertible(Exception):
    """A value that cannot become a JSON value: the element keeps only its VR."""


# ---------------------------------------------------------------------------------------------
# Shared value rules


def _finish(vr: str, values: list[Any]) -> JsonObject:
    """The attribute object for already converted ``values`` (``None`` marks an empty value).

    A single empty value is an empty attribute, which F.2.5 writes without "Value"; pydicom
    reaches the same result through ``DataElement.is_empty``.
    """
    if len(values) == 1 and values[0] is None:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _strings(vr: str, parts: list[str]) -> JsonObject:
    """Split string values, an empty one being ``null`` (F.2.5; pydicom wrote "")."""
    if len(parts) == 1:
        return {"vr": vr, "Value": parts} if parts[0] else {"vr": vr}
    return {"vr": vr, "Value": [part or None for part in parts]}


def _person_name(groups: Iterable[str]) -> dict[str, str] | None:
    """One PN value as F.2.2 wants it: only its non-empty component groups, at most three.

    A value with no non-empty group is an empty value (``null``, F.2.5).
    """
    name = {key: text for key, text in zip(_PN_GROUPS, groups, strict=False) if text}
    return name or None


def _json_int(value: int) -> int:
    """Refuse integers that orjson cannot write, so that serialising never raises."""
    if _JSON_INT_MIN <= value <= _JSON_INT_MAX:
        return value
    raise _Unconvertible


# ---------------------------------------------------------------------------------------------
# Raw element converters: bytes as read from the file -> attribute object.
# Each mirrors pydicom.values.convert_value for its VR under the default configuration, except
# that text values keep a trailing NUL (see ``_unpad``).


def _unpad(text: str) -> str:
    """A text value without its trailing spaces, but with any trailing NULs kept.

    The conformance statement says retrieved metadata includes the null character when the
    attribute was padded with nulls and stored as is (pydicom strips them). Space is the
    padding the standard defines for these VRs; a NUL is part of what the sender stored. A
    value made of padding only is still an empty value. UI (whose padding is NUL) and the
    numeric strings (JSON numbers) are not read through this.
    """
    kept = text.rstrip(" ")
    return kept if kept.strip("\x00 ") else ""


def _raw_plain(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """AS, CS, DA, DT, TM: trailing spaces off the whole value (NULs kept), then split."""
    return _strings(vr, _unpad(value.decode(DEFAULT_REPERTOIRE)).split("\\"))


def _raw_ae(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """AE: leading and trailing spaces are insignificant in each value."""
    return _strings(vr, [part.strip() for part in value.decode(DEFAULT_REPERTOIRE).split("\\")])


def _raw_ui(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """UI: NUL (or space) padding off the value, and pydicom's ``UID`` strips each UID."""
    return _strings(
        vr, [uid.strip() for uid in value.decode(DEFAULT_REPERTOIRE).rstrip("\x00 ").split("\\")]
    )


def _raw_ur(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """UR: a single value; pydicom strips trailing whitespace (not NULs)."""
    text = value.decode(DEFAULT_REPERTOIRE).rstrip()
    return {"vr": vr, "Value": [text]} if text else {"vr": vr}


def _raw_text(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """LT, ST, UT: a single value in the dataset's character set; backslash is text."""
    text = _unpad(decode_text(value, encodings))
    return {"vr": vr, "Value": [text]} if text else {"vr": vr}


def _raw_multi_text(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """LO, SH, UC: decoded once, then split; padding is stripped from each value."""
    text = decode_text(value, encodings)
    if "\\" not in text:  # the usual single value, without building lists
        text = _unpad(text)
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    return _strings(vr, [_unpad(part) for part in text.split("\\")])


def _raw_pn(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """PN: padding off the bytes (NULs kept), decoded once, split into values and groups."""
    value = value.rstrip(b" ")
    text = decode_text(value if value.strip(b"\x00 ") else b"", encodings)
    return _finish(vr, [_person_name(part.split("=")) for part in text.split("\\")])


def _integer_string(text: str) -> int | None:
    """One IS value as pydicom's ``IS`` and ``int()`` turn it into a JSON number.

    Blank is an empty value. pydicom accepts "1.0" or "1e3" through ``float``, and keeps a
    float (``ISfloat``) when the float differs from the integer, which ``int()`` then
    truncates: "1.5" gives 1, and a very long integer goes through a float too.
    """
    if not text.strip():
        return None
    try:
        number = int(text)
    except ValueError:
        return _json_int(int(float(text)))
    if number != float(text):
        number = int(float(text))
    return _json_int(number)


def _decimal_string(text: str) -> float | None:
    """One DS value: ``DSfloat`` is ``float()`` of the text; blank is an empty value."""
    return float(text) if text.strip() else None


def _numbers_from_text(
    vr: str, value: bytes, encodings: list[str], number: Callable[[str], int | float]
) -> JsonObject:
    """IS or DS that pydicom could not parse: it re-reads the value as SH text.

    The SH reading decodes with the dataset's character set and strips NULs and spaces from
    each value, so it can succeed where the IS/DS reading failed ("5\\x00\\\\6" is [5, 6]).
    ``to_json_dict`` then applies ``int``/``float`` to each text; if any fails, the element
    keeps only its VR.
    """
    parts = [part.rstrip("\x00 ") for part in decode_text(value, encodings).split("\\")]
    try:
        values = [number(part) if part else None for part in parts]
    except (ValueError, OverflowError, _Unconvertible):
        return {"vr": vr}
    return _finish(vr, values)


def _int_text(text: str) -> int:
    """``int()`` of an IS text re-read as SH, within JSON's integer range."""
    return _json_int(int(text))


def _raw_is(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """IS: trailing padding off the whole value, each value through ``_integer_string``."""
    parts = value.decode(DEFAULT_REPERTOIRE).rstrip(" \x00").split("\\")
    try:
        values = [_integer_string(part) for part in parts]
    except ValueError:
        return _numbers_from_text(vr, value, encodings, _int_text)
    except (OverflowError, _Unconvertible):  # "inf", "1e400", > 64 bits: pydicom raised
        return {"vr": vr}
    return _finish(vr, values)


def _raw_ds(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """DS: whitespace off both ends of the value, trailing NULs too, then split."""
    parts = value.decode(DEFAULT_REPERTOIRE).strip().rstrip(" \x00").split("\\")
    try:
        values = [_decimal_string(part) for part in parts]
    except ValueError:
        return _numbers_from_text(vr, value, encodings, float)
    return _finish(vr, values)


def _raw_at(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """AT: (group, element) pairs as 8 hex digits.

    pydicom drops a partial trailing tag. With 5 to 7 bytes it holds one tag inside a list
    while reporting one value, and ``to_json_dict`` fails on that; the value is malformed,
    so this is kept as is and the element has just its VR (as with fewer than 4 bytes).
    """
    length = len(value)
    if length != 4:
        length -= length % 4
        if length < 8:
            return {"vr": vr}
    halves = struct.unpack(f"{'<' if little else '>'}{length // 2}H", value[:length])
    return {
        "vr": vr,
        "Value": [f"{halves[i] << 16 | halves[i + 1]:08X}" for i in range(0, len(halves), 2)],
    }


def _raw_binary_numbers(code: str, size: int) -> _RawConverter:
    """US, SS, UL, SL, FL, FD, SV, UV: fixed-size binary numbers in the transfer syntax's
    byte order. pydicom raised when the length is not a multiple of the size."""
    single = {True: struct.Struct(f"<{code}").unpack, False: struct.Struct(f">{code}").unpack}

    def convert(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
        length = len(value)
        if length == size:  # by far the most common case
            return {"vr": vr, "Value": list(single[little](value))}
        if length % size or not length:
            return {"vr": vr}
        numbers = struct.unpack(f"{'<' if little else '>'}{length // size}{code}", value)
        return {"vr": vr, "Value": list(numbers)}

    return convert


_RAW_CONVERTERS: Final[dict[str, _RawConverter]] = {
    "AE": _raw_ae,
    "AS": _raw_plain,
    "AT": _raw_at,
    "CS": _raw_plain,
    "DA": _raw_plain,
    "DS": _raw_ds,
    "DT": _raw_plain,
    "FD": _raw_binary_numbers("d", 8),
    "FL": _raw_binary_numbers("f", 4),
    "IS": _raw_is,
    "LO": _raw_multi_text,
    "LT": _raw_text,
    "PN": _raw_pn,
    "SH": _raw_multi_text,
    "SL": _raw_binary_numbers("l", 4),
    "SS": _raw_binary_numbers("h", 2),
    "ST": _raw_text,
    "SV": _raw_binary_numbers("q", 8),
    "TM": _raw_plain,
    "UC": _raw_multi_text,
    "UI": _raw_ui,
    "UL": _raw_binary_numbers("L", 4),
    "UR": _raw_ur,
    "US": _raw_binary_numbers("H", 2),
    "UT": _raw_text,
    "UV": _raw_binary_numbers("Q", 8),
}


# ---------------------------------------------------------------------------------------------
# Converted elements (pydicom DataElement) -> attribute object, as to_json_dict plus the fixes.


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
    return _json_int(int(value))


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
    raise _Unconvertible


def _from_element(elem: DataElement, fast: bool) -> JsonObject | None:
    """The attribute object of a converted element, or ``None`` when it is left out."""
    vr = str(elem.VR)  # pydicom's VR enum, as the plain string the raw path gives
    if vr == "SQ":
        try:
            items = [_dataset(item, fast) for item in elem.value or ()]
        except Exception:  # not a sequence of datasets (built by hand)
            return {"vr": "SQ"}
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if vr not in _JSON_VRS:
        return None
    try:
        values = _element_values(elem.value)
        if values is None:
            return {"vr": vr}
        out: list[Any]
        if vr == "PN":
            out = [_person_name(name.components) for name in values]
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
    return _finish(vr, out)


def _via_pydicom(ds: Dataset, tag: int, vr: str | None, fast: bool) -> JsonObject | None:
    """Convert one element with pydicom (``ds[tag]``, which also resolves ambiguous VRs).

    If pydicom raises (a wrong value length, an ambiguous VR it cannot resolve, an unusable
    Specific Character Set...), the element keeps only its VR, or is left out when that VR
    is not one JSON can carry.
    """
    try:
        elem = ds[tag]
    except Exception:  # never fail the whole dataset for one element
        # The VR as far as pydicom got: still raw, or converted with its VR corrected
        # before the value failed ("US or SS" that became US, holding 3 bytes).
        partial = ds._dict.get(BaseTag(tag))
        if isinstance(partial, DataElement):
            vr = str(partial.VR)
        elif isinstance(partial, RawDataElement):
            try:
                vr = _raw_vr(ds, partial)
            except Exception:  # no VR to report: leave the element out
                return None
        return {"vr": vr} if vr in _JSON_VRS else None
    return _from_element(elem, fast)


def _raw_vr(ds: Dataset, raw: RawDataElement) -> str:
    """The VR pydicom gives a raw element: the explicit one, else its own lookup (implicit
    VR, or UN it replaces by the dictionary VR, private dictionaries keyed by the creator)."""
    vr = raw.VR
    if vr is None or vr == "UN":
        found: dict[str, Any] = {}
        raw_element_vr(raw, found, ds=ds)
        vr = found["VR"]
    return str(vr)


# ---------------------------------------------------------------------------------------------
# Raw sequences.
#
# pydicom keeps a sequence of defined length as raw bytes until it is accessed, then parses
# it into item datasets (``convert_SQ``), which costs more than converting the items. Such
# sequences are parsed here instead, for the well-formed layout only: items and elements
# that end exactly where their lengths say, known explicit VRs, no undefined lengths inside
# items. Anything else (and anything needing the item as a pydicom dataset: ambiguous VRs,
# LUT descriptors) raises _Unsupported and pydicom parses the whole sequence as before.


class _Unsupported(Exception):
    """A raw sequence not parsed here exactly as pydicom would parse it."""


_ParsedItem = dict[int, tuple[str | None, int, bytes]]

_ITEM: Final = 0xFFFEE000
_ITEM_END: Final = 0xFFFEE00D
_SEQUENCE_END: Final = 0xFFFEE0DD
_UNDEFINED_LENGTH: Final = 0xFFFFFFFF
_LONG_LENGTH_VRS: Final = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_SHORT_LENGTH_VRS: Final = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_16)
_IMPLICIT_HEADER: Final = {True: struct.Struct("<HHL"), False: struct.Struct(">HHL")}
_EXPLICIT_HEADER: Final = {True: struct.Struct("<HH2sH"), False: struct.Struct(">HH2sH")}
_LONG_LENGTH: Final = {True: struct.Struct("<L"), False: struct.Struct(">L")}


def _parse_items(value: bytes, little: bool, implicit: bool) -> list[_ParsedItem]:
    """Split a sequence value into items of ``{tag: (VR or None, length, value)}``.

    As in pydicom, a sequence delimiter ends the sequence, and a tag repeated in an item
    keeps its last occurrence.
    """
    header = _IMPLICIT_HEADER[little]
    items: list[_ParsedItem] = []
    position, end = 0, len(value)
    while position < end:
        if end - position < 8:
            raise _Unsupported
        group, element, length = header.unpack_from(value, position)
        position += 8
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            break
        if tag != _ITEM:
            raise _Unsupported
        if length == _UNDEFINED_LENGTH:
            item, position = _parse_item(value, position, None, little, implicit)
        elif length > end - position:
            raise _Unsupported
        else:
            item, position = _parse_item(value, position, position + length, little, implicit)
        items.append(item)
    return items


def _parse_item(
    value: bytes, position: int, stop: int | None, little: bool, implicit: bool
) -> tuple[_ParsedItem, int]:
    """The elements of one item, from ``position`` to ``stop`` or to its item delimiter."""
    elements: _ParsedItem = {}
    limit = len(value) if stop is None else stop
    implicit_header = _IMPLICIT_HEADER[little]
    explicit_header = _EXPLICIT_HEADER[little]
    first = True
    vr: str | None = None
    while stop is None or position < stop:
        if limit - position < 8:
            raise _Unsupported
        if implicit:
            group, element, length = implicit_header.unpack_from(value, position)
        else:
            group, element, vr_bytes, length = explicit_header.unpack_from(value, position)
        position += 8
        tag = group << 16 | element
        if tag == _ITEM_END:
            if stop is not None or not (implicit or vr_bytes == b"\x00\x00"):
                raise _Unsupported
            return elements, position
        if not implicit:
            if first and not (0x40 < vr_bytes[0] < 0x5B and 0x40 < vr_bytes[1] < 0x5B):
                raise _Unsupported  # pydicom would read this item as implicit VR
            vr = vr_bytes.decode(DEFAULT_REPERTOIRE)
            if vr in _LONG_LENGTH_VRS:
                if limit - position < 4:
                    raise _Unsupported
                (length,) = _LONG_LENGTH[little].unpack_from(value, position)
                position += 4
            elif vr not in _SHORT_LENGTH_VRS:
                raise _Unsupported
        first = False
        if length > limit - position:  # also an undefined length
            raise _Unsupported
        elements[tag] = (vr, length, value[position : position + length])
        position += length
    return elements, position


def _private_creator(elements: _ParsedItem, tag: int, encodings: list[str]) -> str:
    """The private creator value pydicom would look a private tag's VR up with."""
    found = elements.get(tag)
    if found is None:
        return ""
    vr, length, value = found
    if vr not in (None, "LO", "UN") or not 0x0010 <= tag & 0xFFFF < 0x0100:
        raise _Unsupported  # the creator would not be read as LO
    if vr == "UN" and not config.replace_un_with_known_vr:
        raise _Unsupported
    if not length:
        return ""
    names = decode_text(value, encodings).split("\\")
    if len(names) != 1:
        raise _Unsupported  # pydicom would look the VR up with a list of names
    return names[0].rstrip("\x00 ")


def _item_vr(
    tag: int, vr: str | None, value: bytes, elements: _ParsedItem, encodings: list[str]
) -> str:
    """The VR of an item element with an implicit or UN VR, as pydicom's lookup finds it."""
    if (tag >> 16) & 1:  # private
        if vr == "UN" and not config.replace_un_with_known_vr:
            return "UN"
        element = tag & 0xFFFF
        if 0x0010 <= element < 0x0100:
            return "LO"  # a private creator
        if not element & 0xFF00:
            return "UN"
        creator = _private_creator(elements, (tag & 0xFFFF0000) | element >> 8, encodings)
        try:
            return private_dictionary_VR(BaseTag(tag), creator) if creator else "UN"
        except KeyError:
            return "UN"
    if vr == "UN" and (not config.replace_un_with_known_vr or len(value) >= 0xFFFF):
        return "UN"
    entry = DicomDictionary.get(tag)
    if entry is not None:
        return entry[0]
    try:
        return dictionary_VR(tag)  # repeating groups
    except KeyError:
        return "UL" if not tag & 0xFFFF else "UN"


def _sequence_json(value: bytes, little: bool, implicit: bool, encodings: list[str]) -> JsonObject:
    """The attribute object of a raw sequence value (raises _Unsupported)."""
    items = [
        _item_json(item, little, implicit, encodings)
        for item in _parse_items(value, little, implicit)
    ]
    return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}


def _item_json(
    elements: _ParsedItem, little: bool, implicit: bool, encodings: list[str]
) -> JsonObject:
    """The DICOM JSON object of one parsed item (raises _Unsupported)."""
    charset = elements.get(SPECIFIC_CHARACTER_SET)
    if charset is not None:
        charset_vr, length, value = charset
        encodings = raw_item_encodings(charset_vr, length, value, little, implicit)
        if not encodings:
            raise _Unsupported
    out: JsonObject = {}
    for tag in sorted(elements):
        if tag >> 16 == 0x0002 or not tag & 0xFFFF:
            continue
        vr, length, value = elements[tag]
        if vr is None or vr == "UN":
            vr = _item_vr(tag, vr, value, elements, encodings)
        if vr in _DROP_UNCONVERTED:
            continue
        key = f"{tag:08X}"
        if not length:
            if vr not in _JSON_VRS:
                raise _Unsupported
            out[key] = {"vr": vr}
        elif vr == "SQ":
            out[key] = _sequence_json(value, little, implicit, encodings)
        else:
            convert = _RAW_CONVERTERS.get(vr)
            if convert is None or tag in _LUT_DESCRIPTOR_TAGS:
                raise _Unsupported
            if tag == SPECIFIC_CHARACTER_SET:
                out[key] = convert(vr, value, little, DEFAULT_ENCODINGS)
            else:
                out[key] = convert(vr, value, little, encodings)
    return out


# ---------------------------------------------------------------------------------------------
# Datasets


def _fast_path_applies() -> bool:
    """Whether pydicom is configured as the raw converters assume (its defaults).

    Anything that changes how pydicom decodes values (a RAISE validation mode, date/time or
    numpy conversion, Decimal DS, empty values as None, wrong lengths as UN, element
    callbacks or hooks) sends every element through pydicom, so the output follows the
    configuration as before. (``replace_un_with_known_vr`` is honoured by both paths.)
    """
    return (
        config.settings.reading_validation_mode in (config.WARN, config.IGNORE)
        and not config.convert_wrong_length_to_UN
        and not config.datetime_conversion
        and not config.use_DS_numpy
        and not config.use_IS_numpy
        and not config.use_none_as_empty_text_VR_value
        and pydicom.valuerep.DSclass is DSfloat
        and config.data_element_callback is None
        and hooks.raw_element_vr is raw_element_vr
        and hooks.raw_element_value is raw_element_value
        and not hooks.raw_element_kwargs
    )


def _from_raw(
    ds: Dataset, tag: int, raw: RawDataElement, encodings: list[str], fast: bool
) -> JsonObject | None:
    """The attribute object of an element still in raw form, or ``None`` to leave it out."""
    vr = raw.VR
    if vr is None:
        entry = DicomDictionary.get(tag)  # where pydicom's own lookup finds a public tag
        vr = entry[0] if entry is not None else _raw_vr(ds, raw)
    elif vr == "UN":
        vr = _raw_vr(ds, raw)
    if vr in _DROP_UNCONVERTED:
        return None
    convert = _RAW_CONVERTERS.get(vr)
    value = raw.value
    if convert is None or tag in _LUT_DESCRIPTOR_TAGS or value is None:
        # Sequences, ambiguous VRs, LUT descriptors, deferred values (pydicom reads those
        # from the file); a raw sequence of defined length is parsed here if it can be.
        if vr == "SQ" and raw.length == 0:
            return {"vr": "SQ"}
        if vr == "SQ" and value and raw.length != _UNDEFINED_LENGTH:
            try:
                return _sequence_json(value, raw.is_little_endian, raw.is_implicit_VR, encodings)
            except Exception:  # _Unsupported, or a layout the parser did not expect
                pass
        return _via_pydicom(ds, tag, vr, fast)
    if raw.length == 0:
        return {"vr": vr}
    if tag == SPECIFIC_CHARACTER_SET:
        encodings = DEFAULT_ENCODINGS
    return convert(vr, value, raw.is_little_endian, encodings)


def _dataset(ds: Dataset, fast: bool) -> JsonObject:
    """The DICOM JSON object of one dataset or sequence item (warnings already silenced)."""
    out: JsonObject = {}
    encodings = DEFAULT_ENCODINGS
    if fast:
        try:
            encodings = dataset_encodings(ds)
        except Exception:  # let pydicom deal with each element of this one
            fast = False
    # Plain int tags: pydicom's BaseTag compares in Python, which is slow to sort and test.
    for tag, elem in sorted([(int(tag), elem) for tag, elem in ds._dict.items()]):
        if tag >> 16 == 0x0002 or not tag & 0xFFFF:
            continue
        converted: JsonObject | None
        try:
            if isinstance(elem, DataElement):
                converted = _from_element(elem, fast)
            elif fast:
                converted = _from_raw(ds, tag, elem, encodings, fast)
            else:
                converted = _via_pydicom(ds, tag, elem.VR, fast)
        except Exception:  # a defect here must not lose the dataset
            converted = _via_pydicom(ds, tag, elem.VR, fast)
        if converted is not None:
            out[f"{tag:08X}"] = converted
    return out


def dataset_json(ds: Dataset) -> dict[str, Any]:
    """The DICOM JSON object of ``ds`` (group 0002, group lengths and binary VRs left out).

    Never raises: a value that cannot be converted leaves its attribute with only its VR.
    pydicom's warnings about malformed values are silenced; malformed data is normal input
    for a store and must not fail it (nor, with warnings as errors, the tests). The walk
    recurses once per sequence level (and orjson writes at most 255 nested containers), so
    callers bound the nesting first with
    :func:`dicom_core.domain.nesting.dataset_nesting_problem`, as ``parse_instance`` does.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _dataset(ds, _fast_path_applies())


def dataset_json_bytes(ds: Dataset) -> bytes:
    """``dataset_json(ds)`` serialised as UTF-8 JSON (orjson writes NaN and infinity as null)."""
    return orjson.dumps(dataset_json(ds))
