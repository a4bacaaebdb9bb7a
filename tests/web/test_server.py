"""The local server over real HTTP: API routes through the shared core, uploads, media ranges, caching, safety."""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import subprocess
import threading
import time
import uuid

import pytest

from mie_pose import schema
from mie_pose.api.core import ApiRequest, handle_request
from mie_pose.api.routes import routes_as_json
from mie_pose.dataplane import SqliteDataplane
from mie_pose.server import make_server
from mie_pose.storage import MediaLocation
from mie_pose.video.proxy import browser_media, ensure_browser_proxy, source_path


def request(server, method, path, body=None, headers=None):
    """Send ``path`` exactly as given (http.client does not normalise ``..``); return (status, headers, bytes).

    The headers are http.client's message: names are case-insensitive, as in HTTP.
    """
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def get_json(server, path, method="GET", body=None, headers=None):
    status, head, data = request(server, method, path, body, headers)
    assert head["Content-Type"] == "application/json", (path, dict(head))
    return status, json.loads(data)


def multipart(fields: dict, file_name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser sends it: the fields, then the part named ``file``."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
                 f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, start_server):
    """A server with a 100 kB upload limit over an empty data dir."""
    return start_server(SqliteDataplane(tmp_path_factory.mktemp("small-home")), max_upload_bytes=100_000)


# --- the API routes ---------------------------------------------------------------------------------
def test_api_routes_answer_as_the_shared_core(live_server, analysed):
    asset_id = analysed["astronaut"]
    for path in ("/asset", f"/asset/{asset_id}", f"/metadata/{asset_id}", f"/workflow/execution/asset/{asset_id}"):
        status, body = get_json(live_server, path)
        expected = handle_request(ApiRequest("GET", path), live_server.server.services)
        assert (status, body) == (expected.status, expected.body), path
    status, body = get_json(live_server, f"/asset/{asset_id}")
    assert status == 200 and schema.OPERATOR_NAME in body["operators"]


def test_cursor_pages_join_into_the_document(live_server, analysed):
    dataplane = live_server.dataplane
    asset_id = analysed["astronaut"]
    document = dataplane.read_document(asset_id, schema.OPERATOR_NAME)
    paged = dataplane.import_video(source_path(dataplane, asset_id))
    dataplane.store_metadata(paged, schema.OPERATOR_NAME, {**document, "asset_id": paged}, page_frames=2)
    frames, cursor, pages = [], None, 0
    while True:
        path = f"/metadata/{paged}/{schema.OPERATOR_NAME}" + (f"?cursor={cursor}" if cursor else "")
        status, body = get_json(live_server, path)
        assert status == 200
        frames += body["results"]["frames"]
        pages += 1
        cursor = body.get("cursor")
        if not cursor:
            break
    assert pages == (len(document["frames"]) + 1) // 2 and pages > 1
    assert frames == document["frames"]
    status, body = get_json(live_server, f"/metadata/{paged}/{schema.OPERATOR_NAME}?cursor=bm90LWpzb24")
    assert status == 400 and "cursor" in body["Message"]


def test_unknown_asset_is_404(live_server):
    for path in ("/asset/0123abcd", "/metadata/0123abcd", f"/metadata/0123abcd/{schema.OPERATOR_NAME}",
                 "/media/0123abcd", "/workflow/execution/0123abcd"):
        status, body = get_json(live_server, path)
        assert status == 404 and body["Code"] == "NotFoundError" and body["Message"], path


def test_bad_json_and_bad_methods_are_4xx(live_server, analysed):
    headers = {"Content-Type": "application/json"}
    status, body = get_json(live_server, "/workflow/execution", "POST", b"{not json", headers)
    assert status == 400 and "JSON" in body["Message"]
    status, body = get_json(live_server, "/workflow/execution", "POST", b"[1, 2]", headers)
    assert status == 400
    status, body = get_json(live_server, "/workflow/execution", "POST",
                            json.dumps({"Name": "PoseWorkflow", "Input": {"AssetId": "0123abcd"}}).encode(), headers)
    assert status == 404
    status, body = get_json(live_server, "/asset", "DELETE")
    assert status == 405 and body["Message"]
    status, body = get_json(live_server, f"/media/{analysed['astronaut']}", "POST", b"x")
    assert status == 405
    connection = http.client.HTTPConnection(live_server.host, live_server.port, timeout=30)
    connection.putrequest("POST", "/workflow/execution")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(2 * 1024 ** 2))  # over the 1 MiB of a JSON body: refused unread
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["Code"]
    connection.close()


def test_start_execution_runs_in_the_background(live_server, analysed):
    asset_id = analysed["black"]
    status, body = get_json(live_server, "/workflow/execution", "POST",
                            json.dumps({"Name": "PoseWorkflow", "Input": {"AssetId": asset_id},
                                        "Configuration": {"FrameExtraction": {"MaxFrames": 2}}}).encode())
    assert status == 200 and body["Status"] == "Queued"
    live_server.server.workflows.join()
    status, execution = get_json(live_server, f"/workflow/execution/{body['Id']}")
    assert status == 200 and execution["Status"] == "Complete", execution


# --- compression and caching ------------------------------------------------------------------------
def test_text_is_gzipped_for_clients_that_accept_it(live_server, analysed):
    for path in ("/routes.json", "/js/overlay.js", f"/metadata/{analysed['astronaut']}/{schema.OPERATOR_NAME}"):
        status, head, zipped = request(live_server, "GET", path, headers={"Accept-Encoding": "gzip"})
        _, plain_head, plain = request(live_server, "GET", path)
        assert status == 200 and head["Content-Encoding"] == "gzip", path
        assert plain_head["Content-Encoding"] is None and gzip.decompress(zipped) == plain, path
        assert len(zipped) < len(plain), path
    path = f"/media/{analysed['astronaut']}?variant=original"
    status, head, body = request(live_server, "GET", path, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and head["Content-Encoding"] is None  # media bytes stay addressable by range
    assert body == source_path(live_server.dataplane, analysed["astronaut"]).read_bytes()


def test_results_of_a_complete_execution_are_revalidated_not_refetched(live_server, analysed):
    path = f"/metadata/{analysed['astronaut']}/{schema.OPERATOR_NAME}"
    status, head, body = request(live_server, "GET", path)
    assert status == 200 and head["Cache-Control"] == "private, no-cache" and head["ETag"].startswith('"')
    status, again, empty = request(live_server, "GET", path, headers={"If-None-Match": head["ETag"]})
    assert status == 304 and empty == b"" and again["ETag"] == head["ETag"]
    status, _, same = request(live_server, "GET", path, headers={"If-None-Match": '"something-else"'})
    assert status == 200 and same == body
    # Lists change all the time: never stored.
    status, head, _ = request(live_server, "GET", "/asset")
    assert status == 200 and head["Cache-Control"] == "no-store"


def test_results_while_an_execution_runs_are_not_cached(small_server, astronaut_mp4):
    dataplane = small_server.dataplane
    asset_id = dataplane.import_video(astronaut_mp4)
    dataplane.store_metadata(asset_id, schema.OPERATOR_NAME, {"asset_id": asset_id, "frames": []}, page_frames=2)
    execution = dataplane.create_execution(asset_id, "PoseWorkflow", ["FrameExtraction", "PoseDetection"])
    running = dataplane.get_execution(execution)
    assert running["Status"] not in ("Complete", "Error")
    status, head, _ = request(small_server, "GET", f"/metadata/{asset_id}/{schema.OPERATOR_NAME}")
    assert status == 200 and head["Cache-Control"] == "no-store"


def test_static_files_have_etags_and_answer_304(live_server):
    status, head, body = request(live_server, "GET", "/js/main.js")
    assert status == 200 and head["ETag"] and head["Cache-Control"] == "no-cache"
    status, _, empty = request(live_server, "GET", "/js/main.js", headers={"If-None-Match": head["ETag"]})
    assert status == 304 and empty == b""


# --- media: ranges and proxies ----------------------------------------------------------------------
def test_media_ranges(live_server, analysed):
    asset_id = analysed["astronaut"]
    data = source_path(live_server.dataplane, asset_id).read_bytes()
    size = len(data)
    path = f"/media/{asset_id}?variant=original"

    status, head, body = request(live_server, "GET", path)
    assert status == 200 and body == data and head["Accept-Ranges"] == "bytes"
    assert head["Content-Type"] == "video/mp4"

    status, head, body = request(live_server, "GET", path, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert head["Content-Range"] == f"bytes 100-199/{size}" and head["Content-Length"] == "100"

    status, head, body = request(live_server, "GET", path, headers={"Range": f"bytes={size - 10}-"})
    assert status == 206 and body == data[-10:] and head["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"

    status, head, body = request(live_server, "GET", path, headers={"Range": "bytes=-50"})
    assert status == 206 and body == data[-50:]

    status, head, body = request(live_server, "GET", path, headers={"Range": f"bytes=0-{size + 999}"})
    assert status == 206 and body == data

    status, head, body = request(live_server, "GET", path, headers={"Range": "lines=1-2"})
    assert status == 200 and body == data  # a range we cannot serve: the whole file (RFC 9110)

    status, head, body = request(live_server, "GET", path, headers={"Range": f"bytes={size}-"})
    assert status == 416 and head["Content-Range"] == f"bytes */{size}"
    assert json.loads(body)["Code"]

    status, head, body = request(live_server, "HEAD", path, headers={"Range": "bytes=0-9"})
    assert status == 206 and body == b"" and head["Content-Length"] == "10"


def _codec(ffmpeg: str, data: bytes, tmp_path) -> str:
    probe = shutil.which("ffprobe") or ffmpeg.replace("ffmpeg", "ffprobe")
    path = tmp_path / "probe.bin"
    path.write_bytes(data)
    return subprocess.run([probe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name",
                           "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("clip", ["astronaut", "avi"])
def test_media_gets_a_cached_h264_proxy(live_server, analysed, ffmpeg, tmp_path, clip):
    asset_id = analysed[clip]
    status, head, body = request(live_server, "GET", f"/media/{asset_id}")
    assert status == 200 and head["X-Media-Proxy"] == "proxy" and head["Content-Type"] == "video/mp4"
    assert _codec(ffmpeg, body, tmp_path) == "h264"
    proxy = ensure_browser_proxy(live_server.dataplane, asset_id)
    assert proxy.name == "browser.mp4" and proxy.read_bytes() == body
    assert live_server.dataplane.storage.root in proxy.parents
    mtime = proxy.stat().st_mtime_ns
    assert ensure_browser_proxy(live_server.dataplane, asset_id).stat().st_mtime_ns == mtime  # made once


def test_h264_original_needs_no_proxy(small_server, astronaut_mp4, ffmpeg, tmp_path):
    h264 = tmp_path / "h264.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(astronaut_mp4), "-t", "1", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(h264)], check=True)
    asset_id = small_server.dataplane.import_video(h264)
    status, head, body = request(small_server, "GET", f"/media/{asset_id}")
    assert status == 200 and head["X-Media-Proxy"] == "original" and body == h264.read_bytes()


def test_without_ffmpeg_the_original_is_served_and_said_so(small_server, astronaut_mp4, monkeypatch):
    asset_id = small_server.dataplane.import_video(astronaut_mp4)
    monkeypatch.setenv("PATH", "/nonexistent")
    chosen = browser_media(small_server.dataplane, asset_id)
    assert chosen.kind == "unconverted" and "ffmpeg" in chosen.reason
    status, head, body = request(small_server, "GET", f"/media/{asset_id}")
    assert status == 200 and head["X-Media-Proxy"].startswith("unconverted; ffmpeg is missing")
    assert body == astronaut_mp4.read_bytes()


# --- safety -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/../pyproject.toml", "/%2e%2e/pyproject.toml", "/..%2fpyproject.toml", "/webapp/../../pyproject.toml",
    "/%2e%2e%2f%2e%2e%2fdataplane.sqlite3", "/.git/config", "/..\\pyproject.toml", "/%00index.html",
    "/media/../dataplane.sqlite3", "/media/..%2fdataplane.sqlite3", "/media/%2e%2e", "/media/x/../../pyproject.toml",
    "/%252e%252e/pyproject.toml", "/models/../../pyproject.toml",
])
def test_traversal_is_refused(live_server, path):
    status, head, body = request(live_server, "GET", path)
    assert status in (400, 404), path
    assert head["Content-Type"] == "application/json" and json.loads(body)["Code"]
    assert b"[project]" not in body and b"SQLite" not in body


def test_media_outside_the_data_dir_is_refused(live_server):
    asset_id = live_server.dataplane.create_asset(
        {"Video": {"S3Bucket": "dataplane", "S3Key": "../../dataplane.sqlite3"}}, "sneaky.mp4")
    status, head, body = request(live_server, "GET", f"/media/{asset_id}?variant=original")
    assert status == 400 and b"SQLite" not in body
    status, head, body = request(live_server, "GET", f"/media/{asset_id}")
    assert status == 400 and b"SQLite" not in body


def test_foreign_host_and_cross_origin_writes_are_refused(live_server):
    for host in ("evil.example:8080", "[::1", "127.0.0.1.evil.example"):
        status, body = get_json(live_server, "/asset", headers={"Host": host})
        assert status == 403 and body["Code"] == "ForbiddenError", host
    status, body = get_json(live_server, "/workflow/execution", "POST", b"{}",
                            {"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert status == 403
    status, head, _ = request(live_server, "GET", "/asset")
    assert status == 200 and head["X-Content-Type-Options"] == "nosniff"


def test_static_app_and_config(live_server, analysed):
    status, head, body = request(live_server, "GET", "/")
    assert status == 200 and head["Content-Type"].startswith("text/html") and b"<html" in body
    assert "script-src 'self'" in head["Content-Security-Policy"]
    status, body = get_json(live_server, "/config.json")
    assert status == 200 and "apiBaseUrl" in body
    status, body = get_json(live_server, "/routes.json")
    assert status == 200 and body == routes_as_json()
    status, body = get_json(live_server, f"/media-url/{analysed['astronaut']}")
    assert status == 200 and body["url"] == f"/media/{analysed['astronaut']}"
    status, body = get_json(live_server, "/no-such-file.js")
    assert status == 404


# --- uploads ----------------------------------------------------------------------------------------
def upload(server, name, data, headers=None, query=""):
    return get_json(server, f"/upload?name={name}{query}", "POST", data,
                    {"Content-Type": "application/octet-stream", **(headers or {})})


def test_upload_over_the_limit_is_413_before_reading(small_server):
    connection = http.client.HTTPConnection(small_server.host, small_server.port, timeout=30)
    connection.putrequest("POST", "/upload?name=big.mp4")
    connection.putheader("Content-Length", str(50 * 1024 ** 3))
    connection.endheaders()  # no body is sent: the answer must come from the header alone
    response = connection.getresponse()
    assert response.status == 413 and "limit" in json.loads(response.read())["Message"]
    connection.close()


def test_a_chunked_upload_is_stopped_at_the_limit(small_server):
    sent = []

    def body():
        for _ in range(1000):  # 1000 x 10 kB, ten times the limit
            sent.append(1)
            yield b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 9988

    connection = http.client.HTTPConnection(small_server.host, small_server.port, timeout=30)
    try:
        connection.request("POST", "/upload?name=big.mp4", body=body(), encode_chunked=True,
                           headers={"Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        status, message = response.status, json.loads(response.read())["Message"]
    except (BrokenPipeError, ConnectionResetError):
        status, message = 413, "the server closed the connection at the limit"
    finally:
        connection.close()
    assert status == 413 and "limit" in message
    assert len(sent) < 1000  # refused while streaming, not after the whole body
    assert not list((small_server.dataplane.data_dir / "uploads").iterdir())


def test_a_chunked_upload_under_the_limit_is_stored(live_server, astronaut_mp4):
    data = astronaut_mp4.read_bytes()
    connection = http.client.HTTPConnection(live_server.host, live_server.port, timeout=60)
    try:
        chunks = (data[i:i + 8192] for i in range(0, len(data), 8192))
        connection.request("POST", "/upload?name=chunked.mp4", body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 201, body
    assert source_path(live_server.dataplane, body["AssetId"]).read_bytes() == data


@pytest.mark.parametrize("name, data", [
    ("notes.txt", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100),  # video bytes, wrong extension
    ("clip.mp4", b"this is not a video\n" * 20),                     # right extension, text content
    ("clip.avi", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100),     # mp4 bytes named .avi
    ("clip.webm", b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x00" * 100),  # avi bytes named .webm
    ("clip", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100),           # no extension
])
def test_upload_of_wrong_type_is_415(small_server, name, data):
    status, body = upload(small_server, name, data)
    assert status == 415 and body["Code"], name
    form, kind = multipart({}, name, data)
    status, body = get_json(small_server, "/upload", "POST", form, {"Content-Type": kind})
    assert status == 415, name


def test_upload_needs_a_name_and_a_video_that_decodes(small_server):
    status, body = upload(small_server, "", b"\x00\x00\x00\x18ftypmp42")
    assert status == 400
    status, body = upload(small_server, "broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2000)
    assert status == 422 and "broken.mp4" in body["Message"]
    status, body = upload(small_server, "empty.mp4", b"")
    assert status == 400


def test_upload_creates_an_asset_and_runs_the_workflow(live_server, astronaut_mp4):
    data = astronaut_mp4.read_bytes()
    status, body = upload(live_server, "../../my%20clip.mp4", data, query="&analyze=1&fps=1")
    assert status == 201, body
    asset_id = body["AssetId"]
    asset = live_server.dataplane.get_asset(asset_id)
    assert asset["source_name"] == "my clip.mp4"
    assert source_path(live_server.dataplane, asset_id).read_bytes() == data
    live_server.server.workflows.join()
    status, execution = get_json(live_server, f"/workflow/execution/{body['ExecutionId']}")
    assert execution["Status"] == "Complete", execution
    status, page = get_json(live_server, f"/metadata/{asset_id}/{schema.OPERATOR_NAME}")
    assert status == 200 and len(page["results"]["frames"]) == 3  # 3 s at 1 fps
    assert not list((live_server.dataplane.data_dir / "uploads").iterdir())  # temp files removed


def test_a_browser_form_upload_creates_an_asset(live_server, astronaut_mp4):
    data = astronaut_mp4.read_bytes()
    form, kind = multipart({"analyze": "1", "fps": "1"}, "form clip.mp4", data)
    status, body = get_json(live_server, "/upload", "POST", form, {"Content-Type": kind})
    assert status == 201, body
    assert live_server.dataplane.get_asset(body["AssetId"])["source_name"] == "form clip.mp4"
    assert source_path(live_server.dataplane, body["AssetId"]).read_bytes() == data
    live_server.server.workflows.join()
    status, execution = get_json(live_server, f"/workflow/execution/{body['ExecutionId']}")
    assert execution["Status"] == "Complete", execution


def test_a_form_over_the_limit_is_413(small_server):
    form, kind = multipart({}, "big.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200_000)
    status, body = get_json(small_server, "/upload", "POST", form, {"Content-Type": kind})
    assert status == 413 and "limit" in body["Message"]


def test_mie_presigned_post_stores_the_object(small_server, astronaut_mp4):
    """MIE's client flow: POST /upload (JSON) gives a presigned POST; the form POST then stores the file."""
    status, presigned = get_json(small_server, "/upload", "POST",
                                 json.dumps({"S3Bucket": "dataplane", "S3Key": "uploads/mie/clip.mp4"}).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 200, presigned
    url = presigned["url"]
    assert url.endswith("/upload"), url
    data = astronaut_mp4.read_bytes()[:90_000]  # under the server's 100 kB limit
    form, kind = multipart(presigned["fields"], "clip.mp4", data)
    status, head, body = request(small_server, "POST", "/upload", form, {"Content-Type": kind})
    assert status == 204 and body == b""
    location = MediaLocation(presigned["fields"]["bucket"], presigned["fields"]["key"])
    assert small_server.dataplane.storage.read_bytes(location) == data
    for key in ("../escape.mp4", "a/../../escape.mp4", "/abs.mp4"):
        form, kind = multipart({"bucket": "dataplane", "key": key}, "x.mp4", data[:100])
        status, body = get_json(small_server, "/upload", "POST", form, {"Content-Type": kind})
        assert status == 400, key


# --- life cycle -------------------------------------------------------------------------------------
def test_shutdown_lets_the_request_in_flight_finish(tmp_path, astronaut_mp4):
    server = make_server(SqliteDataplane(tmp_path / "home"), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    data = astronaut_mp4.read_bytes()
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.putrequest("POST", "/upload?name=late.mp4")
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(len(data)))
    connection.endheaders()
    connection.send(data[:1000])
    time.sleep(0.3)  # the server is reading the body now
    stopper = threading.Thread(target=server.shutdown)
    stopper.start()
    time.sleep(0.5)
    assert stopper.is_alive()  # waits for the upload
    connection.send(data[1000:])
    response = connection.getresponse()
    assert response.status == 201 and json.loads(response.read())["AssetId"]
    connection.close()
    stopper.join(timeout=15)
    assert not stopper.is_alive() and not thread.is_alive()
    server.server_close()
    with pytest.raises(OSError):
        http.client.HTTPConnection(host, port, timeout=5).request("GET", "/asset")


def test_a_video_ffmpeg_cannot_convert_is_served_as_it_is(small_server, bad_inputs):
    asset_id = small_server.dataplane.import_video(bad_inputs["truncated"])
    for _ in range(2):  # the failure is remembered, not retried on every range request
        status, head, body = request(small_server, "GET", f"/media/{asset_id}", headers={"Range": "bytes=0-99"})
        assert status == 206 and head["X-Media-Proxy"].startswith("unconverted; transcoding failed")
        assert body == bad_inputs["truncated"].read_bytes()[:100]
