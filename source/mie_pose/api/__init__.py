"""The dataplane and workflow HTTP API, transport-free: the local server and the AWS Lambda both call it."""

from .core import ApiError, ApiRequest, ApiResponse, ApiServices, handle_request
from .routes import ROUTES, Route, find_route, match_route

__all__ = ["ApiError", "ApiRequest", "ApiResponse", "ApiServices", "handle_request", "ROUTES", "Route",
           "find_route", "match_route"]
