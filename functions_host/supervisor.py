"""The main process of a multi-worker local host: uvicorn's supervisor, letting go of the
listening socket as soon as it is told to stop.

Worker processes share one listening socket, which the main process holds too. On a stop,
each worker closes its own copy at once and drains the requests it has taken, but uvicorn's
supervisor kept its copy until every worker had finished (up to the graceful timeout). The
socket stayed open meanwhile, and the kernel kept completing handshakes into its backlog,
where nobody would accept them, and reset them at the end: a probe saw clients send a whole
STOW body and then get a reset, which a client cannot tell from a crash mid-store.

Here the main process closes its copy when the stop signal arrives. The workers keep serving
until they are told (a SIGTERM to the main process reaches them through the supervisor), and
once the last has closed its copy, new connections are refused. A connection that reaches the
backlog in the instant between a worker's last accept and its close is still reset; that
cannot be helped from user space. Closing, not ``shutdown()``: a shut-down listening socket
fails ``accept`` with EINVAL in every worker still polling it (an error storm on asyncio's
loop, a busy spin on uvloop's), while a closed descriptor in another process changes nothing
for them.

The handler only closes descriptors and queues the signal for uvicorn's loop, as upstream's
handler does: setting a ``threading.Event`` from a signal handler can deadlock on the Event's
own lock (python/cpython#126434). Azure's front end stops routing to an instance before it is
drained; this is the local equivalent. It subclasses ``uvicorn.supervisors.Multiprocess``
(uvicorn 0.54.0, pinned).
"""

from __future__ import annotations

import contextlib
import signal
import socket
from types import FrameType

from uvicorn.config import Config
from uvicorn.supervisors import Multiprocess


class ClosingSupervisor(Multiprocess):
    """``Multiprocess`` that closes its listening sockets as soon as a stop arrives."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._stopping = False
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, self._on_stop)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        close_listeners(self.sockets)
        self.signal_queue.append(signum)  # uvicorn's loop stops the workers, as upstream

    def keep_subprocess_alive(self) -> None:
        # A worker that dies while the stop is queued is not replaced: the sockets a new one
        # would inherit are closed.
        if not self._stopping:
            super().keep_subprocess_alive()

    def terminate_all(self) -> None:
        super().terminate_all()
        close_listeners(self.sockets)  # a stop that came another way (a worker's failure)


def close_listeners(sockets: list[socket.socket]) -> None:
    """Close this process's copies of the listening ``sockets`` (idempotent)."""
    for listening in sockets:
        with contextlib.suppress(OSError):
            listening.close()
