"""The routes of the dataplane and workflow APIs: one table for the local server, the AWS API and the web app.

``mie-pose routes --json`` prints this table; the web app and the CloudFormation template read it.
"""

from __future__ import annotations

import re

# (method, path template, handler name in api.core, what it does)
ROUTES: list[tuple[str, str, str, str]] = [
    ("GET", "/asset", "list_assets", "list assets with their latest workflow execution"),
    ("POST", "/asset", "create_asset", "register a video already in storage: {\"Media\": {\"Video\": {S3Bucket, S3Key}}}"),
    ("GET", "/asset/{asset_id}", "get_asset", "one asset and its executions"),
    ("GET", "/metadata/{asset_id}", "list_operators", "operators with results for the asset"),
    ("GET", "/metadata/{asset_id}/{operator}", "get_metadata", "one page of an operator's results; ?cursor= for the next"),
    ("POST", "/workflow/execution", "start_execution",
     "run a workflow: {\"Name\", \"Input\": {\"AssetId\"} or {\"Media\": {\"Video\"}}, \"Configuration\"}"),
    ("GET", "/workflow/execution/{execution_id}", "get_execution", "status of an execution, per stage"),
    ("GET", "/workflow/execution/asset/{asset_id}", "list_executions", "executions of one asset"),
]

_PARAM = re.compile(r"\{(\w+)\}")


def _compile(template: str) -> re.Pattern:
    return re.compile("^" + _PARAM.sub(r"(?P<\1>[A-Za-z0-9_.-]+)", template) + "/?$")


_COMPILED = [(method, _compile(template), name) for method, template, name, _ in ROUTES]


def match_route(method: str, path: str) -> tuple[str | None, dict, bool]:
    """Return (handler name, path parameters, path_known). path_known without a name means 405."""
    path_known = False
    # Literal segments win over parameters: /workflow/execution/asset/X is not execution "asset".
    candidates = sorted(_COMPILED, key=lambda item: item[1].pattern.count("(?P"))
    for route_method, pattern, name in candidates:
        match = pattern.match(path)
        if match:
            path_known = True
            if route_method == method:
                return name, match.groupdict(), True
    return None, {}, path_known


def routes_as_json() -> list[dict]:
    return [{"method": m, "path": p, "handler": n, "description": d} for m, p, n, d in ROUTES]
