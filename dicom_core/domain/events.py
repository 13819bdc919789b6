"""DICOM events as Azure Health Data Services publishes them: one per change feed entry.

Azure's DICOM service publishes ``Microsoft.HealthcareApis.DicomImageCreated``,
``DicomImageUpdated`` and ``DicomImageDeleted`` to Event Grid ("Azure Health Data Services as
an Event Grid source", and "Events message structures"). Each carries the instance's three
UIDs, the data partition, the service's host name and the change's sequence number in the
change feed, so a consumer can read the change from the feed. This module builds those events
from feed entries, field for field, in either schema a subscription may ask for:

- Event Grid schema: ``id``, ``topic``, ``subject``, ``data``, ``eventType``, ``dataVersion``
  ("1"), ``metadataVersion`` ("1"), ``eventTime``;
- CloudEvents 1.0: ``source``, ``subject``, ``type``, ``time``, ``id``, ``data``,
  ``specversion`` ("1.0").

``subject`` is the instance's URL without its scheme (``{host}/v1/studies/.../instances/...``),
``eventTime``/``time`` the time the change was committed (the entry's timestamp).

Where we differ from Azure, on purpose:

- ``id`` is derived from the entry (a UUID 5 of its sequence, time, action and UIDs) instead
  of random: events are delivered at least once, and a repeated event keeps its id, so a
  consumer can drop repeats by ``id`` (or by ``sequenceNumber``);
- ``topic``/``source`` name this deployment (``DICOM_EVENTS_SOURCE``), not an Azure Health
  Data Services workspace; Event Grid itself stamps ``topic`` with the custom topic's resource
  ID when it delivers an Event Grid schema event;
- ``subject`` has the ``/partitions/{name}`` segment where partitions are on, as Azure's, so
  it is always a URL this service answers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from dicom_core.domain.change_feed import ChangeAction, ChangeFeedEntry

PARTITION_NAME: Final = "Microsoft.Default"
"""The data partition every instance is in until partitions exist (Azure's default name)."""

EVENT_TYPES: Final = {
    ChangeAction.CREATE: "Microsoft.HealthcareApis.DicomImageCreated",
    ChangeAction.UPDATE: "Microsoft.HealthcareApis.DicomImageUpdated",
    ChangeAction.DELETE: "Microsoft.HealthcareApis.DicomImageDeleted",
}
DATA_VERSION: Final = "1"
"""``dataVersion``: the version of the ``data`` object's schema, "1" in Azure's events."""
METADATA_VERSION: Final = "1"
"""``metadataVersion``: Event Grid's envelope version, which Event Grid stamps itself."""
CLOUD_EVENTS_VERSION: Final = "1.0"

# Names the ids of events (RFC 4122 name-based UUIDs); a fixed value, never to change.
_EVENT_ID_NAMESPACE: Final = uuid.UUID("5b0c7f8e-4d1a-5e2b-9c3d-2f6a8b1e0d47")


class EventSchema(StrEnum):
    """The envelope of delivered events (``DICOM_EVENTS_SCHEMA``), as an Event Grid
    subscription's delivery schema."""

    EVENT_GRID = "eventgrid"
    CLOUD_EVENTS = "cloudevents"


@dataclass(frozen=True, slots=True)
class DicomEvent:
    """One event, independent of its envelope."""

    id: str
    type: str
    subject: str
    time: str
    partition: str
    study_uid: str
    series_uid: str
    sop_uid: str
    service_host: str
    sequence: int

    @property
    def data(self) -> dict[str, Any]:
        """The ``data`` object, with Azure's field names."""
        return {
            "partitionName": self.partition,
            "imageStudyInstanceUid": self.study_uid,
            "imageSeriesInstanceUid": self.series_uid,
            "imageSopInstanceUid": self.sop_uid,
            "serviceHostName": self.service_host,
            "sequenceNumber": self.sequence,
        }


def instance_subject(host: str, partition: str | None, study: str, series: str, sop: str) -> str:
    """The instance's URL without its scheme, as Azure's ``subject``: with
    ``/partitions/{name}`` where partitions are on (``partition`` given), as Azure adds it."""
    base = f"{host}/v1" if partition is None else f"{host}/v1/partitions/{partition}"
    return f"{base}/studies/{study}/series/{series}/instances/{sop}"


def dicom_event(
    entry: ChangeFeedEntry,
    *,
    service_host: str,
    partition: str = PARTITION_NAME,
    partition_in_url: bool = False,
) -> DicomEvent:
    """The event of one change feed entry: create, update and delete map to
    ``DicomImageCreated``, ``DicomImageUpdated`` and ``DicomImageDeleted``."""
    key = entry.key
    name = "|".join(
        (
            str(entry.sequence),
            entry.timestamp,
            entry.action.value,
            key.study_uid,
            key.series_uid,
            key.sop_uid,
        )
    )
    return DicomEvent(
        id=str(uuid.uuid5(_EVENT_ID_NAMESPACE, name)),
        type=EVENT_TYPES[entry.action],
        subject=instance_subject(
            service_host,
            partition if partition_in_url else None,
            key.study_uid,
            key.series_uid,
            key.sop_uid,
        ),
        time=entry.timestamp,
        partition=partition,
        study_uid=key.study_uid,
        series_uid=key.series_uid,
        sop_uid=key.sop_uid,
        service_host=service_host,
        sequence=entry.sequence,
    )


def event_grid_event(event: DicomEvent, *, topic: str) -> dict[str, Any]:
    """The event in the Event Grid schema, as a subscriber receives it."""
    return {
        "id": event.id,
        "topic": topic,
        "subject": event.subject,
        "data": event.data,
        "eventType": event.type,
        "dataVersion": DATA_VERSION,
        "metadataVersion": METADATA_VERSION,
        "eventTime": event.time,
    }


def cloud_event(event: DicomEvent, *, source: str) -> dict[str, Any]:
    """The event in the CloudEvents 1.0 schema (JSON format), as a subscriber receives it."""
    return {
        "source": source,
        "subject": event.subject,
        "type": event.type,
        "time": event.time,
        "id": event.id,
        "data": event.data,
        "specversion": CLOUD_EVENTS_VERSION,
    }


def delivered_event(event: DicomEvent, schema: EventSchema, *, source: str) -> dict[str, Any]:
    """The event as a subscriber receives it in ``schema``; ``source`` is the ``topic`` of
    the Event Grid schema and the ``source`` of CloudEvents."""
    if schema is EventSchema.CLOUD_EVENTS:
        return cloud_event(event, source=source)
    return event_grid_event(event, topic=source)
