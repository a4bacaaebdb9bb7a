"""Request handling for the dataplane and workflow APIs, independent of HTTP server and cloud.

A request is (method, path, query, body, headers); a response is (status, JSON body) or raw bytes with
headers (exports). Errors answer as MIE's Chalice apps do: ``{"Code": "NotFoundError", "Message": ...}`` with
the error's status. The services (dataplane, how to start a workflow) are passed in, so the local server
runs the local engine and the AWS Lambda starts Step Functions.
"""

from __future__ import annotations

import logging

from ..dataplane import DataplaneError, UnknownAsset
from ..dataplane.base import NoResults, UnknownExecution
from .http import ApiError, ApiRequest, ApiResponse, ApiServices, error_body
from .routes import find_route
from .workflow_api import WORKFLOW_NAME

log = logging.getLogger("mie_pose.api")

__all__ = ["WORKFLOW_NAME", "ApiError", "ApiRequest", "ApiResponse", "ApiServices", "handle_request"]


def handle_request(request: ApiRequest, services: ApiServices) -> ApiResponse:
    found, params, path_known = find_route(request.method, request.path)
    if found is None:
        if path_known:
            return ApiResponse(405, error_body(405, f"Unsupported method: {request.method}"))
        return ApiResponse(404, error_body(404, f"no route {request.path}"))
    try:
        answer = found.handler(request, services, **params)
        return answer if isinstance(answer, ApiResponse) else ApiResponse(*answer)
    except ApiError as exc:
        return ApiResponse(exc.status, error_body(exc.status, str(exc), exc.code))
    except (UnknownAsset, UnknownExecution, NoResults) as exc:
        return ApiResponse(404, error_body(404, str(exc)))
    except DataplaneError as exc:
        return ApiResponse(400, error_body(400, str(exc)))
    except Exception:  # noqa: BLE001  (a server answers, it does not crash)
        log.exception("request %s %s failed", request.method, request.path)
        return ApiResponse(500, {"Code": "InternalServerError", "Message": "An internal server error occurred."})
