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
    ("GET", "/workflow/operation", "list_operations", "registered operators"),
    ("POST", "/workflow/operation", "create_operation",
     "register an operator: {\"Name\", \"Handler\" (import path locally, Lambda ARN on AWS), \"Configuration\"}"),
    ("GET", "/workflow/operation/{name}", "get_operation", "one registered operator"),
    ("GET", "/workflow/stage", "list_stages", "registered stages"),
    ("POST", "/workflow/stage", "create_stage", "register a stage: {\"Name\", \"Operations\": [operator names]}"),
    ("GET", "/workflow/stage/{name}", "get_stage", "one registered stage"),
    ("GET", "/workflow", "list_workflows", "registered workflows"),
    ("POST", "/workflow", "create_workflow",
     "register a workflow of registered stages: {\"Name\", \"StartAt\", \"Stages\": {stage: {\"Next\"} or {\"End\": true}}}"),
    ("GET", "/workflow/{name}", "get_workflow", "one registered workflow, its stages and operators resolved"),
    ("GET", "/media-url/{asset_id}", "get_media_url",
     "a URL a <video> element can play without signing: {\"url\", \"expires_in\"}"),
]

_PARAM = re.compile(r"\{(\w+)\}")


def _compile(template: str) -> re.Pattern:
    return re.compile("^" + _PARAM.sub(r"(?P<\1>[A-Za-z0-9_.-]+)", template) + "/?$")


def _specificity(template: str) -> tuple:
    """Sort key: at the first segment where two templates differ, a literal comes before a parameter."""
    return tuple(1 if _PARAM.fullmatch(segment) else 0 for segment in template.strip("/").split("/"))


# One entry per path template, most specific first: {method: handler name}.
_TEMPLATES: list[tuple[re.Pattern, dict[str, str]]] = []
for _template in sorted({t for _, t, _, _ in ROUTES}, key=_specificity):
    _TEMPLATES.append((_compile(_template), {m: n for m, t, n, _ in ROUTES if t == _template}))


def match_route(method: str, path: str) -> tuple[str | None, dict, bool]:
    """Return (handler name, path parameters, path_known). path_known without a name means 405.

    The most specific template that matches the path owns it: ``/workflow/execution`` is never the
    workflow named "execution", even for a method only ``/workflow/{name}`` has (that is a 405).
    """
    for pattern, methods in _TEMPLATES:
        match = pattern.match(path)
        if match:
            name = methods.get(method)
            return (name, match.groupdict(), True) if name else (None, {}, True)
    return None, {}, False


def routes_as_json() -> list[dict]:
    return [{"method": m, "path": p, "handler": n, "description": d} for m, p, n, d in ROUTES]
