"""The front's zero-copy file sends: ASGI's ``http.response.zerocopysend`` extension.

A whole series as stored is hundreds of megabytes that the app only moves from files to the
socket. Read into Python and written back, every byte is copied twice through user space, and
every file costs a hop to a worker thread and back. On a machine where client and server share
the cores, that CPU is taken from the client. ``os.sendfile`` hands the kernel the file and
the socket instead, and one hop can send many files.

The front offers the extension in each request's scope (``extensions``). An app that sees it
may send ``{"type": "http.response.zerocopysend", "file": f, "offset": o, "count": n,
"more_body": ...}`` between its ``http.response.body`` messages; ``f`` has a ``fileno()``.

How a response is sent once its first file message arrives:
- the transport's buffer is emptied first (the status line and anything written before);
- from then on the response's ``_Writer`` sends every body byte, in order, through a duplicate
  of the socket's descriptor: files with ``sendfile``, the bytes between them with
  ``os.write``, in a worker thread (a page-cache miss blocks) that takes everything queued so
  far in one hop. The app's ``send`` returns once its message is queued, so the next files
  queue while the thread sends; it waits only when more than ``QUEUED_LIMIT`` bytes are
  queued;
- each queued file is a duplicate of the app's descriptor, closed once sent: the app may
  close its own as soon as its last ``send`` returns, or when it fails;
- the socket stays non-blocking: when it is full, the thread returns what it sent and the loop
  waits for the socket to be writable (``add_writer`` on the duplicate, which uvloop allows).
  A client that stops reading holds no thread, only this coroutine, as uvicorn's own flow
  control does;
- the socket's duplicate keeps its number from being reused while the thread uses it, even if
  the transport closes its own descriptor meanwhile.

Content-Length is kept as uvicorn keeps it: a file that overruns it is an error, and so is a
file shorter than its ``count`` (it ends the connection, so a client sees the body is short).
A response without Content-Length (chunked) gets the file's bytes as ordinary body messages;
a HEAD response, none.

Azure: the app runs behind the Functions host, and the runtime's HTTP-streams server (uvicorn)
offers no such extension, so the app streams its files as chunks there (and in this host's
``runtime`` engine). The extension saves CPU only; what a client receives is the same.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

ZERO_COPY = "http.response.zerocopysend"
QUEUED_LIMIT = 8 << 20  # bytes queued ahead of the socket before an app's send waits

_CHUNK = 1 << 20  # for the reads of the fallbacks (a chunked response, no descriptor left)
_CLIENT_GONE = frozenset(
    {
        errno.EPIPE,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENOTCONN,
        errno.ESHUTDOWN,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    }
)
_NO_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


def offer(scope: MutableMapping[str, Any]) -> None:
    """Announce the extension in a request's scope."""
    scope.setdefault("extensions", {})[ZERO_COPY] = {}


@dataclass(slots=True)
class _Region:
    """Part of a file to send: ``fd`` is the writer's own duplicate."""

    fd: int
    offset: int
    end: int


_Item = memoryview | _Region


def _size(item: _Item) -> int:
    return item.end - item.offset if isinstance(item, _Region) else len(item)


def _send_batch(out: int, items: Sequence[_Item]) -> tuple[int, int]:
    """Send ``items`` in order until all are sent or the socket is full (worker thread).

    Returns how many were sent whole, and how many bytes of the next one.
    """
    for index, item in enumerate(items):
        sent = 0
        size = _size(item)
        while sent < size:
            try:
                if isinstance(item, _Region):
                    moved = os.sendfile(out, item.fd, item.offset + sent, size - sent)
                    if moved == 0:
                        raise OSError(
                            errno.EIO, f"a file ended {size - sent} bytes before its count"
                        )
                else:
                    moved = os.write(out, item[sent:])
            except BlockingIOError:
                return index, sent
            sent += moved
    return len(items), 0


class ClientGone(Exception):
    """The client closed the connection while its answer was being sent."""


class _Writer:
    """One response's body bytes and files, sent in order off the loop (module docstring).

    The writer owns its descriptors: the socket's duplicate and each queued file's. They are
    closed only when neither the writer's task nor a worker thread can still use them, even
    when a shutdown cancels everything twice (``_when_idle``).
    """

    def __init__(self, out: int, stopped: Callable[[], bool], client_gone: Callable[[], None]):
        self._out = out
        self._stopped = stopped
        self._client_gone = client_gone
        self._items: collections.deque[_Item] = collections.deque()
        self._queued = 0
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._thread: asyncio.Future[tuple[int, int]] | None = None
        self._failure: BaseException | None = None
        self._closed = False

    def check(self) -> None:
        """Raise what ended the sending, if anything but the client leaving did."""
        if self._failure is not None and not isinstance(self._failure, ClientGone):
            raise self._failure

    async def put(self, item: _Item) -> None:
        """Queue ``item`` (the writer owns its descriptor from now on, whatever happens);
        wait while too much is queued. Raises what ended the sending."""
        if self._closed or self._failure is not None:
            if isinstance(item, _Region):
                os.close(item.fd)
            self.check()
            return
        self._items.append(item)
        self._queued += _size(item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        if self._queued > QUEUED_LIMIT:
            self._room.clear()
            await self._room.wait()
            self.check()

    async def drain(self) -> None:
        """Wait until everything queued is sent. Raises what ended the sending."""
        if self._task is not None:
            await asyncio.wait({self._task})
        self.check()

    async def close(self) -> None:
        """Stop sending (the response ended, however) and release every descriptor."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task})
        finally:
            self._when_idle(self._release)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._items:
                if self._stopped():
                    raise ClientGone()
                batch = list(self._items)
                self._thread = asyncio.ensure_future(
                    asyncio.to_thread(_send_batch, self._out, batch)
                )
                # A cancellation does not stop the thread: its descriptors stay open until it
                # ends (_when_idle).
                whole, partly = await asyncio.shield(self._thread)
                for _ in range(whole):
                    self._retire(self._items.popleft())
                if partly:
                    self._advance(partly)
                if self._queued <= QUEUED_LIMIT:
                    self._room.set()
                if whole < len(batch):  # the socket is full
                    await _writable(loop, self._out)
        except asyncio.CancelledError:
            self._failure = self._failure or ClientGone()
            raise
        except ClientGone as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(ClientGone() if exc.errno in _CLIENT_GONE else exc)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._room.set()

    def _fail(self, failure: BaseException) -> None:
        self._failure = failure
        self._when_idle(self._drop_items)
        if isinstance(failure, ClientGone):
            self._client_gone()

    def _retire(self, item: _Item) -> None:
        self._queued -= _size(item)
        if isinstance(item, _Region):
            os.close(item.fd)

    def _advance(self, sent: int) -> None:
        item = self._items[0]
        self._queued -= sent
        if isinstance(item, _Region):
            item.offset += sent
        else:
            self._items[0] = item[sent:]

    def _when_idle(self, action: Callable[[], None]) -> None:
        """Run ``action`` once neither this writer's task nor its thread is running."""
        for busy in (self._task, self._thread):
            if busy is not None and not busy.done() and busy is not asyncio.current_task():
                busy.add_done_callback(lambda _: self._when_idle(action))
                return
        action()

    def _drop_items(self) -> None:
        while self._items:
            item = self._items.popleft()
            if isinstance(item, _Region):
                os.close(item.fd)
        self._queued = 0

    def _release(self) -> None:
        self._drop_items()
        if self._out >= 0:
            os.close(self._out)
            self._out = -1


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


class ZeroCopyCycle(RequestResponseCycle):
    """uvicorn's request-response cycle with ``http.response.zerocopysend`` (module docstring).

    The front swaps a new cycle's class for this one before its ASGI task starts
    (``FrontProtocol._start_asgi_task``); uvicorn builds the cycle itself.
    """

    _writer: _Writer | None = None  # once this response sends its body itself

    @property
    def owns_socket(self) -> bool:
        """True while this response's writer, not the transport, writes to the socket."""
        return self._writer is not None and not self.response_complete

    async def run_asgi(self, app: Any) -> None:
        try:
            await super().run_asgi(app)
        finally:
            if self._writer is not None:
                await self._writer.close()

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == ZERO_COPY:
            await self._send_file(message)
        elif kind == "http.response.body" and self._writer is not None:
            await self._send_bytes(message)
        else:
            await super().send(message)

    async def _send_file(self, message: Any) -> None:
        if self.disconnected:
            return
        if not self.response_started or self.response_complete:
            raise RuntimeError(f"'{ZERO_COPY}' is only valid inside a response body")
        source = message["file"].fileno()
        offset = message.get("offset")
        count = message.get("count")
        if offset is None:  # from the file's position, which moves past what is sent
            offset = os.lseek(source, 0, os.SEEK_CUR)
            if count is None:
                count = os.fstat(source).st_size - offset
            os.lseek(source, offset + count, os.SEEK_SET)
        elif count is None:
            count = os.fstat(source).st_size - offset
        more_body = bool(message.get("more_body", False))
        if self.scope["method"] == "HEAD":
            await super().send({"type": "http.response.body", "body": b"", "more_body": more_body})
            return
        if not self.chunked_encoding and count > self.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        writer = None if self.chunked_encoding else await self._take_over()
        if writer is None:
            await self._send_as_body(source, offset, count, more_body)
            return
        writer.check()
        self.expected_content_length -= count
        try:
            duplicate = os.dup(source)
        except OSError as exc:
            if exc.errno not in _NO_DESCRIPTORS:
                raise
            # No descriptor to spare: the file's bytes go through the queue instead.
            await self._queue_read(writer, source, offset, count)
        else:
            if count:
                await writer.put(_Region(duplicate, offset, offset + count))
            else:
                os.close(duplicate)
        if not more_body:
            await self._complete(writer)

    async def _send_bytes(self, message: Any) -> None:
        """A body message after a file: queued behind it."""
        writer = self._writer
        assert writer is not None
        if self.disconnected or self.response_complete:
            await super().send(message)  # uvicorn's own answer to these states
            return
        body = message.get("body", b"")
        if len(body) > self.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        self.expected_content_length -= len(body)
        if body:
            await writer.put(memoryview(bytes(body)))
        if not message.get("more_body", False):
            await self._complete(writer)

    async def _complete(self, writer: _Writer) -> None:
        await writer.drain()
        await writer.close()  # the socket's duplicate too: a closing connection ends now
        if not self.disconnected:
            # uvicorn's own end of a body: the Content-Length check, keep-alive, next request.
            await super().send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _queue_read(self, writer: _Writer, source: int, offset: int, count: int) -> None:
        end = offset + count
        while offset < end:
            chunk = await _read(source, offset, end)
            offset += len(chunk)
            await writer.put(memoryview(chunk))

    async def _send_as_body(self, source: int, offset: int, count: int, more_body: bool) -> None:
        """The file's bytes as body messages, through the transport (no writer)."""
        end = offset + count
        while offset < end:
            chunk = await _read(source, offset, end)
            offset += len(chunk)
            await super().send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not more_body:
            await super().send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _take_over(self) -> _Writer | None:
        """This response's writer, once everything the transport holds is sent; None when
        the client left meanwhile or no descriptor is left for it."""
        if self._writer is not None:
            return self._writer
        # Only the status line and a few body bytes can be waiting, and only when the client
        # reads slower than the loop writes: wait for the transport to flush them. With a
        # high-water mark of 0, uvloop pauses the protocol while anything is buffered, and
        # uvicorn's flow control wakes this wait once it is all sent (or the client is gone).
        if self.transport.get_write_buffer_size() and not self.disconnected:
            low, high = self.transport.get_write_buffer_limits()
            self.transport.set_write_buffer_limits(high=0)
            try:
                await self.flow.drain()
            finally:
                if not self.transport.is_closing():
                    self.transport.set_write_buffer_limits(high=high, low=low)
        sock = self.transport.get_extra_info("socket")
        if self.disconnected or self.transport.is_closing():
            self.disconnected = True  # nothing written now would reach the client
            return None
        if sock is None:
            return None
        try:
            out = os.dup(sock.fileno())
        except OSError as exc:
            if exc.errno not in _NO_DESCRIPTORS:
                raise
            return None  # this response goes through the transport
        self._writer = _Writer(out, self._stopped, self._client_gone)
        return self._writer

    def _stopped(self) -> bool:
        return self.disconnected or self.transport.is_closing()

    def _client_gone(self) -> None:
        self.disconnected = True
        self.transport.close()
        self.message_event.set()


async def _read(source: int, offset: int, end: int) -> bytes:
    """The next chunk of the app's file, before its send returns (so before it can close it)."""
    chunk = await asyncio.to_thread(os.pread, source, min(_CHUNK, end - offset), offset)
    if not chunk:
        raise OSError(errno.EIO, f"a file ended {end - offset} bytes before its count")
    return chunk
