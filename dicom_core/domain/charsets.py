"""Specific Character Set (0008,0005): which codecs a dataset's text is in, and decoding it.

The text of SH, LO, UC, ST, LT, UT and PN values is written in the character sets that the
Specific Character Set of its dataset (or of the enclosing dataset) names, with the defined
terms of PS3.3 C.12.1.1.2; every other text VR uses the default repertoire (PS3.5 6.1.2.3).
Both DICOM JSON conversion and store validation decode such text, so the rules live here once.

Two callers, two deliberate policies, both kept here side by side:

* DICOM JSON must give the values pydicom would give. It takes the character sets pydicom
  chose (:func:`dataset_encodings`, :func:`raw_item_encodings`) and decodes as pydicom does,
  undecodable bytes becoming replacement characters (:func:`decode_text`).
* Validation must report what the sender declared and what does not decode, without
  converting the caller's dataset in place. It keeps the declared terms for its messages
  (:class:`Charset`, :func:`declared_charset`) and decodes strictly (:func:`decode_text_strictly`).

Bulk update goes the other way, writing a client's Unicode text into a stored instance; it asks
:func:`encodes_exactly` whether the instance's declared set can carry that text.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Final, NamedTuple

from pydicom.charset import convert_encodings, decode_bytes, default_encoding
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import TEXT_VR_DELIMS

SPECIFIC_CHARACTER_SET: Final = 0x00080005

# VRs whose values are decoded with the Specific Character Set (PS3.5 6.1.2.3).
CHARSET_VRS: Final = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})

# The codec of the default repertoire. pydicom decodes it with "iso8859", which Python maps to
# the charmap codec iso8859_1; its table is exactly Latin-1, and the builtin latin-1 codec is
# much faster. Every byte decodes, so this never fails.
DEFAULT_REPERTOIRE: Final = "latin-1"

# pydicom's codecs for a dataset without a Specific Character Set (a list, as pydicom has it).
DEFAULT_ENCODINGS: Final = [default_encoding]

# Where pydicom starts a new decoding (ISO 2022 escapes end at these): text delimiters, and in
# a person name also the value, component group and component separators.
_PN_DELIMS: Final = TEXT_VR_DELIMS | {0x5C, 0x5E, 0x3D}


class Charset(NamedTuple):
    """The (0008,0005) terms as written, for messages, and the Python codecs they map to."""

    terms: tuple[str, ...]
    codecs: tuple[str, ...]


DEFAULT_CHARSET: Final = Charset(("ISO_IR 6",), (default_encoding,))


def declared_charset(terms: Sequence[str]) -> Charset:
    """The character set a Specific Character Set value with these ``terms`` declares.

    The terms come without their padding; none that is not empty means the default
    repertoire. Unknown terms fall back to the default codec, as pydicom does, but keep their
    spelling for messages.
    """
    if not any(terms):
        return DEFAULT_CHARSET
    try:
        codecs = convert_encodings(list(terms))
    except Exception:
        return Charset(tuple(terms), (default_encoding,))
    return Charset(tuple(terms), tuple(codecs))


def dataset_encodings(ds: Dataset) -> list[str]:
    """The codecs pydicom decodes the text of ``ds`` with, chosen as ``Dataset.__getitem__``
    chooses them (the set read with the dataset, else its own or its parent's)."""
    charset = ds.original_character_set or ds._character_set
    if not charset:
        return DEFAULT_ENCODINGS
    if isinstance(charset, str):
        return [charset]
    return charset if isinstance(charset, list) else list(charset)  # only ever read


def raw_item_encodings(
    vr: str | None, length: int, value: bytes, little: bool, implicit: bool
) -> list[str]:
    """The codecs pydicom would give a sequence item whose own Specific Character Set is the
    raw element (``vr``, ``length``, ``value``); empty if pydicom names none."""
    raw = RawDataElement(BaseTag(SPECIFIC_CHARACTER_SET), vr, length, value, 0, implicit, little)
    encodings = convert_encodings(convert_raw_data_element(raw).value)
    if not encodings:
        return []
    return [encodings] if isinstance(encodings, str) else list(encodings)


def decode_text(value: bytes, encodings: list[str]) -> str:
    """Decode text of a character-set dependent VR, as ``pydicom.charset.decode_bytes`` does.

    Without ISO 2022 escape sequences the whole value is decoded with the first character
    set in one go, which is what pydicom does too; escapes, unknown codecs and undecodable
    bytes (replacement characters plus a warning) are left to pydicom itself.
    """
    if b"\x1b" not in value:
        try:
            return value.decode(encodings[0])
        except (LookupError, UnicodeError):
            pass
    return decode_bytes(value, encodings, TEXT_VR_DELIMS)


def decode_text_strictly(value: bytes, vr: str, codecs: Sequence[str]) -> str:
    """Decode the text of a ``vr`` value the way pydicom would, but fail where it would not.

    pydicom warns and inserts U+FFFD when bytes do not fit the declared character set; here
    that warning is raised instead (an exception of any type: the caller reports it). VRs of
    the default repertoire never fail.
    """
    if vr not in CHARSET_VRS:
        return value.decode(DEFAULT_REPERTOIRE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return decode_bytes(value, list(codecs), _PN_DELIMS if vr == "PN" else TEXT_VR_DELIMS)


#: The Specific Character Set term of UTF-8, which can encode any text (PS3.3 C.12.1.1.2).
UTF8_TERM: Final = "ISO_IR 192"

# Terms that name one character set without code extensions and whose codec in pydicom encodes
# exactly that repertoire. Left out on purpose: the default repertoire (pydicom writes it as
# Latin-1, but it is ASCII), ISO_IR 13 (pydicom's shift_jis also encodes kanji, which needs
# ISO 2022 IR 87), ISO_IR 203 (pydicom does not know it and falls back to Latin-1), and every
# ISO 2022 code extension (pydicom can write escape sequences, but not refuse what the
# declared terms cannot carry).
_EXACT_SINGLE_CHARSETS: Final = frozenset(
    {
        "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 126", "ISO_IR 127",
        "ISO_IR 138", "ISO_IR 144", "ISO_IR 148", "ISO_IR 166", UTF8_TERM, "GB18030", "GBK",
    }
)  # fmt: skip


def encodes_exactly(charset: Charset, text: str) -> bool:
    """Whether pydicom writes ``text`` in a dataset of ``charset`` as bytes that decode back to it.

    The encoding counterpart of :func:`decode_text_strictly`, for values a client sends as
    Unicode. pydicom encodes what does not fit with replacement characters (after a warning)
    and writes the default repertoire as Latin-1, so its own encoder cannot answer this. ASCII
    text without ESC fits every character set; anything else only fits a single character set
    whose codec is exact (``_EXACT_SINGLE_CHARSETS``) and that can encode it.
    """
    if text.isascii() and "\x1b" not in text:
        return True
    if len(charset.terms) != 1 or charset.terms[0] not in _EXACT_SINGLE_CHARSETS:
        return False
    try:
        text.encode(charset.codecs[0])
    except (LookupError, UnicodeError):
        return False
    return True
