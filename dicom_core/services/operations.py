"""Reading long-running operations (``GET /operations/{id}``), whatever their kind."""

from __future__ import annotations

from dicom_core.errors import NotFound
from dicom_core.storage.ports import OperationRecord, OperationStore


class OperationService:
    def __init__(self, store: OperationStore) -> None:
        self._store = store

    async def get(self, operation_id: str) -> OperationRecord:
        operation = await self._store.get_operation(operation_id)
        if operation is None:
            raise NotFound(f"The operation {operation_id} is not found.")
        return operation
