"""Spooling parts: the 128-byte preamble is zeroed however the bytes are chunked."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_core.services.staging import StagingArea

BODY = b"\x02\x00\x00\x00rest of the dataset" * 10


@pytest.mark.parametrize("chunk", [1, 7, 131, 132, 133, 4096])
def test_spool_zeroes_a_nonzero_preamble_for_any_chunking(tmp_path: Path, chunk: int) -> None:
    data = b"X" * 128 + b"DICM" + BODY
    spool = StagingArea(tmp_path).new_part()
    for start in range(0, len(data), chunk):
        spool.write(data[start : start + chunk])
    spool.close()
    assert spool.path.read_bytes() == bytes(128) + b"DICM" + BODY
    assert spool.size == len(data)


def test_spool_adds_a_preamble_when_the_part_starts_with_dicm(tmp_path: Path) -> None:
    spool = StagingArea(tmp_path).new_part()
    spool.write(b"DICM" + BODY)
    spool.close()
    assert spool.path.read_bytes() == bytes(128) + b"DICM" + BODY


def test_spool_keeps_other_content_as_it_came(tmp_path: Path) -> None:
    spool = StagingArea(tmp_path).new_part()
    spool.write(b"short")
    spool.close()
    assert spool.path.read_bytes() == b"short"


def test_discard_removes_the_file(tmp_path: Path) -> None:
    spool = StagingArea(tmp_path).new_part()
    spool.write(b"x" * 500)
    spool.discard()
    assert not spool.path.exists()
