"""The pure UPS rules (dicom_core.domain.workitems): requirement tables per transaction and the
state machine of PS3.4 Table CC.1.1-2, every legal and illegal transition."""

from __future__ import annotations

from typing import Any

import pytest

from dicom_core.domain.workitem_items import Requirement
from dicom_core.domain.workitems import (
    CREATE_REQUIREMENTS,
    MAX_PROBLEMS_NAMED,
    UPDATE_REQUIREMENTS,
    Failure,
    State,
    Transaction,
    WorkitemRuleError,
    change_state,
    check_final_state,
    check_requirements,
    check_update,
    first_string,
    has_value,
    read_state_change,
    record_cancellation,
    request_cancellation,
)
from tests.support.ups import code, element, final_state_attributes

S, P, X, C = State.SCHEDULED, State.IN_PROGRESS, State.CANCELED, State.COMPLETED
LOCK, OTHER = "1.2.3", "1.2.4"


def full(table: dict[str, tuple[str, Requirement]]) -> dict[str, Any]:
    """A dataset meeting every requirement of the table."""
    dataset: dict[str, Any] = {}
    for tag, (_, requirement) in table.items():
        if requirement is Requirement.REQUIRED:
            dataset[tag] = {"vr": "CS", "Value": ["SCHEDULED" if tag == "00741000" else "X"]}
        elif requirement in (Requirement.REQUIRED_MAY_BE_EMPTY, Requirement.REQUIRED_EMPTY):
            dataset[tag] = {"vr": "SQ"}
    return dataset


def failure(call: Any, *args: Any) -> Failure:
    with pytest.raises(WorkitemRuleError) as caught:
        call(*args)
    return caught.value.failure


# -- requirement tables ------------------------------------------------------------------------


def test_a_complete_create_dataset_passes() -> None:
    check_requirements(Transaction.CREATE, full(CREATE_REQUIREMENTS))


@pytest.mark.parametrize(
    "tag",
    [t for t, (_, r) in CREATE_REQUIREMENTS.items() if r.value in ("1", "2", "2, empty")],
)
def test_create_requires_types_1_and_2(tag: str) -> None:
    dataset = full(CREATE_REQUIREMENTS)
    del dataset[tag]
    with pytest.raises(WorkitemRuleError) as caught:
        check_requirements(Transaction.CREATE, dataset)
    assert caught.value.failure is Failure.INVALID
    assert CREATE_REQUIREMENTS[tag][0] in caught.value.message


@pytest.mark.parametrize(
    "tag", [t for t, (_, r) in CREATE_REQUIREMENTS.items() if r is Requirement.REQUIRED]
)
def test_create_type1_needs_a_value(tag: str) -> None:
    dataset = full(CREATE_REQUIREMENTS) | {tag: {"vr": "CS", "Value": [""]}}
    assert failure(check_requirements, Transaction.CREATE, dataset) is Failure.INVALID


def test_create_forbids_a_lock_value_and_performed_information() -> None:
    for tag, value in (
        ("00081195", {"vr": "UI", "Value": ["1.2.3"]}),
        ("00741216", {"vr": "SQ", "Value": [{}, {"00404050": {"vr": "DT", "Value": ["2026"]}}]}),
        ("00741002", {"vr": "SQ", "Value": [{"00741004": {"vr": "DS", "Value": [50]}}]}),
    ):
        dataset = full(CREATE_REQUIREMENTS) | {tag: value}
        with pytest.raises(
            WorkitemRuleError, match=r"\(" + tag[:4] + "," + tag[4:] + r"\) must be"
        ):
            check_requirements(Transaction.CREATE, dataset)
    empty = full(CREATE_REQUIREMENTS) | {"00741216": {"vr": "SQ"}, "00081195": {"vr": "UI"}}
    check_requirements(Transaction.CREATE, empty)


def sq(*items: dict[str, Any]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": list(items)} if items else {"vr": "SQ"}


def problems_of(transaction: Transaction, dataset: dict[str, Any]) -> str:
    with pytest.raises(WorkitemRuleError) as caught:
        check_requirements(transaction, dataset)
    assert caught.value.failure is Failure.INVALID
    return caught.value.message


SOP = {
    "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
    "00081155": {"vr": "UI", "Value": ["1.2.3.4"]},
}


@pytest.mark.parametrize(
    ("tag", "items", "expected"),
    [
        # Table CC.2.5-2a: a code needs its meaning; a 1C value, when sent, needs a value.
        (
            "00404025",
            [{"00080100": {"vr": "SH", "Value": ["X"]}}],
            "ScheduledStationNameCodeSequence (0040,4025) item 1 > CodeMeaning (0008,0104) is"
            " required and must have a value",
        ),
        (
            "00404018",
            [code("W"), code("W") | {"00080100": {"vr": "SH"}}],
            "ScheduledWorkitemCodeSequence (0040,4018) item 2 > CodeValue (0008,0100) must not"
            " be empty",
        ),
        (
            "0040A370",
            [{"00080050": {"vr": "SH", "Value": ["A1"]}}],
            "ReferencedRequestSequence (0040,A370) item 1 > StudyInstanceUID (0020,000D) is"
            " required and must have a value",
        ),
        (
            "0040A370",
            [{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}],
            "ReferencedRequestSequence (0040,A370) item 1 > RequestedProcedureID (0040,1001) is"
            " required (it may be empty)",
        ),
        (
            "00404034",
            [{}],
            "ScheduledHumanPerformersSequence (0040,4034) item 1 > HumanPerformerName"
            " (0040,4037) is required",
        ),
        (
            "00741224",
            [{}],
            "ReplacedProcedureStepSequence (0074,1224) item 1 > ReferencedSOPInstanceUID"
            " (0008,1155) is required",
        ),
        (
            "00404021",
            [{"00081199": sq({"00081150": SOP["00081150"]})}],
            "InputInformationSequence (0040,4021) item 1 > TypeOfInstances (0040,E020) is required",
        ),
        (
            "00404021",
            [{"0040E020": {"vr": "CS", "Value": ["DICOM"]}, "00081199": sq(SOP, {})}],
            "InputInformationSequence (0040,4021) item 1 > ReferencedSOPSequence (0008,1199)"
            " item 2 > ReferencedSOPClassUID (0008,1150) is required",
        ),
    ],
)
def test_create_checks_the_items_of_its_sequences(
    tag: str, items: list[dict[str, Any]], expected: str
) -> None:
    """PS3.4 Table CC.2.5-3 below the top level, as Azure's validator applies it."""
    message = problems_of(Transaction.CREATE, full(CREATE_REQUIREMENTS) | {tag: sq(*items)})
    assert expected in message


def test_create_accepts_complete_items_and_empty_sequences() -> None:
    dataset = full(CREATE_REQUIREMENTS) | {
        "00404025": sq(code("STATION"), code("OTHER")),
        "00404034": sq(
            {
                "00404009": sq(code("P1")),
                "00404037": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jo"}]},
                "00404036": {"vr": "LO", "Value": ["Hospital"]},
            }
        ),
        "00404021": sq({"0040E020": {"vr": "CS", "Value": ["DICOM"]}, "00081199": sq(SOP)}),
        "00741224": sq(SOP),
        "0040A370": sq(),
    }
    check_requirements(Transaction.CREATE, dataset)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"00741002": sq({"00741008": sq({"0074100C": {"vr": "LO", "Value": ["Jo"]}})})},
            "ProcedureStepProgressInformationSequence (0074,1002) item 1 >"
            " ProcedureStepCommunicationsURISequence (0074,1008) item 1 > ContactURI (0074,100A)",
        ),
        (
            {"00741216": sq({"00404050": {"vr": "DT", "Value": ["20260101"]}})},
            "UnifiedProcedureStepPerformedProcedureSequence (0074,1216) item 1 >"
            " OutputInformationSequence (0040,4033) is required (it may be empty)",
        ),
        (
            {"00404025": sq({"00080100": {"vr": "SH", "Value": ["X"]}})},
            "ScheduledStationNameCodeSequence (0040,4025) item 1 > CodeMeaning (0008,0104)",
        ),
    ],
)
def test_update_checks_the_items_of_its_sequences(changes: dict[str, Any], expected: str) -> None:
    assert expected in problems_of(Transaction.UPDATE, changes)


def test_update_accepts_the_final_state_attributes() -> None:
    for target in ("COMPLETED", "CANCELED"):
        check_requirements(Transaction.UPDATE, final_state_attributes(target))


@pytest.mark.parametrize(
    "lock", [{"vr": "UI"}, {"vr": "UI", "Value": []}, {"vr": "UI", "Value": [""]}]
)
def test_create_accepts_the_transaction_uid_present_and_empty(lock: dict[str, Any]) -> None:
    # PS3.4 Table CC.2.5-3: Transaction UID is 2/2 on N-CREATE, and empty
    check_requirements(Transaction.CREATE, full(CREATE_REQUIREMENTS) | {"00081195": lock})


def test_create_requires_the_transaction_uid() -> None:
    dataset = full(CREATE_REQUIREMENTS)
    del dataset["00081195"]
    with pytest.raises(WorkitemRuleError, match=r"TransactionUID \(0008,1195\) is required"):
        check_requirements(Transaction.CREATE, dataset)


@pytest.mark.parametrize("tag", ["00100020", "0020000D", "00080005", "00741224"])
def test_create_conditional_type1_is_optional_but_not_empty(tag: str) -> None:
    dataset = full(CREATE_REQUIREMENTS)
    dataset.pop(tag, None)
    check_requirements(Transaction.CREATE, dataset)
    with pytest.raises(WorkitemRuleError, match="must not be empty"):
        check_requirements(Transaction.CREATE, dataset | {tag: {"vr": "LO"}})


@pytest.mark.parametrize(
    "keyword",
    [
        "ScheduledProcessingParametersSequence",
        "CommentsOnTheScheduledProcedureStep",
        "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence",
        "OtherPatientIDsSequence",
        "AdmissionID",
        "IssuerOfAdmissionIDSequence",
        "AdmittingDiagnosesDescription",
        "AdmittingDiagnosesCodeSequence",
        "ProcedureStepProgressInformationSequence",
        "UnifiedProcedureStepPerformedProcedureSequence",
    ],
)
def test_create_type2_attributes_of_table_cc_2_5_3_are_listed(keyword: str) -> None:
    assert (keyword, Requirement.REQUIRED_MAY_BE_EMPTY) in CREATE_REQUIREMENTS.values() or (
        keyword,
        Requirement.REQUIRED_EMPTY,
    ) in CREATE_REQUIREMENTS.values()


def test_create_state_must_be_scheduled() -> None:
    dataset = full(CREATE_REQUIREMENTS) | {"00741000": {"vr": "CS", "Value": ["COMPLETED"]}}
    assert failure(check_requirements, Transaction.CREATE, dataset) is Failure.INVALID


def test_a_refusal_names_the_first_problems_and_counts_the_rest() -> None:
    """A small body of many empty items must not make a huge answer (a review's 4 MB request
    got a 356 MB one)."""
    items = full(CREATE_REQUIREMENTS) | {"00741210": sq(*([{}] * 100_000))}
    message = problems_of(Transaction.CREATE, items)
    assert message.count("is required") == MAX_PROBLEMS_NAMED
    assert message.endswith(f"; and {2 * 100_000 - MAX_PROBLEMS_NAMED} more.")
    assert len(message) < 10_000


@pytest.mark.parametrize(
    "name",
    [[{}], [{"Alphabetic": ""}], [{"Alphabetic": "  ", "Ideographic": ""}], ["   "]],
)
def test_a_blank_value_is_no_value(name: list[Any]) -> None:
    """White space alone, or a person name without a component, is empty (as Azure reads
    it): a performer needs a name."""
    performer = {
        "00404009": sq(code("P1")),
        "00404037": {"vr": "PN", "Value": name},
        "00404036": {"vr": "LO", "Value": ["Hospital"]},
    }
    dataset = full(CREATE_REQUIREMENTS) | {"00404034": sq(performer)}
    assert "HumanPerformerName (0040,4037) is required and must have a value" in problems_of(
        Transaction.CREATE, dataset
    )
    blank_label = full(CREATE_REQUIREMENTS) | {"00741204": {"vr": "LO", "Value": ["  "]}}
    assert "ProcedureStepLabel (0074,1204) is required" in problems_of(
        Transaction.CREATE, blank_label
    )


def test_messages_name_every_problem() -> None:
    with pytest.raises(WorkitemRuleError) as caught:
        check_requirements(Transaction.CREATE, {})
    for keyword, requirement in CREATE_REQUIREMENTS.values():
        if requirement.value in ("1", "2", "2, empty"):
            assert keyword in caught.value.message


@pytest.mark.parametrize(
    "tag", [t for t, (_, r) in UPDATE_REQUIREMENTS.items() if r is Requirement.NOT_ALLOWED]
)
def test_update_forbids_identity_state_and_lock(tag: str) -> None:
    dataset = {tag: {"vr": "UI", "Value": ["1.2"]}}
    assert failure(check_requirements, Transaction.UPDATE, dataset) is Failure.INVALID


@pytest.mark.parametrize(
    "tag", ["00100010", "00100020", "00100030", "00100040", "0040A370", "00380010"]
)
def test_update_forbids_the_relationship_module(tag: str) -> None:
    dataset = {tag: {"vr": "LO", "Value": ["x"]}}
    with pytest.raises(WorkitemRuleError, match="must not be present"):
        check_requirements(Transaction.UPDATE, dataset)


@pytest.mark.parametrize("tag", ["00741202", "00404011", "00404018", "00400400"])
def test_update_type_3_1_attributes_need_a_value(tag: str) -> None:
    check_requirements(Transaction.UPDATE, {tag: {"vr": "LO", "Value": ["x"]}})
    with pytest.raises(WorkitemRuleError, match="must not be empty"):
        check_requirements(Transaction.UPDATE, {tag: {"vr": "LO"}})


def test_update_allows_partial_datasets_but_no_empty_type1() -> None:
    check_requirements(Transaction.UPDATE, {"00741204": {"vr": "LO", "Value": ["x"]}})
    check_requirements(Transaction.UPDATE, {})
    dataset = {"00741204": {"vr": "LO"}}
    assert failure(check_requirements, Transaction.UPDATE, dataset) is Failure.INVALID


def test_values() -> None:
    assert not has_value({"vr": "LO"})
    assert not has_value({"vr": "LO", "Value": []})
    assert not has_value({"vr": "LO", "Value": [""]})
    assert has_value({"vr": "OB", "InlineBinary": "AA=="})
    assert first_string({"t": {"vr": "PN", "Value": [{"Alphabetic": "A^B"}]}}, "t") == "A^B"
    assert first_string({"t": {"vr": "LO", "Value": [None, " x "]}}, "t") == "x"
    assert first_string({}, "t") is None


# -- change state ------------------------------------------------------------------------------


def test_read_state_change() -> None:
    wanted = read_state_change(
        {
            "00081195": {"vr": "UI", "Value": [LOCK]},
            "00741000": {"vr": "CS", "Value": ["IN PROGRESS"]},
        }
    )
    assert (wanted.lock, wanted.requested) == (LOCK, P)
    only_state = {"00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}}
    assert failure(read_state_change, only_state) is Failure.MISSING_LOCK
    assert failure(read_state_change, {}) is Failure.INVALID
    bad_state = {
        "00081195": {"vr": "UI", "Value": [LOCK]},
        "00741000": {"vr": "CS", "Value": ["PAUSED"]},
    }
    assert failure(read_state_change, bad_state) is Failure.INVALID


@pytest.mark.parametrize(
    ("state", "lock", "requested", "given", "result"),
    [
        (S, None, P, LOCK, P),
        (P, LOCK, C, LOCK, C),
        (P, LOCK, X, LOCK, X),
    ],
)
def test_legal_transitions(
    state: State, lock: str | None, requested: State, given: str, result: State
) -> None:
    assert change_state(state, lock, requested, given) is result


@pytest.mark.parametrize(
    ("state", "lock", "requested", "given", "expected"),
    [
        (S, None, C, LOCK, Failure.WRONG_STATE),
        (S, None, X, LOCK, Failure.WRONG_STATE),
        (S, None, S, LOCK, Failure.INVALID),
        (P, LOCK, P, LOCK, Failure.WRONG_STATE),
        (P, LOCK, P, OTHER, Failure.WRONG_LOCK),
        (P, LOCK, C, OTHER, Failure.WRONG_LOCK),
        (P, LOCK, X, OTHER, Failure.WRONG_LOCK),
        (C, LOCK, C, LOCK, Failure.ALREADY),
        (C, LOCK, X, LOCK, Failure.WRONG_STATE),
        (C, LOCK, P, LOCK, Failure.WRONG_STATE),
        (X, LOCK, X, LOCK, Failure.ALREADY),
        (X, LOCK, C, LOCK, Failure.WRONG_STATE),
        (X, LOCK, P, LOCK, Failure.WRONG_STATE),
    ],
)
def test_illegal_transitions(
    state: State, lock: str | None, requested: State, given: str, expected: Failure
) -> None:
    assert failure(change_state, state, lock, requested, given) is expected


def test_request_cancellation() -> None:
    assert request_cancellation(S) is X
    assert failure(request_cancellation, X) is Failure.ALREADY
    assert failure(request_cancellation, P) is Failure.CONFLICT
    assert failure(request_cancellation, C) is Failure.CONFLICT


# -- update ------------------------------------------------------------------------------------


def test_update_lock_rules() -> None:
    check_update(S, None, None)
    check_update(P, LOCK, LOCK)
    assert failure(check_update, S, None, LOCK) is Failure.WRONG_STATE
    assert failure(check_update, P, LOCK, None) is Failure.MISSING_LOCK
    assert failure(check_update, P, LOCK, OTHER) is Failure.WRONG_LOCK
    assert failure(check_update, C, LOCK, LOCK) is Failure.WRONG_STATE
    assert failure(check_update, X, LOCK, LOCK) is Failure.WRONG_STATE


# -- final state -------------------------------------------------------------------------------


def scheduled_workitem() -> dict[str, Any]:
    """What the service stores for a created workitem, with the provider's attributes."""
    return {
        "00080016": element("UI", "1.2.840.10008.5.1.4.34.6.1"),
        "00080018": element("UI", "1.2.3.4"),
        "00741200": element("CS", "MEDIUM"),
        "00404010": element("DT", "20260101090000"),
        "00404005": element("DT", "20260101100000"),
        "00404041": element("CS", "READY"),
        "00741000": element("CS", "IN PROGRESS"),
        "00741002": element("SQ"),
        "00741216": element("SQ"),
    }


def final_state_message(dataset: dict[str, Any], target: State) -> str:
    with pytest.raises(WorkitemRuleError) as refused:
        check_final_state(dataset, target)
    assert refused.value.failure is Failure.INVALID
    return refused.value.message


def test_completion_needs_the_performed_procedure_and_every_p_attribute_of_its_items() -> None:
    dataset = scheduled_workitem()
    assert "UnifiedProcedureStepPerformedProcedureSequence (0074,1216) needs a value" in (
        final_state_message(dataset, C)
    )
    complete = {**dataset, **final_state_attributes("COMPLETED")}
    check_final_state(complete, C)
    for tag, keyword, vr in [
        ("00404028", "PerformedStationNameCodeSequence", "SQ"),
        ("00404050", "PerformedProcedureStepStartDateTime", "DT"),
        ("00404019", "PerformedWorkitemCodeSequence", "SQ"),
        ("00404051", "PerformedProcedureStepEndDateTime", "DT"),
        ("00404033", "OutputInformationSequence", "SQ"),
    ]:
        performed = final_state_attributes("COMPLETED")
        performed["00741216"]["Value"][0][tag] = element(vr)  # present, without a value
        message = final_state_message({**dataset, **performed}, C)
        assert f"item 1 > {keyword} ({tag[:4]},{tag[4:]}) needs a value" in message
    # A canceled workitem need not say what was performed, nor a completed one why it stopped.
    canceled = {**dataset, **final_state_attributes("CANCELED")}
    canceled = record_cancellation(canceled, "20260101120000", {})
    check_final_state(canceled, X)


@pytest.mark.parametrize(
    ("tag", "keyword"),
    [
        ("00080016", "SOPClassUID"),
        ("00080018", "SOPInstanceUID"),
        ("00741200", "ScheduledProcedureStepPriority"),
        ("00404010", "ScheduledProcedureStepModificationDateTime"),
        ("00404005", "ScheduledProcedureStepStartDateTime"),
        ("00404041", "InputReadinessState"),
        ("00741000", "ProcedureStepState"),
    ],
)
def test_both_final_states_need_the_r_attributes(tag: str, keyword: str) -> None:
    for target in (C, X):
        dataset = {**scheduled_workitem(), **final_state_attributes(target.value)}
        dataset = record_cancellation(dataset, "20260101120000", {})
        check_final_state(dataset, target)
        dataset[tag] = element("CS")
        assert f"{keyword} ({tag[:4]},{tag[4:]}) needs a value" in final_state_message(
            dataset, target
        )


def test_cancellation_is_recorded_in_the_progress_information_keeping_what_was_there() -> None:
    dataset = {
        **scheduled_workitem(),
        "00741002": element("SQ", {"00741004": element("DS", "50"), "00404052": element("DT")}),
    }
    request = {
        "00741238": element("LT", "patient left"),
        "0074100E": element("SQ", code("110514")),
        "0074100A": element("UR", "mailto:ward3@example.org"),
        "0074100C": element("LO", "Ward 3"),
    }
    recorded = record_cancellation(dataset, "20260101120000", request)
    item = recorded["00741002"]["Value"][0]
    assert item["00741004"] == element("DS", "50")  # progress the performer reported
    assert item["00741238"] == element("LT", "patient left")
    assert item["0074100E"] == element("SQ", code("110514"))
    # Whom to tell about the cancellation (Table CC.2.4-1), where Table CC.2.5-3 keeps it.
    assert item["00741008"] == element(
        "SQ",
        {
            "0074100A": element("UR", "mailto:ward3@example.org"),
            "0074100C": element("LO", "Ward 3"),
        },
    )
    assert recorded["00741238"] == element("LT", "patient left")
    assert recorded["00404052"] == element("DT", "20260101120000")
    # An empty time is filled; one the performer gave is kept.
    assert item["00404052"] == element("DT", "20260101120000")
    given = record_cancellation(
        {"00741002": element("SQ", {"00404052": element("DT", "20250101")})}, "20260101", {}
    )
    assert given["00741002"]["Value"][0]["00404052"] == element("DT", "20250101")
    # At the top level too: an empty time is filled.
    empty_top = record_cancellation({"00404052": element("DT")}, "20260101", {})
    assert empty_top["00404052"] == element("DT", "20260101")
    assert dataset["00741002"]["Value"][0].get("00741238") is None  # the input is not changed
