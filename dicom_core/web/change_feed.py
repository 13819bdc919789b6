"""HTTP for the change feed: ``GET /v{n}/changefeed`` and ``GET /v{n}/changefeed/latest``.

The parameters are the Azure DICOM service's ("Change feed overview"):

- v1 pages by sequence: ``offset`` is the last sequence already read (entries after it are
  returned), ``limit`` 1 to 100, default 10. ``startTime`` and ``endTime`` are ignored.
- v2 adds a time window, ``startTime`` inclusive and ``endTime`` exclusive, each an ISO 8601
  date and time with a time zone; ``offset`` then counts entries to skip inside the window
  (at most 10,000, as QIDO's; without a window, at any depth), and ``limit`` is 1 to 200,
  default 100.
- ``includeMetadata`` (default true) adds the current version's DICOM JSON to each entry of
  an instance that still exists.

Beyond Azure, ``/v{n}/partitions/{name}/changefeed`` and ``.../changefeed/latest`` read one
data partition's entries: the same parameters and sequences, with gaps where other
partitions' entries are (Azure's feed is one for all partitions, and each entry names its
partition).

Entries are JSON objects with the documented PascalCase names and lower-case values. Azure v2
orders a window by timestamp, then sequence; this service orders by sequence in both
versions, the order in which entries are guaranteed never to appear behind a reader (the two
orders differ only when a clock steps back or two changes race by microseconds).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.change_feed import ChangeFeedEntry
from dicom_core.domain.media_types import JSON
from dicom_core.domain.timestamps import timestamp_of
from dicom_core.errors import BadRequest
from dicom_core.query.parser import MAX_OFFSET as QIDO_MAX_OFFSET
from dicom_core.storage.ports import ChangeQuery
from dicom_core.web.context import api_version, partition_of
from dicom_core.web.query_params import bool_param, int_param, query_value

#: ``limit``'s default and maximum, by API version.
V1_LIMITS = (10, 100)
V2_LIMITS = (100, 200)
#: The largest ``offset`` read as a sequence (v1, and v2 without a window): Azure's
#: ``[Range(0, int.MaxValue)] long offset`` on both controllers.
MAX_SEQUENCE = 2**31 - 1
#: The largest v2 ``offset`` inside a time window or one partition's entries, a count of
#: entries to skip: skipping reads the skipped entries, so it is bounded as QIDO's offset is
#: (narrow the window instead). Over the whole feed, without a window, it is not bounded.
MAX_SKIP = QIDO_MAX_OFFSET


def entry_json(entry: ChangeFeedEntry, names: Mapping[int, str]) -> dict[str, object]:
    """The entry as the API answers it; ``names`` gives each partition key its name (the
    feed is one for all partitions, as Azure's is, and each entry says whose it is)."""
    body: dict[str, object] = {
        "Sequence": entry.sequence,
        "PartitionName": names[entry.key.partition],
        "StudyInstanceUid": entry.key.study_uid,
        "SeriesInstanceUid": entry.key.series_uid,
        "SopInstanceUid": entry.key.sop_uid,
        "Action": entry.action.value,
        "Timestamp": entry.timestamp,
        "State": entry.state.value,
    }
    if entry.metadata is not None:
        # Stored DICOM JSON, passed through without parsing it again.
        body["Metadata"] = orjson.Fragment(entry.metadata)
    return body


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type=JSON)


#: A time whose offset has a one-digit hour or minute (``+7``, ``-07:0``), which some of
#: Azure's releases read (their binder's zone pattern is ``[+-]\d{1,2}(:\d{1,2})?``) and
#: ``fromisoformat`` does not.
_SHORT_OFFSET = re.compile(
    r"(?P<time>.+[T ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)"
    r"(?P<sign>[+-])(?P<hours>[0-9]{1,2})(?::(?P<minutes>[0-9]{1,2}))?"
)
#: The largest offset from UTC a time may give (.NET's ``DateTimeOffset``, as Azure binds it).
_MAX_OFFSET = timedelta(hours=14)
#: The digits of a fraction of a second, after the seconds of an extended (``12:00:00.5``)
#: or basic (``120000,5``) time.
_FRACTION = re.compile(r"T[0-9:]*[0-9]{2}[.,](?P<digits>[0-9]+)")


def _parse_time(text: str) -> datetime | None:
    """``text`` as ISO 8601 (a one-digit offset too), or RFC 1123 (``Wed, 26 Apr 2023
    18:23:40 GMT``, JavaScript's ``toUTCString()``, which releases of Azure whose binder used
    .NET's ``DateTime.Parse`` read); None for anything else. A little more lenient than any
    one Azure release: none of these forms is ambiguous."""
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text)
    short = _SHORT_OFFSET.fullmatch(text)
    if short is not None:
        offset = f"{int(short['hours']):02d}:{int(short['minutes'] or 0):02d}"
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(f"{short['time']}{short['sign']}{offset}")
    with contextlib.suppress(ValueError):
        # RFC 1123 as HTTP dates are written (always GMT); strptime's %Y keeps year 0001,
        # which email.utils would read as 2001.
        return datetime.strptime(text, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    return None


def time_param(request: Request, name: str) -> str | None:
    """A date and time with a zone, as ``utc_timestamp`` text (None if absent).

    The feed's timestamps have microseconds. A time given more finely (.NET's round-trip
    format has tenths of a microsecond) that falls between two microseconds is moved up to
    the later one, so that ``startTime`` (inclusive) and ``endTime`` (exclusive) pick exactly
    the entries the precise time would: a time cut down instead took in an entry just before
    the start and left out one just before the end.
    """
    raw = query_value(request, name)
    if raw is None:
        return None
    text = raw.strip()
    parsed = _parse_time(text)
    offset = parsed.utcoffset() if parsed is not None else None
    if offset is not None and abs(offset) > _MAX_OFFSET:
        parsed = None  # .NET's DateTimeOffset takes offsets up to 14 hours either way
    if parsed is None:
        raise BadRequest(
            f"The query parameter '{name}' must be an ISO 8601 date and time, not {raw!r}."
        )
    if parsed.tzinfo is None:
        raise BadRequest(
            f"The query parameter '{name}' must give a time zone (for example Z or +01:00)."
        )
    try:
        fraction = _FRACTION.search(text)
        if fraction is not None and fraction["digits"][6:].strip("0"):
            parsed += timedelta(microseconds=1)
        return timestamp_of(parsed)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00, before year 1 in UTC
        raise BadRequest(
            f"The query parameter '{name}' is out of range once converted to UTC: {raw!r}."
        ) from exc


def change_query(request: Request, version: int, partition: int | None = None) -> ChangeQuery:
    """The query a request asks for; ``partition`` is the data partition of a
    ``/partitions/{name}/changefeed`` route (None: the whole feed)."""
    include_metadata = bool_param(request, "includeMetadata", default=True)
    default_limit, max_limit = V1_LIMITS if version == 1 else V2_LIMITS
    limit = int_param(request, "limit", default=default_limit, minimum=1, maximum=max_limit)
    start = end = None
    if version == 1:
        seek = True  # v1's offset is the last sequence read; the window is ignored
    else:
        start, end = time_param(request, "startTime"), time_param(request, "endTime")
        if start is not None and end is not None and start >= end:
            raise BadRequest(
                f"The start time '{start}' must be strictly before the end time '{end}'."
            )
        # The whole feed from its start, as Microsoft's own client sample pages it
        # (``offset`` = entries read so far). Its sequences run 1, 2, 3... with no gap, so
        # skipping ``offset`` entries is starting after sequence ``offset``: a seek, at any
        # depth, rather than a read of every entry skipped.
        seek = start is None and end is None and partition is None
    if seek:
        offset = int_param(request, "offset", default=0, minimum=0, maximum=MAX_SEQUENCE)
        return ChangeQuery(
            limit=limit,
            after_sequence=offset,
            include_metadata=include_metadata,
            partition=partition,
        )
    offset = int_param(request, "offset", default=0, minimum=0, maximum=MAX_SKIP)
    return ChangeQuery(
        limit=limit,
        skip=offset,
        start_time=start,
        end_time=end,
        include_metadata=include_metadata,
        partition=partition,
    )


async def _partition(request: Request, services: Services) -> int | None:
    """The partition a ``/partitions/{name}/changefeed`` route names; None for the feed
    itself, which is global in Azure whether partitions are on or off (so never a 400 for
    lacking a partition)."""
    if "partition" not in request.path_params:
        return None
    return (await partition_of(request, services)).key


async def read_changes(request: Request, services: Services) -> Response:
    version = api_version(request)
    query = change_query(request, version, await _partition(request, services))
    entries = await services.change_feed.read(query)
    names = await services.partitions.names({entry.key.partition for entry in entries})
    return _json([entry_json(entry, names) for entry in entries])


async def latest_change(request: Request, services: Services) -> Response:
    """The newest entry; 204 while the feed is empty (Azure answers its null the same way)."""
    api_version(request)
    partition = await _partition(request, services)
    include_metadata = bool_param(request, "includeMetadata", default=True)
    entry = await services.change_feed.latest(
        include_metadata=include_metadata, partition=partition
    )
    if entry is None:
        return Response(status_code=204)
    names = await services.partitions.names({entry.key.partition})
    return _json(entry_json(entry, names))
