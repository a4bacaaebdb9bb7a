"""The route table of the dataplane and workflow APIs: each route defined once, with its handler bound.

Handlers register themselves with ``@route(method, path, description)`` in ``dataplane_api`` (MIE's
dataplane API), ``workflow_api`` (MIE's workflow API) and ``extras_api`` (ours). The local server, the AWS
API Lambda and API Gateway's OpenAPI body (``aws.openapi``) all route through this one table, and
``mie-pose routes --json`` / the server's ``/routes.json`` hand it to the web app, which builds its paths
from each route's ``handler`` name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable
    description: str
    query: tuple[str, ...] = ()  # query parameters the route reads (declared in the OpenAPI body)
    api: str = "extra"  # "dataplane" or "workflow" (MIE's two APIs), or "extra" (ours)

    @property
    def name(self) -> str:
        return self.handler.__name__

    def __iter__(self):
        """``method, path, name, description = route``: the table's row as it was before routes were objects."""
        return iter((self.method, self.path, self.name, self.description))


ROUTES: list[Route] = []
_PARAM = re.compile(r"\{(\w+)\}")


def route(method: str, path: str, description: str, *, query: tuple[str, ...] = (), api: str = "extra"):
    """Register the decorated ``handler(request, services, **path_parameters)`` for ``method path``."""

    def register(handler: Callable) -> Callable:
        if any(r.method == method and r.path == path for r in ROUTES):
            raise ValueError(f"route {method} {path} is defined twice")
        if any(r.name == handler.__name__ for r in ROUTES):
            raise ValueError(f"two routes have a handler called {handler.__name__} (the web app keys on it)")
        ROUTES.append(Route(method, path, handler, description, tuple(query), api))
        return handler

    return register


def _compile(template: str) -> re.Pattern:
    return re.compile("^" + _PARAM.sub(r"(?P<\1>[^/]+)", template) + "/?$")


def _specificity(template: str) -> tuple:
    """Sort key: at the first segment where two templates differ, a literal comes before a parameter."""
    return tuple(1 if _PARAM.fullmatch(segment) else 0 for segment in template.strip("/").split("/"))


_TEMPLATES: list[tuple[re.Pattern, dict[str, Route]]] = []


def _templates() -> list[tuple[re.Pattern, dict[str, Route]]]:
    if len(_TEMPLATES) != len({r.path for r in ROUTES}):
        _TEMPLATES[:] = [(_compile(t), {r.method: r for r in ROUTES if r.path == t})
                         for t in sorted({r.path for r in ROUTES}, key=_specificity)]
    return _TEMPLATES


def find_route(method: str, path: str) -> tuple[Route | None, dict, bool]:
    """Return (route, path parameters, path_known). path_known without a route means 405.

    The most specific template that matches the path owns it: ``/workflow/execution`` is never the
    workflow named "execution", even for a method only ``/workflow/{name}`` has (that is a 405).
    Parameters arrive percent-decoded (``/workflow/execution/status/Not%20Started``).
    """
    for pattern, methods in _templates():
        match = pattern.match(path)
        if match:
            found = methods.get(method)
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            return (found, params, True) if found else (None, {}, True)
    return None, {}, False


def match_route(method: str, path: str) -> tuple[str | None, dict, bool]:
    """``find_route`` with the handler's name instead of the route."""
    found, params, known = find_route(method, path)
    return (found.name if found else None), params, known


def allowed_methods(path: str) -> list[str]:
    for pattern, methods in _templates():
        if pattern.match(path):
            return sorted(methods)
    return []


def routes_as_json() -> list[dict]:
    return [{"method": r.method, "path": r.path, "handler": r.name, "description": r.description,
             "api": r.api, **({"query": list(r.query)} if r.query else {})} for r in ROUTES]


from . import dataplane_api, workflow_api, extras_api  # noqa: E402,F401  (their @route calls fill ROUTES)
