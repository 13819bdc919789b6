"""``msdicom-meta-*`` values that are numbers must be finite: a fuzzing probe's 'nan' for an
FD was stored and read back as null, and one for an IS made the store answer 500."""

from __future__ import annotations

import pytest

from dicom_core.errors import BadRequest
from dicom_core.services.external_metadata import parse_headers


@pytest.mark.parametrize("vr", ["FD", "FL", "IS", "SL", "US"])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999", "-1e999"])
def test_a_number_that_is_not_finite_is_a_400_naming_the_header(vr: str, value: str) -> None:
    name = f"msdicom-meta-{vr}-00191012"
    with pytest.raises(BadRequest, match=f"'{name}' has an invalid value.*not a finite {vr}"):
        parse_headers([(name, value)])


def test_finite_numbers_are_kept() -> None:
    [kept] = parse_headers([("msdicom-meta-FD-00191012", " 2.5e3 ")])
    assert (kept.value, kept.indexed.number) == ("2.5e3", 2500.0)
