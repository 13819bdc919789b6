"""Publishing DICOM events from the change feed, at least once, in the feed's order.

Azure's DICOM service publishes an event for every image created, updated or deleted
(``dicom_core.domain.events``). Here the change feed is the source: every committed change is
an entry, so an event is owed for every entry, and the publisher works from a stored cursor,
the last sequence whose events went out:

1. read the cursor (``CursorStore``);
2. read a page of entries after it (``ChangeFeedStore``), oldest first;
3. send their events (``EventSink``) and wait until the destination accepted all of them;
4. move the cursor to the page's last sequence, compare-and-set from where step 1 found it.

A crash or a failure between 3 and 4 sends the page again on the next run, so an event may
be repeated but never lost (a repeat keeps its id: consumers can drop it). Nothing is skipped
because the feed never shows an entry before every lower one is visible. The timer that runs
this is a singleton (Azure's host takes a blob lease per timer function, the local host a lock
file), and the cursor's compare-and-set still stops a second publisher from moving it back:
the one that loses the race stops, and the next run starts from where the winner left it.

A run goes on while pages come back full, for at most ``RUN_SECONDS``, so a backlog (events
turned on for a service that already holds data: every change in the feed is published, oldest
first) drains over a few runs without any run nearing the function timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from dicom_core.domain.change_feed import ChangeFeedEntry
from dicom_core.domain.events import DicomEvent, dicom_event
from dicom_core.settings import EVENTS_SCHEDULE_ON, EventSettings, SettingsError
from dicom_core.storage.ports import ChangeFeedStore, ChangeQuery, CursorStore, EventSink

log = logging.getLogger(__name__)

EVENTS_CURSOR = "dicom-events"
"""The cursor's name: the sequence of the last change whose event went out."""
RUN_SECONDS = 240.0

#: The names of a set of partition keys (``PartitionService.names``).
PartitionNames = Callable[[set[int]], Awaitable[dict[int, str]]]
"""How long one run keeps publishing full pages before leaving the rest to the next run."""


def events_schedule(environ: Mapping[str, str]) -> str:
    """The publisher timer's NCRONTAB schedule (``DICOM_EVENTS_SCHEDULE``, or the default for
    events on or off). Read when the app is indexed, so it never raises: with a setting it
    cannot read, the timer runs as if events were on and each run reports the setting."""
    try:
        return EventSettings.from_mapping(environ).schedule
    except SettingsError:
        return EVENTS_SCHEDULE_ON


class EventPublisher:
    """Publishes the events of the changes after its cursor, page by page."""

    def __init__(
        self,
        feed: ChangeFeedStore,
        cursors: CursorStore,
        sink: EventSink,
        *,
        service_host: str,
        batch_size: int = 100,
        names: PartitionNames | None = None,
        run_seconds: float = RUN_SECONDS,
    ) -> None:
        """``names`` gives the names of partition keys (``PartitionService.names``) where
        partitions are on, and the event subjects then carry them; None: partitions are
        off, and every entry is Microsoft.Default's."""
        self._feed = feed
        self._cursors = cursors
        self._sink = sink
        self._service_host = service_host
        self._batch_size = batch_size
        self._names = names
        self._run_seconds = run_seconds

    async def publish(self) -> int:
        """Publish what the feed holds after the cursor; returns how many events went out."""
        deadline = time.monotonic() + self._run_seconds
        position = await self._cursors.read_cursor(EVENTS_CURSOR)
        published = 0
        while True:
            entries = await self._feed.read_changes(
                ChangeQuery(limit=self._batch_size, after_sequence=position)
            )
            if not entries:
                break
            await self._sink.send(await self._events(entries))
            last = entries[-1].sequence
            if not await self._cursors.advance_cursor(EVENTS_CURSOR, position, last):
                log.warning(
                    "the event cursor moved away from %d while this run published up to %d:"
                    " another publisher runs; this one stops",
                    position,
                    last,
                )
                break
            published += len(entries)
            position = last
            if len(entries) < self._batch_size or time.monotonic() >= deadline:
                break
        if published:
            log.info("published %d DICOM events, up to change %d", published, position)
        return published

    async def _events(self, entries: Sequence[ChangeFeedEntry]) -> list[DicomEvent]:
        if self._names is None:
            return [dicom_event(entry, service_host=self._service_host) for entry in entries]
        names = await self._names({entry.key.partition for entry in entries})
        return [
            dicom_event(
                entry,
                service_host=self._service_host,
                partition=names[entry.key.partition],
                partition_in_url=True,
            )
            for entry in entries
        ]

    async def close(self) -> None:
        await self._sink.close()
