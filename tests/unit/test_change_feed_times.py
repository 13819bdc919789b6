"""The change feed's ``startTime`` and ``endTime``: the forms Azure's binder reads, and times
finer than the feed's microseconds."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from starlette.requests import Request

from dicom_core.errors import BadRequest
from dicom_core.web.change_feed import time_param


def start(value: str) -> str | None:
    query = f"startTime={quote(value)}".encode()
    return time_param(Request({"type": "http", "query_string": query}), "startTime")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-04-26T11:23:40.902519-07:00", "2023-04-26T18:23:40.902519Z"),
        # One-digit offsets and RFC 1123, which .NET's DateTime.Parse reads (Azure's tests of
        # its binder list them as valid).
        ("2023-04-26T11:23:40.902519-07:0", "2023-04-26T18:23:40.902519Z"),
        ("2023-04-26T11:23:40.902519+7:00", "2023-04-26T04:23:40.902519Z"),
        ("2023-04-26T11:23:40.902519+7:0", "2023-04-26T04:23:40.902519Z"),
        ("2023-04-26T11:23:40.902519+7", "2023-04-26T04:23:40.902519Z"),
        ("2023-04-26T11:23:40.902519-14:00", "2023-04-27T01:23:40.902519Z"),
        ("Wed, 26 Apr 2023 18:23:40 GMT", "2023-04-26T18:23:40.000000Z"),
        ("Mon, 01 Jan 0001 00:00:00 GMT", "0001-01-01T00:00:00.000000Z"),
        # Tenths of a microsecond between two microseconds move up to the later one; zeros
        # beyond the sixth digit change nothing.
        ("2023-04-26T18:23:40.9025191Z", "2023-04-26T18:23:40.902520Z"),
        ("2023-04-26T18:23:40.9025190Z", "2023-04-26T18:23:40.902519Z"),
        ("2023-04-26T18:23:40.9999999Z", "2023-04-26T18:23:41.000000Z"),
        ("2023-04-26T18:23:40,9025191Z", "2023-04-26T18:23:40.902520Z"),
        ("20230426T182340.9025191Z", "2023-04-26T18:23:40.902520Z"),
        ("2023-04-26T18:23:40.9025191+7", "2023-04-26T11:23:40.902520Z"),
    ],
)
def test_times_azure_reads_are_read_to_the_feeds_microsecond(value: str, expected: str) -> None:
    assert start(value) == expected


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("2023-04-26T11:23:40", "time zone"),
        ("Wed, 26 Apr 2023 18:23:40 -0000", "ISO 8601"),  # RFC 2822's "zone unknown"
        ("Wed, 26 Apr 2023 18:23:40 EST", "ISO 8601"),
        ("2023-04-26T11:23:40+25", "ISO 8601"),
        ("2023-04-26T11:23:40+14:01", "ISO 8601"),
        ("2023-04-26T11:23:40-15", "ISO 8601"),
        ("yesterday", "ISO 8601"),
        ("9999-12-31T23:59:59.9999999Z", "out of range"),
    ],
)
def test_other_times_are_a_400_naming_the_problem(value: str, named: str) -> None:
    with pytest.raises(BadRequest, match=named):
        start(value)
