"""The HTTP front: uvicorn's httptools protocol with Kestrel's request-head limits (414 for a
long request target, 431 for large headers), and answers whose files go out by ``sendfile``
(``functions_host.zero_copy``; its pipelining and lost-connection cases are handled here, where
the transport is).

In Azure a request reaches the Functions host through Kestrel, whose defaults refuse a request
line over 8 KiB (``MaxRequestLineSize``, 8,192 bytes) with 414 URI Too Long and request headers
over 32 KiB in all (``MaxRequestHeadersTotalSize``) with 431, before any function runs. The
DICOM service's conformance statement gives the same figure to clients: "414 (URI Too Long)
URI exceeded maximum supported length of 8192 characters". (On Windows plans IIS's
``maxUrl``/``maxQueryString`` of the host's web.config cut in earlier, with a 404; this app
targets Flex Consumption, which is Linux, so Kestrel's behaviour is the one to stand in for.)

uvicorn's httptools protocol has no such limits, and fails on its own terms instead: a target
of 64 KiB or more overflows the 16-bit offsets of httptools' URL parser, which uvicorn answers
with 400 "Invalid HTTP request received.", and below that nothing is refused at all. So the
front's protocol counts the target and the headers while the parser hands them over, and
answers 414 or 431 itself, at the first byte past the limit: the rest of an oversized head is
never buffered, and the app never sees the request.

What is measured, and how it differs from Kestrel:
- the request target as sent (path, ``?`` and query), at most ``MAX_REQUEST_TARGET`` bytes:
  the length the conformance statement speaks of, and the one ``dicom_core.web.qido`` checks.
  Kestrel counts the whole request line, so it refuses targets some 15 bytes shorter (the
  method, two spaces, ``HTTP/1.1`` and CRLF);
- header names and values, at most ``MAX_HEADER_BYTES`` together;
- the answer carries a JSON body naming the limit, as the app's own errors do; Kestrel's has
  no body.

Kestrel also gives a request head ``RequestHeadersTimeout`` (30 s) to arrive once its first
byte has, and answers 408 Request Timeout when it does not; uvicorn waits for ever, so a
client sending a header byte now and then (slowloris) held a connection, and a connection
that never sent a byte stayed open too (uvicorn arms its idle timer only after an answer). The
front answers such a head 408 after ``REQUEST_HEADERS_TIMEOUT``, counted only while the front
reads (a head pipelined behind an answer waits unread, so its clock starts once that answer is
out, as Kestrel's does). A connection must send its first request within
``NEW_CONNECTION_TIMEOUT`` (Kestrel's ``KeepAliveTimeout``, 130 s), and the next one within
uvicorn's keep-alive timeout after an answer; blank lines between requests, which the parser
skips, do not restart either clock.

A request body gets Kestrel's ``MinRequestBodyDataRate`` too: after a grace of
``BODY_GRACE_SECONDS`` (5 s) it must have brought ``MIN_BODY_RATE`` (240) bytes for each second
the front spent reading it, or it is answered 408 and the connection closes (uvicorn waits for
a body as long as a client likes). Kestrel measures the same rate over the same reading time;
here it is checked once a second (``BODY_CHECK_SECONDS``), so a body is cut up to a second
later than Kestrel would.

A refusal (400, 414, 431) of a request pipelined behind others waits until their answers are
all out, then goes, and the connection closes, as Kestrel answers them: written at once, it
landed inside an answer still being sent.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from functions_host import zero_copy

MAX_REQUEST_TARGET = 8192
MAX_HEADER_BYTES = 32 * 1024
#: Seconds a request head may take to arrive once its first byte has (Kestrel's default).
REQUEST_HEADERS_TIMEOUT = 30.0
#: Seconds a new connection may wait before its first request (Kestrel's KeepAliveTimeout).
NEW_CONNECTION_TIMEOUT = 130.0
#: Kestrel's MinRequestBodyDataRate: once a request's head is in, its body must arrive at this
#: many bytes a second on average, after a grace period, counted while the front reads it.
MIN_BODY_RATE = 240.0
BODY_GRACE_SECONDS = 5.0
#: How often the body's rate is checked.
BODY_CHECK_SECONDS = 1.0

_REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing a request head past a limit."""


class FrontProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with Kestrel's request-head limits (module docstring), and
    zero-copy file sends (``functions_host.zero_copy``)."""

    _refusal: tuple[int, str] | None = None
    _deferred_refusal: tuple[int, str] | None = None
    """A refusal (status, message) of a request pipelined behind answers still due."""
    _header_bytes = 0
    _answering: RequestResponseCycle | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _head_pending = False
    _idle_until: float | None = None
    """When an idle connection (no request begun) is closed; None while a request runs."""
    _body_timer: asyncio.TimerHandle | None = None
    _body_bytes = 0
    _body_seconds = 0.0
    """Seconds the front has been reading the current body (not those paused by backpressure)."""
    _body_last = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_until = self.loop.time() + NEW_CONNECTION_TIMEOUT
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # uvicorn disarms its idle timer at every byte
        if self._idle_until is not None and not self.transport.is_closing():
            self._arm_idle_timer()  # only blank lines came: the clock runs on

    def _arm_idle_timer(self) -> None:
        assert self._idle_until is not None
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        delay = max(0.0, self._idle_until - self.loop.time())
        self.timeout_keep_alive_task = self.loop.call_later(delay, self.timeout_keep_alive_handler)

    def on_response_complete(self) -> None:
        deferred = self._deferred_refusal
        if deferred is not None and not self.pipeline and not self.transport.is_closing():
            self._deferred_refusal = None
            self._refuse_now(deferred)  # every answer before it is out; this one closes
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._head_pending and self._head_timer is None:
            self._start_head_timer()  # a pipelined head: read from now on
        elif not self._head_pending and not self.pipeline:
            self._idle_until = self.loop.time() + self.timeout_keep_alive

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._refusal = None
        self._header_bytes = 0
        zero_copy.offer(self.scope)  # type: ignore[arg-type]
        self._idle_until = None
        self._head_pending = True
        self._stop_head_timer()
        answering = self._answering
        if (answering is None or answering.response_complete) and not self.pipeline:
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._stop_head_timer()
        upgrade = self._get_upgrade() is not None
        has_content = any(
            name in (b"transfer-encoding", b"content-length") and value.strip() not in (b"", b"0")
            for name, value in self.headers
        )
        if upgrade and has_content:
            # The parser stops at an Upgrade request's head, so its body would be lost (a
            # STOW answered 204 with nothing stored). Kestrel refuses such a request too.
            self._refuse(400, "Requests with 'Connection: Upgrade' cannot have content.")
        super().on_headers_complete()
        if has_content:  # a GET (a frame, metadata) arms no timer
            self._start_body_clock()
        if upgrade:
            # Served as the plain request it is (no WebSockets here), but the parser reads
            # nothing after its head: the connection closes once it is answered, so a request
            # pipelined behind it is not left unanswered on an open connection.
            self.cycle.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def _start_body_clock(self) -> None:
        self._stop_body_clock()
        self._body_bytes, self._body_seconds = 0, 0.0
        self._body_last = self.loop.time()
        self._body_timer = self.loop.call_later(BODY_CHECK_SECONDS, self._check_body_rate)

    def _stop_body_clock(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body_rate(self) -> None:
        """Kestrel's MinRequestBodyDataRate, as a tick: while the body of the request last
        begun is still arriving, the seconds spent reading it (not those the front paused
        because the app had not taken what was read) must bring at least ``MIN_BODY_RATE``
        bytes each, after ``BODY_GRACE_SECONDS``. A body that trickles in past that is 408
        and the connection closes; the app reading it is told the client left.

        Without it, a client declaring a large body and sending a byte now and then held a
        connection, and a staging file, for as long as it liked (a probe kept 7,000)."""
        self._body_timer = None
        cycle = self.cycle
        if (
            cycle is None
            or not cycle.more_body
            or cycle.response_complete
            or self.transport.is_closing()
        ):
            return
        now = self.loop.time()
        if not self.flow.read_paused:
            self._body_seconds += now - self._body_last
        self._body_last = now
        if (
            self._body_seconds > BODY_GRACE_SECONDS
            and self._body_bytes < MIN_BODY_RATE * self._body_seconds
        ):
            self._body_too_slow(cycle)
            return
        self._body_timer = self.loop.call_later(BODY_CHECK_SECONDS, self._check_body_rate)

    def _body_too_slow(self, cycle: RequestResponseCycle) -> None:
        cycle.disconnected = True  # its receive() now says http.disconnect, its send() nothing
        cycle.message_event.set()
        answering = self._answering
        if cycle.response_started or (
            answering is not None and answering is not cycle and not answering.response_complete
        ):
            self.transport.close()  # a 408 now would land inside an answer
            return
        self._send_refusal(
            408,
            f"The request body arrived slower than {MIN_BODY_RATE:.0f} bytes a second after"
            f" its first {BODY_GRACE_SECONDS:.0f} seconds.",
        )

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(REQUEST_HEADERS_TIMEOUT, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        answering = self._answering
        message = (
            f"The request headers did not arrive within {REQUEST_HEADERS_TIMEOUT:.0f} seconds."
        )
        if answering is not None and not answering.response_complete:
            # Pipelined behind an answer still going out: no 408 inside its body; it is sent
            # once that answer is complete (a refusal kept already goes instead).
            if self._deferred_refusal is None:
                self._deferred_refusal = (408, message)
            self.flow.pause_reading()
            return
        self._send_refusal(408, message)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn builds the cycle in on_headers_complete; it is swapped for the zero-copy one
        # before its task runs (the subclass's own state has class-level defaults). Cycles
        # start one at a time, pipelined ones once the previous answer is complete.
        cycle.__class__ = zero_copy.ZeroCopyCycle
        self._answering = cycle
        super()._start_asgi_task(cycle, app)

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_REQUEST_TARGET:
            self._refuse(
                414,
                f"The request URI is longer than {MAX_REQUEST_TARGET} characters, the maximum"
                " supported length.",
            )
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(
                431,
                f"The request headers are larger than {MAX_HEADER_BYTES} bytes in all, the"
                " maximum supported size.",
            )
        super().on_header(name, value)

    def _refuse(self, status: int, message: str) -> None:
        # httptools turns an exception in a callback into a parser error, which uvicorn
        # answers through send_400_response: that is where the refusal is sent instead.
        self._refusal = (status, message)
        raise HeadTooLarge(message)

    def connection_lost(self, exc: Exception | None) -> None:
        # uvicorn marks only the newest cycle disconnected: with requests pipelined, the one
        # being answered is an older one, whose next write would raise on the closed transport
        # (a traceback per dropped connection, and the app told of a failure not its own).
        self._stop_head_timer()
        self._stop_body_clock()
        answering = self._answering
        if answering is not None and not answering.response_complete:
            answering.disconnected = True
            answering.message_event.set()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        refusal = self._refusal or (400, msg)
        answering = self._answering
        current = self.cycle
        if current is not None and current.more_body and not current.response_complete:
            # The error is in the body of the request last begun, which nothing will finish:
            # waiting for its answer would wait for ever.
            if current is answering:
                if current.response_started:
                    self.transport.close()  # a refusal now would land inside its answer
                    return
                self._refuse_now(refusal)
                return
            for queued in [entry for entry in self.pipeline if entry[0] is current]:
                self.pipeline.remove(queued)  # queued: it is never answered
        if (answering is not None and not answering.response_complete) or self.pipeline:
            # A bad request pipelined behind answers still to be given (or going out): a
            # refusal written now would land inside one of their bodies. It is sent once they
            # are complete, as Kestrel does, and the connection then closes; nothing more is
            # read meanwhile (the parser is past use).
            self._deferred_refusal = refusal
            self.flow.pause_reading()
            return
        self._refuse_now(refusal)

    def _refuse_now(self, refusal: tuple[int, str]) -> None:
        status, message = refusal
        if status == 400:
            super().send_400_response(message)  # uvicorn's own plain-text 400
            return
        self._send_refusal(status, message)

    def _send_refusal(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON body naming the reason, and close the connection."""
        body = json.dumps({"status": status, "message": message}, separators=(",", ":")).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()
