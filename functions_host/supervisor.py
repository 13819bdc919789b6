"""The main process of a multi-worker local host: uvicorn's supervisor, closing the door first.

Worker processes share one listening socket, which the main process holds too. On a stop,
uvicorn's supervisor signals the workers and waits for them; each stops accepting at once,
but the socket stays open in the main process until every worker has finished its last
requests (up to the graceful timeout). Meanwhile the kernel kept completing handshakes into
the socket's backlog, where nobody would accept them, and reset them at the end: a probe saw
clients send a whole STOW body and then get a reset, which a client cannot tell from a crash
mid-store. Here the listening socket is shut down as soon as the workers are told to stop, so
a connection made after that is refused at once, and the requests already accepted finish as
before (they have sockets of their own).

Azure's front end stops routing to an instance before it is drained; this is the local
equivalent. It subclasses ``uvicorn.supervisors.Multiprocess`` (uvicorn 0.54.0, pinned), whose
``terminate_all`` is the moment the workers are told.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from types import FrameType

from uvicorn.config import Config
from uvicorn.supervisors import Multiprocess


class ClosingSupervisor(Multiprocess):
    """``Multiprocess`` that refuses new connections as soon as it stops the workers."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        # uvicorn queues a signal for its loop, which looks every 0.5 s. On Ctrl-C the workers
        # get SIGINT too and stop accepting at once, so for up to that half second the socket
        # would take in connections nobody accepts. A stop wakes the loop now instead.
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, self._stop_now)

    def _stop_now(self, signum: int, frame: FrameType | None) -> None:
        self.signal_queue.append(signum)
        self.should_exit.set()

    def terminate_all(self) -> None:
        self.handle_signals()  # logs the stop that ended the loop, as uvicorn would
        super().terminate_all()
        refuse_connections(self.sockets)


def refuse_connections(sockets: list[socket.socket]) -> None:
    """Stop listening on ``sockets`` for every process sharing them: pending connections in
    the backlog are reset now and new ones are refused (Linux; elsewhere a no-op error)."""
    for listening in sockets:
        with contextlib.suppress(OSError):
            listening.shutdown(socket.SHUT_RDWR)
