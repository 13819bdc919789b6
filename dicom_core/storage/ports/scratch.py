"""Scratch files named after the process that writes them.

Spool files (``services/staging``) and the local blob store's cross-disk copies
(``storage/local/file_blobs``) are written by one process and gone when it is done with them.
A process killed meanwhile leaves them behind. Their names say which process wrote them,
``{space}.{pid}.{random}{suffix}``, so that a process starting can remove the leftovers of
dead ones at once, while never touching those of live ones: several workers, or servers,
may share the directory.

The ``space`` is the host name and, on Linux, the process-ID namespace: two containers that
share a volume may be given one host name, and each numbers its processes from 1, so a PID
alone would let one container take the other's live file for a dead process's.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid


@functools.cache
def process_space() -> str:
    """Where this process's ID means this process: ``{host}`` or ``{host}~{pid namespace}``."""
    host = socket.gethostname()
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return host  # no /proc (macOS): a host name is all there is
    namespace = "".join(ch for ch in link if ch.isdigit())
    return f"{host}~{namespace}" if namespace else host


def scratch_name(suffix: str) -> str:
    """A new scratch file's name, with the writing process in it."""
    return f"{process_space()}.{os.getpid()}.{uuid.uuid4().hex}{suffix}"


def left_by_a_dead_process(name: str, suffix: str) -> bool:
    """Whether the scratch file ``name`` was written by a process of this host (and PID
    namespace) that no longer runs. Names of another host or namespace, of an older version
    (no namespace, or no process in them), or of a live process: False (a PID the system has
    reused since also reads as live: the file then waits for whatever age rule its directory
    has)."""
    space, _, rest = name.removesuffix(suffix).rpartition(".")[0].rpartition(".")
    if space != process_space() or not rest.isdigit():
        return False
    pid = int(rest)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive under another user, or the check is not allowed
    return False
