"""Operation ids: any spelling of the GUID finds the operation, as Azure's route does."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicom_core.domain.operations import (
    OperationKind,
    new_operation_id,
    operation_id_spellings,
)
from dicom_core.errors import NotFound
from dicom_core.services.operations import OperationService
from dicom_core.storage.ports import Continuation
from tests.fakes.operations import FakeOperationStore
from tests.fakes.queue import FakeJobQueue


def spellings_of(guid: uuid.UUID) -> list[str]:
    """The forms .NET's Guid parser takes: N, D, B and P, in either case."""
    dashed = str(guid)
    forms = [guid.hex, dashed, f"{{{dashed}}}", f"({dashed})"]
    return forms + [form.upper() for form in forms]


def test_new_ids_are_32_lower_case_hex_digits() -> None:
    operation_id = new_operation_id()
    assert len(operation_id) == 32
    assert uuid.UUID(operation_id).hex == operation_id


@given(st.uuids())
def test_every_spelling_of_a_guid_means_its_hex_form_first(guid: uuid.UUID) -> None:
    for form in spellings_of(guid):
        assert operation_id_spellings(form) == (guid.hex, str(guid)), form


@pytest.mark.parametrize(
    "text", ["", "abc", "1.2.3", "{" + "0" * 32, "g" * 32, "0" * 31, "0" * 8 + "-" + "0" * 24]
)
def test_text_that_is_no_guid_is_looked_up_as_given(text: str) -> None:
    assert operation_id_spellings(text) == (text,)


async def start(store: FakeOperationStore, operation_id: str) -> None:
    await store.start_operation(
        operation_id, OperationKind.UPDATE, checkpoint={}, first=Continuation("q", {})
    )


async def test_any_spelling_finds_an_operation_kept_under_either_form() -> None:
    store = FakeOperationStore(FakeJobQueue())
    service = OperationService(store)
    current, legacy = uuid.uuid4(), uuid.uuid4()
    await start(store, current.hex)
    # Bulk updates of earlier versions were recorded under the hyphenated form.
    await start(store, str(legacy))
    for guid in (current, legacy):
        for form in spellings_of(guid):
            found = await service.get(form)
            assert uuid.UUID(found.operation_id) == guid, form


async def test_an_unknown_operation_is_not_found_naming_the_id() -> None:
    service = OperationService(FakeOperationStore(FakeJobQueue()))
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFound, match=unknown):
        await service.get(unknown)
