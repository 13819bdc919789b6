"""Raw element values (bytes as read from the file) straight to DICOM JSON attribute objects.

``dcmread`` leaves elements raw until they are accessed. Converting them through pydicom's
value objects first costs about 25 us an element, which capped store throughput, so each VR
has a converter here that reads the bytes directly. Each mirrors
``pydicom.values.convert_value`` for its VR under pydicom's default configuration (the same
padding strips, the same character set handling, the same retry as text when a number does
not parse), except that text values keep a trailing NUL (see ``_unpad``) and that a value
pydicom would raise for leaves the element with only its VR.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from dicom_core.domain.charsets import DEFAULT_REPERTOIRE, decode_text
from dicom_core.domain.dicomjson.values import (
    JsonObject,
    Unconvertible,
    attribute,
    json_int,
    person_name,
    string_attribute,
)

# (VR, value bytes, little endian, codecs of the character set) -> attribute object.
RawConverter = Callable[[str, bytes, bool, list[str]], JsonObject]


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
    return string_attribute(vr, _unpad(value.decode(DEFAULT_REPERTOIRE)).split("\\"))


def _raw_ae(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """AE: leading and trailing spaces are insignificant in each value."""
    return string_attribute(
        vr, [part.strip() for part in value.decode(DEFAULT_REPERTOIRE).split("\\")]
    )


def _raw_ui(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """UI: NUL (or space) padding off the value, and pydicom's ``UID`` strips each UID."""
    return string_attribute(
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
    return string_attribute(vr, [_unpad(part) for part in text.split("\\")])


def _raw_pn(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """PN: trailing spaces off the bytes (NULs kept), decoded once, split into values and groups.

    Whether the value is padding only is asked of the decoded text: an ISO 2022 escape
    sequence of a declared character set decodes to nothing, so ``ESC $ B NUL`` has no NUL
    after text to keep. Such a value gets pydicom's own reading, which strips NULs and spaces
    from the bytes before decoding: ``ESC $ B NUL`` is empty, a space then ``ESC ( B`` a space.
    """
    text = decode_text(value.rstrip(b" "), encodings)
    if not text.strip("\x00 "):
        text = decode_text(value.rstrip(b"\x00 "), encodings)
    return attribute(vr, [person_name(part.split("=")) for part in text.split("\\")])


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
        return json_int(int(float(text)))
    if number != float(text):
        number = int(float(text))
    return json_int(number)


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
    keeps only its VR. A blank text is an empty value (F.2.5), as in the IS/DS reading: an
    escape sequence decoded away can leave one, such as the tab of "\\t ESC ( B \\\\".
    """
    parts = [part.rstrip("\x00 ") for part in decode_text(value, encodings).split("\\")]
    try:
        values = [number(part) if part.strip() else None for part in parts]
    except (ValueError, OverflowError, Unconvertible):
        return {"vr": vr}
    return attribute(vr, values)


def _int_text(text: str) -> int:
    """``int()`` of an IS text re-read as SH, within JSON's integer range."""
    return json_int(int(text))


def _raw_is(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """IS: trailing padding off the whole value, each value through ``_integer_string``."""
    parts = value.decode(DEFAULT_REPERTOIRE).rstrip(" \x00").split("\\")
    try:
        values = [_integer_string(part) for part in parts]
    except ValueError:
        return _numbers_from_text(vr, value, encodings, _int_text)
    except (OverflowError, Unconvertible):  # "inf", "1e400", > 64 bits: pydicom raised
        return {"vr": vr}
    return attribute(vr, values)


def _raw_ds(vr: str, value: bytes, little: bool, encodings: list[str]) -> JsonObject:
    """DS: whitespace off both ends of the value, trailing NULs too, then split."""
    parts = value.decode(DEFAULT_REPERTOIRE).strip().rstrip(" \x00").split("\\")
    try:
        values = [_decimal_string(part) for part in parts]
    except ValueError:
        return _numbers_from_text(vr, value, encodings, float)
    return attribute(vr, values)


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


def _raw_binary_numbers(code: str, size: int) -> RawConverter:
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


# The converter of each VR that has one. Ambiguous VRs and SQ have none: they go elsewhere.
_RAW_CONVERTERS: Final[dict[str, RawConverter]] = {
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

# The converter of a VR, or None: the table's bound ``get``. Callers in other modules use this
# rather than ``_RAW_CONVERTERS.get(vr)``, because CPython 3.13 compiles a method call on a name
# bound by ``from ... import`` as a plain attribute load, which would build a bound method for
# every element converted (about 5% of ``dataset_json``).
converter_for: Final = _RAW_CONVERTERS.get
