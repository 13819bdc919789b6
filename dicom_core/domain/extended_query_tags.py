"""Extended query tags as definitions: validating what a client asks to index.

Pure functions over request JSON; no I/O. The service
(``dicom_core.services.extended_query_tags``) stores what these functions produce; how an
instance's values of a tag are indexed is query code (``dicom_core.query.indexed_values``),
beside the matching rules those values must agree with.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag

from dicom_core.domain.model import InstanceKey
from dicom_core.domain.tags import parse_attribute_id
from dicom_core.domain.validation.messages import show

MAX_TAGS = 128


class QueryTagLevelValues(StrEnum):
    """Enumerated values for the level of an extended query tag."""

    STUDY = "Study"
    SERIES = "Series"
    INSTANCE = "Instance"


class QueryTagStatusValues(StrEnum):
    """Enumerated values for the status of an extended query tag."""

    ADDING = "Adding"
    READY = "Ready"
    DELETING = "Deleting"


class QueryStatusValues(StrEnum):
    """Enumerated values for the query status of an extended query tag."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"


# The spec's table: VR -> the matching types QIDO allows on it.
SUPPORTED_VRS: dict[str, frozenset[str]] = {
    "AE": frozenset({"single"}),
    "AS": frozenset({"single"}),
    "CS": frozenset({"single"}),
    "DA": frozenset({"single", "range"}),
    "DS": frozenset({"single"}),
    "DT": frozenset({"single", "range"}),
    "FD": frozenset({"single"}),
    "FL": frozenset({"single"}),
    "IS": frozenset({"single"}),
    "LO": frozenset({"single"}),
    "PN": frozenset({"single", "fuzzy"}),
    "SH": frozenset({"single"}),
    "SL": frozenset({"single"}),
    "SS": frozenset({"single"}),
    "TM": frozenset({"single", "range"}),
    "UI": frozenset({"single"}),
    "UL": frozenset({"single"}),
    "US": frozenset({"single"}),
}


class QueryTagError(ValueError):
    """A request names a tag, VR or level that cannot be indexed (the web layer answers 400)."""


@dataclass(frozen=True, slots=True)
class QueryTagDefinition:
    """A validated tag to add: the 8-hex-digit path, its VR, level and private creator."""

    path: str
    vr: str
    level: QueryTagLevelValues
    private_creator: str | None = None


def _ci(entry: dict[str, Any], name: str) -> Any:
    """Field lookup ignoring case (input field names are case-insensitive)."""
    lowered = name.lower()
    for key, value in entry.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def is_private(path: str) -> bool:
    return int(path[:4], 16) % 2 == 1


def value_entity(level: str, key: InstanceKey) -> tuple[str, str, str]:
    """The study, series and SOP UIDs that key a value of a tag at ``level`` for the instance
    ``key``: "" below the level, so a study-level tag holds one value per study, which every
    instance of the study writes (the latest watermark wins) on both backends."""
    if level == QueryTagLevelValues.STUDY:
        return key.study_uid, "", ""
    if level == QueryTagLevelValues.SERIES:
        return key.study_uid, key.series_uid, ""
    return key.study_uid, key.series_uid, key.sop_uid


def resolve_path(raw: str) -> str:
    """A tag path given as 8 hex digits or a standard keyword -> 8 upper-case hex digits."""
    if not isinstance(raw, str) or not raw.strip():
        raise QueryTagError("The tag path is missing or empty.")
    text = raw.strip()
    path = parse_attribute_id(text)
    if path is not None:
        return path
    # Keywords are accepted case-insensitively too (PatientId for PatientID).
    tag = _keyword_ignoring_case(text)
    if tag is None:
        raise QueryTagError(f"The tag path '{raw}' is neither a tag (8 hex digits) nor a keyword.")
    return f"{tag:08X}"


def _keyword_ignoring_case(text: str) -> int | None:
    from pydicom._dicom_dict import DicomDictionary

    lowered = text.lower()
    for tag, entry in DicomDictionary.items():
        if str(entry[4]).lower() == lowered:
            return int(tag)
    return None


def standard_vr(path: str) -> str | None:
    try:
        return str(dictionary_VR(int(path, 16)))
    except KeyError:
        return None


def parse_definition(entry: Any) -> QueryTagDefinition:
    """Validate one element of the POST body; raises ``QueryTagError`` naming the problem."""
    if not isinstance(entry, dict):
        raise QueryTagError("Each extended query tag must be a JSON object.")
    path = resolve_path(_ci(entry, "path"))
    level_raw = _ci(entry, "level")
    level = next(
        (
            lv
            for lv in QueryTagLevelValues
            if isinstance(level_raw, str) and lv.value.lower() == level_raw.strip().lower()
        ),
        None,
    )
    if level is None:
        raise QueryTagError(
            f"The level '{level_raw}' of tag {path} is invalid; use Study, Series or Instance."
        )
    vr_raw = _ci(entry, "vr")
    vr = vr_raw.strip().upper() if isinstance(vr_raw, str) and vr_raw.strip() else None
    creator_raw = _ci(entry, "privateCreator")
    creator = creator_raw.strip() if isinstance(creator_raw, str) and creator_raw.strip() else None
    element = int(path[4:], 16)
    group = int(path[:4], 16)
    if group in (0x0000, 0x0002, 0xFFFE, 0xFFFF):
        # Command, file meta, item delimiters, and FFFF, which PS3.5 7.8.1 keeps from use.
        raise QueryTagError(f"The tag {path} cannot be indexed.")
    if is_private(path):
        if element < 0x1000 or element > 0xFFFF or group < 0x0009:
            raise QueryTagError(
                f"The private tag {path} is not a private data element (use gggg,xxee with"
                " xx >= 10)."
            )
        if vr is None:
            raise QueryTagError(f"The private tag {path} needs a VR.")
        if creator is None:
            raise QueryTagError(f"The private tag {path} needs a PrivateCreator.")
        if len(creator) > 64 or "\\" in creator or any(not char.isprintable() for char in creator):
            # LO: at most 64 characters, no backslash, no control or format characters (a
            # NUL or a right-to-left override would be listed back to every client).
            raise QueryTagError(
                f"The PrivateCreator {show(creator)} of tag {path} is invalid: LO text of at"
                " most 64 printable characters without a backslash."
            )
    else:
        if creator is not None:
            raise QueryTagError(f"The standard tag {path} cannot have a PrivateCreator.")
        known = standard_vr(path)
        if known is None or keyword_for_tag(int(path, 16)) == "":
            raise QueryTagError(f"The tag {path} is not a known standard tag.")
        if known == "SQ":
            raise QueryTagError(f"The tag {path} is a sequence (SQ), which cannot be indexed.")
        if vr is None:
            # The dictionary's first, for a tag it gives several ("US or SS"), as fo-dicom's
            # default VR of a tag is (Azure's choice when no VR is given).
            vr = known.split(" or ")[0]
        elif vr not in known.split(" or "):
            raise QueryTagError(
                f"The VR '{vr}' of tag {path} does not match its VR in the standard ({known})."
            )
    if vr == "SQ":
        raise QueryTagError(f"The tag {path} is a sequence (SQ), which cannot be indexed.")
    if vr not in SUPPORTED_VRS:
        raise QueryTagError(
            f"The VR '{vr}' of tag {path} is not supported; supported VRs: "
            f"{', '.join(SUPPORTED_VRS)}."
        )
    return QueryTagDefinition(path=path, vr=vr, level=level, private_creator=creator)


def parse_definitions(body: Any) -> list[QueryTagDefinition]:
    if not isinstance(body, list) or not body:
        raise QueryTagError("The request body must be a non-empty JSON array of query tags.")
    definitions = [parse_definition(entry) for entry in body]
    paths = [d.path for d in definitions]
    dupes = sorted({p for p in paths if paths.count(p) > 1})
    if dupes:
        raise QueryTagError(f"The request names tag(s) more than once: {', '.join(dupes)}.")
    return definitions


def parse_query_status(body: Any) -> QueryStatusValues:
    if not isinstance(body, dict):
        raise QueryTagError("The request body must be a JSON object with a queryStatus.")
    raw = _ci(body, "queryStatus")
    for value in QueryStatusValues:
        if isinstance(raw, str) and raw.strip().lower() == value.value.lower():
            return value
    raise QueryTagError(f"The queryStatus '{raw}' is invalid; use Enabled or Disabled.")
