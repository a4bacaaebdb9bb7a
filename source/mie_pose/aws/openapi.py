"""The API Gateway definition (OpenAPI 3 body of the RestApi), generated from ``mie_pose.api.routes.ROUTES``.

One path per route, each method authorized with IAM (SigV4) and proxied to the API Lambda, which routes
again through ``handle_request``: the deployed API and the local server answer exactly the same table.
"""

from __future__ import annotations

import hashlib
import json
import re

from ..api.routes import ROUTES

API_FUNCTION = "ApiFunction"
_PARAM = re.compile(r"\{(\w+)\}")


def api_body(routes=None, function: str = API_FUNCTION) -> dict:
    integration_uri = {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
                                  "functions/${" + function + ".Arn}/invocations"}
    paths: dict = {}
    for method, template, handler, description in routes or ROUTES:
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _PARAM.findall(template)]
        if handler == "get_metadata":
            parameters.append({"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}})
        operation = {
            "operationId": handler,
            "summary": description,
            "security": [{"sigv4": []}],
            "responses": {"default": {"description": "JSON body; errors are {\"error\": message}"}},
            "x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST", "uri": integration_uri,
                                                "passthroughBehavior": "when_no_match"},
        }
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(template, {})[method.lower()] = operation
    return {
        "openapi": "3.0.1",
        "info": {"title": "mie-pose dataplane and workflow API", "version": "1.0"},
        "paths": paths,
        "components": {"securitySchemes": {"sigv4": {"type": "apiKey", "name": "Authorization", "in": "header",
                                                     "x-amazon-apigateway-authtype": "awsSigv4"}}},
    }


def body_hash(body: dict) -> str:
    """Short hash of the body: the Deployment's logical id changes with the routes, so API Gateway redeploys."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
