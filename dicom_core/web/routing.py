"""Azure Functions route templates, matched the way the Functions host matches them.

Templates use ASP.NET Core syntax (``v{version}/studies/{study}``, ``{id:int}``, ``{x?}``,
``{*rest}``), not Starlette's, so they are translated once here. Matching is
case-insensitive for literals, tolerates a trailing slash, and when several templates match,
the most specific wins: literal segments before parameters, catch-alls last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([^}?]+))?(\??)\}")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?:true|false|True|False)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
}


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {name: value for name, value in found.groupdict().items() if value}


def compile_template(template: str) -> RouteTemplate:
    segments = [s for s in template.strip("/").split("/") if s]
    parts: list[str] = []
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        prefix = "/" if index else ""
        params = list(_PARAM.finditer(segment))
        if not params:
            parts.append(prefix + re.escape(segment))
            precedence.append(0)
            continue
        regex, position, rank = "", 0, 1
        for param in params:
            regex += re.escape(segment[position : param.start()])
            catch_all, name, constraint, optional = param.groups()
            if catch_all:
                body, rank = ".*", 5
            else:
                body = _CONSTRAINTS.get((constraint or "").split("(")[0], "[^/]+")
                rank = max(rank, 2 if constraint else 3)
                if optional:
                    body, rank = f"(?:{body})?", 4
            regex += f"(?P<{name}>{body})"
            position = param.end()
        regex += re.escape(segment[position:])
        if len(params) == 1 and params[0].group(0) == segment:
            precedence.append(rank)
        else:
            precedence.append(max(1, rank - 1))
        if rank in (4, 5):
            parts.append(f"(?:{prefix}{regex})?" if prefix else f"(?:{regex})?")
        else:
            parts.append(prefix + regex)
    pattern = re.compile("".join(parts), re.IGNORECASE if segments else 0)
    return RouteTemplate(template=template, pattern=pattern, precedence=tuple(precedence))


def sort_key(route: RouteTemplate) -> tuple[tuple[int, ...], int]:
    """Most specific first: compare segment ranks, then prefer longer templates."""
    return (route.precedence, -len(route.precedence))
