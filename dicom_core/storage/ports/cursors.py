"""The cursor port: small named positions that a background job moves forward.

A cursor is how far a job that follows the change feed got (the event publisher: the last
sequence whose events went out). Reading it and moving it are separate steps, so the job can
do its work in between (publish, then advance): a crash between the two repeats the work,
and never skips it. The move is a compare-and-set, and only forward, so two jobs racing can
never move a cursor back: the second finds it moved and gives up.
"""

from __future__ import annotations

from typing import Protocol


class CursorStore(Protocol):
    async def read_cursor(self, name: str) -> int:
        """The cursor's position; 0 for a cursor never moved."""
        ...

    async def advance_cursor(self, name: str, expected: int, position: int) -> bool:
        """Move the cursor from ``expected`` to ``position`` (which must be greater); False,
        with nothing written, when it no longer stands at ``expected``."""
        ...
