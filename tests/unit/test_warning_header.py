"""The HTTP Warning value a refused workitem transaction carries (``web.responses.warning``):
whatever the message quotes, the header stays one valid quoted string a client can read."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from dicom_core.web.responses import WARNING_TEXT_LIMIT, warning

# RFC 7234 5.5: warn-code SP warn-agent SP quoted-string (RFC 7230 3.2.6: qdtext or quoted-pair).
QUOTED = re.compile(r'299 - "((?:[\t !#-\[\]-~]|\\[\t -~])*)"')


def test_a_plain_message_is_carried_as_is() -> None:
    assert warning("The Transaction UID is missing.") == '299 - "The Transaction UID is missing."'


def test_quotes_and_backslashes_are_escaped() -> None:
    assert warning('a "quoted" \\ value') == '299 - "a \\"quoted\\" \\\\ value"'


def test_control_and_non_ascii_characters_become_question_marks() -> None:
    assert warning("line\r\nbreak, Müller") == '299 - "line??break, M?ller"'


def test_a_long_message_is_cut_with_an_ellipsis() -> None:
    value = warning("x" * 5000)
    assert value.endswith('..."') and len(value) == len('299 - ""') + WARNING_TEXT_LIMIT


def test_escapes_count_toward_the_limit_and_are_never_cut_in_half() -> None:
    value = warning('"' * 5000)
    assert len(value) <= len('299 - ""') + WARNING_TEXT_LIMIT
    assert value.endswith('\\"..."')
    assert warning("x" * WARNING_TEXT_LIMIT) == '299 - "' + "x" * WARNING_TEXT_LIMIT + '"'


@given(st.text(max_size=2000))
def test_any_message_gives_one_valid_quoted_string(message: str) -> None:
    value = warning(message)
    assert QUOTED.fullmatch(value), value
    value.encode("latin-1")  # a header value the server can send
