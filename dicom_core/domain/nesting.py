"""How deep sequences may nest, checked before any recursive walk of a dataset.

Every walk of a dataset in this service recurses once per sequence level: pydicom's reader
(for sequences of undefined length), attribute validation, DICOM JSON conversion, and orjson
when it writes the stored metadata. Python stops a recursion after about a thousand frames and
orjson after 255 nested containers, so an instance nested a few hundred levels deep made these
walks fail half way (a 500, or worse, a silently truncated JSON document).

So the depth is checked once, up front, by the iterative walks below (they keep their own
stack and cannot overflow), and anything deeper than :data:`MAX_SEQUENCE_DEPTH` is refused
with a message naming the top-level attribute. Every later walk then recurses at most that
many levels, which is far inside both limits.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Final

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

__all__ = ["MAX_SEQUENCE_DEPTH", "dataset_nesting_problem", "json_nesting_problem"]

MAX_SEQUENCE_DEPTH: Final = 64
"""The most sequence levels an instance or a workitem may nest (a top-level sequence is 1).

Real data stays far below it: structured report content trees, the deepest DICOM has, run to
about ten levels. It cannot go much higher: each level is three nested JSON containers in DICOM
JSON (element object, "Value" array, item object), and orjson refuses to write more than 255,
so metadata of an instance nested 84 levels deep could not be stored. 64 leaves room for the
arrays that series and study metadata wrap instances in, and keeps pydicom's reader (about
four Python frames a level) far from Python's recursion limit.
"""

# The smallest encoding of one sequence level: an explicit-VR SQ header (12 bytes) or an
# implicit one (8), plus an item header (8). A raw sequence value shorter than this many bytes
# per level still allowed cannot break the limit, so it is not parsed at all.
_MIN_BYTES_PER_LEVEL: Final = 16

_UNDEFINED_LENGTH: Final = 0xFFFFFFFF
# Groups the check skips at the top level: command, file meta, and pixel data.
_SKIPPED_GROUPS: Final = frozenset({0x0000, 0x0002, 0x7FE0})


def _label(tag: int) -> str:
    """``(gggg,eeee) Keyword`` of a top-level attribute, for the refusal message."""
    keyword = keyword_for_tag(tag) if tag else ""
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{text} {keyword}" if keyword else text


def _too_deep(tag: int) -> str:
    return (
        f"{_label(tag)}: sequences nest more than {MAX_SEQUENCE_DEPTH} levels deep;"
        f" at most {MAX_SEQUENCE_DEPTH} are accepted"
    )


def _items(elem: DataElement | RawDataElement, ds: Dataset, depth: int) -> list[Any]:
    """The items of a sequence element, or none when they cannot break the limit.

    A raw sequence is parsed without being stored back into ``ds`` (validation wants the raw
    form), and only when its size leaves room for more levels than are still allowed. An
    element that does not parse is left to validation, which reports it. RecursionError is
    let through: it is the caller's proof of excessive depth.
    """
    if isinstance(elem, RawDataElement):
        value = elem.value
        allowed = MAX_SEQUENCE_DEPTH - depth
        if isinstance(value, bytes | bytearray) and len(value) < allowed * _MIN_BYTES_PER_LEVEL:
            return []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                elem = convert_raw_data_element(elem, ds=ds)
        except RecursionError:
            raise
        except Exception:
            return []
    items = elem.value
    return list(items) if isinstance(items, Sequence | list) else []


def _read_as_sequence(elem: DataElement | RawDataElement) -> bool:
    """Whether pydicom reads an element without an explicit VR (or UN) as a sequence."""
    if not isinstance(elem, RawDataElement):
        return False
    if elem.length == _UNDEFINED_LENGTH:
        return True
    try:
        return str(dictionary_VR(elem.tag)) == "SQ"
    except KeyError:
        return False


def dataset_nesting_problem(ds: Dataset) -> str | None:
    """Describe the first top-level attribute whose sequences nest too deep, or return None.

    Iterative: a stack of (item, depth, top-level tag) replaces recursion, so the check itself
    cannot overflow however deep the data goes. ``ds`` is not modified. A RecursionError from
    pydicom while it parses one raw sequence (one holding undefined-length sequences nested
    hundreds deep, which pydicom parses recursively) is itself proof of excessive depth.
    """
    stack: list[tuple[Dataset, int, int]] = [(ds, 0, 0)]
    while stack:
        current, depth, top = stack.pop()
        # The raw mapping, in file order: Dataset's own accessors convert or wrap every
        # element, which cost ten times the whole check.
        for tag, elem in current._dict.items():
            vr = elem.VR
            if vr != "SQ" and (vr not in (None, "UN") or not _read_as_sequence(elem)):
                continue
            if depth == 0 and tag >> 16 in _SKIPPED_GROUPS:
                continue
            owner = int(tag) if depth == 0 else top
            try:
                items = _items(elem, current, depth)
            except RecursionError:
                return _too_deep(owner)
            if not items:
                continue
            if depth >= MAX_SEQUENCE_DEPTH:
                return _too_deep(owner)
            stack.extend((item, depth + 1, owner) for item in items if isinstance(item, Dataset))
    return None


def json_nesting_problem(document: Mapping[str, Any]) -> str | None:
    """The same check for a DICOM JSON dataset (PS3.18 F.2), as UPS-RS receives them.

    Counts sequence levels ("vr": "SQ" elements with items), iteratively; anything that is not
    shaped like DICOM JSON is skipped here and left to the caller's validation.
    """
    stack: list[tuple[Mapping[str, Any], int, str]] = [(document, 0, "")]
    while stack:
        current, depth, top = stack.pop()
        for key, element in current.items():
            if not isinstance(element, Mapping) or element.get("vr") != "SQ":
                continue
            items = element.get("Value")
            if not isinstance(items, list) or not items:
                continue
            owner = str(key) if depth == 0 else top
            if depth >= MAX_SEQUENCE_DEPTH:
                try:
                    tag = int(owner, 16)
                except ValueError:
                    tag = 0
                return _too_deep(tag)
            stack.extend((item, depth + 1, owner) for item in items if isinstance(item, Mapping))
    return None
