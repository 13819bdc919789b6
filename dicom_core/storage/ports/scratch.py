"""Scratch files named after the process that writes them.

Spool files (``services/staging``) and the local blob store's cross-disk copies
(``storage/local/file_blobs``) are written by one process and gone when it is done with them.
A process killed meanwhile leaves them behind. Their names say which process wrote them,
``{host}.{pid}.{random}{suffix}``, so that a process starting can remove the leftovers of
dead ones at once, while never touching those of live ones: several workers, or servers,
may share the directory. Hosts sharing it need host names of their own: two containers given
one name (and each its own process numbers) could take each other's live files for dead
ones. A PID namespace in the name was tried and dropped: a container restarted after a crash
gets a new one, and its leftovers then waited for the age rule.
"""

from __future__ import annotations

import os
import socket
import uuid


def scratch_name(suffix: str) -> str:
    """A new scratch file's name, with the writing process in it."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}{suffix}"


def left_by_a_dead_process(name: str, suffix: str) -> bool:
    """Whether the scratch file ``name`` was written by a process of this host that no longer
    runs. Names of another host, of an older version (no process in them), or of a live
    process: False (a PID the system has reused since also reads as live: the file then waits
    for whatever age rule its directory has)."""
    host, _, rest = name.removesuffix(suffix).rpartition(".")[0].rpartition(".")
    if host != socket.gethostname() or not rest.isdigit():
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
