"""``FakeEventSink``: the events a publisher sent, as a list, with a failure to inject."""

from __future__ import annotations

from collections.abc import Sequence

from dicom_core.domain.events import DicomEvent


class SinkFailure(Exception):
    """The destination refused an event (what a test injects)."""


class FakeEventSink:
    """The ``EventSink`` port. ``delivered`` is every event a consumer would see, repeats
    included; ``fail_after`` makes the send that would deliver event number ``fail_after + 1``
    (counted over the sink's life) deliver up to it and raise, once."""

    def __init__(self, *, fail_after: int | None = None) -> None:
        self.delivered: list[DicomEvent] = []
        self.sends = 0
        self.fail_after = fail_after
        self.closed = False

    async def send(self, events: Sequence[DicomEvent]) -> None:
        self.sends += 1
        for event in events:
            if self.fail_after is not None and len(self.delivered) >= self.fail_after:
                self.fail_after = None
                raise SinkFailure(f"refused event {event.sequence}")
            self.delivered.append(event)

    async def close(self) -> None:
        self.closed = True
