"""The attribute values the index keeps for QIDO, extracted once at store time.

Rules from the conformance statement: only the first value of a wrongly multi-valued
single-value element is indexed; values padded with NULs are indexed without the padding;
an attribute that failed validation is not indexed. PN values also get a normalised form
(case-folded, accents removed, name parts separated by spaces) for case- and
accent-insensitive and fuzzy prefix-word matching, and the other case-insensitive strings a
case-folded one (``dicom_core.query.matching`` explains how searches use these keys).
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicom_core.domain.model import IndexAttributes

STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
)
SERIES_KEYWORDS = ("Modality", "PerformedProcedureStepStartDate", "ManufacturerModelName")
INSTANCE_KEYWORDS = ("InstanceNumber",)

# Each keyword's tag, looked up once: pydicom's keyword lookup is slow next to everything else
# a store does per attribute.
_TAGS: dict[str, int] = {
    keyword: int(Tag(keyword))
    for keyword in (*STUDY_KEYWORDS, *SERIES_KEYWORDS, *INSTANCE_KEYWORDS)
}
PERSON_NAME_KEYWORDS = ("PatientName", "ReferringPhysicianName")
# Strings QIDO matches without regard to case (but with accents): their folded forms are
# indexed too, so a search compares keys and no backend needs case-insensitive collation.
FOLDED_KEYWORDS = (
    "PatientID",
    "AccessionNumber",
    "StudyDescription",
    "Modality",
    "ManufacturerModelName",
)


def clean_text(value: object) -> str:
    """A stored string without the trailing spaces and NULs that pad DICOM values."""
    return str(value).rstrip(" \x00").lstrip(" ")


def normalize_person_name(value: str) -> str:
    """Case-folded, accent-stripped name parts separated by single spaces.

    'Müller^Hans=ミュラー' becomes 'muller hans ミュラー'; used for PN matching, which the
    service does without regard to case or accents. NULs are left out (``_without_nuls``).
    """
    decomposed = unicodedata.normalize("NFKD", _without_nuls(value))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    for separator in "^=":
        stripped = stripped.replace(separator, " ")
    return " ".join(stripped.casefold().split())


def fold_text(value: str) -> str:
    """Case-folded text, accents kept: the key of case-insensitive string matching.

    NFC first and last, so that a precomposed and a decomposed accent compare equal. NULs are
    left out (``_without_nuls``).
    """
    folded = unicodedata.normalize("NFC", _without_nuls(value)).casefold()
    return unicodedata.normalize("NFC", folded)


def _without_nuls(value: str) -> str:
    """The value without NULs: text keys never hold one, so a search ignores them.

    A NUL is no character of any string VR (PS3.5 6.1 and Table 6.2-1: control characters
    are excluded but ESC, and in free text a few format effectors, never NUL); the standard
    names it only as the padding of UI values, which the service strips from any string
    (``clean_text``). One inside a value, which only invalid data or a ``%00`` in a query can
    bring, is therefore read as no character either: '1\\x00' (padded) and '\\x001' both
    match '1' and '*1*'. Every backend then compares NUL-free keys, which SQLite's GLOB needs:
    it reads its arguments as C strings and would stop at the first NUL.
    """
    return value.replace("\x00", "")


def normalized_forms(values: Mapping[str, object]) -> dict[str, str]:
    """The matching keys of the PN and case-insensitive values among ``values`` (by keyword)."""
    forms: dict[str, str] = {}
    for keyword in PERSON_NAME_KEYWORDS:
        if values.get(keyword):
            forms[keyword] = normalize_person_name(str(values[keyword]))
    for keyword in FOLDED_KEYWORDS:
        if values.get(keyword):
            forms[keyword] = fold_text(str(values[keyword]))
    return forms


def _first_value(ds: Dataset, keyword: str) -> str | None:
    elem = ds.get(Tag(keyword))
    if elem is None or elem.VR == "SQ":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = elem.value
        except Exception:
            return None
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
        if value is None:
            return None
    text = clean_text(value)
    return text or None


def _first_json_value(document: Mapping[str, Any], keyword: str) -> str | None:
    """The first value of an attribute in a DICOM JSON object, as DICOM text."""
    tag = _TAGS.get(keyword)
    element = document.get(f"{int(Tag(keyword)) if tag is None else tag:08X}")
    if not element or element.get("vr") == "SQ":
        return None
    values = element.get("Value") or []
    value = values[0] if values else None
    if value is None:
        return None
    if isinstance(value, dict):  # PN: rebuild the '='-separated component groups
        groups = [value.get(g) or "" for g in ("Alphabetic", "Ideographic", "Phonetic")]
        value = "=".join(groups).rstrip("=")
    text = clean_text(value)
    return text or None


def extract(
    ds: Dataset,
    *,
    skip_tags: Iterable[int] = (),
    document: Mapping[str, Any] | None = None,
) -> IndexAttributes:
    """Searchable values of ``ds`` at each level; tags in ``skip_tags`` failed validation.

    With ``document`` (the instance's DICOM JSON, already computed at store time) values are
    read from it instead of being converted from the dataset a second time.
    """
    skipped = set(skip_tags)

    def pick(keywords: tuple[str, ...]) -> dict[str, str | int | float | None]:
        out: dict[str, str | int | float | None] = {}
        for keyword in keywords:
            if _TAGS[keyword] in skipped:
                continue
            if document is not None:
                out[keyword] = _first_json_value(document, keyword)
            else:
                out[keyword] = _first_value(ds, keyword)
        return out

    study = pick(STUDY_KEYWORDS)
    series = pick(SERIES_KEYWORDS)
    instance = pick(INSTANCE_KEYWORDS)
    number = instance.get("InstanceNumber")
    try:
        instance["InstanceNumber"] = int(str(number)) if number is not None else None
    except ValueError:
        instance["InstanceNumber"] = None
    normalized = normalized_forms({**study, **series})
    return IndexAttributes(study=study, series=series, instance=instance, normalized=normalized)
