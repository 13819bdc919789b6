"""Streaming ``multipart/related`` support for STOW-RS requests and WADO-RS responses.

Why this module exists: a STOW-RS upload can carry DICOM instances of a gigabyte or more, and the
Functions host hands us the request body as a sequence of chunks. Parsers that buffer the whole
message (the stdlib ``email`` package, most form-data helpers) would hold every instance in memory,
so this module offers a *sans-IO*, incremental parser instead: the caller pushes chunks in and gets
events back, and body bytes are released as soon as they provably cannot belong to a delimiter.
Keeping it free of I/O also lets the same code serve the async HTTP layer, the tests and the
benchmarks without adapters.

The grammar is RFC 2046 section 5.1.1: a delimiter is CRLF, ``--`` and the boundary, followed by
transport padding and CRLF (or ``--`` for the last one); the boundary text anywhere else is part
data. It is applied leniently where real DICOMweb clients deviate from it: bodies framed with bare
LF throughout, a first delimiter at the very start of the body, a missing line break after the
closing delimiter, and ``Content-Type`` headers with odd spacing or quoting. Anything that cannot
be read unambiguously raises :class:`MultipartError`, whose message is short enough to be returned
to the client in a 400 response.

The writer helpers at the end build the framing for multipart WADO-RS responses; the response body
itself is streamed by the caller between those frames.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_TRANSPORT_PADDING",
    "ContentType",
    "Event",
    "MultipartError",
    "MultipartParser",
    "PartData",
    "PartEnd",
    "PartStart",
    "closing_delimiter",
    "new_boundary",
    "parse_content_type",
    "part_header",
    "sniff_boundary",
]

_CR: Final = 0x0D
_LF: Final = 0x0A
_SP: Final = 0x20
_HT: Final = 0x09
_DASH: Final = 0x2D

# RFC 7230 "token": what a media type, subtype and header name are made of.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# RFC 2046 boundary: 1..70 "bchars", and the last one must not be a space.
_BOUNDARY_RE: Final = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")

# Transport padding allowed between a boundary and its line break.
_PADDING_RE: Final = re.compile(rb"[ \t]*")

MAX_TRANSPORT_PADDING: Final = 256
"""Most spaces and tabs accepted between a boundary and its line break (RFC 2046 sets none).

A candidate delimiter is held back until its line break arrives, so this bounds the bytes held
between feeds; clients pad with a space or two at most. A longer run makes the candidate data.
"""

# How far sniff_boundary() looks for the end of the first line: the longest legal boundary plus
# generous room for transport padding. Bounding it keeps a huge "head" from being scanned.
_SNIFF_LINE_LIMIT: Final = 2 + 70 + 256

# The parser accepts boundaries longer than RFC 2046's 70 characters because some client
# libraries generate them, but a cap keeps the bytes held between feeds small.
_PARSER_BOUNDARY_LIMIT: Final = 256


class MultipartError(ValueError):
    """Raised for malformed multipart input.

    ``str(exc)`` is a short message naming the problem, written so the web layer can return it
    verbatim as a 400 response body. It subclasses ``ValueError`` because the fault is always in
    the data the client sent, never in the server.
    """


# --------------------------------------------------------------------------------------------
# Content-Type parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentType:
    """A parsed media type with its parameters.

    Names are lower-cased because media types and parameter names are case-insensitive
    (RFC 7231 section 3.1.1.1), so callers can compare with plain string equality. Values keep
    their case because a boundary is case-sensitive.
    """

    media_type: str
    params: dict[str, str]


def parse_content_type(value: str) -> ContentType:
    """Parse a ``Content-Type`` header value such as ``multipart/related; boundary=x``.

    The parser is tolerant of what clients actually send (spaces around ``;`` and ``=``, quoted
    or bare values, a trailing ``;``, quoted values containing ``;``) because rejecting a usable
    header would fail an otherwise valid upload. Parameters without ``=`` carry nothing usable and
    are ignored; if a name repeats, the last value wins. Only a missing or malformed media type,
    or an unterminated quoted value, raises :class:`MultipartError`, since then there is no safe
    reading of the header at all.
    """
    semi = value.find(";")
    media_type = (value if semi == -1 else value[:semi]).strip(" \t").lower()
    main_type, slash, sub_type = media_type.partition("/")
    if not slash or not _TOKEN_RE.fullmatch(main_type) or not _TOKEN_RE.fullmatch(sub_type):
        raise MultipartError(f"Content-Type header has no valid media type: {_shorten(value)!r}")
    params = {} if semi == -1 else _parse_params(value, semi + 1)
    return ContentType(media_type=media_type, params=params)


def _parse_params(value: str, pos: int) -> dict[str, str]:
    """Read ``name=value`` pairs from ``value[pos:]``.

    A character-level scan (rather than ``split(';')``) is needed because a quoted value may
    itself contain ``;`` and ``=``. Header values are short, so the loop costs nothing.
    """
    params: dict[str, str] = {}
    end = len(value)
    while pos < end:
        if value[pos] in " \t;":
            pos += 1
            continue
        name_end = pos
        while name_end < end and value[name_end] not in "=;":
            name_end += 1
        name = value[pos:name_end].strip(" \t").lower()
        if name_end >= end or value[name_end] == ";":
            pos = name_end  # a bare attribute without '=': nothing to record
            continue
        pos = name_end + 1
        while pos < end and value[pos] in " \t":
            pos += 1
        if pos < end and value[pos] == '"':
            param_value, pos = _read_quoted(value, pos + 1)
            # Tolerate stray characters between the closing quote and the next ';'.
            next_semi = value.find(";", pos)
            pos = end if next_semi == -1 else next_semi
        else:
            next_semi = value.find(";", pos)
            value_end = end if next_semi == -1 else next_semi
            param_value = value[pos:value_end].strip(" \t")
            pos = value_end
        if name:
            params[name] = param_value
    return params


def _read_quoted(value: str, pos: int) -> tuple[str, int]:
    """Decode an RFC 7230 quoted-string whose opening quote precedes ``pos``.

    Returns the unescaped text and the index just past the closing quote.
    """
    out: list[str] = []
    end = len(value)
    while pos < end:
        char = value[pos]
        if char == "\\" and pos + 1 < end:
            out.append(value[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise MultipartError("Content-Type header has an unterminated quoted parameter value")


def _shorten(text: str, limit: int = 80) -> str:
    """Clip client-supplied text before echoing it in an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Boundary helpers
# --------------------------------------------------------------------------------------------


def _is_rfc_boundary(boundary: bytes) -> bool:
    """Tell whether ``boundary`` satisfies RFC 2046 (1..70 bchars, not ending in a space)."""
    return _BOUNDARY_RE.fullmatch(boundary) is not None


def sniff_boundary(head: bytes) -> bytes | None:
    """Guess the boundary of a multipart body whose ``Content-Type`` omitted it.

    Some DICOMweb clients send ``Content-Type: multipart/related`` with no ``boundary``
    parameter. The body still starts with ``--boundary``, so the first line of the body tells us
    what it is. Pass the first bytes of the body (a hundred or so are plenty); leading line
    breaks are skipped and transport padding at the end of the line is ignored. Returns ``None``
    when the bytes do not start like a multipart body or the candidate is not a valid RFC 2046
    boundary, so the caller can answer with a clear 400 instead of parsing garbage.
    """
    pos = 0
    size = len(head)
    while pos < size and head[pos] in (_CR, _LF):
        pos += 1
    if not head.startswith(b"--", pos):
        return None
    line_end = head.find(b"\n", pos + 2, pos + _SNIFF_LINE_LIMIT)
    if line_end == -1:
        return None
    token = head[pos + 2 : line_end].removesuffix(b"\r").rstrip(b" \t")
    return token if _is_rfc_boundary(token) else None


# --------------------------------------------------------------------------------------------
# Parser events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartStart:
    """A new body part begins; its headers have been read in full.

    Header names are lower-cased (they are case-insensitive) and values stripped of surrounding
    whitespace; if a name repeats, the last occurrence wins, which is all a DICOM part needs.
    """

    headers: dict[str, str]

    @property
    def content_type(self) -> str | None:
        """The part's ``Content-Type`` header value, or ``None`` if it did not send one."""
        return self.headers.get("content-type")


@dataclass(frozen=True, slots=True)
class PartData:
    """A chunk (at least one byte) of the current part's body.

    Chunk sizes follow the input, not the part: a part may arrive as many chunks, so consumers
    should write them through to storage rather than expect the whole part at once.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The current part's body is complete (its closing delimiter has been seen)."""


type Event = PartStart | PartData | PartEnd


class _State(enum.Enum):
    """Where the parser is in the RFC 2046 grammar."""

    PREAMBLE = enum.auto()  # before the first delimiter
    HEADERS = enum.auto()  # reading a part's header lines
    BODY = enum.auto()  # streaming a part's body until the next delimiter
    EPILOGUE = enum.auto()  # after "--boundary--"; everything is ignored


class _Tail(enum.Enum):
    """What follows a candidate ``--boundary``: it decides whether the candidate delimits."""

    DATA = enum.auto()  # not a delimiter: the bytes belong to the part (or preamble)
    NEXT = enum.auto()  # a delimiter; a new part's headers follow
    CLOSE = enum.auto()  # the close delimiter; the epilogue follows
    UNDECIDED = enum.auto()  # the buffer ends before the tail could be classified


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


class MultipartParser:
    """Incremental, sans-IO parser for a multipart body (RFC 2046), fed arbitrary chunks.

    Feed the body in chunks of any size with :meth:`feed`, and call :meth:`close` once the input
    ends so that truncation is detected. Events come out in order: for each part a
    :class:`PartStart`, zero or more :class:`PartData`, then a :class:`PartEnd`.

    Throughput is the design constraint: bodies can be gigabytes, so the body is searched with
    ``bytes.find`` (C speed) and, when a chunk holds no delimiter, it is emitted as-is without
    copying. The only bytes held back between feeds are a possible delimiter whose tail has not
    arrived yet (at most ``len(boundary) + MAX_TRANSPORT_PADDING + 8`` bytes), plus, while
    reading headers, at most ``max_header_bytes``.

    What is a delimiter (RFC 2046 section 5.1.1): a line break, ``--`` and the boundary, then
    transport padding (spaces and tabs, at most :data:`MAX_TRANSPORT_PADDING`) and a line
    break; or, for the close delimiter, ``--`` after the boundary, then padding and a line break
    or the end of the body. The first delimiter may also stand at the very start of the body.
    Anything else, including the boundary text without a preceding line break, or with one but
    followed by other bytes, is part data and passes through unchanged: a DICOM instance may
    well contain the boundary text (an encapsulated report quoting a multipart message, say),
    and refusing the whole request for it would be wrong.

    The line break is CRLF, as RFC 2046 requires. Some clients write bare LF throughout, so the
    line break after the *first* delimiter fixes the framing of the whole body: CRLF there
    means only CRLF ``--boundary`` delimits later parts (a bare LF ``--boundary`` is data);
    a bare LF there means LF-framed, where ``\\n--boundary`` delimits and a CR just before it
    is dropped with it (the ambiguity inherent to LF framing).

    After a :class:`MultipartError` the parser is unusable: every later call raises again.
    """

    __slots__ = (
        "_boundary",
        "_buf",
        "_closed",
        "_crlf",
        "_failure",
        "_header_bytes",
        "_headers",
        "_last_header",
        "_max_header_bytes",
        "_needle",
        "_received_any",
        "_state",
    )

    def __init__(self, boundary: bytes, *, max_header_bytes: int = 16384) -> None:
        """Prepare to parse a body delimited by ``boundary`` (without the leading ``--``).

        The boundary comes from the client, so an unusable one raises :class:`MultipartError`
        (a 400), not a programming error. Lengths beyond RFC 2046's 70 are accepted because some
        clients exceed it; CR and LF are not, since they could never match a delimiter line.
        """
        if not isinstance(boundary, bytes):
            raise TypeError("boundary must be bytes")
        if (
            not boundary
            or len(boundary) > _PARSER_BOUNDARY_LIMIT
            or b"\r" in boundary
            or b"\n" in boundary
        ):
            raise MultipartError("invalid multipart boundary")
        if max_header_bytes < 1:
            raise ValueError("max_header_bytes must be positive")
        self._boundary = boundary
        # What a delimiter starts with. Until the first delimiter fixes the framing, a bare LF
        # suffices (the preamble is discarded anyway, and the first line break may be LF).
        self._needle = b"\n--" + boundary
        self._crlf: bool | None = None
        self._max_header_bytes = max_header_bytes
        # A virtual line break in front of the body lets a first delimiter at offset 0 be found
        # by the same search as every other delimiter.
        self._buf = b"\n"
        self._state = _State.PREAMBLE
        self._received_any = False
        self._headers: dict[str, str] = {}
        self._last_header: str | None = None
        self._header_bytes = 0
        self._closed = False
        self._failure: MultipartError | None = None

    # -- public API --------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Consume the next chunk of the body and return the events it completes.

        Raises :class:`MultipartError` as soon as the input is certainly malformed (oversized or
        broken headers), so a bad upload is rejected without reading the rest of it.
        """
        if self._closed:
            raise RuntimeError("MultipartParser.feed() called after close()")
        if self._failure is not None:
            raise MultipartError(str(self._failure))
        if not data:
            return []
        if not isinstance(data, bytes):
            data = bytes(data)  # bytearray/memoryview: PartData promises immutable bytes
        self._received_any = True
        buf = self._buf + data if self._buf else data
        self._buf = b""
        events: list[Event] = []
        try:
            self._process(buf, events)
        except MultipartError as exc:
            self._failure = exc
            raise
        return events

    def close(self) -> list[Event]:
        """Signal the end of input; raise :class:`MultipartError` if the body was incomplete.

        An entirely empty body is accepted and yields nothing, leaving the decision about
        "no instances" to the caller. A body in which the first delimiter never appears, or
        which stops before the closing ``--boundary--``, is an error: accepting it would store
        a truncated instance. A close delimiter at the very end of the body (no line break
        after it) can only be recognised here, so the last :class:`PartEnd` may come from this
        call.
        """
        if self._failure is not None:
            raise MultipartError(str(self._failure))
        if self._closed:
            return []
        self._closed = True
        state = self._state
        if state is _State.EPILOGUE:
            return []
        if state in (_State.PREAMBLE, _State.BODY) and self._is_final_close(self._buf):
            self._state = _State.EPILOGUE
            self._buf = b""
            return [PartEnd()] if state is _State.BODY else []
        if state is _State.PREAMBLE:
            if not self._received_any:
                return []
            shown = _shorten(self._boundary.decode("latin-1"))
            error = MultipartError(f'boundary "{shown}" not found in the body')
        elif state is _State.HEADERS:
            error = MultipartError("multipart body ended inside part headers")
        else:
            error = MultipartError("multipart body ended before the closing boundary")
        self._failure = error
        raise error

    # -- state machine -----------------------------------------------------------------------

    def _process(self, buf: bytes, events: list[Event]) -> None:
        """Run the state machine over ``buf`` until it is consumed or more input is needed.

        Each step returns the next position, or ``None`` after stashing the unconsumed bytes in
        ``self._buf`` because it cannot decide until more input arrives.
        """
        pos = 0
        size = len(buf)
        while pos < size:
            state = self._state
            step: int | None
            if state is _State.BODY:
                step = self._scan_body(buf, pos, events)
            elif state is _State.HEADERS:
                step = self._scan_headers(buf, pos, events)
            elif state is _State.PREAMBLE:
                step = self._scan_preamble(buf, pos)
            else:
                return  # epilogue: ignored by definition
            if step is None:
                return
            pos = step

    def _find_delimiter(self, buf: bytes, pos: int) -> tuple[int, _Tail, int]:
        """Find the first real (or undecided) delimiter in ``buf[pos:]``.

        Returns ``(index, tail, end)``: ``index`` where the needle starts, ``tail`` what it
        is, and ``end`` the offset just past it. Candidates followed by anything else are
        skipped as data. ``(-1, _Tail.DATA, -1)`` means no candidate remains in ``buf``.
        """
        needle = self._needle
        index = buf.find(needle, pos)
        while index != -1:
            tail, end = self._classify_tail(buf, index + len(needle))
            if tail is not _Tail.DATA:
                return index, tail, end
            index = buf.find(needle, index + 1)
        return -1, _Tail.DATA, -1

    def _classify_tail(self, buf: bytes, pos: int) -> tuple[_Tail, int]:
        """Classify what follows a candidate ``--boundary`` that ends at ``pos``.

        A delimiter continues with transport padding and a line break; a close delimiter with
        ``--``, padding, and a line break or the end of the body (which only :meth:`close`
        can see, hence UNDECIDED at the end of the buffer). Padding longer than
        :data:`MAX_TRANSPORT_PADDING` makes the candidate data, which bounds what is held back.
        """
        size = len(buf)
        after = self._skip_padding(buf, pos)
        if after is None:
            return _Tail.DATA, -1
        if after >= size:
            return _Tail.UNDECIDED, -1
        if after == pos and buf[after] == _DASH:
            if after + 1 >= size:
                return _Tail.UNDECIDED, -1
            if buf[after + 1] != _DASH:
                return _Tail.DATA, -1
            after = self._skip_padding(buf, after + 2)
            if after is None:
                return _Tail.DATA, -1
            if after >= size:
                return _Tail.UNDECIDED, -1
            return self._after_line_break(buf, after, _Tail.CLOSE)
        return self._after_line_break(buf, after, _Tail.NEXT)

    def _after_line_break(self, buf: bytes, pos: int, kind: _Tail) -> tuple[_Tail, int]:
        """Return ``kind`` and the offset past the line break at ``pos``, if there is one.

        CRLF is always a line break; a bare LF only while the framing is not known to be CRLF.
        A CR at the very end of the buffer leaves the tail undecided.
        """
        byte = buf[pos]
        if byte == _CR:
            if pos + 1 >= len(buf):
                return _Tail.UNDECIDED, -1
            return (kind, pos + 2) if buf[pos + 1] == _LF else (_Tail.DATA, -1)
        if byte == _LF and self._crlf is not True:
            return kind, pos + 1
        return _Tail.DATA, -1

    @staticmethod
    def _skip_padding(buf: bytes, pos: int) -> int | None:
        """Return the offset after the spaces and tabs at ``pos``, or ``None`` if too many."""
        match = _PADDING_RE.match(buf, pos, pos + MAX_TRANSPORT_PADDING + 1)
        end = pos if match is None else match.end()
        return None if end - pos > MAX_TRANSPORT_PADDING else end

    def _is_final_close(self, held: bytes) -> bool:
        """Tell whether the bytes held at the end of input are exactly a close delimiter."""
        if self._crlf is not True and held[:1] == b"\r":
            held = held[1:]
        needle = self._needle
        if not held.startswith(needle + b"--"):
            return False
        # The line break after a close delimiter is optional; half of one (a CR) is tolerated.
        return held[len(needle) + 2 :].removesuffix(b"\r").strip(b" \t") == b""

    def _fix_framing(self, buf: bytes, end: int) -> None:
        """After the first delimiter, fix CRLF or bare-LF framing for the rest of the body."""
        if self._crlf is None:
            self._crlf = buf[end - 2 : end] == b"\r\n"
            if self._crlf:
                self._needle = b"\r" + self._needle

    def _hold_from(self, buf: bytes, start: int) -> int:
        """Return the index from which ``buf`` must be kept because a delimiter may begin there.

        Called only after no candidate was found whole, so a delimiter can start only within
        the last ``len(needle) - 1`` bytes, where the rest of ``buf`` is a prefix of the needle.
        In LF framing the CR before that LF is kept too, and so is a trailing CR. Holding back
        nothing in the common case lets :meth:`_scan_body` emit whole chunks without copying.
        """
        needle = self._needle
        first = needle[:1]
        size = len(buf)
        index = buf.find(first, max(start, size - len(needle) + 1))
        while index != -1:
            if needle.startswith(buf[index:]):
                return self._with_cr(buf, start, index)
            index = buf.find(first, index + 1)
        return size - 1 if size > start and buf[size - 1] == _CR else size

    def _with_cr(self, buf: bytes, start: int, index: int) -> int:
        """In LF framing a CR right before the delimiter's LF belongs to the delimiter."""
        if self._crlf is not True and index > start and buf[index - 1] == _CR:
            return index - 1
        return index

    def _scan_preamble(self, buf: bytes, pos: int) -> int | None:
        """Skip everything up to the first delimiter, keeping only a possible delimiter start."""
        index, tail, end = self._find_delimiter(buf, pos)
        if index == -1:
            self._buf = buf[self._hold_from(buf, pos) :]
            return None
        if tail is _Tail.UNDECIDED:
            self._buf = buf[index:]
            return None
        if tail is _Tail.CLOSE:
            self._state = _State.EPILOGUE
            return end
        self._fix_framing(buf, end)
        self._start_headers()
        return end

    def _start_headers(self) -> None:
        """Reset per-part header state at the start of a new part."""
        self._state = _State.HEADERS
        self._headers = {}
        self._last_header = None
        self._header_bytes = 0

    def _scan_headers(self, buf: bytes, pos: int, events: list[Event]) -> int | None:
        """Read header lines until the empty line, enforcing ``max_header_bytes``.

        The search for each line break is bounded by the remaining header budget so that a
        client sending a huge chunk without line breaks is rejected without scanning it all.
        """
        limit = self._max_header_bytes
        size = len(buf)
        while True:
            budget = limit - self._header_bytes
            line_end = buf.find(b"\n", pos, pos + budget)
            if line_end == -1:
                if size - pos >= budget:
                    raise MultipartError(f"part headers exceed {limit} bytes")
                self._buf = buf[pos:]
                return None
            self._header_bytes += line_end + 1 - pos
            line = buf[pos:line_end]
            pos = line_end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                events.append(PartStart(headers=self._headers))
                self._headers = {}
                self._state = _State.BODY
                return pos
            self._add_header_line(line)

    def _add_header_line(self, line: bytes) -> None:
        """Record one header line, joining folded continuation lines onto the previous one."""
        if line[0] in (_SP, _HT):
            if self._last_header is None:
                raise MultipartError("part header continuation line without a preceding header")
            previous = self._headers[self._last_header]
            folded = _decode_header(line).strip(" \t")
            self._headers[self._last_header] = f"{previous} {folded}".strip(" \t")
            return
        raw_name, colon, raw_value = line.partition(b":")
        if not colon:
            raise MultipartError("part header line without ':'")
        name = _decode_header(raw_name).strip(" \t").lower()
        if not name:
            raise MultipartError("part header line with an empty name")
        self._headers[name] = _decode_header(raw_value).strip(" \t")
        self._last_header = name

    def _scan_body(self, buf: bytes, pos: int, events: list[Event]) -> int | None:
        """Emit body bytes up to the next delimiter, or all that cannot start one.

        When ``buf`` holds no delimiter and ends in nothing delimiter-like, the slice below
        covers it entirely and CPython returns the same object: the chunk passes through
        without a copy.
        """
        index, tail, end = self._find_delimiter(buf, pos)
        if index == -1:
            keep = self._hold_from(buf, pos)
            if keep > pos:
                events.append(PartData(buf[pos:keep]))
            self._buf = buf[keep:]
            return None
        data_end = self._with_cr(buf, pos, index)
        if data_end > pos:
            events.append(PartData(buf[pos:data_end]))
        if tail is _Tail.UNDECIDED:
            self._buf = buf[data_end:]
            return None
        events.append(PartEnd())
        if tail is _Tail.CLOSE:
            self._state = _State.EPILOGUE
        else:
            self._start_headers()
        return end


def _decode_header(raw: bytes) -> str:
    """Decode header bytes: UTF-8 when valid (what curl sends for file names), else Latin-1.

    Latin-1 never fails, so odd bytes in an irrelevant header cannot reject an upload.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# --------------------------------------------------------------------------------------------
# Writer helpers
# --------------------------------------------------------------------------------------------


def new_boundary() -> str:
    """Return a fresh random boundary for a multipart response.

    32 hex digits from ``uuid4`` are valid RFC 2046 bchars and, being random, will not occur in
    the DICOM payloads the boundary encloses (which the writer never scans).
    """
    return uuid.uuid4().hex


def _encode_boundary(boundary: str) -> bytes:
    """Validate a boundary we are about to write; a bad one is a programming error."""
    try:
        encoded = boundary.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"invalid multipart boundary: {boundary!r}") from None
    if not _is_rfc_boundary(encoded):
        raise ValueError(f"invalid multipart boundary: {boundary!r}")
    return encoded


def part_header(boundary: str, headers: Mapping[str, str], *, first: bool = True) -> bytes:
    """Build the delimiter line and header block that precede one part's body.

    The result ends with the empty line, so the part's bytes can be written right after it.
    The CRLF that ends the previous part's body belongs to the delimiter (RFC 2046), hence
    ``first=False`` prepends it for every part but the first. Header names and values are
    checked so that a value containing CR/LF can never inject headers or a fake boundary.
    """
    lines = [b"--" + _encode_boundary(boundary) + b"\r\n"]
    for name, value in headers.items():
        if not _TOKEN_RE.fullmatch(name):
            raise ValueError(f"invalid header name: {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} value contains a line break")
        lines.append(f"{name}: {value}\r\n".encode())
    lines.append(b"\r\n")
    block = b"".join(lines)
    return block if first else b"\r\n" + block


def closing_delimiter(boundary: str) -> bytes:
    """Build the bytes that end the last part and the whole multipart body."""
    return b"\r\n--" + _encode_boundary(boundary) + b"--\r\n"
