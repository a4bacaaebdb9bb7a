"""The API Gateway definition (OpenAPI 3 body of the RestApi), generated from ``mie_pose.api.routes.ROUTES``
(each route's path and query parameters, its handler name as operationId).

One path per route, each method authorized with IAM (SigV4) and proxied to the API Lambda, which routes
again through ``handle_request``: the deployed API and the local server answer exactly the same table.

CORS (when the stack's ``CorsOrigin`` is set, condition ``HasCorsOrigin``): a browser's preflight carries no
signature, so each path also gets an unauthenticated ``OPTIONS`` answered by API Gateway itself (a mock
integration: no Lambda call) with the Access-Control-Allow-* headers; API Gateway's own errors (a refused
signature, throttling) carry Access-Control-Allow-Origin through gateway responses, and the Lambda adds it
to every answer it gives (``mie_pose.aws.api``).
"""

from __future__ import annotations

import hashlib
import json
import re

from ..api.routes import ROUTES

API_FUNCTION = "ApiFunction"
CORS_CONDITION = "HasCorsOrigin"
CORS_PARAMETER = "CorsOrigin"
# What a SigV4-signing browser client sends beyond the simple headers.
CORS_ALLOW_HEADERS = "Authorization,Content-Type,X-Amz-Date,X-Amz-Security-Token,X-Amz-Content-Sha256"
CORS_MAX_AGE_S = 600
_PARAM = re.compile(r"\{(\w+)\}")


def api_body(routes=None, function: str = API_FUNCTION) -> dict:
    integration_uri = {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
                                  "functions/${" + function + ".Arn}/invocations"}
    paths: dict = {}
    for route in routes or ROUTES:
        template = route.path
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _PARAM.findall(template)]
        parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                       for name in route.query]
        operation = {
            "operationId": route.name,
            "summary": route.description,
            "security": [{"sigv4": []}],
            "responses": {"default": {"description": "JSON body; errors are {\"Code\", \"Message\"} (Chalice's)"}},
            "x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST", "uri": integration_uri,
                                                "passthroughBehavior": "when_no_match"},
        }
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(template, {})[route.method.lower()] = operation
    for template, methods in paths.items():
        allowed = sorted(m.upper() for m in methods) + ["OPTIONS"]
        methods["options"] = _when_cors(_preflight(template, allowed))
    return {
        "openapi": "3.0.1",
        "info": {"title": "mie-pose dataplane and workflow API", "version": "1.0"},
        "paths": paths,
        "components": {"securitySchemes": {"sigv4": {"type": "apiKey", "name": "Authorization", "in": "header",
                                                     "x-amazon-apigateway-authtype": "awsSigv4"}}},
        # Exports (MP4, CSV) go back as base64 that API Gateway turns into bytes; JSON answers are unaffected.
        # Request bodies then reach the Lambda base64-encoded (isBase64Encoded), which it decodes.
        "x-amazon-apigateway-binary-media-types": ["*/*"],
        # Result pages are JSON of some hundred KB: gzip them for clients that accept it.
        "x-amazon-apigateway-minimum-compression-size": 1024,
        "x-amazon-apigateway-gateway-responses": _when_cors({
            kind: {"responseParameters": {"gatewayresponse.header.Access-Control-Allow-Origin": _origin_literal()}}
            for kind in ("DEFAULT_4XX", "DEFAULT_5XX")}),
    }


def _when_cors(value: dict) -> dict:
    """``value`` when the stack has a CorsOrigin, else nothing (the key disappears)."""
    return {"Fn::If": [CORS_CONDITION, value, {"Ref": "AWS::NoValue"}]}


def _origin_literal() -> dict:
    # API Gateway mapping values are quoted literals; the parameter's AllowedPattern keeps quotes out.
    return {"Fn::Sub": "'${" + CORS_PARAMETER + "}'"}


def preflight_headers(allowed_methods: list[str]) -> dict[str, str]:
    """The preflight answer's headers besides the origin (the mock integration's and the Lambda's)."""
    return {"Access-Control-Allow-Methods": ",".join(allowed_methods),
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": str(CORS_MAX_AGE_S)}


def _preflight(template: str, allowed_methods: list[str]) -> dict:
    headers = {"Access-Control-Allow-Origin": _origin_literal(),
               **{name: f"'{value}'" for name, value in preflight_headers(allowed_methods).items()}}
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _PARAM.findall(template)]
    operation = {
        "summary": "CORS preflight (no signature: browsers send none), answered by API Gateway",
        "security": [],
        "responses": {"200": {"description": "CORS headers", "headers": {
            name: {"schema": {"type": "string"}} for name in headers}}},
        "x-amazon-apigateway-integration": {
            # With binary media types "*/*" a mock's request template applies only to text.
            "type": "mock", "passthroughBehavior": "when_no_match", "contentHandling": "CONVERT_TO_TEXT",
            "requestTemplates": {"application/json": '{"statusCode": 200}'},
            "responses": {"default": {"statusCode": "200", "responseParameters": {
                f"method.response.header.{name}": value for name, value in headers.items()}}},
        },
    }
    if parameters:
        operation["parameters"] = parameters
    return operation


def body_hash(body: dict) -> str:
    """Short hash of the body: the Deployment's logical id changes with the routes, so API Gateway redeploys."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
