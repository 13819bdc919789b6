"""The errors every storage port may raise, and how an operating-system error becomes one."""

from __future__ import annotations

import errno


class StorageUnavailable(Exception):
    """The backing store cannot be reached right now; the web layer answers 503."""


class StorageFull(StorageUnavailable):
    """The backing store has no room left; the web layer answers 507 (Insufficient Storage).

    A ``StorageUnavailable`` too, so whatever handles an outage handles this one.
    """


#: Operating-system errors that mean the disk (or the user's quota on it) is full.
FULL_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(exc: OSError, doing: str) -> StorageUnavailable:
    """The port error for an ``OSError`` raised while ``doing`` (e.g. "writing the file"):
    ``StorageFull`` for a full disk, else ``StorageUnavailable`` naming the system's reason.
    Raise it ``from exc`` so the log keeps the original."""
    if exc.errno in FULL_DISK_ERRORS:
        return StorageFull(f"the disk is full ({doing})")
    return StorageUnavailable(f"{doing} failed: {exc.strerror or exc}")
