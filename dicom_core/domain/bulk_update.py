"""Bulk update (``POST /v2/studies/$bulkUpdate``): the request, its limits, and applying it.

Microsoft's DICOM service changes patient and study attributes of whole studies in one
long-running operation ("Update DICOM files" on Microsoft Learn). The client sends::

    {"studyInstanceUids": ["1.2.3"],
     "changeDataset": {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}}}

This module is the pure part: it turns that body into a :class:`BulkUpdateRequest` or refuses
it with a :class:`BulkUpdateRequestError` naming the problem, and it applies a request to one
instance's dataset. Reading, writing and indexing the instances is the job runner's.

What follows Microsoft (microsoft/dicom-server at eeefbe4d7, ``Features/Update/UpdateTags.cs``
and ``UpdateRequestValidator.cs``, and its ``docs/concepts/bulk-update.md``):

* at most :data:`MAX_STUDIES` study UIDs, counted as sent, and at least one;
* only the 36 attributes of :data:`ALLOWED_ATTRIBUTES` may change; any other attribute is
  refused (never silently dropped), and every refused attribute is reported, not only the
  first, so that the web layer can answer with one FailedAttributesSequence item each;
* property names of the body are matched case-insensitively and unknown ones are ignored, as
  Microsoft's JSON binding does;
* only top-level attributes change; sequences, pixel data and file meta are left alone.

Where this module is stricter, on purpose (Microsoft's validator lets these through, and the
first two contradict its own documentation, "You can't update any field from non-null to a null
value"):

* an empty ``changeDataset`` is refused, since an operation that changes nothing is a mistake;
* a missing, null or empty value is refused, in every position of a multi-valued attribute;
* the ``vr`` must be the attribute's dictionary VR, and the number of values must fit its VM,
  because what is written must be a valid instance;
* values are checked with the store's VR rules (``dicom_core.domain.validation.vr_rules``),
  and control characters (ESC too: in JSON it is text, not an ISO 2022 escape) and backslashes
  (the value delimiter; LT excepted) are refused.

Study UIDs follow this service's UID rule (``dicom_core.domain.identifiers``), the one its
URLs and the store use, so any study it has stored can be named here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import orjson
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VM, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset

from dicom_core.domain.charsets import (
    CHARSET_VRS,
    DEFAULT_CHARSET,
    SPECIFIC_CHARACTER_SET,
    UTF8_TERM,
    Charset,
    encodes_exactly,
)
from dicom_core.domain.identifiers import identifier_problem
from dicom_core.domain.tags import HEX_TAG
from dicom_core.domain.validation import AttributeProblem
from dicom_core.domain.validation.messages import json_type, show, tag_keyword, tag_label
from dicom_core.domain.validation.values import charset_of, resolve_vr
from dicom_core.domain.validation.vr_rules import first_value_problem, free_text_problem

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "CHANGE_DATASET_FIELD",
    "MAX_STUDIES",
    "STUDY_UIDS_FIELD",
    "AttributeChange",
    "BulkUpdateApplyError",
    "BulkUpdateRequest",
    "BulkUpdateRequestError",
    "apply_changes",
    "parse_bulk_update_request",
]

#: The most studies one request may name (Microsoft's ``MaxStudyInstanceUidLimit``).
MAX_STUDIES: Final = 50

#: The body's two properties, spelled as Microsoft documents them (matched ignoring case).
STUDY_UIDS_FIELD: Final = "studyInstanceUids"
CHANGE_DATASET_FIELD: Final = "changeDataset"

#: The attributes a bulk update may change, tag -> keyword: the non-sequence attributes of the
#: Patient Identification, Patient Demographic and General Study modules that Microsoft's
#: ``UpdateTags.UpdateStudyFilterTags`` lists (the same list as its bulk-update.md tables).
ALLOWED_ATTRIBUTES: Final[Mapping[int, str]] = MappingProxyType(
    {
        # Patient Identification Module (PS3.3 C.2.2)
        0x00100010: "PatientName",
        0x00100020: "PatientID",
        0x00100021: "IssuerOfPatientID",
        0x00100022: "TypeOfPatientID",
        0x00101000: "OtherPatientIDs",  # retired in the standard, still listed by Microsoft
        0x00101001: "OtherPatientNames",
        0x00101005: "PatientBirthName",
        0x00101060: "PatientMotherBirthName",
        0x00101090: "MedicalRecordLocator",  # retired in the standard, still listed by Microsoft
        # Patient Demographic Module (PS3.3 C.2.3)
        0x00100030: "PatientBirthDate",
        0x00100032: "PatientBirthTime",
        0x00100040: "PatientSex",
        0x00100200: "QualityControlSubject",
        0x00101010: "PatientAge",
        0x00101020: "PatientSize",
        0x00101030: "PatientWeight",
        0x00101040: "PatientAddress",
        0x00101080: "MilitaryRank",
        0x00101081: "BranchOfService",
        0x00102150: "CountryOfResidence",
        0x00102152: "RegionOfResidence",
        0x00102154: "PatientTelephoneNumbers",
        0x00102160: "EthnicGroup",
        0x00102180: "Occupation",
        0x001021F0: "PatientReligiousPreference",
        0x00102201: "PatientSpeciesDescription",
        0x00102292: "PatientBreedDescription",
        0x00102295: "BreedRegistrationNumber",
        0x00102297: "ResponsiblePerson",
        0x00102298: "ResponsiblePersonRole",
        0x00102299: "ResponsibleOrganization",
        0x00104000: "PatientComments",
        0x00403001: "ConfidentialityConstraintOnPatientDataDescription",
        # General Study Module (PS3.3 C.7.2.1)
        0x00080050: "AccessionNumber",
        0x00080090: "ReferringPhysicianName",
        0x00081030: "StudyDescription",
    }
)

# PS3.18 F.2.2: the component groups of a person name, in DICOM's order.
_PN_GROUPS: Final = ("Alphabetic", "Ideographic", "Phonetic")
# VRs whose leading spaces are not significant either (PS3.5 Table 6.2-1); PN and LT keep them.
_BOTH_ENDS_PADDED_VRS: Final = frozenset({"CS", "DS", "LO", "SH"})
# Control characters free text may hold (PS3.5 6.2, LT); every other VR here allows none.
_LT_CONTROLS: Final = frozenset("\r\n\f\t")
# Groups and elements the charset scan of apply_changes does not look into.
_FILE_META_GROUP: Final = 0x0002
_PIXEL_DATA_TAGS: Final = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
# Shown values in messages are cut here, so a huge value cannot bloat an error.
_SHOWN_JSON_CHARS: Final = 64


class BulkUpdateRequestError(ValueError):
    """The request body cannot start a bulk update; the message names the problem (a 400).

    ``problems`` lists one :class:`AttributeProblem` per refused attribute of the change
    dataset (tag 0 for a key that is no tag), in tag order, for a response that reports them
    one by one as Microsoft's FailedAttributesSequence does. It is empty when the problem is
    the body itself or its study UIDs.
    """

    def __init__(self, message: str, problems: tuple[AttributeProblem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class BulkUpdateApplyError(ValueError):
    """One instance cannot take the change as stored; the message names the attribute.

    Only raised when a new value cannot be written in the instance's character set and the
    instance cannot safely switch to UTF-8 (see :func:`apply_changes`). The operation counts
    the instance as failed; other instances are unaffected.
    """


@dataclass(frozen=True, slots=True)
class AttributeChange:
    """One attribute to set: its tag, its dictionary VR and its new values as DICOM text.

    ``values`` holds each value as it is written into the file (before the character set
    encodes it): a person name as its component groups joined with ``=``, a decimal string as
    its text. Spaces that are not significant for the VR (trailing ones, and for CS, DS, LO
    and SH leading ones too) are already removed.
    """

    tag: int
    vr: str
    values: tuple[str, ...]

    @property
    def keyword(self) -> str:
        return ALLOWED_ATTRIBUTES[self.tag]

    def element(self) -> DataElement:
        """A fresh pydicom element holding the new values (one call, one new element)."""
        value: str | list[str] = self.values[0] if len(self.values) == 1 else list(self.values)
        return DataElement(self.tag, self.vr, value)

    def to_json(self) -> dict[str, Any]:
        """The DICOM JSON attribute object (PS3.18 F.2) that parses back to this change.

        DS values stay strings (accepted on input, see :func:`parse_bulk_update_request`), so
        that a value such as "70.50" survives a round trip through a job message unchanged.
        """
        if self.vr == "PN":
            return {"vr": "PN", "Value": [_person_name_json(value) for value in self.values]}
        return {"vr": self.vr, "Value": list(self.values)}


@dataclass(frozen=True, slots=True)
class BulkUpdateRequest:
    """A validated bulk update: which studies, and which attributes take which values.

    The change set is held as :class:`AttributeChange` values (tag, VR, DICOM text), not as a
    pydicom ``Dataset`` and not as the client's JSON: a ``Dataset`` is mutable and shared
    elements would leak one instance's edits into the next, while raw JSON would leave every
    user re-deciding how a person name or a number becomes DICOM text. Text values are
    immutable and hashable, turn into fresh pydicom elements per instance
    (:meth:`AttributeChange.element`), and back into the request's JSON (:meth:`to_json`) for
    the job message, which :func:`parse_bulk_update_request` reads back to an equal request.
    """

    #: The studies to update, in the order sent, each once.
    study_instance_uids: tuple[str, ...]
    #: One change per attribute, in tag order.
    changes: tuple[AttributeChange, ...]

    @property
    def tags(self) -> frozenset[int]:
        """The tags the request changes."""
        return frozenset(change.tag for change in self.changes)

    def to_json(self) -> dict[str, Any]:
        """The request as a body with the documented property names."""
        return {
            STUDY_UIDS_FIELD: list(self.study_instance_uids),
            CHANGE_DATASET_FIELD: {f"{c.tag:08X}": c.to_json() for c in self.changes},
        }


# --- parsing -----------------------------------------------------------------------------


def parse_bulk_update_request(body: bytes) -> BulkUpdateRequest:
    """Validate a bulk update body and return the request it asks for.

    Raises :class:`BulkUpdateRequestError` for a body that is not a JSON object, for missing,
    empty or mistyped ``studyInstanceUids`` or ``changeDataset``, for more than
    :data:`MAX_STUDIES` studies or an invalid UID among them, and for every attribute of the
    change dataset that may not change or whose value is missing, empty, of the wrong VR, or
    invalid for its VR. The study UIDs are checked first, as Microsoft does.
    """
    fields = _top_level_fields(_load(body))
    for scope in _UID_UPDATE_FIELDS:
        if scope.lower() in fields:
            # Newer Azure releases update Study, Series and SOP Instance UIDs, scoped by these
            # fields; this service does not, and updating the whole study instead would be
            # worse than refusing.
            raise BulkUpdateRequestError(
                f'"{scope}" scopes an update of UIDs, which this service does not support;'
                " send only studyInstanceUids and changeDataset."
            )
    study_uids = _study_uids(fields.get(STUDY_UIDS_FIELD.lower()))
    changes = _changes(fields.get(CHANGE_DATASET_FIELD.lower()))
    return BulkUpdateRequest(study_uids, changes)


#: The fields that scope an update of UIDs in Azure's newer releases.
_UID_UPDATE_FIELDS = ("seriesInstanceUid", "sopInstanceUid")


def _load(body: bytes) -> Any:
    if not body.strip():
        raise BulkUpdateRequestError(
            f'The request body is empty; send a JSON object with "{STUDY_UIDS_FIELD}" and'
            f' "{CHANGE_DATASET_FIELD}".'
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BulkUpdateRequestError(f"The request body is not valid JSON: {exc}.") from None


def _top_level_fields(document: Any) -> dict[str, Any]:
    """The body's properties by lower-cased name; two spellings of one name are refused."""
    if not isinstance(document, dict):
        raise BulkUpdateRequestError(
            f'The request body must be a JSON object with "{STUDY_UIDS_FIELD}" and'
            f' "{CHANGE_DATASET_FIELD}", not {json_type(document)}.'
        )
    fields: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for name, value in document.items():
        key = name.lower()
        if key in spelled:
            raise BulkUpdateRequestError(
                f'The request body gives "{spelled[key]}" twice (also as "{name}").'
            )
        spelled[key] = name
        fields[key] = value
    return fields


def _missing(field: str) -> BulkUpdateRequestError:
    # Microsoft's wording (resx MissingRequiredField), with the documented property name.
    return BulkUpdateRequestError(f"The required field '{field}' is missing or empty.")


def _study_uids(value: Any) -> tuple[str, ...]:
    if value is None or value == []:
        raise _missing(STUDY_UIDS_FIELD)
    if not isinstance(value, list):
        raise BulkUpdateRequestError(
            f"'{STUDY_UIDS_FIELD}' must be a JSON array of Study Instance UIDs,"
            f" not {json_type(value)}."
        )
    if len(value) > MAX_STUDIES:
        raise BulkUpdateRequestError(
            f"'{STUDY_UIDS_FIELD}' lists {len(value)} studies; at most {MAX_STUDIES} can be"
            " updated in one operation."
        )
    for position, uid in enumerate(value, start=1):
        where = f"Item {position} of '{STUDY_UIDS_FIELD}'"
        if not isinstance(uid, str):
            raise BulkUpdateRequestError(f"{where} must be a string, not {json_type(uid)}.")
        problem = identifier_problem(uid)
        if problem is not None:
            raise BulkUpdateRequestError(f"{where} is not a valid Study Instance UID: {problem}.")
    return tuple(dict.fromkeys(value))


def _changes(value: Any) -> tuple[AttributeChange, ...]:
    if value is None or value == {}:
        raise _missing(CHANGE_DATASET_FIELD)
    if not isinstance(value, dict):
        raise BulkUpdateRequestError(
            f"'{CHANGE_DATASET_FIELD}' must be a DICOM JSON dataset (a JSON object),"
            f" not {json_type(value)}."
        )
    changes: list[AttributeChange] = []
    problems: list[AttributeProblem] = []
    seen: dict[int, str] = {}
    for key, element in value.items():
        if not HEX_TAG.fullmatch(key):
            problems.append(
                AttributeProblem(0, "", f"{show(key)} is not a tag of 8 hexadecimal digits")
            )
            continue
        tag = int(key, 16)
        if tag in seen:
            problems.append(_problem(tag, f"is given twice (as {show(seen[tag])} and {show(key)})"))
            continue
        seen[tag] = key
        try:
            changes.append(_change(tag, element))
        except _Refused as refused:
            problems.append(_problem(tag, str(refused)))
    if problems:
        problems.sort(key=lambda problem: problem.tag)
        details = "; ".join(problem.message for problem in problems)
        raise BulkUpdateRequestError(
            f"'{CHANGE_DATASET_FIELD}' is refused: {details}.", tuple(problems)
        )
    changes.sort(key=lambda change: change.tag)
    return tuple(changes)


def _problem(tag: int, reason: str) -> AttributeProblem:
    """A refused attribute, its message naming it as "(gggg,eeee) Keyword: reason"."""
    return AttributeProblem(tag, tag_keyword(tag), f"{tag_label(tag)}: {reason}")


class _Refused(Exception):
    """Why one attribute of the change dataset is refused, phrased to follow its name."""


def _change(tag: int, element: Any) -> AttributeChange:
    """The change one attribute object asks for; raises :class:`_Refused` otherwise."""
    if tag not in ALLOWED_ATTRIBUTES:
        raise _Refused(
            "updating this attribute is not supported; a bulk update changes only the"
            " patient identification, patient demographic and general study attributes"
            " the service lists"
        )
    vr = str(dictionary_VR(tag))
    if not isinstance(element, dict):
        raise _Refused(f'must be a JSON object with "vr" and "Value", not {json_type(element)}')
    extra = sorted(set(element) - {"vr", "Value"})
    if extra:
        raise _Refused(f'{show(extra[0])} is not accepted; give the new value in "Value"')
    given_vr = element.get("vr")
    if given_vr is None:
        raise _Refused(f'"vr" is missing; it must be "{vr}"')
    if given_vr != vr:
        raise _Refused(f'"vr" is {_json_text(given_vr)}, but this attribute\'s VR is "{vr}"')
    values = element.get("Value")
    if values is None or values == []:
        raise _Refused('has no "Value"; a bulk update cannot empty or remove an attribute')
    if not isinstance(values, list):
        raise _Refused(f'"Value" must be a JSON array, not {json_type(values)}')
    if str(dictionary_VM(tag)) == "1" and len(values) > 1:
        raise _Refused(f"has {len(values)} values; {ALLOWED_ATTRIBUTES[tag]} takes exactly one")
    texts: list[str] = []
    for position, item in enumerate(values, start=1):
        try:
            texts.append(_value_text(item, vr))
        except _Refused as refused:
            where = f"value {position}" if len(values) > 1 else "the value"
            raise _Refused(f"{where} {refused}") from None
    reason = free_text_problem(texts[0], vr) if vr == "LT" else first_value_problem(texts, vr)
    if reason is not None:
        raise _Refused(reason)
    return AttributeChange(tag, vr, tuple(texts))


def _value_text(item: Any, vr: str) -> str:
    """One JSON value as DICOM text without its trailing spaces; raises :class:`_Refused`."""
    if item is None:
        raise _Refused("is null; a bulk update cannot empty an attribute")
    if vr == "PN":
        text = _person_name_text(item)
    elif vr == "DS" and isinstance(item, int | float) and not isinstance(item, bool):
        # JSON numbers (PS3.18 F.2.3); repr gives the shortest text that reads back the same.
        text = str(item) if isinstance(item, int) else repr(item)
    elif isinstance(item, str):
        text = item.strip(" ") if vr in _BOTH_ENDS_PADDED_VRS else item.rstrip(" ")
    else:
        expected = "a JSON string or number" if vr == "DS" else "a JSON string"
        raise _Refused(f"must be {expected}, not {json_type(item)}")
    if text == "":
        raise _Refused("is empty; a bulk update cannot empty an attribute")
    allowed = _LT_CONTROLS if vr == "LT" else frozenset()
    if any((ord(char) < 0x20 or ord(char) == 0x7F) and char not in allowed for char in text):
        raise _Refused(f"{show(text)} contains a control character, which {vr} does not allow")
    if vr != "LT" and "\\" in text:
        raise _Refused(f"{show(text)} contains a backslash, which separates DICOM values")
    return text


def _person_name_text(item: Any) -> str:
    """A PS3.18 F.2.2 person name object as DICOM text ("alphabetic=ideographic=phonetic")."""
    if not isinstance(item, dict):
        raise _Refused(
            'must be a person name object such as {"Alphabetic": "Doe^Jane"},'
            f" not {json_type(item)}"
        )
    unknown = sorted(set(item) - set(_PN_GROUPS))
    if unknown:
        raise _Refused(f"has {show(unknown[0])}; a person name has only {', '.join(_PN_GROUPS)}")
    groups: list[str] = []
    for group in _PN_GROUPS:
        text = item.get(group, "")
        if not isinstance(text, str):
            raise _Refused(f"has a {group} that is {json_type(text)}, not a JSON string")
        if "=" in text:
            raise _Refused(f"has a {group} {show(text)} with '=', which separates groups")
        groups.append(text.rstrip(" "))
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _person_name_json(value: str) -> dict[str, str]:
    return {group: text for group, text in zip(_PN_GROUPS, value.split("="), strict=False) if text}


def _json_text(value: Any) -> str:
    """A JSON value as the client wrote it, cut short."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= _SHOWN_JSON_CHARS else text[:_SHOWN_JSON_CHARS] + "..."


# --- applying ----------------------------------------------------------------------------


def apply_changes(dataset: Dataset, request: BulkUpdateRequest) -> tuple[int, ...]:
    """Set the request's attributes on an instance's ``dataset``, in place; return the tags set.

    Every changed attribute is replaced by a fresh element; nothing else is touched: no other
    attribute is read into pydicom's converted form, so one written with ``dcmwrite`` keeps
    its bytes, and file meta, pixel data and sequences stay as they were. Applying the same
    request again changes nothing further.

    Character set. New values are Unicode; the instance declares how its text is encoded
    (Specific Character Set). Microsoft's service does nothing about it (fo-dicom writes the
    values in whatever set the file declares), which can store bytes that do not mean the
    value sent. Here, when a new value of a PN, LO, SH or LT attribute cannot be encoded
    exactly in the declared set (default repertoire = ASCII), the instance switches to UTF-8
    (ISO_IR 192), which can encode any value, and (0008,0005) is in the returned tags. That
    is only safe if every other text of the instance is ASCII, which reads the same in any
    character set; then the switch leaves all other bytes as they are. If some other text is
    not ASCII, switching would need every such attribute re-encoded (bytes the update did
    not ask to change), so the instance is refused with :class:`BulkUpdateApplyError`
    instead. Sequence items that declare their own character set keep it and are not
    examined.
    """
    charset = charset_of(dataset, DEFAULT_CHARSET)
    misfit = _first_misfit(request, charset)
    if misfit is not None:
        blocker = _first_non_ascii_text(dataset, request.tags)
        if blocker is not None:
            terms = "\\".join(charset.terms)
            raise BulkUpdateApplyError(
                f"{tag_label(misfit.tag)}: the new value cannot be written in the instance's"
                f" character set {terms}, and the instance cannot switch to {UTF8_TERM}"
                f" because {tag_label(blocker)} holds text that is not ASCII (or cannot be"
                " read)."
            )
    for change in request.changes:
        dataset[change.tag] = change.element()
    written = sorted(request.tags)
    if misfit is not None:
        dataset[SPECIFIC_CHARACTER_SET] = DataElement(SPECIFIC_CHARACTER_SET, "CS", UTF8_TERM)
        # The other text is ASCII, so its raw bytes read the same in UTF-8: record that, or
        # dcmwrite would see a changed character set and re-encode every attribute.
        implicit_vr, little_endian = dataset.original_encoding
        dataset.set_original_encoding(implicit_vr, little_endian, convert_encodings(UTF8_TERM))
        written = sorted({*written, SPECIFIC_CHARACTER_SET})
    return tuple(written)


def _first_misfit(request: BulkUpdateRequest, charset: Charset) -> AttributeChange | None:
    """The first change with a value ``charset`` cannot carry exactly."""
    for change in request.changes:
        if change.vr in CHARSET_VRS and not all(
            encodes_exactly(charset, value) for value in change.values
        ):
            return change
    return None


def _first_non_ascii_text(dataset: Dataset, skipped: frozenset[int]) -> int | None:
    """The first top-level tag (not in ``skipped``) holding character-set text beyond ASCII.

    Text inside sequences counts for its top-level sequence, except in items that declare
    their own Specific Character Set. Raw elements are read without being converted in place.
    """
    for tag in sorted(map(int, dataset.keys())):
        if tag in skipped or tag >> 16 == _FILE_META_GROUP or tag in _PIXEL_DATA_TAGS:
            continue
        if tag == SPECIFIC_CHARACTER_SET:
            continue
        if not _is_ascii_element(dataset, tag):
            return tag
    return None


def _is_ascii_element(dataset: Dataset, tag: int) -> bool:
    elem = dataset.get_item(tag)
    if elem is None:
        return True
    vr = resolve_vr(elem, dataset)
    if vr == "SQ":
        try:
            if isinstance(elem, RawDataElement):
                # Parsed into a new element; the dataset keeps its raw one.
                elem = convert_raw_data_element(elem, ds=dataset)
            return all(_is_ascii_item(item) for item in elem.value or ())
        except Exception:
            return False  # a sequence that cannot be read cannot be shown to be ASCII
    if vr not in CHARSET_VRS:
        return True
    return _is_ascii_value(elem.value)


def _is_ascii_item(item: Dataset) -> bool:
    if item.get_item(SPECIFIC_CHARACTER_SET) is not None:
        return True  # its text is in its own character set, which the switch does not touch
    # keys(), not the item itself: iterating a Dataset converts its raw elements in place.
    return all(_is_ascii_element(item, tag) for tag in map(int, item.keys()))


def _is_ascii_value(value: Any) -> bool:
    """Whether a raw or converted text value is ASCII without ISO 2022 escapes."""
    if value is None:
        return True
    if isinstance(value, bytes | bytearray):
        return value.isascii() and b"\x1b" not in value
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    return all(str(item).isascii() and "\x1b" not in str(item) for item in items)
