"""Getting at an element's values for validation, without converting the dataset in place.

Values are read from the raw bytes whenever pydicom has not converted them yet: going through
``elem.value`` would make pydicom parse IS, DS and PN values, which can raise or warn for
exactly the malformed values validation is there to report. Text is decoded in the
character set in force (``dicom_core.domain.charsets``), strictly, and the VR to check is
resolved the way pydicom would resolve it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset

from dicom_core.domain.charsets import (
    DEFAULT_REPERTOIRE,
    SPECIFIC_CHARACTER_SET,
    Charset,
    declared_charset,
    decode_text_strictly,
)
from dicom_core.domain.validation.messages import show_bytes
from dicom_core.domain.validation.vr_rules import PADDING

# Binary VRs: pydicom hands us opaque bytes and PS3.5 puts no constraint we could check.
OPAQUE_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
# VRs that hold one value even if a backslash occurs in it (PS3.5 6.4).
_SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UT", "UR"})


class Unreadable(Exception):
    """An element whose value cannot be turned into text or items; carries the explanation."""


def text_values(value: object, vr: str, charset: Charset) -> list[str]:
    """Split an element value (raw bytes or converted Python values) into its text values."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        try:
            text = decode_text_strictly(data, vr, charset.codecs)
        except Exception as exc:
            # Bytes that do not fit the declared character set are a problem the service
            # reports; default-repertoire VRs cannot fail here (whatever is not ASCII in them
            # is caught by each VR's own character rule).
            terms = "\\".join(charset.terms)
            raise Unreadable(
                f"{show_bytes(data)} cannot be decoded using character set {terms}"
            ) from exc
        return [text] if vr in _SINGLE_VALUE_VRS else text.split("\\")
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [_as_text(item) for item in value]
    return [_as_text(value)]


def _as_text(item: object) -> str:
    """Text of one already-converted value, preferring the exact string pydicom read."""
    if item is None:
        return ""
    original = getattr(item, "original_string", None)
    if isinstance(original, str):
        return original
    return str(item)


def charset_of(ds: Dataset, inherited: Charset) -> Charset:
    """The character set in force for ``ds``: its own (0008,0005), else the enclosing one's."""
    try:
        elem = ds.get_item(SPECIFIC_CHARACTER_SET)
    except Exception:
        return inherited
    if elem is None:
        return inherited
    value = elem.value
    if isinstance(value, bytes | bytearray):
        terms = bytes(value).decode(DEFAULT_REPERTOIRE).split("\\")
    elif isinstance(value, str):
        terms = value.split("\\")
    elif isinstance(value, Sequence):
        terms = [_as_text(item) for item in value]
    else:
        return inherited
    return declared_charset([term.strip(PADDING) for term in terms])


def resolve_vr(elem: DataElement | RawDataElement, ds: Dataset | None) -> str:
    """The VR to validate against; implicit-VR raw elements carry none, so look it up."""
    if elem.VR:
        return str(elem.VR)
    try:
        return str(dictionary_VR(elem.tag))
    except Exception:
        pass
    if isinstance(elem, RawDataElement):
        try:
            return str(convert_raw_data_element(elem, ds=ds).VR)
        except Exception:
            return "UN"
    return "UN"


def effective_vr(vr: str) -> str:
    """Collapse an ambiguous dictionary VR ("US or SS", "OB or OW") to one we can check."""
    if " or " not in vr:
        return vr
    options = vr.split(" or ")
    if any(option in OPAQUE_VRS for option in options):
        return "OB"
    if set(options) <= {"US", "SS"}:
        return "US or SS"
    return "UN"
