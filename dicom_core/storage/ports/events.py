"""The event sink port: where DICOM events go (an Event Grid topic, a Storage queue).

The publisher (``dicom_core.jobs.events``) hands a sink the events of a page of the change
feed, in order, and moves its cursor only once ``send`` returned: a sink that raises, or a
process that dies in ``send``, gets the whole page again later. So a sink may deliver an
event more than once, never lose one, and must not return before every event is accepted by
its destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dicom_core.domain.events import DicomEvent


class EventSink(Protocol):
    async def send(self, events: Sequence[DicomEvent]) -> None:
        """Deliver ``events`` in order; raise if any of them may not have been accepted."""
        ...

    async def close(self) -> None:
        """Release the sink's connections."""
        ...
