"""The Worklist service (UPS-RS): create, retrieve, update, change state, request cancellation
and search of workitems (conformance statement, "Worklist Service (UPS-RS)").

The rules are pure (``dicom_core.domain.workitems``); this service reads the workitem, applies
them and writes back under optimistic concurrency: a write names the version it read, and a
write that lost a race re-reads and re-applies the rules, so of two clients claiming the same
SCHEDULED workitem one wins and the other is told the workitem is no longer SCHEDULED.

Every call names the data partition it works in (``partition``, the key the web layer
resolved; a search carries it in its query): a workitem UID is unique per partition only, so
one UID may name a different workitem in each partition, and nothing here crosses them.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from dicom_core.domain.dicomjson.received import received_dataset_problem
from dicom_core.domain.identifiers import check_uid
from dicom_core.domain.nesting import json_nesting_problem
from dicom_core.domain.tags import HEX_TAG
from dicom_core.domain.timestamps import dicom_datetime_now
from dicom_core.domain.validation.uids import uid_problem
from dicom_core.domain.workitems import (
    CANCELLATION_DATETIME,
    PROCEDURE_STEP_STATE,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    SUBSCRIPTION_UIDS,
    TRANSACTION_UID,
    UPS_PUSH_SOP_CLASS,
    Failure,
    State,
    Transaction,
    WorkitemRecord,
    WorkitemRuleError,
    change_state,
    check_final_state,
    check_requirements,
    check_update,
    first_string,
    read_state_change,
    record_cancellation,
    request_cancellation,
)
from dicom_core.errors import BadRequest, Conflict, DicomWebError, NotFound
from dicom_core.query.workitems import DEFAULT_RETURN_TAGS, WorkitemQuery
from dicom_core.storage.ports import WorkitemChanged, WorkitemExists, WorkitemStore

#: How long a change keeps re-reading after losing races to other writers before it answers
#: 409. A count of tries was too few: each round has one winner, so the sixth of eight clients
#: updating one workitem at once was refused though nothing was in conflict.
WRITE_RETRY_SECONDS = 10.0
_FIRST_BACKOFF, _LAST_BACKOFF = 0.001, 0.05
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def check_workitem_uid(value: str, what: str) -> str:
    """A workitem UID must be a proper DICOM UID (PS3.5 9.1): it names the workitem for good."""
    uid = check_uid(value, what)
    if len(uid) > 64 or not _UID.fullmatch(uid):
        raise BadRequest(
            f"The {what} is not a valid UID: '{uid}' must be dot-separated numbers (no leading"
            " zeros), at most 64 characters."
        )
    return uid


Dataset = dict[str, Any]


class AlreadyInState(Conflict):
    """The workitem already is in the (final) state asked for: 409 (with an HTTP Warning)."""


def _error(exc: WorkitemRuleError) -> DicomWebError:
    if exc.failure is Failure.ALREADY:
        return AlreadyInState(exc.message)
    if exc.failure is Failure.CONFLICT:
        return Conflict(exc.message)
    return BadRequest(exc.message)


def check_dataset(dataset: Any, *, lock_as_given: bool = False) -> Dataset:
    """A DICOM JSON object: 8-hex-digit tags mapping to elements that name their VR, and
    DICOM JSON others can read. ``lock_as_given`` leaves the Transaction UID's value to the
    caller: a state change compares it with the lock kept, which may predate the UID rule
    (a workitem claimed under an older version must still be finished)."""
    if not isinstance(dataset, dict):
        raise BadRequest("The request body must be a DICOM JSON dataset (a JSON object).")
    for tag, element in dataset.items():
        if not HEX_TAG.fullmatch(str(tag)):
            raise BadRequest(f"'{tag}' in the dataset is not a tag of 8 hexadecimal digits.")
        if not isinstance(element, dict) or not isinstance(element.get("vr"), str):
            raise BadRequest(f"The element {tag} of the dataset is not an object with a 'vr'.")
    # Before anything walks the items recursively (requirement checks, orjson when storing).
    too_deep = json_nesting_problem(dataset)
    if too_deep is not None:
        raise BadRequest(f"The dataset is refused: {too_deep}.")
    # Kept and handed to other clients as sent: it must be DICOM JSON they can read.
    malformed = received_dataset_problem(
        {tag: e for tag, e in dataset.items() if str(tag).upper() != TRANSACTION_UID}
        if lock_as_given
        else dataset
    )
    if malformed is not None:
        raise BadRequest(f"The dataset is refused: {malformed}.")
    return _upper_tags(dataset)


def _upper_tags(dataset: Mapping[str, Any]) -> Dataset:
    """``dataset`` with its tags in upper case, in the items of its sequences too: DICOM JSON
    allows either case, and the requirement tables and the search on sequence attributes read
    upper case. (Recursion is bounded: the nesting check ran first.)"""
    upper: Dataset = {}
    for tag, element in dataset.items():
        items = element.get("Value") if element.get("vr") == "SQ" else None
        if isinstance(items, list):
            element = {
                **element,
                "Value": [_upper_tags(i) if isinstance(i, Mapping) else i for i in items],
            }
        upper[str(tag).upper()] = element
    return upper


def check_lock(value: str) -> None:
    """A Transaction UID a claim sets as the workitem's lock: a UID, or a 400. (Later
    transactions only compare theirs with the lock kept.)"""
    problem = uid_problem(value)
    if problem is not None:
        raise BadRequest(f"The Transaction UID is not valid: {problem}.")


def without_lock(dataset: Mapping[str, Any]) -> Dataset:
    """The workitem as clients see it: the Transaction UID is only ever known to the owner."""
    return {tag: element for tag, element in dataset.items() if tag != TRANSACTION_UID}


def _string(vr: str, value: str) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


MODIFICATION_DATETIME = "00404010"
WORKLIST_LABEL = "00741202"
DEFAULT_WORKLIST_LABEL = "worklist"


def fill_provider_attributes(dataset: Dataset, *, creating: bool) -> None:
    """Set what PS3.4 Table CC.2.5-3 makes the SCP's job, before the requirements are checked.

    On create and on every update the modification time is the server's (x/1, never trusted
    from the client). On create the SOP class is always UPS Push, an absent or empty
    WorklistLabel gets the server's default (2/1) and an absent ProcedureStepState starts as
    SCHEDULED, as Microsoft's service does; a state other than SCHEDULED is still refused.
    """
    dataset[MODIFICATION_DATETIME] = _string("DT", dicom_datetime_now())
    if not creating:
        return
    dataset[SOP_CLASS_UID] = _string("UI", UPS_PUSH_SOP_CLASS)
    if first_string(dataset, WORKLIST_LABEL) is None:
        dataset[WORKLIST_LABEL] = _string("LO", DEFAULT_WORKLIST_LABEL)
    if PROCEDURE_STEP_STATE not in dataset:
        dataset[PROCEDURE_STEP_STATE] = _string("CS", State.SCHEDULED.value)


class WorkitemService:
    def __init__(
        self, store: WorkitemStore, *, write_retry_seconds: float = WRITE_RETRY_SECONDS
    ) -> None:
        self._store = store
        self._retry_seconds = write_retry_seconds

    async def create(self, dataset: Dataset, url_uid: str | None, *, partition: int) -> str:
        """Create Workitem in ``partition``; returns the workitem UID (from the URL or the
        dataset)."""
        dataset = check_dataset(dataset)
        given = first_string(dataset, SOP_INSTANCE_UID)
        if url_uid is not None:
            uid = check_workitem_uid(url_uid, "workitem UID in the URL")
            if given is not None and given != uid:
                raise BadRequest(
                    f"The workitem UID in the URL ({uid}) differs from the dataset's"
                    f" SOPInstanceUID ({given})."
                )
        elif given is None:
            raise BadRequest(
                "The workitem UID is missing: give it in the URL (POST ../workitems?{uid}) or"
                " as SOPInstanceUID (0008,0018) in the dataset."
            )
        else:
            uid = check_workitem_uid(given, "SOPInstanceUID (0008,0018) of the dataset")
        if uid in SUBSCRIPTION_UIDS:
            # Their routes are the subscriptions' (501): such a workitem could never be
            # updated, nor so reach a final state.
            raise BadRequest(
                f"The workitem UID {uid} is a well-known UID of UPS subscriptions (PS3.4"
                " CC.3.1), not one a workitem can have."
            )
        fill_provider_attributes(dataset, creating=True)
        try:
            check_requirements(Transaction.CREATE, dataset)
        except WorkitemRuleError as exc:
            raise _error(exc) from None
        dataset[SOP_INSTANCE_UID] = _string("UI", uid)
        # Sent empty as Type 2 asks; the lock is set when the workitem is claimed.
        dataset.pop(TRANSACTION_UID, None)
        try:
            await self._store.create_workitem(uid, dataset, partition=partition)
        except WorkitemExists:
            raise Conflict(f"The workitem {uid} already exists.") from None
        return uid

    async def _read(self, uid: str, partition: int) -> WorkitemRecord:
        record = await self._store.get_workitem(uid, partition=partition)
        if record is None:
            raise NotFound(f"The workitem {uid} was not found.")
        return record

    async def retrieve(self, uid: str, *, partition: int) -> Dataset:
        return without_lock((await self._read(uid, partition)).dataset)

    async def _change(
        self, uid: str, partition: int, apply: Callable[[WorkitemRecord], Dataset]
    ) -> None:
        """Read, apply the rules, write conditionally; re-run after a lost race.

        Each lost race means another change was written, so the rules are applied again to
        what it left (a claim that lost then finds the workitem IN PROGRESS: 400). Retries
        back off a little, at random, so that writers who keep colliding spread out.
        """
        deadline = time.monotonic() + self._retry_seconds
        backoff = _FIRST_BACKOFF
        while True:
            record = await self._read(uid, partition)
            try:
                dataset = apply(record)
            except WorkitemRuleError as exc:
                raise _error(exc) from None
            try:
                await self._store.replace_workitem(
                    uid, dataset, partition=partition, version=record.version
                )
                return
            except WorkitemChanged:
                if time.monotonic() >= deadline:
                    raise Conflict(
                        f"The workitem {uid} is being changed by other requests; try again."
                    ) from None
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, _LAST_BACKOFF)

    async def update(
        self, uid: str, changes: Dataset, transaction_uid: str | None, *, partition: int
    ) -> None:
        """Update Workitem: replace the given top-level attributes (sequences whole)."""
        changes = check_dataset(changes)
        try:
            check_requirements(Transaction.UPDATE, changes)
        except WorkitemRuleError as exc:
            raise _error(exc) from None
        fill_provider_attributes(changes, creating=False)

        def apply(record: WorkitemRecord) -> Dataset:
            check_update(record.state, record.lock, transaction_uid)
            return {**record.dataset, **changes}

        await self._change(uid, partition, apply)

    async def change_state(self, uid: str, request: Dataset, *, partition: int) -> None:
        """Change Workitem State: claim (sets the lock), complete or cancel."""
        try:
            wanted = read_state_change(check_dataset(request, lock_as_given=True))
        except WorkitemRuleError as exc:
            raise _error(exc) from None

        def apply(record: WorkitemRecord) -> Dataset:
            if record.state is State.SCHEDULED:
                check_lock(wanted.lock)  # a claim sets the lock: it must be a UID
            new_state = change_state(record.state, record.lock, wanted.requested, wanted.lock)
            dataset = dict(record.dataset)
            dataset[PROCEDURE_STEP_STATE] = _string("CS", new_state.value)
            if new_state is State.IN_PROGRESS:
                dataset[TRANSACTION_UID] = _string("UI", wanted.lock)
            if new_state is State.CANCELED:
                # The time is the server's to know; the reasons are the performer's to give.
                dataset = record_cancellation(dataset, dicom_datetime_now(), {})
            if new_state.final:
                check_final_state(dataset, new_state)
            return dataset

        await self._change(uid, partition, apply)

    async def request_cancellation(self, uid: str, request: Dataset, *, partition: int) -> None:
        """Request Cancellation: cancels a SCHEDULED workitem (no owner to forward it to)."""
        info = check_dataset(request)

        def apply(record: WorkitemRecord) -> Dataset:
            new_state = request_cancellation(record.state)
            dataset = dict(record.dataset)
            dataset[PROCEDURE_STEP_STATE] = _string("CS", new_state.value)
            dataset.pop(CANCELLATION_DATETIME, None)  # the time of this cancellation
            # Not checked against the final state requirements: this server cancels the
            # workitem itself (no performer owns it) and records what the request gives.
            return record_cancellation(dataset, dicom_datetime_now(), info)

        await self._change(uid, partition, apply)

    async def search(self, query: WorkitemQuery) -> list[Dataset]:
        """Search Workitems in ``query.partition``: one page of matches, newest first, cut
        to the returned tags."""
        page = await self._store.search_workitems(query)
        wanted = DEFAULT_RETURN_TAGS | set(query.include.tags)
        results = []
        for record in page:
            dataset = without_lock(record.dataset)
            if not query.include.all:
                dataset = {tag: el for tag, el in dataset.items() if tag in wanted}
            results.append(dict(sorted(dataset.items())))
        return results
