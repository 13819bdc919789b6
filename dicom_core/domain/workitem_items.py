"""What PS3.4 Table CC.2.5-3 requires of the items of a workitem's sequences.

The top-level requirements of each transaction are in ``workitems``; these are the ones one
level down and deeper: a code needs its meaning, a referenced request its Study Instance UID,
a referenced instance its SOP Class and Instance UIDs, a human performer a name. They apply to
each item a request sends; a sequence sent empty has no items to check. As at the top level,
every conditional code (1C, 2C) is treated as optional, and what the table leaves optional in
a form that may be empty (3/2, 3/3) is not checked; a 1C or 3/1 element, when sent, needs a
value. The codes follow the table's SCU columns as microsoft/dicom-server encodes them
(``WorkitemDatasetValidatorExtension``), so a request Azure refuses for an item is refused
here too.

Create and update differ only where the table does: on create the progress and performed
procedure sequences must be empty (``workitems``), so only update checks their items; the
request's sequences and most of the patient's may not be updated at all (``workitems``),
and an update of the Other Patient IDs may name no issuer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from pydicom.datadict import tag_for_keyword


class Requirement(Enum):
    """The kinds of requirement a transaction's table puts on an attribute."""

    REQUIRED = "1"
    REQUIRED_MAY_BE_EMPTY = "2"
    REQUIRED_EMPTY = "2, empty"
    EMPTY_IF_PRESENT = "empty"
    NOT_EMPTY_IF_PRESENT = "not empty"
    NOT_ALLOWED = "-"


@dataclass(frozen=True, slots=True)
class ItemRule:
    """The requirement on one attribute of an item (None: optional), and, for a sequence, the
    rules for the attributes of its own items."""

    keyword: str
    requirement: Requirement | None
    items: Mapping[str, ItemRule] | None = None


ItemRules = Mapping[str, ItemRule]

_ONE = Requirement.REQUIRED  # 1/1
_TWO = Requirement.REQUIRED_MAY_BE_EMPTY  # 2/2
_FILLED = Requirement.NOT_EMPTY_IF_PRESENT  # 1C/1C and 3/1: a value when sent


def _rules(*rules: ItemRule) -> dict[str, ItemRule]:
    """Rules by tag (8 upper-case hex digits, as DICOM JSON names them), from the keywords."""
    table: dict[str, ItemRule] = {}
    for rule in rules:
        tag = tag_for_keyword(rule.keyword)
        assert tag is not None, rule.keyword
        table[f"{tag:08X}"] = rule
    return table


def _rule(
    keyword: str, requirement: Requirement | None, items: ItemRules | None = None
) -> ItemRule:
    return ItemRule(keyword, requirement, items)


# Table CC.2.5-2a, the UPS Code Sequence Macro: a code needs its meaning; its value, scheme and
# version are 1C (one of the three value forms, with the scheme that defines it).
CODE = _rules(
    _rule("CodeValue", _FILLED),
    _rule("CodingSchemeDesignator", _FILLED),
    _rule("CodingSchemeVersion", _FILLED),
    _rule("CodeMeaning", _ONE),
    _rule("LongCodeValue", _FILLED),
    _rule("URNCodeValue", _FILLED),
)

# Table CC.2.5-2b, the UPS Content Item Macro: a named value of a stated type; which value
# element carries it depends on the type (1C each).
CONTENT_ITEM = _rules(
    _rule("ValueType", _ONE),
    _rule("ConceptNameCodeSequence", _ONE, CODE),
    _rule("DateTime", _FILLED),
    _rule("Date", _FILLED),
    _rule("Time", _FILLED),
    _rule("PersonName", _FILLED),
    _rule("UID", _FILLED),
    _rule("TextValue", _FILLED),
    _rule("ConceptCodeSequence", _FILLED, CODE),
    _rule("NumericValue", _FILLED),
    _rule("MeasurementUnitsCodeSequence", _FILLED, CODE),
)

# Table CC.2.5-2d, the HL7v2 Hierarchic Designator Macro as UPS uses it (all 1C).
HL7_DESIGNATOR = _rules(
    _rule("LocalNamespaceEntityID", _FILLED),
    _rule("UniversalEntityID", _FILLED),
    _rule("UniversalEntityIDType", _FILLED),
)

# Table CC.2.5-2c, the Referenced Instances and Access Macro: what the instances are, which
# ones, and (1C) where to fetch them.
REFERENCED_INSTANCES = _rules(
    _rule("TypeOfInstances", _ONE),
    _rule("StudyInstanceUID", _FILLED),
    _rule("SeriesInstanceUID", _FILLED),
    _rule(
        "ReferencedSOPSequence",
        _ONE,
        _rules(
            _rule("ReferencedSOPClassUID", _ONE),
            _rule("ReferencedSOPInstanceUID", _ONE),
            _rule("HL7InstanceIdentifier", _FILLED),
            _rule("ReferencedFrameNumber", _FILLED),
            _rule("ReferencedSegmentNumber", _FILLED),
        ),
    ),
    _rule("DICOMRetrievalSequence", _FILLED, _rules(_rule("RetrieveAETitle", _ONE))),
    _rule(
        "DICOMMediaRetrievalSequence",
        _FILLED,
        _rules(_rule("StorageMediaFileSetID", _TWO), _rule("StorageMediaFileSetUID", _ONE)),
    ),
    _rule("WADORetrievalSequence", _FILLED, _rules(_rule("RetrieveURI", _ONE))),
    _rule("XDSRetrievalSequence", _FILLED, _rules(_rule("RepositoryUniqueID", _ONE))),
    _rule("WADORSRetrievalSequence", _FILLED, _rules(_rule("RetrieveURL", _ONE))),
)

# Table CC.2.5-2e, the Issuer of Patient ID Macro's qualifiers.
ISSUER_QUALIFIERS = _rules(
    _rule("UniversalEntityID", _TWO),
    _rule("UniversalEntityIDType", _FILLED),
    _rule("IdentifierTypeCode", _TWO),
    _rule("AssigningFacilitySequence", _TWO, HL7_DESIGNATOR),
    _rule("AssigningJurisdictionCodeSequence", _TWO, CODE),
    _rule("AssigningAgencyOrDepartmentCodeSequence", _TWO, CODE),
)

_HUMAN_PERFORMER = _rules(
    _rule("HumanPerformerCodeSequence", _ONE, CODE),
    _rule("HumanPerformerName", _ONE),
    _rule("HumanPerformerOrganization", _ONE),
)

_OUTPUT_DESTINATION = _rules(
    _rule("ReferencedSOPClassUID", _FILLED),
    _rule("DICOMStorageSequence", _FILLED, _rules(_rule("DestinationAE", _ONE))),
    _rule("STOWRSStorageSequence", _FILLED, _rules(_rule("StorageURL", _ONE))),
    _rule("XDSStorageSequence", _FILLED, _rules(_rule("RepositoryUniqueID", _ONE))),
)

# What both transactions check in the scheduling sequences they may carry, and the patient's
# photo (3/3 in both).
_SCHEDULING = _rules(
    _rule("ReferencedPatientPhotoSequence", None, REFERENCED_INSTANCES),
    _rule("ScheduledProcessingParametersSequence", None, CONTENT_ITEM),
    _rule("ScheduledStationNameCodeSequence", None, CODE),
    _rule("ScheduledStationClassCodeSequence", None, CODE),
    _rule("ScheduledStationGeographicLocationCodeSequence", None, CODE),
    _rule("ScheduledHumanPerformersSequence", None, _HUMAN_PERFORMER),
    _rule("ScheduledWorkitemCodeSequence", None, CODE),
    _rule("InputInformationSequence", None, REFERENCED_INSTANCES),
    _rule("OutputDestinationSequence", None, _OUTPUT_DESTINATION),
)

#: Create Workitem (N-CREATE): the items of the scheduling, patient and request sequences.
CREATE_ITEMS: dict[str, ItemRule] = _SCHEDULING | _rules(
    _rule("IssuerOfPatientIDQualifiersSequence", None, ISSUER_QUALIFIERS),
    _rule(
        "OtherPatientIDsSequence",
        None,
        _rules(
            _rule("PatientID", _ONE),
            _rule("IssuerOfPatientID", _TWO),
            _rule("IssuerOfPatientIDQualifiersSequence", _TWO, ISSUER_QUALIFIERS),
        ),
    ),
    _rule("IssuerOfAdmissionIDSequence", None, HL7_DESIGNATOR),
    _rule("AdmittingDiagnosesCodeSequence", None, CODE),
    _rule(
        "ReferencedRequestSequence",
        None,
        _rules(
            _rule("StudyInstanceUID", _ONE),
            _rule("AccessionNumber", _TWO),
            _rule("IssuerOfAccessionNumberSequence", _TWO, HL7_DESIGNATOR),
            _rule("PlacerOrderNumberImagingServiceRequest", _FILLED),
            _rule("OrderPlacerIdentifierSequence", _TWO, HL7_DESIGNATOR),
            _rule("FillerOrderNumberImagingServiceRequest", _FILLED),
            _rule("OrderFillerIdentifierSequence", _TWO, HL7_DESIGNATOR),
            _rule("RequestedProcedureID", _TWO),
            _rule("RequestedProcedureDescription", _TWO),
            _rule("RequestedProcedureCodeSequence", _TWO, CODE),
            _rule("ReasonForRequestedProcedureCodeSequence", None, CODE),
            _rule("RequestingService", _FILLED),
            _rule("RequestingServiceCodeSequence", None, CODE),
        ),
    ),
    _rule(
        "ReplacedProcedureStepSequence",
        None,
        _rules(_rule("ReferencedSOPClassUID", _ONE), _rule("ReferencedSOPInstanceUID", _ONE)),
    ),
)

#: Update Workitem (N-SET): the scheduling sequences, and what the performer reports: progress
#: (a contact needs its URI) and the performed procedure (its output information is 2/2).
UPDATE_ITEMS: dict[str, ItemRule] = _SCHEDULING | _rules(
    _rule(
        "OtherPatientIDsSequence",
        None,
        _rules(
            _rule("PatientID", _ONE),
            _rule("IssuerOfPatientID", Requirement.NOT_ALLOWED),
            _rule("IssuerOfPatientIDQualifiersSequence", Requirement.NOT_ALLOWED),
        ),
    ),
    _rule(
        "ProcedureStepProgressInformationSequence",
        None,
        _rules(
            _rule("ProcedureStepProgress", _FILLED),
            _rule("ProcedureStepProgressDescription", _FILLED),
            _rule(
                "ProcedureStepProgressParametersSequence",
                None,
                CONTENT_ITEM | _rules(_rule("ContentItemModifierSequence", None, CONTENT_ITEM)),
            ),
            _rule(
                "ProcedureStepCommunicationsURISequence",
                _FILLED,
                _rules(_rule("ContactURI", _ONE), _rule("ContactDisplayName", _FILLED)),
            ),
            _rule("ProcedureStepCancellationDateTime", _FILLED),
            _rule("ReasonForCancellation", _FILLED),
            _rule("ProcedureStepDiscontinuationReasonCodeSequence", _FILLED, CODE),
        ),
    ),
    _rule(
        "UnifiedProcedureStepPerformedProcedureSequence",
        None,
        _rules(
            _rule(
                "ActualHumanPerformersSequence",
                _FILLED,
                _rules(
                    _rule("HumanPerformerCodeSequence", _FILLED, CODE),
                    _rule("HumanPerformerName", _FILLED),
                    _rule("HumanPerformerOrganization", _FILLED),
                ),
            ),
            _rule("PerformedStationNameCodeSequence", None, CODE),
            _rule("PerformedStationClassCodeSequence", None, CODE),
            _rule("PerformedStationGeographicLocationCodeSequence", None, CODE),
            _rule("PerformedProcedureStepStartDateTime", _FILLED),
            _rule("PerformedProcedureStepDescription", _FILLED),
            _rule("CommentsOnThePerformedProcedureStep", _FILLED),
            _rule("PerformedWorkitemCodeSequence", _FILLED, CODE),
            _rule("PerformedProcessingParametersSequence", _FILLED, CONTENT_ITEM),
            _rule("PerformedProcedureStepEndDateTime", _FILLED),
            _rule("OutputInformationSequence", _TWO, REFERENCED_INSTANCES),
        ),
    ),
)
