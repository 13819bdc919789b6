"""The error every storage port may raise."""

from __future__ import annotations


class StorageUnavailable(Exception):
    """The backing store cannot be reached right now; the web layer answers 503."""
