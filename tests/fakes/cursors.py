"""``FakeCursorStore``: cursors as a dict of positions."""

from __future__ import annotations


class FakeCursorStore:
    """The ``CursorStore`` port; ``positions`` is what a test looks at (or sets)."""

    def __init__(self) -> None:
        self.positions: dict[str, int] = {}

    async def read_cursor(self, name: str) -> int:
        return self.positions.get(name, 0)

    async def advance_cursor(self, name: str, expected: int, position: int) -> bool:
        if position <= expected:
            raise ValueError(f"a cursor moves forward only ({expected} -> {position})")
        if self.positions.get(name, 0) != expected:
            return False
        self.positions[name] = position
        return True
