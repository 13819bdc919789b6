"""Azure Functions route templates, translated and ranked like the Functions host."""

from __future__ import annotations

import pytest

from dicom_core.web.routing import compile_template, sort_key


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("v{version}/studies", "/v2/studies", {"version": "2"}),
        ("v{version}/studies", "/V2/Studies/", {"version": "2"}),
        ("v{version}/studies/{study}", "/v1/studies/1.2.3", {"version": "1", "study": "1.2.3"}),
        ("items/{id:int}", "/items/42", {"id": "42"}),
        ("items/{id:int}", "/items/x", None),
        ("files/{name?}", "/files", {}),
        ("files/{name?}", "/files/a", {"name": "a"}),
        ("{*path}", "/anything/at/all", {"path": "anything/at/all"}),
        ("{*path}", "/", {}),
        ("v{version}/studies", "/studies", None),
        ("v{version}/studies", "/v2/studies/extra", None),
    ],
)
def test_compile_template_matches_like_the_functions_host(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    assert compile_template(template).match(path) == expected


def test_sort_key_puts_literals_before_parameters_and_catch_all_last() -> None:
    templates = ["{*path}", "v{version}/studies/{study}", "v{version}/studies", "v2/studies"]
    ranked = sorted((compile_template(t) for t in templates), key=sort_key)
    assert [r.template for r in ranked] == [
        "v2/studies",
        "v{version}/studies",
        "v{version}/studies/{study}",
        "{*path}",
    ]


def test_catch_all_is_the_last_function_in_the_hosts_registration_order() -> None:
    """The host registers routes by function name (ordinal, case-insensitive), first match
    wins: a catch-all anywhere but last hides every function whose name sorts after it."""
    import function_app

    functions = function_app.app.get_functions()
    names = sorted((str(f.get_function_name()) for f in functions), key=str.upper)
    catch_alls = [
        str(f.get_function_name())
        for f in functions
        if "{*" in str(getattr(f.get_trigger(), "route", "") or "")
    ]
    assert catch_alls == ["zz_unknown_route"]
    assert names[-1] == "zz_unknown_route"
