"""UPS workitems (PS3.4 Annex CC): attribute requirements per transaction and the state machine.

Pure rules, no I/O: the workitem service applies them to DICOM JSON datasets and maps the
``WorkitemRuleError`` kinds to status codes. The requirement tables follow the SCU columns of
PS3.4 Table CC.2.5-3 for the top-level attributes; as the conformance statement says, every
conditional code (1C, 2C) is treated as optional, so only these kinds are enforced (checked
against microsoft/dicom-server's ``WorkitemDatasetValidatorExtension``, whose top-level codes
they follow; a 1C attribute, when sent, still needs a value, as PS3.5 7.4 defines type 1C):

- ``REQUIRED``: present with a value (type 1);
- ``REQUIRED_MAY_BE_EMPTY``: present, value optional (type 2);
- ``REQUIRED_EMPTY``: present, without a value (type 2 that the SCU must leave empty);
- ``EMPTY_IF_PRESENT``: may be sent, but without a value (nothing has been performed yet);
- ``NOT_EMPTY_IF_PRESENT``: may be omitted, but when sent it needs a value (type 1 on N-SET);
- ``NOT_ALLOWED``: must not be present.

Before a workitem becomes COMPLETED or CANCELED, the Final State column of the same table
applies (``check_final_state``): the performer must have given, with Update Workitem, what
the table requires for that state (the performed procedure for COMPLETED, the reasons for
CANCELED).

The Transaction UID (0008,1195) is the ownership lock: it is set when a workitem is claimed
(SCHEDULED -> IN PROGRESS), must accompany every later change, and is never returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from dicom_core.domain.workitem_items import (
    CREATE_ITEMS,
    UPDATE_ITEMS,
    ItemRules,
    Requirement,
)

UPS_PUSH_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.1"
#: PS3.4 CC.3.1's well-known SOP Instance UIDs that subscriptions address (the global
#: subscription, and the filtered one): never a workitem's.
SUBSCRIPTION_UIDS = frozenset({"1.2.840.10008.5.1.4.34.5", "1.2.840.10008.5.1.4.34.5.1"})

SOP_CLASS_UID = "00080016"
SOP_INSTANCE_UID = "00080018"
TRANSACTION_UID = "00081195"
PROCEDURE_STEP_STATE = "00741000"
CANCELLATION_DATETIME = "00404052"
REASON_FOR_CANCELLATION = "00741238"
PROGRESS_INFORMATION = "00741002"  # Procedure Step Progress Information Sequence
DISCONTINUATION_REASONS = "0074100E"  # Procedure Step Discontinuation Reason Code Sequence
COMMUNICATIONS_URIS = "00741008"  # Procedure Step Communications URI Sequence
CONTACT_URI = "0074100A"
CONTACT_DISPLAY_NAME = "0074100C"


class State(StrEnum):
    """The four states of a UPS (PS3.4 CC.1.1)."""

    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN PROGRESS"
    CANCELED = "CANCELED"
    COMPLETED = "COMPLETED"

    @property
    def final(self) -> bool:
        return self in (State.CANCELED, State.COMPLETED)


class Transaction(Enum):
    CREATE = "create"
    UPDATE = "update"
    CHANGE_STATE = "change state"


R = Requirement

# Top-level attributes by tag: (keyword, requirement). Attributes not listed are optional.
# The service fills the SCP-side attributes before these checks (SOPClassUID, WorklistLabel,
# ScheduledProcedureStepModificationDateTime, ProcedureStepState when absent), as PS3.4
# Table CC.2.5-3 gives them to the SCP.
CREATE_REQUIREMENTS: dict[str, tuple[str, Requirement]] = {
    # 2/2 and empty: the lock does not exist before the workitem is claimed.
    TRANSACTION_UID: ("TransactionUID", R.REQUIRED_EMPTY),
    "00080005": ("SpecificCharacterSet", R.NOT_EMPTY_IF_PRESENT),  # 1C/1C
    "00741200": ("ScheduledProcedureStepPriority", R.REQUIRED),
    "00741204": ("ProcedureStepLabel", R.REQUIRED),
    "00404005": ("ScheduledProcedureStepStartDateTime", R.REQUIRED),
    "00404011": ("ExpectedCompletionDateTime", R.NOT_EMPTY_IF_PRESENT),  # 3/1, as on update
    "00404041": ("InputReadinessState", R.REQUIRED),
    PROCEDURE_STEP_STATE: ("ProcedureStepState", R.REQUIRED),
    "00741210": ("ScheduledProcessingParametersSequence", R.REQUIRED_MAY_BE_EMPTY),  # 2/2
    "00404025": ("ScheduledStationNameCodeSequence", R.REQUIRED_MAY_BE_EMPTY),
    "00404026": ("ScheduledStationClassCodeSequence", R.REQUIRED_MAY_BE_EMPTY),
    "00404027": ("ScheduledStationGeographicLocationCodeSequence", R.REQUIRED_MAY_BE_EMPTY),
    "00404018": ("ScheduledWorkitemCodeSequence", R.REQUIRED_MAY_BE_EMPTY),
    "00400400": ("CommentsOnTheScheduledProcedureStep", R.REQUIRED_MAY_BE_EMPTY),  # 2/2
    "00404021": ("InputInformationSequence", R.REQUIRED_MAY_BE_EMPTY),
    "0020000D": ("StudyInstanceUID", R.NOT_EMPTY_IF_PRESENT),  # 1C/2
    "00100010": ("PatientName", R.REQUIRED_MAY_BE_EMPTY),
    "00100020": ("PatientID", R.NOT_EMPTY_IF_PRESENT),  # 1C/2, was wrongly 2/2
    "00100021": ("IssuerOfPatientID", R.REQUIRED_MAY_BE_EMPTY),  # 2/2 (CC.2.5-2e)
    "00100024": ("IssuerOfPatientIDQualifiersSequence", R.REQUIRED_MAY_BE_EMPTY),  # 2/2
    "00101002": ("OtherPatientIDsSequence", R.REQUIRED_MAY_BE_EMPTY),  # 2/2
    "00100030": ("PatientBirthDate", R.REQUIRED_MAY_BE_EMPTY),
    "00100040": ("PatientSex", R.REQUIRED_MAY_BE_EMPTY),
    "00380010": ("AdmissionID", R.REQUIRED_MAY_BE_EMPTY),  # 2/2
    "00380014": ("IssuerOfAdmissionIDSequence", R.REQUIRED_MAY_BE_EMPTY),  # 2/2
    "00081080": ("AdmittingDiagnosesDescription", R.REQUIRED_MAY_BE_EMPTY),  # 2/2
    "00081084": ("AdmittingDiagnosesCodeSequence", R.REQUIRED_MAY_BE_EMPTY),  # 2/2
    "0040A370": ("ReferencedRequestSequence", R.REQUIRED_MAY_BE_EMPTY),
    "00741224": ("ReplacedProcedureStepSequence", R.NOT_EMPTY_IF_PRESENT),  # 1C/1C
    # 2/2 with every item attribute "not allowed": nothing has progressed or been performed.
    "00741002": ("ProcedureStepProgressInformationSequence", R.REQUIRED_EMPTY),
    "00741216": ("UnifiedProcedureStepPerformedProcedureSequence", R.REQUIRED_EMPTY),
}

# N-SET: identity, state and lock are not the request's to change; neither is the patient
# (the UPS Relationship Module is "not allowed" on N-SET). 3/1 attributes need a value.
UPDATE_REQUIREMENTS: dict[str, tuple[str, Requirement]] = {
    SOP_CLASS_UID: ("SOPClassUID", R.NOT_ALLOWED),
    SOP_INSTANCE_UID: ("SOPInstanceUID", R.NOT_ALLOWED),
    # The lock travels in the URL (PS3.18 11.6); Microsoft ignores one in the body, we refuse it.
    TRANSACTION_UID: ("TransactionUID", R.NOT_ALLOWED),
    PROCEDURE_STEP_STATE: ("ProcedureStepState", R.NOT_ALLOWED),
    "00080005": ("SpecificCharacterSet", R.NOT_EMPTY_IF_PRESENT),  # 1C/1C
    "00741200": ("ScheduledProcedureStepPriority", R.NOT_EMPTY_IF_PRESENT),
    "00741204": ("ProcedureStepLabel", R.NOT_EMPTY_IF_PRESENT),
    "00741202": ("WorklistLabel", R.NOT_EMPTY_IF_PRESENT),  # 3/1
    "00404005": ("ScheduledProcedureStepStartDateTime", R.NOT_EMPTY_IF_PRESENT),
    "00404011": ("ExpectedCompletionDateTime", R.NOT_EMPTY_IF_PRESENT),  # 3/1
    "00404018": ("ScheduledWorkitemCodeSequence", R.NOT_EMPTY_IF_PRESENT),  # 3/1
    "00400400": ("CommentsOnTheScheduledProcedureStep", R.NOT_EMPTY_IF_PRESENT),  # 3/1
    "00404041": ("InputReadinessState", R.NOT_EMPTY_IF_PRESENT),
    "00100010": ("PatientName", R.NOT_ALLOWED),
    "00100020": ("PatientID", R.NOT_ALLOWED),
    "00100021": ("IssuerOfPatientID", R.NOT_ALLOWED),
    "00100024": ("IssuerOfPatientIDQualifiersSequence", R.NOT_ALLOWED),
    "00100030": ("PatientBirthDate", R.NOT_ALLOWED),
    "00100040": ("PatientSex", R.NOT_ALLOWED),
    "00380010": ("AdmissionID", R.NOT_ALLOWED),
    "00380014": ("IssuerOfAdmissionIDSequence", R.NOT_ALLOWED),
    "00081080": ("AdmittingDiagnosesDescription", R.NOT_ALLOWED),
    "00081084": ("AdmittingDiagnosesCodeSequence", R.NOT_ALLOWED),
    "0040A370": ("ReferencedRequestSequence", R.NOT_ALLOWED),
    "00741224": ("ReplacedProcedureStepSequence", R.NOT_ALLOWED),
}

CHANGE_STATE_REQUIREMENTS: dict[str, tuple[str, Requirement]] = {
    TRANSACTION_UID: ("TransactionUID", R.REQUIRED),
    PROCEDURE_STEP_STATE: ("ProcedureStepState", R.REQUIRED),
}

REQUIREMENTS = {
    Transaction.CREATE: CREATE_REQUIREMENTS,
    Transaction.UPDATE: UPDATE_REQUIREMENTS,
    Transaction.CHANGE_STATE: CHANGE_STATE_REQUIREMENTS,
}

#: The requirements on the items of the sequences a transaction may carry
#: (``workitem_items``); a state change carries none.
ITEM_REQUIREMENTS: dict[Transaction, ItemRules] = {
    Transaction.CREATE: CREATE_ITEMS,
    Transaction.UPDATE: UPDATE_ITEMS,
    Transaction.CHANGE_STATE: {},
}


class Failure(Enum):
    """Why a rule rejected a request; the service maps each kind to a status code."""

    INVALID = "invalid"  # the dataset breaks the requirements: 400
    WRONG_STATE = "wrong state"  # not valid in the current state: 400
    MISSING_LOCK = "missing lock"  # Transaction UID needed but absent: 400
    WRONG_LOCK = "wrong lock"  # Transaction UID does not match: 400
    ALREADY = "already"  # already in the requested (final) state: 409 + Warning
    CONFLICT = "conflict"  # inconsistent with the current state (cancel request): 409


class WorkitemRuleError(Exception):
    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


def has_value(element: Any) -> bool:
    """Whether a DICOM JSON element carries a value: a sequence at least one item, another
    element at least one value that is not blank (white space alone is empty, as Azure's
    validator reads it; a person name needs a component that is not), or inline or bulk
    data."""
    if not isinstance(element, Mapping):
        return False
    value = element.get("Value")
    if isinstance(value, list) and value:
        if element.get("vr") == "SQ":
            return True
        if any(_filled(v) for v in value):
            return True
    return bool(element.get("InlineBinary") or element.get("BulkDataURI"))


def _filled(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Mapping):  # a person name's component groups
        return any(isinstance(part, str) and part.strip() for part in value.values())
    return value is not None


def first_string(dataset: Mapping[str, Any], tag: str) -> str | None:
    """The first value of a string attribute, stripped, or None when absent or empty."""
    element = dataset.get(tag)
    values = element.get("Value") if isinstance(element, Mapping) else None
    for value in values if isinstance(values, list) else []:
        if isinstance(value, Mapping):  # a PN value
            value = value.get("Alphabetic")
        text = "" if value is None else str(value).strip()
        if text:
            return text
    return None


MAX_PROBLEMS_NAMED = 50
"""Problems a refusal names at most (then how many more): a body of a million empty items
must not become an answer, or a list in memory, of hundreds of megabytes."""


class Problems:
    """The problems a check finds: the first ``MAX_PROBLEMS_NAMED`` in words, the rest
    counted. ``add`` takes a problem's words in parts, joined only when it is kept."""

    def __init__(self) -> None:
        self.named: list[str] = []
        self.more = 0

    def add(self, *parts: str) -> None:
        if len(self.named) < MAX_PROBLEMS_NAMED:
            self.named.append("".join(parts))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.named)

    def summary(self) -> str:
        more = f"; and {self.more} more" if self.more else ""
        return "; ".join(self.named) + more + "."


def _tag_name(keyword: str, tag: str) -> str:
    return f"{keyword} ({tag[:4]},{tag[4:]})"


def _requirement_problem(requirement: Requirement, dataset: Mapping[str, Any], tag: str) -> str:
    """How ``dataset[tag]`` breaks ``requirement`` (what follows its name), or ``""``."""
    present = tag in dataset
    filled = present and has_value(dataset[tag])
    if requirement is R.REQUIRED and not filled:
        return "is required and must have a value"
    if requirement is R.REQUIRED_MAY_BE_EMPTY and not present:
        return "is required (it may be empty)"
    if requirement is R.REQUIRED_EMPTY and not present:
        return "is required, without a value"
    if requirement in (R.REQUIRED_EMPTY, R.EMPTY_IF_PRESENT) and filled:
        return "must be empty"
    if requirement is R.NOT_EMPTY_IF_PRESENT and present and not filled:
        return "must not be empty"
    if requirement is R.NOT_ALLOWED and present:
        return "must not be present"
    return ""


def _item_problems(element: Any, rules: ItemRules, name: str, problems: Problems) -> None:
    """Add what the items of the sequence ``element`` (named ``name``) break of ``rules``."""
    items = element.get("Value") if isinstance(element, Mapping) else None
    for number, item in enumerate(items if isinstance(items, list) else [], start=1):
        if not isinstance(item, Mapping):
            continue  # not an item: the DICOM JSON check refuses it
        for tag, rule in rules.items():
            prefix = (name, " item ", str(number), " > ", rule.keyword, " (", tag[:4], ",")
            if rule.requirement is not None:
                problem = _requirement_problem(rule.requirement, item, tag)
                if problem:
                    problems.add(*prefix, tag[4:], ") ", problem)
            if rule.items is not None and tag in item:
                _item_problems(item[tag], rule.items, "".join(prefix) + tag[4:] + ")", problems)


def check_requirements(transaction: Transaction, dataset: Mapping[str, Any]) -> None:
    """Raise ``WorkitemRuleError(INVALID)`` naming the attributes that break the table (the
    first ``MAX_PROBLEMS_NAMED``): the top-level requirements, then those of the items of each
    sequence sent."""
    problems = Problems()
    for tag, (keyword, requirement) in REQUIREMENTS[transaction].items():
        problem = _requirement_problem(requirement, dataset, tag)
        if problem:
            problems.add(_tag_name(keyword, tag), " ", problem)
    for tag, rule in ITEM_REQUIREMENTS[transaction].items():
        if rule.items is not None and tag in dataset:
            _item_problems(dataset[tag], rule.items, _tag_name(rule.keyword, tag), problems)
    if transaction is Transaction.CREATE and PROCEDURE_STEP_STATE in dataset:
        state = first_string(dataset, PROCEDURE_STEP_STATE)
        if state is not None and state != State.SCHEDULED.value:
            problems.add(
                f"ProcedureStepState (0074,1000) must be SCHEDULED on create, not {state!r}"
            )
    if problems:
        raise WorkitemRuleError(
            Failure.INVALID,
            f"The dataset does not meet the {transaction.value} requirements: "
            + problems.summary(),
        )


class FinalCode(Enum):
    """The Final State codes of PS3.4 Table CC.2.5-3 that are enforced (CC.2.5.1.1)."""

    R = "R"  # needs a value before the workitem is COMPLETED or CANCELED
    P = "P"  # needs a value before it is COMPLETED; may be missing when CANCELED
    X = "X"  # needs a value before it is CANCELED; may be missing when COMPLETED

    def applies_to(self, target: State) -> bool:
        return (
            self is FinalCode.R
            or (self is FinalCode.P and target is State.COMPLETED)
            or (self is FinalCode.X and target is State.CANCELED)
        )


@dataclass(frozen=True, slots=True)
class FinalRule:
    keyword: str
    code: FinalCode
    #: Rules for each item of a sequence, checked when the sequence has items.
    items: Mapping[str, FinalRule] | None = None


# The Final State column for the attributes Microsoft's service checks
# (``WorkitemFinalStateValidatorExtension``, microsoft/dicom-server). RC and O codes are
# not enforced: their conditions are the performer's to judge.
FINAL_STATE_REQUIREMENTS: dict[str, FinalRule] = {
    SOP_CLASS_UID: FinalRule("SOPClassUID", FinalCode.R),
    SOP_INSTANCE_UID: FinalRule("SOPInstanceUID", FinalCode.R),
    "00741200": FinalRule("ScheduledProcedureStepPriority", FinalCode.R),
    "00404010": FinalRule("ScheduledProcedureStepModificationDateTime", FinalCode.R),
    "00404005": FinalRule("ScheduledProcedureStepStartDateTime", FinalCode.R),
    "00404041": FinalRule("InputReadinessState", FinalCode.R),
    PROCEDURE_STEP_STATE: FinalRule("ProcedureStepState", FinalCode.R),
    PROGRESS_INFORMATION: FinalRule(
        "ProcedureStepProgressInformationSequence",
        FinalCode.X,
        {
            CANCELLATION_DATETIME: FinalRule("ProcedureStepCancellationDateTime", FinalCode.X),
            DISCONTINUATION_REASONS: FinalRule(
                "ProcedureStepDiscontinuationReasonCodeSequence", FinalCode.X
            ),
        },
    ),
    "00741216": FinalRule(
        "UnifiedProcedureStepPerformedProcedureSequence",
        FinalCode.P,
        {
            "00404028": FinalRule("PerformedStationNameCodeSequence", FinalCode.P),
            "00404050": FinalRule("PerformedProcedureStepStartDateTime", FinalCode.P),
            "00404019": FinalRule("PerformedWorkitemCodeSequence", FinalCode.P),
            "00404051": FinalRule("PerformedProcedureStepEndDateTime", FinalCode.P),
            "00404033": FinalRule("OutputInformationSequence", FinalCode.P),
        },
    ),
}


def check_final_state(dataset: Mapping[str, Any], target: State) -> None:
    """Before a workitem becomes COMPLETED or CANCELED: every attribute the Final State
    column requires for ``target`` has a value, in the workitem as it would be stored (the
    performer sets them with Update Workitem first). Raises ``WorkitemRuleError(INVALID)``
    naming each one missing."""
    problems = Problems()
    _final_state_problems(dataset, target, FINAL_STATE_REQUIREMENTS, "", problems)
    if problems:
        raise WorkitemRuleError(
            Failure.INVALID,
            f"The workitem does not meet the final state requirements of {target.value}"
            " (set them with Update Workitem first): " + problems.summary(),
        )


def _final_state_problems(
    dataset: Mapping[str, Any],
    target: State,
    rules: Mapping[str, FinalRule],
    path: str,
    problems: Problems,
) -> None:
    for tag, rule in rules.items():
        name = f"{path}{_tag_name(rule.keyword, tag)}"
        element = dataset.get(tag)
        if rule.code.applies_to(target) and not has_value(element):
            problems.add(name, " needs a value")
        if rule.items is None or not isinstance(element, Mapping):
            continue
        items = element.get("Value")
        for number, item in enumerate(items if isinstance(items, list) else [], start=1):
            if isinstance(item, Mapping):
                _final_state_problems(
                    item, target, rule.items, f"{name} item {number} > ", problems
                )


def record_cancellation(
    dataset: Mapping[str, Any], when: str, request: Mapping[str, Any]
) -> dict[str, Any]:
    """``dataset`` with its cancellation recorded where PS3.4 Table CC.2.5-3 keeps it: in the
    first item of the Procedure Step Progress Information Sequence, the Cancellation
    DateTime (``when``, unless the performer gave one), and the Reason For Cancellation and
    Discontinuation Reason Code Sequence of a cancellation ``request``, when it has them; the
    request's Contact URI and Display Name (PS3.4 Table CC.2.4-1: whom to tell about it) as an
    item of the Procedure Step Communications URI Sequence, as Azure's service records them.

    The top-level Cancellation DateTime and Reason For Cancellation that earlier versions
    wrote are kept for their readers (Microsoft's service writes the time there too).
    """
    updated = dict(dataset)
    sequence = updated.get(PROGRESS_INFORMATION)
    items = sequence.get("Value") if isinstance(sequence, Mapping) else None
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], Mapping) else {}
    item = dict(first)
    if not has_value(item.get(CANCELLATION_DATETIME)):
        item[CANCELLATION_DATETIME] = {"vr": "DT", "Value": [when]}
    for tag in (REASON_FOR_CANCELLATION, DISCONTINUATION_REASONS):
        if tag in request:
            item[tag] = request[tag]
    if has_value(request.get(CONTACT_URI)):
        contact = {
            tag: request[tag] for tag in (CONTACT_URI, CONTACT_DISPLAY_NAME) if tag in request
        }
        item[COMMUNICATIONS_URIS] = {"vr": "SQ", "Value": [contact]}
    rest = list(items[1:]) if isinstance(items, list) else []
    updated[PROGRESS_INFORMATION] = {"vr": "SQ", "Value": [item, *rest]}
    if not has_value(updated.get(CANCELLATION_DATETIME)):
        updated[CANCELLATION_DATETIME] = {"vr": "DT", "Value": [when]}
    if REASON_FOR_CANCELLATION in request:
        updated[REASON_FOR_CANCELLATION] = request[REASON_FOR_CANCELLATION]
    return updated


def parse_state(value: str | None) -> State:
    for state in State:
        if state.value == value:
            return state
    raise WorkitemRuleError(
        Failure.INVALID,
        f"ProcedureStepState (0074,1000) {value!r} is not one of "
        + ", ".join(s.value for s in State if s is not State.SCHEDULED)
        + ".",
    )


def check_update(state: State, current_lock: str | None, given_lock: str | None) -> None:
    """Update Workitem: who may change a workitem in which state (PS3.4 CC.2.6, PS3.18 11.6)."""
    if state.final:
        raise WorkitemRuleError(
            Failure.WRONG_STATE, f"The workitem is {state.value} and can no longer be updated."
        )
    if state is State.SCHEDULED:
        if given_lock is not None:
            raise WorkitemRuleError(
                Failure.WRONG_STATE,
                "The workitem is SCHEDULED (not owned): send the update without a Transaction UID.",
            )
        return
    if given_lock is None:
        raise WorkitemRuleError(
            Failure.MISSING_LOCK,
            "The workitem is IN PROGRESS: the update must carry its Transaction UID.",
        )
    if given_lock != current_lock:
        raise WorkitemRuleError(
            Failure.WRONG_LOCK, "The Transaction UID does not match the workitem's owner."
        )


def change_state(state: State, current_lock: str | None, requested: State, lock: str) -> State:
    """Change UPS State (PS3.4 Table CC.1.1-2): the new state, or the reason it is refused."""
    if requested is State.SCHEDULED:
        raise WorkitemRuleError(Failure.INVALID, "A workitem cannot be changed back to SCHEDULED.")
    if state is State.SCHEDULED:
        if requested is State.IN_PROGRESS:
            return State.IN_PROGRESS
        raise WorkitemRuleError(
            Failure.WRONG_STATE,
            f"The workitem is SCHEDULED, not yet IN PROGRESS: it cannot become"
            f" {requested.value} (claim it first, or request its cancellation).",
        )
    if state is State.IN_PROGRESS:
        if lock != current_lock:
            raise WorkitemRuleError(
                Failure.WRONG_LOCK, "The Transaction UID does not match the workitem's owner."
            )
        if requested is State.IN_PROGRESS:
            raise WorkitemRuleError(Failure.WRONG_STATE, "The workitem is already IN PROGRESS.")
        return requested
    if requested is state:
        raise WorkitemRuleError(
            Failure.ALREADY, f"The UPS is already in the requested state of {state.value}."
        )
    raise WorkitemRuleError(
        Failure.WRONG_STATE,
        f"The workitem is {state.value}, a final state: it cannot become {requested.value}.",
    )


def request_cancellation(state: State) -> State:
    """Request Cancellation: only a SCHEDULED workitem can be canceled this way (no Watch/Event
    classes forward the request to an owner), so an owned one is refused."""
    if state is State.SCHEDULED:
        return State.CANCELED
    if state is State.CANCELED:
        raise WorkitemRuleError(
            Failure.ALREADY, "The UPS is already in the requested state of CANCELED."
        )
    raise WorkitemRuleError(
        Failure.CONFLICT,
        f"The workitem is {state.value}: only a SCHEDULED workitem can be canceled by request"
        + (
            " (its owner can cancel it by changing its state)."
            if state is State.IN_PROGRESS
            else "."
        ),
    )


@dataclass(frozen=True, slots=True)
class StateChange:
    """The Change UPS State data elements of a request."""

    lock: str
    requested: State


def read_state_change(dataset: Mapping[str, Any]) -> StateChange:
    try:
        check_requirements(Transaction.CHANGE_STATE, dataset)
    except WorkitemRuleError as exc:
        missing_lock = not has_value(dataset.get(TRANSACTION_UID))
        if missing_lock and has_value(dataset.get(PROCEDURE_STEP_STATE)):
            raise WorkitemRuleError(Failure.MISSING_LOCK, exc.message) from None
        raise
    # The request's two elements are read as one value each: a number, a name or a second
    # value would otherwise be taken as (part of) the lock or the state.
    problems = [
        problem
        for tag, keyword, vr in (
            (TRANSACTION_UID, "TransactionUID", "UI"),
            (PROCEDURE_STEP_STATE, "ProcedureStepState", "CS"),
        )
        if (problem := _single_string_problem(dataset[tag], f"{keyword} ({tag[:4]},{tag[4:]})", vr))
    ]
    if problems:
        raise WorkitemRuleError(
            Failure.INVALID, "The state change is refused: " + "; ".join(problems) + "."
        )
    return StateChange(
        lock=str(first_string(dataset, TRANSACTION_UID)),
        requested=parse_state(first_string(dataset, PROCEDURE_STEP_STATE)),
    )


def _single_string_problem(element: Mapping[str, Any], name: str, vr: str) -> str | None:
    """What keeps ``element`` from being one string value of ``vr``, or None."""
    if element.get("vr") != vr:
        return f"{name} must have VR {vr}, not {element.get('vr')!r}"
    value = element.get("Value")
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], str):
        return f"{name} must hold exactly one string value"
    return None


@dataclass(frozen=True, slots=True)
class WorkitemRecord:
    """A stored workitem: its full dataset (Transaction UID included) and an opaque version.

    ``version`` changes on every write; a write names the version it read, so two clients
    racing to claim or update the same workitem cannot both win (optimistic concurrency).
    ``sequence`` orders workitems by creation (search returns newest first).
    """

    uid: str
    dataset: dict[str, Any]
    version: str
    sequence: int

    @property
    def state(self) -> State:
        return parse_state(first_string(self.dataset, PROCEDURE_STEP_STATE) or State.SCHEDULED)

    @property
    def lock(self) -> str | None:
        return first_string(self.dataset, TRANSACTION_UID)


PATIENT_NAME = "00100010"
PATIENT_ID = "00100020"
STUDY_UID = "0020000D"
SCHEDULED_START = "00404005"
