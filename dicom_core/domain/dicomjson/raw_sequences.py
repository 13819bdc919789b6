"""Raw sequences of defined length parsed from their bytes into DICOM JSON items.

pydicom keeps a sequence of defined length as raw bytes until it is accessed, then parses it
into item datasets (``convert_SQ``), which costs more than converting the items. Such
sequences are parsed here instead, for the well-formed layout only: items and elements that
end exactly where their lengths say, known explicit VRs, no undefined lengths inside items.
Anything else (and anything needing the item as a pydicom dataset: ambiguous VRs, LUT
descriptors) raises, and the caller lets pydicom parse the whole sequence as before. VRs of
implicit-VR and UN elements are looked up as pydicom's own lookup would find them.
"""

from __future__ import annotations

import struct
from typing import Final

from pydicom import config
from pydicom._dicom_dict import DicomDictionary  # the table pydicom's VR lookup reads first
from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_16, EXPLICIT_VR_LENGTH_32

from dicom_core.domain.charsets import (
    DEFAULT_ENCODINGS,
    DEFAULT_REPERTOIRE,
    SPECIFIC_CHARACTER_SET,
    decode_text,
    raw_item_encodings,
)
from dicom_core.domain.dicomjson.raw_values import converter_for
from dicom_core.domain.dicomjson.values import (
    DROP_UNCONVERTED,
    JSON_VRS,
    LUT_DESCRIPTOR_TAGS,
    JsonObject,
)


class _Unsupported(Exception):
    """A raw sequence not parsed here exactly as pydicom would parse it."""


_ParsedItem = dict[int, tuple[str | None, int, bytes]]

_ITEM: Final = 0xFFFEE000
_ITEM_END: Final = 0xFFFEE00D
_SEQUENCE_END: Final = 0xFFFEE0DD
UNDEFINED_LENGTH: Final = 0xFFFFFFFF
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
        if length == UNDEFINED_LENGTH:
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


def sequence_json(value: bytes, little: bool, implicit: bool, encodings: list[str]) -> JsonObject:
    """The attribute object of a raw sequence value.

    Raises for any layout not parsed here exactly as pydicom would parse it; the caller then
    leaves the sequence to pydicom.
    """
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
        if vr in DROP_UNCONVERTED:
            continue
        key = f"{tag:08X}"
        if not length:
            if vr not in JSON_VRS:
                raise _Unsupported
            out[key] = {"vr": vr}
        elif vr == "SQ":
            out[key] = sequence_json(value, little, implicit, encodings)
        else:
            convert = converter_for(vr)
            if convert is None or tag in LUT_DESCRIPTOR_TAGS:
                raise _Unsupported
            if tag == SPECIFIC_CHARACTER_SET:
                out[key] = convert(vr, value, little, DEFAULT_ENCODINGS)
            else:
                out[key] = convert(vr, value, little, encodings)
    return out
