"""The workitem port (UPS-RS): workitems stored whole, replaced under optimistic concurrency."""

from __future__ import annotations


class WorkitemExists(Exception):
    """Create of a workitem whose UID is already taken (409)."""


class WorkitemChanged(Exception):
    """A workitem write named a version that is no longer current (another write won)."""
