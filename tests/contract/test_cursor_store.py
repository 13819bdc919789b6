"""The ``CursorStore`` contract, on every backend: a cursor starts at 0, moves forward by
compare-and-set, and of two moves from one position only one wins, so racing jobs can never
move it back."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.stores import Stores


def cursor_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


async def test_a_cursor_never_moved_stands_at_zero_and_has_no_record(stores: Stores) -> None:
    name = cursor_name()
    assert await stores.cursors.read_cursor(name) == 0
    assert await stores.raw_cursor(name) is None


async def test_a_cursor_moves_from_where_it_stands(stores: Stores) -> None:
    name = cursor_name()
    assert await stores.cursors.advance_cursor(name, 0, 5) is True
    assert await stores.cursors.advance_cursor(name, 5, 12) is True
    assert await stores.cursors.read_cursor(name) == 12
    assert await stores.raw_cursor(name) == 12
    # Cursors are independent of each other.
    assert await stores.cursors.read_cursor(cursor_name()) == 0


async def test_a_move_from_a_stale_position_writes_nothing(stores: Stores) -> None:
    name = cursor_name()
    assert await stores.cursors.advance_cursor(name, 0, 10) is True
    # A publisher that read 0 before the move above must not take the cursor anywhere.
    assert await stores.cursors.advance_cursor(name, 0, 4) is False
    assert await stores.cursors.advance_cursor(name, 3, 20) is False
    assert await stores.raw_cursor(name) == 10


async def test_a_cursor_refuses_to_move_back_or_stay(stores: Stores) -> None:
    name = cursor_name()
    await stores.cursors.advance_cursor(name, 0, 7)
    for position in (7, 3):
        with pytest.raises(ValueError, match="forward"):
            await stores.cursors.advance_cursor(name, 7, position)
    assert await stores.cursors.read_cursor(name) == 7


@pytest.mark.parametrize("start", [0, 9])
async def test_of_racing_moves_from_one_position_exactly_one_wins(
    stores: Stores, start: int
) -> None:
    """The first move (the record's creation) and later ones (replacements) alike."""
    name = cursor_name()
    if start:
        await stores.cursors.advance_cursor(name, 0, start)
    targets = [start + n for n in range(1, 9)]
    won = await asyncio.gather(
        *(stores.cursors.advance_cursor(name, start, target) for target in targets)
    )
    assert sum(won) == 1
    winner = targets[won.index(True)]
    assert await stores.cursors.read_cursor(name) == winner
    assert await stores.raw_cursor(name) == winner
