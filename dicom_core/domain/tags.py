"""Naming an attribute: a tag as 8 hex digits, or a keyword of the DICOM dictionary.

Why one home, in the domain: QIDO attribute IDs and includefield (PS3.18 6.7.1.1.1), UPS-RS
datasets and return keys, and extended query tag paths all accept the same two encodings, and
every DICOM JSON key (PS3.18 F.2) is a tag in that form. Each of them validated and converted
names with its own copy of the pattern; they now share these, so a name one accepts is a name
the others accept, and all of them answer with the same upper-case 8-hex-digit key.
"""

from __future__ import annotations

import re
from typing import Final

from pydicom.datadict import tag_for_keyword

#: A tag as a DICOM JSON key: 8 hexadecimal digits (either case on input).
HEX_TAG: Final = re.compile(r"[0-9A-Fa-f]{8}")


def tag_of(keyword: str) -> str:
    """The 8-hex-digit DICOM JSON key of a dictionary keyword (KeyError if unknown)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def parse_attribute_id(text: str) -> str | None:
    """The tag named by an attribute ID (``"PatientName"`` or ``"00100010"``), or None."""
    if HEX_TAG.fullmatch(text):
        return text.upper()
    if not text:
        return None  # pydicom's dictionary has a retired entry whose keyword is ""
    tag = tag_for_keyword(text)
    return None if tag is None else f"{tag:08X}"
