"""The attribute values the index keeps for QIDO, extracted once at store time.

Rules from the conformance statement: only the first value of a wrongly multi-valued
single-value element is indexed; values padded with NULs are indexed without the padding;
an attribute that failed validation is not indexed. PN values also get a normalised form
(case-folded, accents removed, name parts separated by spaces) for case- and
accent-insensitive and fuzzy prefix-word matching.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Iterable

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
PERSON_NAME_KEYWORDS = ("PatientName", "ReferringPhysicianName")


def clean_text(value: object) -> str:
    """A stored string without the trailing spaces and NULs that pad DICOM values."""
    return str(value).rstrip(" \x00").lstrip(" ")


def normalize_person_name(value: str) -> str:
    """Case-folded, accent-stripped name parts separated by single spaces.

    'Müller^Hans=ミュラー' becomes 'muller hans ミュラー'; used for PN matching, which the
    service does without regard to case or accents.
    """
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    for separator in "^=":
        stripped = stripped.replace(separator, " ")
    return " ".join(stripped.casefold().split())


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


def extract(ds: Dataset, *, skip_tags: Iterable[int] = ()) -> IndexAttributes:
    """Searchable values of ``ds`` at each level; tags in ``skip_tags`` failed validation."""
    skipped = set(skip_tags)

    def pick(keywords: tuple[str, ...]) -> dict[str, str | int | float | None]:
        out: dict[str, str | int | float | None] = {}
        for keyword in keywords:
            if int(Tag(keyword)) in skipped:
                continue
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
    normalized = {
        keyword: normalize_person_name(str(study[keyword]))
        for keyword in PERSON_NAME_KEYWORDS
        if study.get(keyword)
    }
    return IndexAttributes(study=study, series=series, instance=instance, normalized=normalized)
