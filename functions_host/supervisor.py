"""The main process of a multi-worker local host: uvicorn's supervisor, letting go of the
listening socket when it stops the workers.

Worker processes share one listening socket, which the main process holds too. On a stop,
each worker closes its own copy at once and drains the requests it has taken, but uvicorn's
supervisor kept its copy until every worker had finished (up to the graceful timeout). The
socket stayed open meanwhile, and the kernel kept completing handshakes into its backlog,
where nobody would accept them, and reset them at the end: a probe saw clients send a whole
STOW body and then get a reset, which a client cannot tell from a crash mid-store.

Here the main process closes its copy as it tells the workers to stop, and once the last of
them has closed its own, new connections are refused. What remains:

- a connection that reaches the backlog in the instant between a worker's last accept and its
  close is still reset; that cannot be helped from user space;
- on Ctrl-C the workers get SIGINT themselves and stop accepting before the supervisor's loop
  (which looks at its signals every 0.5 s) closes its copy, so connections in that half second
  are reset too. Closing from the signal handler would narrow it, but every path that starts
  a worker (SIGHUP's restart, SIGTTIN, replacing a dead one) hands it ``self.sockets``, and one
  that ran after such a close failed and left the main process hung with the workers serving.

Closing, not ``shutdown()``: a shut-down listening socket fails ``accept`` with EINVAL in every
worker still polling it (an error storm on asyncio's loop, a busy spin on uvloop's), while a
closed descriptor in another process changes nothing for them. Azure's front end stops routing
to an instance before it is drained; this is the local equivalent. It subclasses
``uvicorn.supervisors.Multiprocess`` (uvicorn 0.54.0, pinned), whose ``terminate_all`` runs
once, after the loop, when nothing will start a worker again.
"""

from __future__ import annotations

import contextlib
import socket

from uvicorn.supervisors import Multiprocess


class ClosingSupervisor(Multiprocess):
    """``Multiprocess`` that closes its listening sockets as it stops the workers."""

    def terminate_all(self) -> None:
        super().terminate_all()
        close_listeners(self.sockets)


def close_listeners(sockets: list[socket.socket]) -> None:
    """Close this process's copies of the listening ``sockets`` (idempotent)."""
    for listening in sockets:
        with contextlib.suppress(OSError):
            listening.close()
