"""Property tests: route templates match the paths built from them, as ASP.NET Core would.

The unit tests pin ASP.NET's own cases; these generate templates (literal, parameter,
complex and optional segments, a catch-all) and paths built from them, and check the rules
that must hold for all of them: a path built from a template matches it with the values used,
the case of literals never matters, an extra segment never matches without a catch-all, and
the host's name order and Kestrel's path decoding agree with simple models.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicom_core.web.routing import compile_template, registration_order, request_path
from dicom_core.web.routing.dotnet_text import _fold, _ordinal_upper_char

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Parameter values never hold the punctuation used as literals inside complex segments, so
# ASP.NET's right-to-left literal search gives each value back exactly.
VALUE_CHARS = string.ascii_letters + string.digits + "._~@é€中"
SEPARATORS = "-!;,"

values = st.text(alphabet=VALUE_CHARS, min_size=1, max_size=6)
literals = st.text(alphabet=string.ascii_letters, min_size=1, max_size=6)
separators = st.text(alphabet=SEPARATORS, min_size=1, max_size=2)


@dataclass(frozen=True)
class Piece:
    """One part of a segment: a literal's text, or a parameter's name and value."""

    literal: str | None = None
    name: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class Case:
    """A template, its segments, and the optional tail and catch-all it ends with."""

    segments: tuple[tuple[Piece, ...], ...]
    optional: tuple[Piece, ...]
    catch_all: tuple[str, ...] | None

    def template(self) -> str:
        parts = [
            "".join(p.literal if p.literal is not None else f"{{{p.name}}}" for p in segment)
            for segment in self.segments
        ]
        parts += [f"{{{p.name}?}}" for p in self.optional]
        if self.catch_all is not None:
            parts.append("{*rest}")
        return "/".join(parts)

    def path(self, filled: int, case: str = "same", extra: tuple[str, ...] = ()) -> str:
        return "/" + "/".join(self.texts(filled, case) + list(extra))

    def texts(self, filled: int, case: str = "same") -> list[str]:
        texts = []
        for segment in self.segments:
            text = ""
            for piece in segment:
                if piece.literal is None:
                    text += piece.value or ""
                elif case == "swap" and len(segment) == 1:
                    text += piece.literal.swapcase()
                else:
                    text += piece.literal
            texts.append(text)
        texts += [piece.value or "" for piece in self.optional[:filled]]
        if self.catch_all is not None and filled == len(self.optional):
            texts += self.catch_all
        return texts

    def values(self, filled: int) -> dict[str, str]:
        found = {
            piece.name: piece.value
            for segment in self.segments
            for piece in segment
            if piece.name is not None and piece.value is not None
        }
        found.update({p.name: p.value for p in self.optional[:filled] if p.name and p.value})
        if self.catch_all and filled == len(self.optional):
            found["rest"] = "/".join(self.catch_all)
        return found


@st.composite
def segments(draw: st.DrawFn, counter: list[int]) -> tuple[Piece, ...]:
    """A literal, a parameter, or a complex segment alternating literals and parameters."""

    def parameter() -> Piece:
        counter[0] += 1
        return Piece(name=f"p{counter[0]}", value=draw(values))

    kind = draw(st.sampled_from(["literal", "parameter", "complex"]))
    if kind == "literal":
        return (Piece(literal=draw(literals)),)
    if kind == "parameter":
        return (parameter(),)
    pieces: list[Piece] = []
    if draw(st.booleans()):
        pieces.append(Piece(literal=draw(literals) + draw(separators)))
    pieces.append(parameter())
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        pieces.append(Piece(literal=draw(separators)))
        pieces.append(parameter())
    if draw(st.booleans()):
        pieces.append(Piece(literal=draw(separators) + draw(literals)))
    return tuple(pieces)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    counter = [0]
    body = tuple(draw(segments(counter)) for _ in range(draw(st.integers(0, 4))))
    optional = []
    for _ in range(draw(st.integers(0, 2))):
        counter[0] += 1
        optional.append(Piece(name=f"p{counter[0]}", value=draw(values)))
    catch_all = None
    if draw(st.booleans()):
        catch_all = tuple(draw(st.lists(values, max_size=3)))
    return Case(body, tuple(optional), catch_all)


@SETTINGS
@given(cases(), st.data())
def test_a_path_built_from_a_template_matches_it_with_the_values_used(
    case: Case, data: st.DataObject
) -> None:
    """Whatever the segments, a path made by filling the template matches it and gives back
    exactly the values put in; optional parameters left off the end are simply absent."""
    filled = data.draw(st.integers(0, len(case.optional)))
    template = compile_template(case.template())
    path, expected = case.path(filled), case.values(filled)
    assert template.match(path) == expected
    if path != "/":
        if "rest" in expected:
            expected["rest"] += "/"
        assert template.match(path + "/") == expected


@SETTINGS
@given(cases(), st.data())
def test_the_case_of_literals_never_changes_the_result(case: Case, data: st.DataObject) -> None:
    """Literal segments compare ordinal ignore-case: swapping the case of every literal in
    the path, or in the template, gives the same values."""
    filled = data.draw(st.integers(0, len(case.optional)))
    template = compile_template(case.template())
    expected = template.match(case.path(filled))
    assert template.match(case.path(filled, case="swap")) == expected
    assert compile_template(case.template().swapcase()).match(case.path(filled)) is not None


@SETTINGS
@given(cases(), values)
def test_an_extra_segment_never_matches_without_a_catch_all(case: Case, extra: str) -> None:
    """With every parameter filled, one more segment has nothing left to match it."""
    template = compile_template(case.template())
    path = case.path(len(case.optional), extra=(extra,))
    if case.catch_all is None:
        assert template.match(path) is None
    else:
        assert template.match(path) is not None


@SETTINGS
@given(cases())
def test_an_empty_segment_matches_only_inside_a_catch_all(case: Case) -> None:
    """``//`` before the catch-all fails every template; after its start, it is captured."""
    template = compile_template(case.template())
    full = case.path(len(case.optional))
    if case.segments:
        assert template.match("/" + full) is None
    if case.catch_all:
        doubled = full + "//x"
        expected = case.values(len(case.optional))
        expected["rest"] = expected["rest"] + "//x"
        assert template.match(doubled) == expected


names = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=10)


@SETTINGS
@given(st.lists(names, max_size=12))
def test_registration_order_sorts_by_upper_case_code_units(listed: list[str]) -> None:
    """For ASCII names, ``OrdinalIgnoreCase`` is comparing ``name.upper()`` by code point,
    stably; the order never depends on the case the names were written in."""
    ordered = registration_order(listed)
    assert ordered == sorted(listed, key=str.upper)
    assert [n.upper() for n in registration_order(n.swapcase() for n in listed)] == [
        n.upper() for n in ordered
    ]


path_segments = st.lists(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        min_size=1,
        max_size=8,
    ).filter(lambda s: s not in (".", "..")),
    max_size=4,
)


@SETTINGS
@given(path_segments)
def test_kestrel_decoding_gives_back_each_segment_with_its_slashes_kept_encoded(
    parts: list[str],
) -> None:
    """Percent-encode any segments; Kestrel's decoding gives each back, except that a ``/``
    inside a segment stays ``%2F`` so the segment count never changes."""
    raw = "/" + "/".join(quote(part, safe="") for part in parts)
    expected = "/" + "/".join(part.replace("/", "%2F") for part in parts)
    assert request_path(raw.encode("ascii")) == expected


@SETTINGS
@given(cases(), st.data())
def test_the_segment_count_filter_never_refuses_a_path_that_matches(
    case: Case, data: st.DataObject
) -> None:
    """``RouteTemplate.fits`` lets ``RouteTable`` skip templates by path length: it is exact
    where it matters, never refusing a path (of any length, trailing slash or not) that the
    full match accepts, and refusing only paths the full match refuses."""
    from dicom_core.web.routing.templates import path_segment_count

    template = compile_template(case.template())
    filled = data.draw(st.integers(0, len(case.optional)))
    drop = data.draw(st.integers(0, len(case.texts(filled))))
    extra = tuple(data.draw(st.lists(values, max_size=2)))
    texts = case.texts(filled)[: len(case.texts(filled)) - drop] + list(extra)
    for path in ("/" + "/".join(texts), "/" + "/".join(texts) + "/"):
        if template.route_values(path) is not None:
            assert template.fits(path_segment_count(path)), path
        if not template.fits(path_segment_count(path)):
            assert template.route_values(path) is None, path


@SETTINGS
@given(st.text())
def test_the_ascii_fold_agrees_with_the_per_character_mapping(text: str) -> None:
    # _fold takes a shortcut for ASCII text (every request path); it must give what the
    # per-character OrdinalIgnoreCase mapping gives, and the mapping is still what any other
    # text gets.
    expected = "".join(_ordinal_upper_char(char) for char in text)
    assert _fold(text) == expected
    assert _fold(text + "ß") == expected + "ß"


@SETTINGS
@given(st.text(alphabet=string.printable, max_size=40))
def test_ascii_folds_are_the_ascii_upper_case(text: str) -> None:
    assert _fold(text) == text.translate(
        str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
    )
