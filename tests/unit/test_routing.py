"""Routing as the Azure Functions host does it: ASP.NET Core route templates, first match in
function-name order.

Where ASP.NET Core's own tests pin a behaviour (aspnet/Routing ``TemplateMatcherTests``,
``TemplateParserTests``, ``InlineRouteParameterParserTest``), their cases are used as the
oracle and the test says so.
"""

from __future__ import annotations

import re

import pytest

from dicom_core.web.routing import (
    EVERY_METHOD,
    HostRoutingError,
    HttpTrigger,
    Route,
    RouteTable,
    apply_route_prefix,
    compile_template,
    host_routes,
    registration_order,
    request_path,
)
from dicom_core.web.routing.template_parser import _parse_parameter

# --- Template syntax --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("a//b", "empty segment"),
        ("{a}//{z}", "empty segment"),
        ("//a", "empty segment"),
        ("~foo", "'~'"),
        ("{", "unclosed"),
        ("}", "unmatched"),
        ("{{p1}", "unmatched"),
        ("{p1}}", "unclosed"),
        ("123{a}abc{", "unclosed"),
        ("123{a}abc}", "unmatched"),
        ("xyz}123{a}abc}", "unmatched"),
        ("p1}}p2{", "unclosed"),
        ("{a}/{a{aa}/{z}", "unescaped"),
        ("{a}/{}/{z}", "no name"),
        ("{Controller}.mvc/{?}", "not a valid parameter name"),
        ("foo/{*}", "not a valid parameter name"),
        ("{a*}", "not a valid parameter name"),
        ("{*a*:int}", "not a valid parameter name"),
        ("{p{{}", "not a valid parameter name"),
        ("{p}}}", "not a valid parameter name"),
        ("{p/}", "not a valid parameter name"),
        ("{foor?b}", "not a valid parameter name"),
        ("foor?bar", "contains '?'"),
        ("{aaa}/{AAA}", "twice"),
        ("{aaa}/{*AAA}", "twice"),
        ("{*p1}/{*p2}", "must be last"),
        ("foo/{p1}/{*p2}/{p3}", "must be last"),
        ("123{a}abc{*moo}", "whole segment"),
        ("{*p1}abc{*p2}", "whole segment"),
        ("{a}/{*b?}", "cannot be optional"),
        ("{a=1?}", "cannot have a default"),
        ("foo/aa{p1}{p2}", "separated by a literal"),
        ("{p1}.{p2?}.{p3}", "at the end of its segment"),
        ("{p1?}{p2}", "at the end of its segment"),
        ("{p1}.{p2?})", "at the end of its segment"),
        ("{foorb?}-bar-{z}", "at the end of its segment"),
        ("{p1}-{p2?}", "preceded by a period"),
        ("{p1}..{p2?}", "preceded by a period"),
        ("..{p2?}", "preceded by a period"),
        ("{p1}.abc.{p2?}", "preceded by a period"),
        ("{p1}{p2?}", "preceded by a period"),
        (r"{p1:regex(^\d{{3}}-\d{{3}}-\d{{4}}}$)}", "unmatched"),
        (r"{p1:regex(^\d{{3}}-\d{{3}}-\d{{4}}$)}}", "unclosed"),
        (r"{p1:regex(([}])\w+}", "unmatched"),
        (r"{p1:regex(^\d{{3}}-\d{{3}}-\d{4}}$)}", "unescaped"),
        ("{id:nosuch}", "could not be resolved"),
    ],
)
def test_compile_template_refuses_what_aspnet_refuses(template: str, problem: str) -> None:
    """Each template is one ``TemplateParserTests`` expects ``TemplateParser.Parse`` (or
    ``RouteBase``'s constraint resolution) to reject; the message names the problem."""
    with pytest.raises(ValueError, match=re.escape(problem)):
        compile_template(template)


@pytest.mark.parametrize(
    "template",
    [
        "",
        "/",
        "/foo",
        "~/foo",
        "foo/",
        "{p1?}",
        "foo/{ }/{.!$%}/{dynamic.data}",
        "{p1}.{p2?}",
        "moo/.{p2?}",
        "{*p}",
        "{**p}",
        "{*p=abc}",
        r"{p1:regex(^\d{{3}}-\d{{3}}-\d{{4}}$)}",
        r"{p1:regex(([}}])\w+)}",
        r"{p1:regex(([{{(])\w+)}",
    ],
)
def test_compile_template_accepts_what_aspnet_accepts(template: str) -> None:
    """``TemplateParserTests`` cases that parse: a leading ``/`` or ``~/`` is dropped, one
    trailing ``/`` is allowed, names may hold spaces and punctuation, braces in a regex
    are doubled."""
    assert compile_template(template).template == template


@pytest.mark.parametrize(
    ("inside", "name", "default", "constraints", "optional"),
    [
        ("=", "=", None, (), False),
        (":", ":", None, (), False),
        ("param=", "param", "", (), False),
        ("param:", "param", None, (), False),
        ("param:=", "param", "", (), False),
        ("param=:", "param", ":", (), False),
        ("param:int=111111", "param", "111111", ("int",), False),
        (r"param:test(\d+)=111111", "param", "111111", (r"test(\d+)",), False),
        ("param:int?", "param", None, ("int",), True),
        ("param:int=12??", "param", "12?", ("int",), True),
        (r"param:test(\d+)=abc?", "param", "abc", (r"test(\d+)",), True),
        ("param:test(d+):test(w+)", "param", None, ("test(d+)", "test(w+)"), False),
        ("param::test(d+)::test(w+)", "param", None, ("test(d+)", "test(w+)"), False),
        (r"param:test(\d+):test(\w:+)", "param", None, (r"test(\d+)", r"test(\w:+)"), False),
        (
            r"param:test(\d+)::test(\w+)==qwer",
            "param",
            "=qwer",
            (r"test(\d+)", r"test(\w+)"),
            False,
        ),
        (
            "comparison-operator:length(6)=>= || <=",
            "comparison-operator",
            ">= || <=",
            ("length(6)",),
            False,
        ),
        (r"param:test(\))=fsd", "param", "fsd", (r"test(\))",), False),
        ("param:test(a:b:c)", "param", None, ("test(a:b:c)",), False),
        (":param:test=12", ":param", "12", ("test",), False),
        (":param:test:", ":param", None, ("test",), False),
        (r"par,am:test(\w)", "par,am", None, (r"test(\w)",), False),
        ("param:int=?", "param", "", ("int",), True),
        ("param:test(=)=sds", "param", "sds", ("test(=)",), False),
        ("param=test=bar", "param", "test=bar", (), False),
        ("par==am:test=dvds", "par", "=am:test=dvds", (), False),
        ("par=test(am):est=asd", "par", "test(am):est=asd", (), False),
        (r"par(am:test(\()", "par(am", None, (r"test(\()",), False),
        ("param:test(#$%", "param", None, ("test(#$%",), False),
        ("param:test(#:test1", "param", None, ("test(#", "test1"), False),
        (
            "param:test(abc:somevalue):name(test1:differentname=default-value",
            "param",
            "default-value",
            ("test(abc:somevalue)", "name(test1", "differentname"),
            False,
        ),
        ("param:test(constraintvalue=test1", "param", "test1", ("test(constraintvalue",), False),
        (r"par?am:test(\?)", "par?am", None, (r"test(\?)",), False),
        ("param:test(#):$)", "param", None, ("test(#)", "$)"), False),
        ("param:test(#:)$)", "param", None, ("test(#:)$)",), False),
        (r"foo:regex(\\(\\(\\(\\()", "foo", None, (r"regex(\\(\\(\\(\\()",), False),
        ("", "", None, (), False),
        ("?", "", None, (), True),
        ("**", "", None, (), False),
        (",,,", ",,,", None, (), False),
    ],
)
def test_parameter_text_splits_like_route_parameter_parser(
    inside: str, name: str, default: str | None, constraints: tuple[str, ...], optional: bool
) -> None:
    """Cases from ASP.NET's ``InlineRouteParameterParserTest``: where a name ends, which
    ``:`` and ``=`` belong to a constraint's parentheses, and what is left for the default."""
    parameter = _parse_parameter(inside)
    assert (parameter.name, parameter.default, parameter.constraints) == (
        name,
        default,
        constraints,
    )
    assert (parameter.kind.value == "optional") is optional


# --- Matching: literals, slashes, empty segments -----------------------------------------


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("v{version}/studies", "/v2/studies", {"version": "2"}),
        ("v{version}/studies", "/V2/STUDIES", {"version": "2"}),
        ("DEFAULT.ASPX", "/default.aspx", {}),
        ("caf\u00e9", "/CAF\u00c9", {}),
        ("foo", "/fooBAR", None),
        ("foo", "/BARfoo", None),
        ("foo", "/BARfooBAR", None),
        ("stra\u00dfe", "/STRASSE", None),
        ("k", "/\u212a", None),
        ("i", "/\u0131", None),
        ("s", "/\u017f", None),
    ],
)
def test_literals_compare_ordinal_ignore_case(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    """``StringComparison.OrdinalIgnoreCase``: one-to-one simple upper-casing, so ``é``
    meets ``É`` but ``ß`` never meets ``SS``, the Kelvin sign is not ``k``, and the dotless
    ``ı`` and long ``ſ`` stay themselves (``OrdinalCasing`` excludes them). A literal must be
    the whole segment (``TemplateMatcherTests.TryMatch_DoesNotMatchOnlyLeftLiteralMatch``)."""
    assert compile_template(template).match(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/studies", {"version": "2"}),
        ("/v2/studies/", {"version": "2"}),
        ("/v2/studies//", None),
        ("/v2//studies", None),
        ("//v2/studies", None),
        ("/v2/studies/extra", None),
        ("/studies", None),
    ],
)
def test_one_trailing_slash_is_ignored_and_empty_segments_match_nothing(
    path: str, expected: dict[str, str] | None
) -> None:
    """``PathTokenizer`` drops one trailing ``/``; ``//`` leaves an empty segment, and
    ``RoutePatternMatcher`` refuses any empty segment before a catch-all."""
    assert compile_template("v{version}/studies").match(path) == expected


@pytest.mark.parametrize("path", ["///", "/a//", "/a/b//", "//b//", "///c", "///c/"])
def test_optional_parameters_never_take_empty_segments(path: str) -> None:
    """``TemplateMatcherTests.TryMatch_MultipleOptionalParameters_WithEmptyIntermediate
    SegmentsDoesNotMatch``."""
    assert compile_template("{controller?}/{action?}/{id?}").match(path) is None


@pytest.mark.parametrize("path", ["", "/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/a/b/c/"])
def test_optional_parameters_take_what_is_there(path: str) -> None:
    """``TemplateMatcherTests.TryMatch_MultipleOptionalParameters_WithIncrementalOptional
    Values``: each optional parameter is left out when the path ends before it."""
    values = compile_template("{controller?}/{action?}/{id?}").match(path)
    assert values == dict(
        zip(
            ("controller", "action", "id"),
            path.strip("/").split("/") if path.strip("/") else [],
            strict=False,
        )
    )


@pytest.mark.parametrize("path", ["///", "////", "/a//", "/a///", "//b/", "//b//", "///c", "///c/"])
def test_parameters_never_match_an_empty_segment(path: str) -> None:
    """``TemplateMatcherTests.TryMatch_MultipleParameters_WithEmptyValues`` (aspnet/Routing
    #359: ``///hi`` once matched with defaults)."""
    assert compile_template("{controller}/{action}/{id}").match(path) is None


def test_an_optional_parameter_in_the_middle_still_needs_its_segment() -> None:
    """ASP.NET lets ``{a?}/b`` parse, but matching walks segments in order: ``/b`` gives
    ``a="b"`` and then lacks the literal."""
    template = compile_template("{a?}/b")
    assert template.match("/b") is None
    assert template.match("/x/b") == {"a": "x"}


# --- Defaults and catch-alls ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("moo/{p1}/bar/{p2=default p2}", "/moo/111/bar/", {"p1": "111", "p2": "default p2"}),
        ("x/{id=5}", "/x", {"id": "5"}),
        ("x/{id=5}", "/x/7", {"id": "7"}),
        ("x/{id=}", "/x", {"id": ""}),
        ("{controller}/{language=en}-{locale=US}", "/foo", None),
        ("{controller}/{language=en}-{locale=US}", "/foo/xx-", None),
        ("{controller}/{language=en}-{locale=US}", "/foo/-yy", None),
        (
            "{controller}/{language=en}-{locale=US}",
            "/foo/xx-yy",
            {"controller": "foo", "language": "xx", "locale": "yy"},
        ),
    ],
)
def test_inline_defaults_fill_missing_segments(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    """``TemplateMatcherTests``: a simple parameter with a default may be missing from the
    path; parameters of a complex segment still need text (``{language}-{locale}``), and
    every default is copied into the values."""
    assert compile_template(template).match(path) == expected


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("{p1}/{*p2}", "/v1/v2/v3", {"p1": "v1", "p2": "v2/v3"}),
        ("{p1}/{*p2}", "/v1/", {"p1": "v1"}),
        ("{p1}/{*p2}", "/v1", {"p1": "v1"}),
        ("{p1}/{*p2=catchall}", "/v1", {"p1": "v1", "p2": "catchall"}),
        ("{p1}/{*p2=catchall}", "/v1/hello/whatever", {"p1": "v1", "p2": "hello/whatever"}),
        ("{p1}/{**p2}", "/v1/v2/v3", {"p1": "v1", "p2": "v2/v3"}),
        ("{*path}", "/anything/at/all/", {"path": "anything/at/all/"}),
        ("{*path}", "/a//b", {"path": "a//b"}),
        ("{*path}", "/", {}),
        ("{*path}", "", {}),
        ("{*path}", "//", None),
        ("files/{*rest}", "/files//x", None),
        (
            "Home/ShowPilot/{missionId}/{*name}",
            "/Home/ShowPilot/777/12345./foobar",
            {"missionId": "777", "name": "12345./foobar"},
        ),
    ],
)
def test_catch_all_takes_the_rest_of_the_path(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    """``TemplateMatcherTests.TryMatch_RouteWithCatchAll_*``: the catch-all takes the raw rest
    of the path from its segment on (a trailing slash included, ``//`` inside kept), may be
    empty (then it is null, or its default), and ``{**p}`` matches as ``{*p}`` does. An empty
    segment before it still fails the match, so ``//`` matches no route at all."""
    assert compile_template(template).match(path) == expected


# --- Complex segments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("language/{lang}-{region}", "/language/en-US", {"lang": "en", "region": "US"}),
        ("language/{lang}-{region}a", "/language/en-USa", {"lang": "en", "region": "US"}),
        ("language/a{lang}-{region}", "/language/aen-US", {"lang": "en", "region": "US"}),
        ("language/a{lang}-{region}a", "/language/aen-USa", {"lang": "en", "region": "US"}),
        ("language/a{lang}-{region}a", "/language/a-USa", None),
        ("language/a{lang}-{region}a", "/language/aen-a", None),
        ("language/{lang}-", "/language/en-", {"lang": "en"}),
        ("language/a{lang}a", "/language/aena", {"lang": "en"}),
        ("language/{lang}-{region}", "/language/-", None),
        (
            "{Controller}..mvc/{id}/{Param1}",
            "/Home..mvc/123/p1",
            {"Controller": "Home", "id": "123", "Param1": "p1"},
        ),
        (
            "{Controller}.mvc!/{action}",
            "/Home.mvc!/index",
            {"Controller": "Home", "action": "index"},
        ),
        ("{prefix}x{suffix}", "/xxxxxxxxxx", {"prefix": "xxxxxxxx", "suffix": "x"}),
        ("{prefix}aa{suffix}", "/aaaaa", {"prefix": "aa", "suffix": "a"}),
        ("{p1}.{p2}", "/hello.world.txt", {"p1": "hello.world", "p2": "txt"}),
        ("v{version}/studies{study}", "/v2/studies1.2.3", {"version": "2", "study": "1.2.3"}),
        ("v{version}/studies{study}", "/V2/STUDIES1.2.3", {"version": "2", "study": "1.2.3"}),
        ("v{version}/studies{study}", "/v2/studies", None),
        ("studies{study}", "/studiesstudies1", None),
        ("x{a}", "/xaxb", None),
    ],
)
def test_complex_segments_match_from_the_right(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    """``MatchComplexSegment`` (cases from ``TemplateMatcherTests.TryMatch_RouteWithComplex
    Segment_*``): from the rightmost part leftwards, each literal is the last occurrence left
    of the previous one, leaving a character for a pending parameter. So ``x{a}`` does not
    match ``xaxb``: ``x`` is found at 2, ``a`` gets ``b``, and the text before is left over."""
    assert compile_template(template).match(path) == expected


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("moo/{p1}.{p2?}", "/moo/foo.bar", {"p1": "foo", "p2": "bar"}),
        ("moo/{p1}.{p2?}", "/moo/foo", {"p1": "foo"}),
        ("moo/{p1}.{p2?}", "/moo/foo..bar", {"p1": "foo.", "p2": "bar"}),
        ("moo/{p1}.{p2?}", "/moo/foo.moo.bar", {"p1": "foo.moo", "p2": "bar"}),
        ("moo/foo.{p1}.{p2?}", "/moo/foo.moo.bar", {"p1": "moo", "p2": "bar"}),
        ("moo/foo.{p1}.{p2?}", "/moo/foo.moo", {"p1": "moo"}),
        ("moo/.{p2?}", "/moo/.foo", {"p2": "foo"}),
        ("moo/.{p2?}", "/moo", None),
        ("moo/{p1}.{p2?}", "/moo/....", {"p1": "..", "p2": "."}),
        ("moo/{p1}.{p2?}", "/moo/.bar", {"p1": ".bar"}),
        ("moo/{p1}.{p2}.{p3?}", "/moo/foo.moo", {"p1": "foo", "p2": "moo"}),
        ("{p1}.{p2?}/{p3}", "/foo/bar", {"p1": "foo", "p3": "bar"}),
        ("{p1}.{p2?}/{p3}", "/.foo/bar", {"p1": ".foo", "p3": "bar"}),
        ("moo/{p1}.{p2?}", "/moo/foo.", None),
        ("moo/{p1}.{p2?}", "/moo/.", None),
        ("moo/{p1}.{p2}.{p3?}", "/moo/foo.moo.", None),
        ("moo/foo.{p2}.{p3?}", "/moo/kungfoo.moo.bar", None),
        ("moo/{p1}.{p2}.{p3?}", "/moo/foo", None),
        ("{p1}.{p2?}/{p3}", "/foo./bar", None),
        ("{p1}.{p2}/{p3}", "/.foo/bar", None),
    ],
)
def test_an_optional_parameter_after_a_period_may_be_left_out(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    """``TemplateMatcherTests.TryMatch_OptionalParameter_FollowedByPeriod_*``: without a
    value the segment matches again without the ``.`` and the parameter, unless the
    segment ends with the ``.``."""
    assert compile_template(template).match(path) == expected


def test_a_complex_segment_aspnet_cannot_match_fails_the_request() -> None:
    """In ``a{p}b`` against ``b``, ``MatchComplexSegmentCore`` slices with a negative
    length and throws; the host fails the request rather than trying later routes."""
    with pytest.raises(HostRoutingError):
        compile_template("a{p}b").match("/b")


# --- Inline constraints -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "accepted", "refused"),
    [
        (
            "int",
            ["42", "-7", "+7", " 42 ", "2147483647", "-2147483648", "4\x00"],
            ["x", "2147483648", "1,000", "4.0", "\u0663", "- 4", "0x10"],
        ),
        ("long", ["9223372036854775807"], ["9223372036854775808"]),
        ("bool", ["true", "FALSE", " True ", "false\x00"], ["yes", "1", "tru"]),
        (
            "decimal",
            ["1", "1,000.5", ".5", "5.", "5-", " -5 ", "79228162514264337593543950335"],
            [".", "1e3", "-5-", "79228162514264337593543950336", "(5)"],
        ),
        (
            "double",
            ["1e3", "1,000.5e-3", "-.5", "Infinity", "-infinity", "NaN", "+NaN", "1e99999"],
            ["1e", "0x10", "e3", "1.2.3", "inf"],
        ),
        ("float", ["3.5", "1e99999"], ["abc"]),
        (
            "guid",
            [
                "d85b1407-351d-4694-9392-03acc5870eb1",
                "D85B1407351D4694939203ACC5870EB1",
                "{d85b1407-351d-4694-9392-03acc5870eb1}",
                "(d85b1407-351d-4694-9392-03acc5870eb1)",
                " d85b1407-351d-4694-9392-03acc5870eb1 ",
                "{0xd85b1407,0x351d,0x4694,{0x93,0x92,0x03,0xac,0xc5,0x87,0x0e,0xb1}}",
                "0x5b1407-+51d-4694-9392-03acc5870eb1",
            ],
            [
                "d85b1407-351d-4694-9392-03acc5870eb",
                "g85b1407-351d-4694-9392-03acc5870eb1",
                "{d85b1407-351d-4694-9392-03acc5870eb1)",
                "d85b1407-351d-4694-9392-03ac+5870eb1",
                "{0xd85b1407,0x351d,0x4694,{0x93,0x92,0x03,0xac,0xc5,0x87,0x0e,0x1b1}}",
            ],
        ),
        (
            "datetime",
            [
                "2024-01-31",
                "2024-01-31T10:20:30Z",
                "2024-01-31 10:20",
                "2024-01-31T10:20:30.1234567+02:00",
                "10:20",
                "2024-1-31 3:04 PM",
            ],
            ["2024-02-30", "noon", "2024-01-31T25:00", "2024-01-31 13:00 PM"],
        ),
        ("alpha", ["abcXYZ"], ["ab1", "ab\u00e7"]),
        ("minlength(2)", ["ab", "\U0001f600"], ["a"]),
        ("maxlength(1)", ["a"], ["ab", "\U0001f600"]),
        ("length(2)", ["ab", "\U0001f600"], ["a", "abc"]),
        ("length(1,3)", ["a", "abc"], ["abcd"]),
        ("min(10)", ["10", "11"], ["9", "x"]),
        ("max(10)", ["10", "-3"], ["11"]),
        ("range(1,3)", ["1", "3"], ["0", "4"]),
        ("range(1, 3)", ["2"], ["5"]),
        ("minlength( 2 )", ["ab"], ["a"]),
        ("file", ["a.txt", ".gitignore", "hello.world.txt"], ["a", "a.", "a..."]),
        ("nonfile", ["a", "a."], ["a.txt"]),
        ("INT", ["1"], ["x"]),
        ("int:min(1)", ["1"], ["0", "x"]),
    ],
)
def test_inline_constraints_parse_like_dotnet(
    constraint: str, accepted: list[str], refused: list[str]
) -> None:
    """Each ``*RouteConstraint`` of ``RouteOptions.ConstraintMap``, checked the way its .NET
    parse call reads text: ``int.TryParse`` with ``NumberStyles.Integer`` (ASCII digits,
    ``[\\t-\\r ]`` around, trailing NULs), ``decimal`` with ``NumberStyles.Number``,
    ``double``/``float`` with ``Float | AllowThousands`` (overflow is infinity since .NET
    Core 3.0), ``Guid.TryParse``'s five forms, lengths in UTF-16 code units. Constraint
    names ignore case; several constraints on one parameter must all pass."""
    template = compile_template(f"{{value:{constraint}}}")
    for value in accepted:
        assert template.match("/" + value) == {"value": value}, value
    for value in refused:
        assert template.match("/" + value) is None, value


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{n:int()}", "takes no arguments"),
        ("{n:int(5)}", "takes no arguments"),
        ("{n:minlength}", "needs an argument"),
        ("{n:minlength()}", "not an Int32"),
        ("{n:minlength(1,2)}", "not an Int32"),
        ("{n:minlength(-1)}", "0 or more"),
        ("{n:length}", "one or two"),
        ("{n:length(1,2,3)}", "one or two"),
        ("{n:length(3,1)}", "min <= max"),
        ("{n:range(1)}", "two arguments"),
        ("{n:range(3,1)}", "above its maximum"),
        ("{n:min(x)}", "not an Int64"),
        ("{n:regex}", "needs a pattern"),
        ("{n: int}", "could not be resolved"),
        ("{n:\u0131nt}", "could not be resolved"),
        ("{n:int(}", "could not be resolved"),
    ],
)
def test_constraint_arguments_are_checked_when_the_route_is_built(
    template: str, problem: str
) -> None:
    """``ParameterPolicyActivator``: ``key(args)`` only when the text ends with ``)``; a
    class with one one-argument constructor gets the whole text (``minlength(1,2)`` fails
    to convert), others get comma-split, trimmed arguments and need a constructor of that
    arity; the constructors reject negative lengths and reversed ranges. The key is looked
    up ignoring case, ordinally (the dotless ``ı`` is not ``I``)."""
    with pytest.raises(ValueError, match=re.escape(problem)):
        compile_template(template)


def test_datetime_with_slashes_only_reaches_a_catch_all() -> None:
    """The invariant ``M/d/yyyy`` form holds slashes, which split segments (and Kestrel keeps
    ``%2F`` encoded), so only a catch-all can ever hand it to the ``datetime`` check."""
    template = compile_template("{*when:datetime}")
    assert template.match("/1/31/2024") == {"when": "1/31/2024"}
    assert template.match("/31/1/2024") is None
    assert compile_template("{when:datetime}").match(request_path(b"/1%2F31%2F2024")) is None


def test_optional_parameter_constraints_apply_only_to_a_value() -> None:
    """``RouteBase.GetConstraints`` wraps an optional parameter's constraints in
    ``OptionalRouteConstraint``: no value, no check."""
    template = compile_template("a/{id:int?}")
    assert template.match("/a") == {}
    assert template.match("/a/5") == {"id": "5"}
    assert template.match("/a/x") is None


def test_defaults_and_null_catch_alls_are_checked_by_constraints() -> None:
    """Constraints run on the route values after defaults are filled in, so a default must
    pass them; an empty catch-all is a null value, which ``int`` refuses and ``nonfile``
    lets through."""
    assert compile_template("a/{id:int=x}").match("/a") is None
    assert compile_template("a/{id:int=x}").match("/a/3") == {"id": "3"}
    assert compile_template("a/{x:required=}").match("/a") is None
    assert compile_template("a/{x:required=}").match("/a/v") == {"x": "v"}
    assert compile_template("a/{*rest:int}").match("/a") is None
    assert compile_template("{*rest:nonfile}").match("/") == {}
    assert compile_template("{*rest:nonfile}").match("/a/b.txt") is None


@pytest.mark.parametrize(
    ("pattern", "accepted", "refused"),
    [
        (r"^\d{{3}}-\d{{3}}-\d{{4}}$", ["123-456-7890"], ["123-456-789"]),
        (r"^\w+\@\w+\.\w+", ["asd@assds.com"], ["asd.com"]),
        (r"([}}])\w+", ["}sda"], ["sda"]),
        (r"([{{)])\w+", ["})sda"], ["sda"]),
        (r"\d", ["a1b"], ["abc"]),
        ("^abc$", ["ABC", "abc", "abc\n"], ["abcd"]),
        (r"^abc\z", ["abc"], ["abc\n"]),
        (r"^abc\Z", ["abc", "abc\n"], ["abc\nx"]),
        (r"^\w+$", ["a\u00e9_1\u0663"], ["a\u00b2", "a-b"]),
        (r"^\s$", [" ", "\u00a0", "\u2028"], ["\x1c", "a"]),
        (r"^a{{,3}}$", ["a{,3}"], ["aaa", "a"]),
        ("^.$", ["a"], ["\U0001f600"]),
        ("^..$", ["\U0001f600", "ab"], ["a"]),
        (r"^(?<x>a)\k<x>$", ["aa", "AA"], ["ab"]),
        (r"^\p{{Lu}}+$", ["ABC", "abc"], ["123"]),
        (r"^[^\W\d]+$", ["abc"], ["ab1"]),
        (r"^(?s:a.b)$", ["a\nb"], ["ab"]),
        (r"\bcat\b", ["a cat here"], ["concatenate"]),
    ],
)
def test_regex_constraints_keep_dotnet_semantics(
    pattern: str, accepted: list[str], refused: list[str]
) -> None:
    """``RegexInlineRouteConstraint``: unanchored, ``IgnoreCase | CultureInvariant``, on
    UTF-16 code units (an emoji is two ``.``). .NET's ``\\w`` is letters, non-spacing marks,
    decimal digits and ``_`` (not ``²``); ``\\s`` omits U+001C; ``$`` and ``\\Z`` allow a
    final newline, ``\\z`` does not; ``a{,3}`` is literal text in .NET. Braces are doubled
    in the template (``TemplateMatcherTests.TryMatch_RegularExpressionConstraint_Valid``)."""
    template = compile_template(f"{{value:regex({pattern})}}")
    for value in accepted:
        assert template.match("/" + value) == {"value": value}, value
    for value in refused:
        assert template.match("/" + value) is None, value


@pytest.mark.parametrize(
    "pattern",
    [
        "(?<a-b>x)",
        "[a-z-[aeiou]]",
        "(?(1)a|b)",
        r"\G",
        "(?x)a b",
        "(?n)(a)",
        "a(?i)b",
        "a*+",
        "a+?+",
        r"\p{{IsGreek}}",
        r"\q",
        r"\_",
        "(?P<x>a)",
        "(?<1>a)",
        "[a",
        "(a",
        r"(?<=a+)b",
        r"\x4",
    ],
)
def test_regex_constructs_that_cannot_be_carried_over_are_refused(pattern: str) -> None:
    """A .NET construct with no faithful Python equivalent (balancing groups, class
    subtraction, conditionals, ``\\G``, the ``x``/``n`` options, mid-pattern options), or one
    .NET itself rejects (nested quantifiers, unknown escapes, ``(?P<..>)``), or one Python
    rejects (variable-length look-behind), makes the template invalid rather than match
    differently."""
    with pytest.raises(ValueError, match="regex constraint"):
        compile_template(f"{{value:regex({pattern})}}")


# --- Route prefix and request path ----------------------------------------------------------


def test_route_prefix_is_glued_with_a_slash_when_not_empty() -> None:
    """``WebJobsRouteBuilder.BuildRouteTemplate``: ``prefix + '/' + route``, nothing trimmed;
    an empty prefix (this app's host.json) leaves the route as it is."""
    assert apply_route_prefix("", "v{version}/studies") == "v{version}/studies"
    assert apply_route_prefix("api", "v{version}/studies") == "api/v{version}/studies"
    with pytest.raises(ValueError, match="empty segment"):
        compile_template(apply_route_prefix("api", "/studies"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/v2/studies", "/v2/studies"),
        (b"/v2/studies/1.2%2E3", "/v2/studies/1.2.3"),
        (b"/files/a%2Fb", "/files/a%2Fb"),
        (b"/files/a%2fb", "/files/a%2fb"),
        (b"/caf%C3%A9", "/caf\u00e9"),
        (b"/bad%C3", "/bad%C3"),
        (b"/bad%C3%41", "/bad%C3A"),
        (b"/bad%80", "/bad%80"),
        (b"/overlong%C0%AF", "/overlong%C0%AF"),
        (b"/surrogate%ED%A0%80", "/surrogate%ED%A0%80"),
        (b"/zz%zz", "/zz%zz"),
        (b"/a/b/../c", "/a/c"),
        (b"/a/%2E%2E/c", "/c"),
        (b"/a/./b/.", "/a/b/"),
        (b"/..", "/"),
        (b"/a/..%2Fb", "/a/..%2Fb"),
        ("/v2/%F0%9F%98%80", "/v2/\U0001f600"),
    ],
)
def test_request_path_is_what_kestrel_routes_on(raw: bytes | str, expected: str) -> None:
    """Kestrel's ``PathDecoder``: ``UrlDecoder.DecodeInPlace`` decodes escapes forming valid
    UTF-8 except ``%2F`` (kept, so it never splits a segment) and leaves invalid or
    overlong sequences as written; then ``PathNormalizer.RemoveDotSegments`` (RFC 3986
    5.2.4) runs on the decoded path, so ``%2E%2E`` climbs too."""
    assert request_path(raw) == expected


@pytest.mark.parametrize("raw", [b"/a%00b", b"/a\x00b", b"/caf\xc3\xa9", b"relative"])
def test_request_path_refuses_what_kestrel_answers_400(raw: bytes) -> None:
    """``UrlDecoder`` throws on ``%00`` ("The path contains null characters"); raw NULs and
    non-ASCII bytes in the request target are refused too, and a path starts with ``/``."""
    with pytest.raises(ValueError):
        request_path(raw)


def test_an_encoded_slash_stays_inside_one_segment() -> None:
    """Because Kestrel keeps ``%2F``, ``{study}`` matches ``a%2Fb`` as one value where the
    ASGI ``scope["path"]`` (``a/b``) would not match at all."""
    template = compile_template("v{version}/studies/{study}")
    assert template.match(request_path(b"/v2/studies/a%2Fb")) == {"version": "2", "study": "a%2Fb"}
    assert template.match("/v2/studies/a/b") is None


# --- Registration order ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["wado_y", "Wado_x", "wadoa", "WADOZ"], ["wadoa", "WADOZ", "Wado_x", "wado_y"]),
        (["wado_x", "wado1", "wado-x"], ["wado-x", "wado1", "wado_x"]),
        (["zz_unknown_route", "zzz_later", "zz"], ["zz", "zzz_later", "zz_unknown_route"]),
        (["abcd", "ABC"], ["ABC", "abcd"]),
        (["b", "B", "a"], ["a", "b", "B"]),
        (["B", "b", "a"], ["a", "B", "b"]),
    ],
)
def test_registration_order_is_ordinal_ignore_case(names: list[str], expected: list[str]) -> None:
    """``OrderBy(f => f.Name, StringComparer.OrdinalIgnoreCase)``: both names upper-cased,
    then compared code unit by code unit, so ``_`` (0x5F) sorts after every letter
    (``A``-``Z`` are 0x41-0x5A) while ``-`` and digits sort before them; a prefix comes
    first; names equal but for case keep their order (LINQ's sort is stable)."""
    assert registration_order(names) == expected


def test_catch_all_is_the_last_function_in_the_hosts_registration_order() -> None:
    """The host registers routes by function name (ordinal, case-insensitive), first match
    wins: a catch-all anywhere but last hides every function whose name sorts after it."""
    import function_app
    from dicom_core.web.unmatched import app_functions

    functions = app_functions(function_app.app)
    names = registration_order(str(f.get_function_name()) for f in functions)
    catch_alls = [
        str(f.get_function_name())
        for f in functions
        if "{*" in str(getattr(f.get_trigger(), "route", "") or "")
    ]
    assert catch_alls == ["zz_unknown_route"]
    assert names[-1] == "zz_unknown_route"


# --- The route table --------------------------------------------------------------------------


def _route(function: str, template: str, *methods: str) -> Route:
    return Route(function, compile_template(template), frozenset(methods))


def test_the_first_route_in_name_order_wins_not_the_most_specific() -> None:
    """``RouteCollection.RouteAsync`` tries routes in the order they were added and stops at
    the first match; nothing ranks literals above parameters or catch-alls last."""
    table = RouteTable(
        [
            _route("b_literal", "v2/studies", "GET"),
            _route("a_parameter", "{x}/studies", "GET"),
            _route("c_catch_all", "{*path}"),
        ]
    )
    assert [r.function for r in table.routes] == ["a_parameter", "b_literal", "c_catch_all"]
    resolved = table.resolve("GET", "/v2/studies")
    assert resolved is not None
    assert (resolved[0].function, resolved[1]) == ("a_parameter", {"x": "v2"})

    hiding = RouteTable([_route("aaa_catch_all", "{*path}"), _route("b", "v2/studies", "GET")])
    resolved = hiding.resolve("GET", "/v2/studies")
    assert resolved is not None and resolved[0].function == "aaa_catch_all"


def test_methods_constrain_routes_ignoring_case() -> None:
    """``HttpMethodRouteConstraint`` compares ``OrdinalIgnoreCase``; a route that does not
    accept the method is skipped and later routes are tried; no methods means any."""
    table = RouteTable(
        [
            _route("a_get", "v{version}/studies", "get"),
            _route("b_post", "v{version}/studies", "POST"),
            _route("c_any", "v{version}/series"),
        ]
    )
    assert table.routes[0].methods == frozenset({"GET"})
    for method, function in [("GET", "a_get"), ("get", "a_get"), ("POST", "b_post")]:
        resolved = table.resolve(method, "/v2/studies")
        assert resolved is not None and resolved[0].function == function
    assert table.resolve("DELETE", "/v2/studies") is None
    resolved = table.resolve("PROPFIND", "/v2/series")
    assert resolved is not None and resolved[0].function == "c_any"


def test_allowed_methods_ignore_catch_alls() -> None:
    """What a catch-all function needs for ``405`` and ``Allow``: the methods of every other
    route whose template (with its constraints) matches; a route without methods counts as
    the host's method list (``ScriptConstants.HttpMethods``)."""
    table = RouteTable(
        [
            _route("a", "v{version}/studies", "GET"),
            _route("b", "v{version}/studies", "POST", "PUT"),
            _route("c", "items/{id:int}", "DELETE"),
            _route("d", "open/{x}"),
            _route("zz", "{*path}", "GET", "POST", "DELETE"),
        ]
    )
    assert table.allowed_methods("/v2/studies") == {"GET", "POST", "PUT"}
    assert table.allowed_methods("/items/1") == {"DELETE"}
    assert table.allowed_methods("/items/x") == frozenset()
    assert table.allowed_methods("/open/1") == EVERY_METHOD
    assert table.allowed_methods("/nowhere") == frozenset()


def test_an_optional_http_method_parameter_switches_the_method_check_off() -> None:
    """``RouteConstraintBuilder`` keys constraints by name, ignoring case, and wraps the
    constraints of optional parameters: the method constraint sits under ``httpMethod``, so
    ``{httpMethod?}`` makes it apply only when that segment is present."""
    table = RouteTable([_route("f", "x/{HttpMethod?}", "GET")])
    assert table.resolve("POST", "/x") is not None
    assert table.resolve("POST", "/x/1") is None
    assert table.resolve("GET", "/x/1") is not None


def test_host_routes_apply_the_hosts_own_checks() -> None:
    """``ScriptHost.ValidateFunction`` in name order: a blank route is the function name;
    ``admin``/``runtime`` routes are refused; a route equal (ignoring case and outer ``/``)
    to an accepted one with overlapping methods is refused, the later name losing; then
    ``WebScriptHostHttpRoutesManager`` applies the prefix and a ``methods: []`` trigger gets
    a method constraint that nothing passes."""
    built = host_routes(
        [
            HttpTrigger("qido", "v{version}/studies", ("GET",)),
            HttpTrigger("stow", "/V{version}/Studies/", ("POST", "GET")),
            HttpTrigger("stow_put", "v{version}/studies", ("PUT",)),
            HttpTrigger("Health", " "),
            HttpTrigger("admin_thing", "Admin/x"),
            HttpTrigger("runtime_x", "/runtimes"),
            HttpTrigger("a_nothing", "never", ()),
            HttpTrigger("never_again", "never", ("GET",)),
        ],
        route_prefix="api",
    )
    assert [route.function for route in built.table.routes] == ["Health", "qido", "stow_put"]
    assert [route.template.template for route in built.table.routes] == [
        "api/Health",
        "api/v{version}/studies",
        "api/v{version}/studies",
    ]
    assert set(built.refused) == {"admin_thing", "runtime_x", "stow", "never_again"}
    assert "'qido'" in built.refused["stow"]
    assert "'a_nothing'" in built.refused["never_again"]
    assert "built in routes" in built.refused["admin_thing"]
    assert built.table.resolve("GET", "/api/never") is None


def test_host_routes_fail_on_a_template_the_host_cannot_parse() -> None:
    """An invalid template throws inside ``InitializeHttpFunctionRoutes``: no routes at all."""
    with pytest.raises(ValueError, match="empty segment"):
        host_routes([HttpTrigger("f", "a//b")])
