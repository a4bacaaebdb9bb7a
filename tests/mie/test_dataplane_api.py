"""MIE's dataplane API (source/dataplaneapi/app.py in MIE), route by route, against the local server and the
AWS API adapter: bodies, status codes, Chalice's error shape, and pagination read the way MIE's clients read
it (``while "cursor" in page: params={"cursor": cursor}``)."""

from __future__ import annotations

import uuid

import pytest
import requests


def error(response, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"Code", "Message"} and body["Code"] == code, body
    if message is not None:
        assert message in body["Message"], body


def create_asset(api, name: str = "clip.mp4") -> dict:
    bucket, key = api.put_video(f"{uuid.uuid4().hex}-{name}")
    response = api.post("/create", json={"Input": {"MediaType": "Video", "S3Bucket": bucket, "S3Key": key}})
    assert response.status_code == 200, response.text
    return response.json()


def read_all(api, path: str) -> list[dict]:
    """MIE's client loop: follow ``cursor`` until a page has none."""
    pages, params = [], None
    while True:
        response = api.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        assert len(pages) < 100, "pagination never ends"
        if "cursor" not in page:
            return pages
        assert page["cursor"], "a cursor, when present, is never empty"
        params = {"cursor": page["cursor"]}


def test_version(api):
    response = api.get("/version")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ApiVersion", "FrameworkVersion"} and body["ApiVersion"] == "3.0.0"


def test_create_answers_the_asset(api):
    bucket, key = api.put_video("create.mp4")
    response = api.post("/create", json={"Input": {"MediaType": "Video", "S3Bucket": bucket, "S3Key": key}})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"AssetId", "MediaType", "S3Bucket", "S3Key"}
    assert (body["MediaType"], body["S3Bucket"], body["S3Key"]) == ("Video", bucket, key)
    assert body["AssetId"] in api.get("/metadata").json()["assets"]
    error(api.post("/create", json={"Input": {"S3Bucket": bucket, "S3Key": key}}), 400, "BadRequestError",
          "Missing required inputs for asset creation: 'MediaType'")
    error(api.post("/create", data=b"{nope"), 400, "BadRequestError")


def test_mediapath(api):
    response = api.get("/mediapath/a1/w1")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"S3Bucket", "S3Key"} and body["S3Key"] == "private/assets/a1/workflows/w1/"
    assert body["S3Bucket"] == ("dataplane" if api.kind == "local" else "dp-bucket")


def test_upload_and_download_answer_presigned_shapes(api):
    response = api.post("/upload", json={"S3Bucket": "upload-bucket", "S3Key": "uploads/new.mp4"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"url", "fields"} and body["fields"]["key"] == "uploads/new.mp4"
    if api.kind == "aws":
        assert "upload-bucket" in body["url"] and {"policy", "x-amz-signature"} <= set(body["fields"])
    else:
        assert body["url"] == api.url("/upload") and body["fields"]["bucket"] == "upload-bucket"
    error(api.post("/upload", json={"S3Key": "k"}), 400, "BadRequestError",
          "Unable to generate pre-signed S3 URL for uploading media: 'S3Bucket'")
    asset = create_asset(api, "download.mp4")
    response = api.post("/download", json={"S3Bucket": asset["S3Bucket"], "S3Key": asset["S3Key"]})
    assert response.status_code == 200
    url = response.text  # Chalice sends a view's string as it is, not JSON-quoted
    assert url.startswith(("http://", "https://"))
    error(api.post("/download", json={"S3Key": "k"}), 400, "BadRequestError",
          "Unable to generate pre-signed S3 URL for downloading media: 'S3Bucket'")
    if api.kind == "aws":
        assert asset["S3Key"] in url and "Signature=" in url
    else:
        video = api.session.get(url, timeout=60)
        assert video.status_code == 200 and len(video.content) > 1000


def test_operator_results_nonpaginated_and_paginated(api):
    asset_id = create_asset(api)["AssetId"]
    body = {"OperatorName": "Labels", "WorkflowId": "wf-1", "Results": {"Testing": "some test data"}}
    response = api.post(f"/metadata/{asset_id}", json=body)
    assert response.status_code == 200
    stored = response.json()
    assert stored["Status"] == "Success" and stored["Key"] == f"private/assets/{asset_id}/workflows/wf-1/Labels.json"
    assert set(stored) == {"Status", "Bucket", "Key"}
    [page] = read_all(api, f"/metadata/{asset_id}/Labels")
    assert page == {"asset_id": asset_id, "operator": "Labels", "results": {"Testing": "some test data"}}
    # Paginated: each page with paginated=true, the last with end=true; nothing shows before the end.
    pages = [{"Labels": [{"Timestamp": n, "Label": {"Name": f"L{n}"}}]} for n in range(5)]
    for n, results in enumerate(pages):
        params = {"paginated": "true", **({"end": "true"} if n == len(pages) - 1 else {})}
        response = api.post(f"/metadata/{asset_id}", params=params,
                            json={"OperatorName": "Pages", "WorkflowId": "wf-1", "Results": results})
        assert response.status_code == 200
        if n < len(pages) - 1:
            assert response.json() == {"Status": "Success"}
            error(api.get(f"/metadata/{asset_id}/Pages"), 404, "NotFoundError")
        else:
            assert set(response.json()) == {"Status", "Bucket", "Key"}
    read = read_all(api, f"/metadata/{asset_id}/Pages")
    assert [p["results"] for p in read] == pages and all(p["operator"] == "Pages" for p in read)


def test_operator_results_errors(api):
    asset_id = create_asset(api)["AssetId"]
    good = {"OperatorName": "Op", "WorkflowId": "wf", "Results": {"a": 1}}
    error(api.post(f"/metadata/{asset_id}", params={"end": "true"}, json=good), 400, "BadRequestError",
          "Must pass required query parameter: paginated")
    error(api.post(f"/metadata/{asset_id}", params={"paginated": "true", "end": "false"}, json=good), 400,
          "BadRequestError", "Query param end only supports a value of: true")
    error(api.post(f"/metadata/{asset_id}", json={"OperatorName": "Op", "Results": {}}), 400, "BadRequestError",
          "Missing required inputs for storing metadata: 'WorkflowId'")
    error(api.post(f"/metadata/{asset_id}", json={**good, "Results": [1, 2]}), 400, "BadRequestError",
          "results are not the required data type, dict")
    error(api.post("/metadata/no-such-asset", json=good), 404, "NotFoundError",
          "Exception occurred while verifying asset exists: no-such-asset does not exist")


def test_pose_results_pages_join_into_the_document(api):
    """Our PoseDetection document written as MIE pages ({header, frames}) reads back whole."""
    asset_id = create_asset(api)["AssetId"]
    header = {"asset_id": asset_id, "operator": "PoseDetection", "fps": 2.0}
    frames = [{"index": i, "timestamp_ms": i * 500, "persons": []} for i in range(23)]
    for start in range(0, 23, 10):
        params = {"paginated": "true", **({"end": "true"} if start + 10 >= 23 else {})}
        assert api.post(f"/metadata/{asset_id}", params=params, json={
            "OperatorName": "PoseDetection", "WorkflowId": "wf", "Results": {**header, "frames": frames[start:start + 10]}
        }).status_code == 200
    pages = read_all(api, f"/metadata/{asset_id}/PoseDetection")
    assert len(pages) == 3 and [f for p in pages for f in p["results"]["frames"]] == frames
    assert all(p["results"]["fps"] == 2.0 for p in pages)


def test_asset_metadata_walks_the_asset_then_every_operator(api):
    asset = create_asset(api)
    asset_id = asset["AssetId"]
    for operator in ("B", "A"):
        api.post(f"/metadata/{asset_id}", json={"OperatorName": operator, "WorkflowId": "wf", "Results": {"op": operator}})
    for n in range(2):
        api.post(f"/metadata/{asset_id}", params={"paginated": "true", **({"end": "true"} if n else {})},
                 json={"OperatorName": "C", "WorkflowId": "wf", "Results": {"page": n}})
    pages = read_all(api, f"/metadata/{asset_id}")
    first = pages[0]
    assert set(first) == {"asset_id", "results", "cursor"} and "operator" not in first
    assert set(first["results"]) == {"MediaType", "S3Key", "S3Bucket", "Created"}
    assert first["results"]["S3Key"] == asset["S3Key"]
    assert [(p["operator"], p["results"]) for p in pages[1:]] == [
        ("A", {"op": "A"}), ("B", {"op": "B"}), ("C", {"page": 0}), ("C", {"page": 1})]
    [only] = read_all(api, f"/metadata/{create_asset(api)['AssetId']}")
    assert "cursor" not in only
    error(api.get("/metadata/no-such-asset"), 404, "NotFoundError")


def test_list_all_assets(api):
    ids = {create_asset(api)["AssetId"] for _ in range(2)}
    response = api.get("/metadata")
    assert response.status_code == 200 and set(response.json()) == {"assets"}
    assert ids <= set(response.json()["assets"]) and all(isinstance(a, str) for a in response.json()["assets"])


def test_delete_operator_results_and_the_asset(api):
    asset_id = create_asset(api)["AssetId"]
    api.post(f"/metadata/{asset_id}", json={"OperatorName": "Op", "WorkflowId": "wf", "Results": {"a": 1}})
    error(api.delete(f"/metadata/{asset_id}/Other"), 404, "NotFoundError",
          "Unable to delete metadata, pointer does not exist for Other")
    response = api.delete(f"/metadata/{asset_id}/Op")
    assert response.status_code == 200 and response.json()["Deleted"]
    error(api.get(f"/metadata/{asset_id}/Op"), 404, "NotFoundError")
    api.post(f"/metadata/{asset_id}", json={"OperatorName": "Op", "WorkflowId": "wf", "Results": {"a": 1}})
    response = api.delete(f"/metadata/{asset_id}")
    assert response.status_code == 200 and response.text == f"Deleted asset: {asset_id} from the dataplane"
    error(api.get(f"/metadata/{asset_id}"), 404, "NotFoundError")
    assert asset_id not in api.get("/metadata").json()["assets"]
    error(api.delete(f"/metadata/{asset_id}"), 404, "NotFoundError")


def test_unknown_routes_and_methods(api):
    error(api.get("/no/such/route"), 404, "NotFoundError")
    error(api.put("/metadata"), 405, "MethodNotAllowedError", "Unsupported method: PUT")


@pytest.mark.parametrize("path", ["/metadata/x/y/z", "/mediapath/only-one"])
def test_paths_that_are_no_route(api, path):
    error(api.get(path), 404, "NotFoundError")


def test_mies_lambda_helper_event_reaches_the_aws_api(aws_api):
    """MIE's operators call the dataplane through MediaInsightsEngineLambdaHelper.DataPlane, which invokes the
    API Lambda directly with a hand-built proxy event (body = json.dumps(body), even "null" for a GET)."""
    import json

    handler = aws_api.extra["handler"]

    def call_dataplane(path, resource, method, body=None, path_params=None, query_params=None):
        event = {"resource": resource, "path": path, "httpMethod": method,
                 "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {},
                 "queryStringParameters": query_params,
                 "multiValueQueryStringParameters": {k: [v] for k, v in (query_params or {}).items()} or None,
                 "pathParameters": path_params, "stageVariables": {},
                 "requestContext": {"resourcePath": resource, "httpMethod": method, "requestId": "lambda_1"},
                 "body": json.dumps(body), "isBase64Encoded": False}
        return json.loads(handler(event, None)["body"])

    bucket, key = aws_api.put_video("helper.mp4")
    asset = call_dataplane("/create", "/create", "POST", {"Input": {"MediaType": "Video", "S3Bucket": bucket, "S3Key": key}})
    asset_id = asset["AssetId"]
    for n in range(3):
        query = {"paginated": "true", **({"end": "true"} if n == 2 else {})}
        answer = call_dataplane(f"/metadata/{asset_id}", "/metadata/{asset_id}", "POST",
                                {"OperatorName": "Helper", "Results": {"n": n}, "WorkflowId": "wf"},
                                {"asset_id": asset_id}, query)
        assert answer["Status"] == "Success"
    pages, cursor = [], None
    while True:
        page = call_dataplane(f"/metadata/{asset_id}/Helper", "/metadata/{asset_id}/{operator_name}", "GET",
                              None, {"asset_id": asset_id, "operator_name": "Helper"},
                              {"cursor": cursor} if cursor else None)
        pages.append(page["results"])
        if "cursor" not in page:
            break
        cursor = page["cursor"]
    assert pages == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert call_dataplane(f"/mediapath/{asset_id}/wf", "/mediapath/{asset_id}/{workflow_id}", "GET") == {
        "S3Bucket": "dp-bucket", "S3Key": f"private/assets/{asset_id}/workflows/wf/"}


def test_upload_through_the_presigned_post_then_create(api):
    """MIE's web app uploads with the presigned POST (form fields, then the file) and then creates the asset."""
    key = f"uploads/{uuid.uuid4().hex}.mp4"
    bucket = "upload-bucket" if api.kind == "aws" else "dataplane"
    presigned = api.post("/upload", json={"S3Bucket": bucket, "S3Key": key}).json()
    content = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    response = requests.post(presigned["url"], data=presigned["fields"], files={"file": ("clip.mp4", content)},
                             timeout=60)
    assert response.status_code in (200, 201, 204), response.text
    created = api.post("/create", json={"Input": {"MediaType": "Video", "S3Bucket": bucket, "S3Key": key}}).json()
    url = api.post("/download", json={"S3Bucket": bucket, "S3Key": key}).text
    assert created["S3Key"] == key
    if api.kind == "aws":
        assert api.extra["s3"].get_object(Bucket=bucket, Key=key)["Body"].read() == content
    else:
        assert api.session.get(url, timeout=60).content == content


def test_result_pages_revalidate_with_an_etag(api):
    """Pages the web app already has come back as a bodyless 304 (locally and through the AWS adapter)."""
    asset_id = create_asset(api)["AssetId"]
    api.post(f"/metadata/{asset_id}", json={"OperatorName": "Op", "WorkflowId": "wf", "Results": {"frames": [1, 2]}})
    first = api.get(f"/metadata/{asset_id}/Op")
    etag = first.headers["ETag"]
    again = api.get(f"/metadata/{asset_id}/Op", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    api.post(f"/metadata/{asset_id}", json={"OperatorName": "Op", "WorkflowId": "wf2", "Results": {"frames": [3]}})
    changed = api.get(f"/metadata/{asset_id}/Op", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["results"] == {"frames": [3]}
