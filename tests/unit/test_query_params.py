"""Query parameters by name in any case, as Azure's model binding reads them."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from starlette.requests import Request

from dicom_core.errors import BadRequest
from dicom_core.web.query_params import int_param, query_value, query_values
from dicom_core.web.wado_params import quality


def request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode()})


def test_names_match_in_any_case_and_values_keep_their_order() -> None:
    assert query_values(request("Quality=5&x=1&QUALITY=7"), "quality") == ["5", "7"]
    assert query_value(request("EndTime=t"), "endTime") == "t"
    assert query_value(request("other=1"), "endTime") is None
    assert int_param(request("LIMIT=3"), "limit", default=1, minimum=1, maximum=5) == 3


def test_a_single_valued_parameter_given_twice_in_any_case_is_a_400() -> None:
    with pytest.raises(BadRequest, match="'limit' may be given only once"):
        query_value(request("limit=1&Limit=2"), "limit")


def test_the_rendered_quality_is_read_in_any_case_the_last_one_counting() -> None:
    assert quality(request("Quality=40")) == 40
    assert quality(request("quality=40&QUALITY=60")) == 60
    assert quality(request("")) == 100


@pytest.mark.parametrize("value", ["1_0", "\uff11", "\u0661", "1.0", "0x10", "", "1 0"])
def test_an_integer_is_ascii_digits_as_azure_parses_it(value: str) -> None:
    """Python's int() reads "1_0" and other scripts' digits; ASP.NET's binding refuses them."""
    with pytest.raises(BadRequest, match="'limit' must be an integer"):
        int_param(request(f"limit={quote(value)}"), "limit", default=1, minimum=0, maximum=99)


@pytest.mark.parametrize(("value", "expected"), [("+7", 7), (" 8 ", 8), ("007", 7), ("-0", 0)])
def test_a_sign_blanks_and_leading_zeros_are_read(value: str, expected: int) -> None:
    given = request(f"limit={quote(value)}")
    assert int_param(given, "limit", default=1, minimum=0, maximum=99) == expected


def test_an_integer_of_thousands_of_digits_is_out_of_range_not_an_error() -> None:
    """int() refuses over 4,300 digits with a ValueError, which became a 500."""
    with pytest.raises(BadRequest, match="out of range"):
        int_param(request("limit=" + "9" * 5000), "limit", default=1, minimum=0, maximum=99)
    assert (
        int_param(request("limit=" + "0" * 5000 + "7"), "limit", default=1, minimum=0, maximum=9)
        == 7
    )


@pytest.mark.parametrize("value", ["\t5", "5\n"])
def test_white_space_around_an_integer_is_read_as_dotnet_does(value: str) -> None:
    assert (
        int_param(request(f"limit={quote(value)}"), "limit", default=1, minimum=0, maximum=9) == 5
    )
