"""A small client of the stack's API for code running with AWS credentials: SigV4-signed requests
(service ``execute-api``) over urllib, and the requests that register ``pose_workflow.json``.

Kept apart from the custom resource so it imports without crhelper and without a region.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit

from ..operators import configuration
from ..workflow.definition import ordered_stages

log = logging.getLogger("mie_pose.aws.api_client")

# The routes (api/routes.py handler names) registration calls; the custom resource's role may invoke
# these and no others.
REGISTRATION_HANDLERS = ("create_operation", "create_stage", "create_workflow",
                         "delete_operation", "delete_stage", "delete_workflow", "update_workflow")
# A new role or a fresh deployment can answer 403/5xx for a few seconds; those are retried.
RETRY_STATUSES = {403, 429, 500, 502, 503, 504}
ATTEMPTS = 6


class RegistrationError(RuntimeError):
    """A request to the API was refused (``status``: the HTTP status, None when there was no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def registration_requests(definition: dict, state_machine_arn: str | None, operator_functions: dict) -> list[tuple[str, dict]]:
    """(path, body) of every POST, in order: operations, then stages, then the workflow, in MIE's bodies.

    Each operator is MIE's ``Type: Async`` operation: one Lambda function is both its StartLambdaArn and its
    MonitorLambdaArn (it tells the two apart by the event's Status). The Configuration registered is the
    operator's full default Configuration on AWS. ``state_machine_arn``: ours (standalone); an existing MIE
    builds its own from the stages (extension), so then it is left out."""
    requests = []
    for name in definition["Operators"]:
        function = operator_functions.get(name, "")
        registered = dict(definition["Operators"][name].get("Configuration") or {})
        requests.append(("/workflow/operation", {
            "Name": name, "Type": "Async", "StartLambdaArn": function, "MonitorLambdaArn": function,
            "Configuration": configuration.resolve(name, registered, aws=True)
            if name in configuration.CONFIGURATIONS else registered}))
    for stage in ordered_stages(definition):
        requests.append(("/workflow/stage", {"Name": stage.name, "Operations": stage.operators}))
    workflow = {"Name": definition["Name"], "Description": definition.get("Description", ""),
                "StartAt": definition["StartAt"],
                "Stages": {name: {k: v for k, v in stage.items() if k in ("Next", "End")}
                           for name, stage in definition["Stages"].items()}}
    if state_machine_arn:
        workflow["StateMachineArn"] = state_machine_arn
    requests.append(("/workflow", workflow))
    return requests


def deregistration_requests(definition: dict) -> list[str]:
    """DELETE paths that remove an earlier registration of the same names (workflow, stages, operations:
    dependents first). MIE refuses a POST of a name that exists (409) and implements no PUT of operations
    or stages, so an update replaces them."""
    paths = [f"/workflow/{definition['Name']}"]
    paths += [f"/workflow/stage/{stage.name}?force=true" for stage in ordered_stages(definition)]
    paths += [f"/workflow/operation/{name}?force=true" for name in definition["Operators"]]
    return paths


def signed_request(method: str, url: str, body: dict | None, credentials, region: str) -> urllib.request.Request:
    """A urllib request carrying SigV4 headers (Authorization, X-Amz-Date, X-Amz-Security-Token)."""
    from botocore.auth import SigV4Auth  # noqa: PLC0415  (botocore is in every Lambda runtime)
    from botocore.awsrequest import AWSRequest  # noqa: PLC0415

    data = json.dumps(body).encode() if body is not None else None
    aws_request = AWSRequest(method=method, url=url, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, "execute-api", region).add_auth(aws_request)
    return urllib.request.Request(url, data=data, method=method, headers=dict(aws_request.headers.items()))


def call_api(endpoint: str, method: str, path: str, body: dict | None = None, *, credentials, region: str,
             deadline: float | None = None) -> dict:
    url = endpoint.rstrip("/") + path
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(signed_request(method, url, body, credentials, region), timeout=20) as reply:
                return json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:500]
            retry, problem, code = exc.code in RETRY_STATUSES, f"{method} {path}: HTTP {exc.code} {text}", exc.code
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            retry, problem, code = True, f"{method} {path}: {exc}", None
        pause = min(2 ** attempt, 20)
        if not retry or attempt == ATTEMPTS or (deadline is not None and time.time() + pause > deadline):
            raise RegistrationError(problem, code)
        log.warning("%s; retrying in %d s", problem, pause)
        time.sleep(pause)
    raise AssertionError("unreachable")



def credentials_and_region(endpoint: str):
    """Frozen credentials of the running role, and the API's region (from its host, else this one's)."""
    import boto3  # noqa: PLC0415

    session = boto3.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise RegistrationError("no AWS credentials to sign the workflow API requests with")
    host = urlsplit(endpoint).hostname or ""
    # https://ID.execute-api.REGION.amazonaws.com/...: the region is in the host; else the function's own.
    parts = host.split(".")
    region = parts[2] if len(parts) > 3 and parts[1] == "execute-api" else \
        (os.environ.get("AWS_REGION") or session.region_name or "us-east-1")
    return credentials.get_frozen_credentials(), region


class MieDataplane:
    """The operator side of an existing MIE dataplane API (extension mode): MIE's operator-results write
    ``POST /metadata/{asset_id}`` (``?paginated=true``, ``&end=true`` on the last page) and its delete,
    each request signed with SigV4 like every client of MIE's IAM-authorized APIs.

    It has what an operator needs and nothing else: MIE keeps assets and execution records itself."""

    def __init__(self, endpoint: str, credentials=None, region: str | None = None):
        self.endpoint = endpoint.rstrip("/")
        self._credentials, self._region = credentials, region

    def _signing(self):
        if self._credentials is None:
            self._credentials, self._region = credentials_and_region(self.endpoint)
        return self._credentials, self._region

    def store_asset_metadata(self, asset_id: str, operator_name: str, workflow_id: str, results: dict,
                             paginate: bool = False, end: bool = False) -> dict:
        query = ("?paginated=true" + ("&end=true" if end else "")) if paginate or end else ""
        credentials, region = self._signing()
        return call_api(self.endpoint, "POST", f"/metadata/{quote(asset_id, safe='')}{query}",
                        {"OperatorName": operator_name, "Results": results, "WorkflowId": workflow_id},
                        credentials=credentials, region=region)

    def delete_metadata(self, asset_id: str, operator: str) -> None:
        credentials, region = self._signing()
        try:
            call_api(self.endpoint, "DELETE", f"/metadata/{quote(asset_id, safe='')}/{quote(operator, safe='')}",
                     credentials=credentials, region=region)
        except RegistrationError as exc:
            if exc.status != 404:
                raise
