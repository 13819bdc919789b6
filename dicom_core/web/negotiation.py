"""Accept header negotiation (RFC 9110 12.5.1, PS3.18 8.7).

Accept is parsed, not string-matched: media ranges may come in one header or several, with
quoted or unquoted parameters, wildcards and q-values. Each resource offers a list of
renditions; ``negotiate`` returns the best one the client accepts, or None (406).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dicom_core.errors import NotAcceptable
from dicom_core.web.multipart import MultipartError, parse_content_type


@dataclass(frozen=True, slots=True)
class MediaRange:
    media_type: str
    params: dict[str, str]
    q: float

    def matches(self, media_type: str) -> bool:
        kind, _, sub = media_type.partition("/")
        range_kind, _, range_sub = self.media_type.partition("/")
        if range_kind == "*":
            return True
        return range_kind == kind and range_sub in {"*", sub}

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.media_type


def _split_ranges(header: str) -> list[str]:
    """Split an Accept value on commas outside quoted strings."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in header:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_accept(headers: Iterable[str]) -> list[MediaRange]:
    """All media ranges of all Accept headers, best first (stable for equal q).

    A range that cannot be read is skipped, but a header of which no range can be read is a
    406, the conformance statement's answer to an Accept header it does not support: taking it
    for no header at all (anything goes) answered an unterminated quote such as
    ``multipart/related; type="application/dicom`` in a form the client never asked for.
    """
    ranges: list[MediaRange] = []
    unreadable: list[str] = []
    for header in headers:
        for text in _split_ranges(header):
            try:
                parsed = parse_content_type(text)
            except MultipartError:
                unreadable.append(text)
                continue
            params = dict(parsed.params)
            try:
                q = float(params.pop("q", "1"))
            except ValueError:
                q = 1.0
            ranges.append(MediaRange(parsed.media_type, params, max(0.0, min(q, 1.0))))
    if unreadable and not ranges:
        raise NotAcceptable(
            f"The Accept header names no media type that can be read: {unreadable[0]!r}."
        )
    return sorted(ranges, key=lambda r: -r.q)


def accepts(headers: Sequence[str], media_type: str) -> bool:
    """True if the client accepts ``media_type`` (no Accept header accepts everything)."""
    ranges = parse_accept(headers)
    if not ranges:
        return True
    return any(r.q > 0 and r.matches(media_type) for r in ranges)
