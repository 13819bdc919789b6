"""Unit tests for dicom_core.domain.nesting and the store's refusal of deep nesting.

The check must run in constant stack space (it guards the recursive walks), refuse exactly
past MAX_SEQUENCE_DEPTH, name the attribute, and leave the dataset as pydicom read it.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import orjson
import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from dicom_core.domain.instance import VALIDATION_FAILURE, InstanceRejected, parse_instance
from dicom_core.domain.nesting import (
    MAX_SEQUENCE_DEPTH,
    dataset_nesting_problem,
    json_nesting_problem,
)
from tests.support.factories import (
    make_nested_instance,
    nested_sequence_bytes,
    nested_sequence_json,
)

CONTENT_SEQUENCE = 0x0040A730
TOO_DEEP = "(0040,A730) ContentSequence: sequences nest more than 64 levels deep"


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data), stop_before_pixels=True, defer_size="1 MB")


@pytest.mark.parametrize("defined_length", [False, True])
@pytest.mark.parametrize("depth", [1, 10, MAX_SEQUENCE_DEPTH])
def test_dataset_nesting_problem_up_to_the_limit_is_none(depth: int, defined_length: bool) -> None:
    _, data = make_nested_instance(depth, defined_length=defined_length)
    assert dataset_nesting_problem(read(data)) is None


@pytest.mark.parametrize("defined_length", [False, True])
@pytest.mark.parametrize("depth", [MAX_SEQUENCE_DEPTH + 1, 100, 200])
def test_dataset_nesting_problem_past_the_limit_names_the_attribute(
    depth: int, defined_length: bool
) -> None:
    _, data = make_nested_instance(depth, defined_length=defined_length)
    assert dataset_nesting_problem(read(data)) == (
        f"{TOO_DEEP}; at most {MAX_SEQUENCE_DEPTH} are accepted"
    )


def test_dataset_nesting_problem_defined_length_1000_checked_in_constant_stack() -> None:
    # pydicom leaves a defined-length sequence raw, so 1,000 levels read fine; the check must
    # then not recurse through them.
    _, data = make_nested_instance(1000, defined_length=True)
    assert dataset_nesting_problem(read(data)) is not None


def test_dataset_nesting_problem_recursion_inside_pydicom_is_reported_as_too_deep() -> None:
    # A defined-length sequence wrapping undefined-length ones 1,000 deep: pydicom parses the
    # inner ones recursively when the outer one is converted, and runs out of stack.
    _, base = make_nested_instance(0)
    inner = nested_sequence_bytes(1000, defined_length=False)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
    data = base + struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, len(item)) + item
    assert dataset_nesting_problem(read(data)) == (
        f"{TOO_DEEP}; at most {MAX_SEQUENCE_DEPTH} are accepted"
    )


def test_dataset_nesting_problem_leaves_raw_sequences_raw() -> None:
    _, data = make_nested_instance(MAX_SEQUENCE_DEPTH + 1, defined_length=True)
    ds = read(data)
    dataset_nesting_problem(ds)
    assert isinstance(ds._dict[BaseTag(CONTENT_SEQUENCE)], RawDataElement)


@pytest.mark.parametrize("depth", [1, 10, MAX_SEQUENCE_DEPTH])
def test_json_nesting_problem_up_to_the_limit_is_none(depth: int) -> None:
    assert json_nesting_problem(nested_sequence_json(depth)) is None


@pytest.mark.parametrize("depth", [MAX_SEQUENCE_DEPTH + 1, 1000, 10_000])
def test_json_nesting_problem_past_the_limit_names_the_attribute(depth: int) -> None:
    assert json_nesting_problem(nested_sequence_json(depth)) == (
        f"{TOO_DEEP}; at most {MAX_SEQUENCE_DEPTH} are accepted"
    )


def test_json_nesting_problem_ignores_what_is_not_dicom_json() -> None:
    document = {"0040A730": {"vr": "SQ", "Value": [1, "x", None]}, "x": 3, "00100010": "y"}
    assert json_nesting_problem(document) is None


# -- the store's parse step --------------------------------------------------------------------


@pytest.mark.parametrize("defined_length", [False, True])
def test_parse_instance_at_the_limit_keeps_every_level_in_metadata(
    tmp_path: Path, defined_length: bool
) -> None:
    path = tmp_path / "deep.dcm"
    path.write_bytes(make_nested_instance(MAX_SEQUENCE_DEPTH, defined_length=defined_length)[1])
    document = orjson.loads(parse_instance(path, partition=1).metadata_json)
    levels = 0
    item = document
    while "0040A730" in item:
        item = item["0040A730"]["Value"][0]
        levels += 1
    assert levels == MAX_SEQUENCE_DEPTH
    assert item == {"00080104": {"vr": "LO", "Value": ["leaf"]}}


@pytest.mark.parametrize("defined_length", [False, True])
@pytest.mark.parametrize("depth", [MAX_SEQUENCE_DEPTH + 1, 100, 1000])
def test_parse_instance_past_the_limit_is_rejected_with_43264(
    tmp_path: Path, depth: int, defined_length: bool
) -> None:
    path = tmp_path / "deep.dcm"
    ds, data = make_nested_instance(depth, defined_length=defined_length)
    path.write_bytes(data)
    with pytest.raises(InstanceRejected) as caught:
        parse_instance(path, partition=1)
    assert caught.value.failure_code == VALIDATION_FAILURE
    assert "nest" in caught.value.message
    assert f"at most {MAX_SEQUENCE_DEPTH}" in caught.value.message
    if "(0040,A730)" in caught.value.message:  # read whole, then checked: the UIDs are known
        assert caught.value.sop_uid == ds.SOPInstanceUID
