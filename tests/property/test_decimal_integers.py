"""``decimal_integer``: what .NET's invariant parsing reads, never a ValueError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicom_core.domain.integers import PAST_ANY_RANGE, decimal_integer


@given(st.integers(min_value=-(10**19) + 1, max_value=10**19 - 1), st.integers(0, 40))
def test_a_signed_number_with_leading_zeros_reads_as_itself(number: int, zeros: int) -> None:
    sign = "-" if number < 0 else "+" if number % 2 else ""
    assert decimal_integer(f"{sign}{'0' * zeros}{abs(number)}") == number


@given(st.text())
def test_any_text_is_a_number_or_none_and_never_an_error(text: str) -> None:
    value = decimal_integer(text)
    assert value is None or -PAST_ANY_RANGE <= value <= PAST_ANY_RANGE


@pytest.mark.parametrize("text", ["", "+", "--5", "+-5", "1_0", "\uff11", "\u0661", " 5", "5.0"])
def test_what_dotnet_refuses_is_none(text: str) -> None:
    assert decimal_integer(text) is None


def test_thousands_of_digits_are_past_any_range_not_an_error() -> None:
    assert decimal_integer("9" * 5000) == PAST_ANY_RANGE
    assert decimal_integer("-" + "9" * 5000) == -PAST_ANY_RANGE
