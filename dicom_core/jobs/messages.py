"""The message of a long-running operation's queue, versioned.

A message says which operation to advance and the checkpoint it was sent from. Its shape is
never changed in place (dicom-server's ``V2`` activities): a new shape gets a new ``schema``
number, and the old one is still read, because messages already queued when the app is
upgraded must still be processed.

- schema 1: ``{"schema": 1, "operationId": ..., "checkpoint": {...}}``, reindex only (the
  first operation, when the queue could carry nothing else).
- schema 2: ``{"schema": 2, "kind": "Reindex", "operationId": ..., "checkpoint": {...}}``; the
  kind names the operation, so bulk update and export can share the machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dicom_core.domain.operations import OperationKind

SCHEMA = 2
_READABLE = frozenset({1, 2})


class MalformedMessage(ValueError):
    """A message no schema this app knows can read: retrying will not help."""


@dataclass(frozen=True, slots=True)
class OperationMessage:
    """One delivery's instruction: advance ``operation_id`` from ``checkpoint``."""

    kind: OperationKind
    operation_id: str
    checkpoint: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The current schema: what this app writes."""
        return {
            "schema": SCHEMA,
            "kind": self.kind.value,
            "operationId": self.operation_id,
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_json(cls, body: Any) -> OperationMessage:
        """Any readable schema; ``MalformedMessage`` for anything else."""
        if not isinstance(body, dict) or body.get("schema") not in _READABLE:
            raise MalformedMessage(f"unexpected operation message: {body!r}")
        operation_id, checkpoint = body.get("operationId"), body.get("checkpoint")
        if not isinstance(operation_id, str) or not isinstance(checkpoint, dict):
            raise MalformedMessage(f"unexpected operation message: {body!r}")
        try:
            kind = OperationKind(body["kind"]) if body["schema"] >= 2 else OperationKind.REINDEX
        except (KeyError, ValueError) as exc:
            raise MalformedMessage(f"unexpected operation kind in {body!r}") from exc
        return cls(kind, operation_id, checkpoint)
