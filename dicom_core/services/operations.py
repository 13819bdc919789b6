"""Reading long-running operations (``GET /operations/{id}``), whatever their kind."""

from __future__ import annotations

from dicom_core.domain.operations import operation_id_spellings
from dicom_core.errors import NotFound
from dicom_core.storage.ports import OperationRecord, OperationStore


class OperationService:
    def __init__(self, store: OperationStore) -> None:
        self._store = store

    async def get(self, operation_id: str) -> OperationRecord:
        """The operation, however its GUID is spelled (``operation_id_spellings``)."""
        for spelling in operation_id_spellings(operation_id):
            operation = await self._store.get_operation(spelling)
            if operation is not None:
                return operation
        raise NotFound(f"The operation {operation_id} is not found.")
