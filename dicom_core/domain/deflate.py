"""How large a Deflated Explicit VR Little Endian file is once inflated, found without holding it.

In that transfer syntax everything after the file meta group is one raw deflate stream, and
pydicom inflates it whole, in memory, as it reads the file (pixel data included, even when
asked to stop before it). A megabyte of deflated zeros inflates to a gigabyte: stored, parsed
and rendered, such a file took gigabytes of memory per request and got workers killed. So the
stream is inflated here first, a bounded piece at a time, output counted and dropped, and a
file that would inflate past the limit is refused before pydicom sees it. The cost is one pass
of zlib over the file (about a second per inflated gigabyte), paid only by deflated files.
"""

from __future__ import annotations

import zlib
from enum import Enum
from typing import BinaryIO, Final

from pydicom import dcmread

_READ: Final = 1 << 20
_OUTPUT_STEP: Final = 4 << 20


class InflatedSizeError(Exception):
    """The deflated dataset inflates past the limit."""


class InflationDeferred(Exception):
    """pydicom is about to inflate a deflated dataset, which this guard's mode defers: the
    caller parses the file elsewhere (a worker thread), or only wanted it measured."""


class Inflation(Enum):
    """What an ``InflationGuard`` does when pydicom asks for the deflated dataset."""

    DEFER = "defer"  # raise InflationDeferred at once (parsing on the event loop)
    MEASURE = "measure"  # measure it against the limit, then raise InflationDeferred
    INFLATE = "inflate"  # measure it against the limit, then let pydicom inflate it


class InflationGuard:
    """A binary file for ``dcmread`` that measures a deflated dataset before pydicom inflates it.

    pydicom reads the deflated dataset, and nothing else, with one read of unbounded size
    (``read()``) from wherever its own reading of the file meta group (and of a command set
    before the dataset, if any) left the file. So that read is where the stream is measured:
    exactly the bytes pydicom will inflate, whatever the file meta group looks like. Every
    other call goes to the wrapped file."""

    def __init__(self, inner: BinaryIO, limit: int, mode: Inflation = Inflation.INFLATE) -> None:
        self._inner = inner
        self._limit = limit
        self._mode = mode
        self.name = getattr(inner, "name", None)
        # The wrapped file's own methods, not a frame of ours per call: pydicom calls tell()
        # and read(n) a few hundred times per header.
        self.tell = inner.tell  # type: ignore[method-assign]
        self.seek = inner.seek  # type: ignore[method-assign,assignment]
        self._read = inner.read

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            if self._mode is Inflation.DEFER:
                raise InflationDeferred("a deflated dataset")
            start = self._inner.tell()
            check_inflated_size(self._inner, start, self._limit)
            if self._mode is Inflation.MEASURE:
                raise InflationDeferred("measured")
            self._inner.seek(start)
            return self._read()
        return self._read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()


def measure_inflation(data: BinaryIO, limit: int) -> None:
    """``InflatedSizeError`` when the Part 10 file in ``data`` is deflated and inflates past
    ``limit`` bytes; nothing is inflated whole (the header is read as pydicom reads it). A file
    pydicom cannot read is left for the parse that follows to report."""
    try:
        guard = InflationGuard(data, limit, Inflation.MEASURE)
        dcmread(guard, stop_before_pixels=True)
    except InflationDeferred:
        return
    except InflatedSizeError:
        raise
    except Exception:
        return


def check_inflated_size(handle: BinaryIO, offset: int, limit: int) -> int:
    """The inflated size of the raw deflate stream at ``offset``; ``InflatedSizeError`` as soon
    as it passes ``limit`` bytes. At most a few megabytes are held at any moment. A stream
    zlib cannot read is left for pydicom to refuse (its size so far is returned): pydicom
    inflates the same bytes the same way, so it fails at the same point, having inflated no
    more than was counted here."""
    handle.seek(offset)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        while not inflater.eof:
            chunk = handle.read(_READ)
            if not chunk:
                break
            pending = chunk
            while pending:
                total += len(inflater.decompress(pending, _OUTPUT_STEP))
                if total > limit:
                    raise InflatedSizeError(
                        f"its deflated dataset inflates to more than {limit} bytes, the"
                        " service's limit on decoded data"
                    )
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
    except zlib.error:
        return total
    return total
