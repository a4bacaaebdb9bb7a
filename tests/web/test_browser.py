"""The web app in headless Chromium (Debian's, driven by Playwright): the Pose tab draws each person's
skeleton where the API's document puts the keypoints, through the displayed video rectangle, at any
viewport size; nothing is drawn on an empty clip; an upload through the UI is analysed and shown.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from mie_pose import schema

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the web test extra)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
THRESHOLD = 0.3  # the slider's default

# Expected pixel positions, worked out here independently of the app: object-fit contain inside the
# <video> box, mapped into the overlay canvas's backing pixels; then whether the canvas has ink there.
PROBE_JS = """
([keypoints, threshold]) => {
  const video = document.querySelector('video.pose-video');
  const canvas = document.querySelector('canvas.pose-overlay');
  const vr = video.getBoundingClientRect();
  const cr = canvas.getBoundingClientRect();
  const style = getComputedStyle(video);
  const fit = style.objectFit;
  const [px, py] = style.objectPosition.split(' ').map((part) => parseFloat(part) / 100);
  const scale = Math.min(vr.width / video.videoWidth, vr.height / video.videoHeight);
  const w = video.videoWidth * scale, h = video.videoHeight * scale;
  const x0 = vr.left - cr.left + (vr.width - w) * px, y0 = vr.top - cr.top + (vr.height - h) * py;
  const sx = canvas.width / cr.width, sy = canvas.height / cr.height;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const inkNear = (px, py, radius) => {
    for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) {
      const x = Math.round(px) + dx, y = Math.round(py) + dy;
      if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) continue;
      if (pixels[(y * canvas.width + x) * 4 + 3] > 0) return true;
    }
    return false;
  };
  let ink = 0, letterboxInk = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) ink++;
  // Ink outside the picture rectangle (in the letterbox bars) would mean a wrong mapping.
  for (let y = 0; y < canvas.height; y += 2) for (let x = 0; x < canvas.width; x += 2) {
    const cx = x / sx, cy = y / sy;
    const outside = cx < x0 - 6 || cx > x0 + w + 6 || cy < y0 - 6 || cy > y0 + h + 6;
    if (outside && pixels[(y * canvas.width + x) * 4 + 3] > 0) letterboxInk++;
  }
  const hits = keypoints.filter(([, , s]) => s >= threshold)
    .map(([x, y]) => inkNear((x0 + x * w) * sx, (y0 + y * h) * sy, Math.ceil(2 * sx)));
  return { fit, hits, ink, letterboxInk, picture: [x0, y0, w, h], box: [cr.width, cr.height], video: [vr.width, vr.height],
           time: canvas.dataset.time, persons: Number(canvas.dataset.persons) };
}
"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: install Debian package chromium (./run test does)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # bypass_csp: the app's CSP forbids eval, which Playwright's wait_for_function uses.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def api_document(server, asset_id: str) -> dict:
    """The whole PoseDetection document, read the way the app reads it: page by page through the API."""
    document, cursor = None, None
    while True:
        query = f"?cursor={cursor}" if cursor else ""
        with urllib.request.urlopen(f"{server.url}/metadata/{asset_id}/{schema.OPERATOR_NAME}{query}") as response:
            page = json.load(response)
        if document is None:
            document = page["results"]
        else:
            document["frames"] += page["results"]["frames"]
        cursor = page.get("cursor")  # MIE: the last page has no cursor
        if not cursor:
            return document


def open_pose_tab(page, server, asset_id: str) -> None:
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    page.wait_for_selector("video.pose-video")
    page.wait_for_function("() => { const v = document.querySelector('video.pose-video');"
                           " return v.readyState >= 2 && v.videoWidth > 0; }", timeout=30_000)


def seek(page, seconds: float) -> None:
    page.evaluate(f"document.querySelector('video.pose-video').currentTime = {seconds}")
    page.wait_for_function(f"() => document.querySelector('canvas.pose-overlay').dataset.time === '{round(seconds * 1000)}'"
                           " && !document.querySelector('video.pose-video').seeking")
    page.evaluate("() => new Promise(requestAnimationFrame)")  # let a resize-driven redraw land


def probe(page, keypoints) -> dict:
    return page.evaluate(PROBE_JS, [keypoints, THRESHOLD])


def test_pose_overlay_follows_the_keypoints_at_any_size(page, live_server, analysed, artifacts):
    asset_id = analysed["astronaut"]
    document = api_document(live_server, asset_id)
    frame = next(f for f in document["frames"] if f["persons"] and f["timestamp_ms"] > 0)
    keypoints = frame["persons"][0]["keypoints"]
    assert sum(s >= THRESHOLD for _, _, s in keypoints) >= 8

    open_pose_tab(page, live_server, asset_id)
    seek(page, frame["timestamp_ms"] / 1000)
    for label, viewport in (("wide", {"width": 1280, "height": 800}), ("tall", {"width": 600, "height": 1000}),
                            ("small", {"width": 900, "height": 420})):
        page.set_viewport_size(viewport)
        page.wait_for_function(
            "() => { const c = document.querySelector('canvas.pose-overlay');"
            " return Math.abs(c.width - Math.round(c.getBoundingClientRect().width * devicePixelRatio)) <= 1; }")
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        result = probe(page, keypoints)
        page.screenshot(path=str(artifacts / f"pose-astronaut-{label}.png"))
        assert result["fit"] == "contain"
        assert result["persons"] == 1, result
        assert all(result["hits"]), (label, result)
        corners = probe(page, [[0.03, 0.03, 1.0], [0.97, 0.03, 1.0], [0.5, 0.03, 1.0]])  # sky above the head
        assert not any(corners["hits"]), (label, corners)
        assert result["letterboxInk"] == 0, (label, result)
        # The video box is the picture plus the band for the native controls under it: no bars beside or above.
        x0, y0, w, h = result["picture"]
        video_w, video_h = result["video"]
        assert abs(x0) <= 1 and abs(y0) <= 1 and abs(w - video_w) <= 1, (label, result)
        assert 70 <= video_h - h <= 74, (label, result)

    # Raising the threshold above every keypoint's score hides the skeleton.
    page.evaluate("() => { const s = document.querySelector('#threshold'); s.value = '1';"
                  " s.dispatchEvent(new Event('input')); }")
    assert probe(page, keypoints)["ink"] == 0


def test_timeline_and_download(page, live_server, analysed, artifacts):
    asset_id = analysed["astronaut"]
    document = api_document(live_server, asset_id)
    open_pose_tab(page, live_server, asset_id)
    with_people = sum(1 for f in document["frames"] if f["persons"])
    assert page.get_attribute("canvas.pose-timeline", "data-markers") == str(with_people)
    page.wait_for_selector("button.download[data-format=json]:not([disabled])")
    with page.expect_download() as download_info:
        page.click("button.download[data-format=json]")
    download = download_info.value
    assert download.suggested_filename == "astronaut-3s-PoseDetection.json"  # names the video it comes from
    path = artifacts / download.suggested_filename
    download.save_as(str(path))
    text = path.read_text()
    assert json.loads(text) == document
    assert "\n" not in text and ", " not in text[:2000]  # compact, not pretty-printed


def test_empty_clip_draws_nothing(page, live_server, analysed, artifacts):
    asset_id = analysed["black"]
    document = api_document(live_server, asset_id)
    assert document["frames"] and not any(f["persons"] for f in document["frames"])
    open_pose_tab(page, live_server, asset_id)
    for seconds in (0.0, 1.0, 2.5):
        seek(page, seconds)
        result = probe(page, [])
        assert result["ink"] == 0 and result["persons"] == 0, result
    page.screenshot(path=str(artifacts / "pose-black.png"))


def test_avi_plays_through_its_proxy(page, live_server, analysed, artifacts):
    asset_id = analysed["avi"]
    document = api_document(live_server, asset_id)
    open_pose_tab(page, live_server, asset_id)
    size = page.evaluate("() => { const v = document.querySelector('video.pose-video'); return [v.videoWidth, v.videoHeight]; }")
    assert size == [document["video"]["width"], document["video"]["height"]]
    frame = max(document["frames"], key=lambda f: len(f["persons"]))
    seek(page, frame["timestamp_ms"] / 1000)
    assert int(page.get_attribute("canvas.pose-overlay", "data-persons")) >= min(1, len(frame["persons"]))
    page.screenshot(path=str(artifacts / "pose-avi.png"))


def test_paths_come_from_routes_json_and_the_video_from_media_url(page, live_server, analysed):
    from urllib.parse import urlsplit

    asset_id = analysed["astronaut"]
    paths = []
    page.on("request", lambda request: paths.append(urlsplit(request.url).path))
    open_pose_tab(page, live_server, asset_id)
    assert "/routes.json" in paths and f"/media-url/{asset_id}" in paths
    assert page.evaluate("document.querySelector('video.pose-video').src") == f"{live_server.url}/media/{asset_id}"
    built = page.evaluate("""async () => {
      const { ApiClient } = await import('/js/api.js');
      const routes = await (await fetch('/routes.json')).json();
      const api = new ApiClient({ apiBaseUrl: '' }, routes);
      let missing = '';
      try { api.path('get_asset'); } catch (error) { missing = error.message; }
      return [api.path('get_metadata', { asset_id: 'a b/c', operator: 'PoseDetection' }),
              api.path('list_executions', { asset_id: 'x' }), api.path('list_assets'), missing];
    }""")
    assert built == ["/metadata/a%20b%2Fc/PoseDetection", "/workflow/execution/asset/x", "/asset",
                     "route get_asset needs asset_id"]


def test_upload_through_the_ui(page, live_server, astronaut_mp4, tmp_path, artifacts):
    clip = tmp_path / "uploaded-astronaut.mp4"
    shutil.copyfile(astronaut_mp4, clip)
    page.goto(f"{live_server.url}/")
    page.wait_for_selector("#upload-form")
    page.set_input_files("#upload-file", str(clip))
    page.fill("#upload-fps", "1")
    page.click("#upload-form button[type=submit]")
    item = page.locator("#asset-list li", has_text="uploaded-astronaut.mp4")
    item.wait_for(timeout=30_000)
    started = time.monotonic()
    item.locator(".badge", has_text="Complete").wait_for(timeout=120_000)
    page.locator("table.executions .badge", has_text="Complete").first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "upload-complete.png"))
    message = page.locator("#upload-message")
    page.wait_for_function("() => !document.querySelector('#upload-message').textContent.includes('queued')")
    assert "analysis complete" in message.inner_text()
    asset_id = item.get_attribute("data-asset-id")
    assert page.url.endswith(f"#/asset/{asset_id}/overview")
    assert time.monotonic() - started < 120
    page.click("a[data-tab=pose]")
    page.wait_for_function("() => document.querySelector('video.pose-video')?.readyState >= 2", timeout=30_000)
    seek(page, 1.0)
    assert page.get_attribute("canvas.pose-overlay", "data-persons") == "1"
    page.screenshot(path=str(artifacts / "upload-pose.png"))


def test_overlay_geometry_and_interpolation(page, live_server):
    """The overlay module's pure functions, in the browser: letterboxing, matching, interpolation."""
    page.goto(f"{live_server.url}/")
    result = page.evaluate("""async () => {
      const o = await import('/js/overlay.js');
      const person = (x, track) => ({ track_id: track, score: 0.9, bbox: [x - 0.1, 0.2, x + 0.1, 0.8],
        keypoints: Array.from({ length: 17 }, () => [x, 0.5, 0.9]) });
      const frames = [
        { timestamp_ms: 0, persons: [person(0.2, null), person(0.7, null)] },
        { timestamp_ms: 1000, persons: [person(0.75, null), person(0.3, null)] },
        { timestamp_ms: 2000, persons: [person(0.5, 7), person(0.1, 3)] },
        { timestamp_ms: 3000, persons: [person(0.2, 3), person(0.6, 7)] },
      ];
      const xs = (t) => o.personsAt(frames, t, 1000).map((p) => +p.keypoints[0][0].toFixed(3)).sort();
      return {
        wide: o.contentRect(1000, 500, 640, 360),
        tall: o.contentRect(400, 800, 640, 480),
        mid: xs(500), tracked: xs(2500), exact: xs(1000), held: xs(3900), gone: xs(4100), before: xs(-10),
      };
    }""")
    wide, tall = result["wide"], result["tall"]
    assert wide["height"] == 500 and abs(wide["width"] - 888.889) < 0.01 and abs(wide["x"] - 55.556) < 0.01
    assert tall["width"] == 400 and tall["height"] == 300 and tall["y"] == 250 and tall["x"] == 0
    assert result["mid"] == [0.25, 0.725]      # nearest-bbox matching, halfway
    assert result["tracked"] == [0.15, 0.55]   # by track_id, though the boxes swapped places
    assert result["exact"] == [0.3, 0.75]
    assert result["held"] == [0.2, 0.6] and result["gone"] == [] and result["before"] == [0.2, 0.7]


SIGV4_CREDENTIALS = {"accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


@pytest.mark.parametrize("url, signature", [
    # AWS's published SigV4 test suite: get-vanilla and get-vanilla-query-order-key-case.
    ("https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("https://example.amazonaws.com/?Param2=value2&Param1=value1",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
])
def test_sigv4_signing_matches_the_aws_test_suite(page, live_server, url, signature):
    page.goto(f"{live_server.url}/")
    headers = page.evaluate("""async ([url, credentials]) => {
      const { signRequest } = await import('/js/sigv4.js');
      return signRequest({ method: 'GET', url, credentials, region: 'us-east-1', service: 'service',
                           date: new Date(Date.UTC(2015, 7, 30, 12, 36, 0)) });
    }""", [url, SIGV4_CREDENTIALS])
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}")


# --- synthetic results: documents written straight into a dataplane, so each test knows what it shows ------
SYNTHETIC_SECONDS = 6


@pytest.fixture(scope="session")
def landscape_h264(ffmpeg, vtest_avi, media_dir) -> Path:
    """6 s of vtest.avi as a 640x360 H.264 mp4 (16:9, plays in Chromium without a proxy)."""
    import subprocess

    path = media_dir / "vtest-640x360.mp4"
    if not path.exists():
        subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(vtest_avi), "-t", str(SYNTHETIC_SECONDS),
                        "-vf", "scale=640:360", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
                        str(path)], check=True, timeout=120)
    return path


def stick_person(cx: float, top: float, height: float, track_id: int | None, score: float = 0.9,
                 knee_deg: float = 180.0, aspect: float = 16 / 9, scores: list[float] | None = None) -> dict:
    """A standing figure in normalized coordinates: head at `top`, feet at top + height; both knees bent to
    `knee_deg` (thigh vertical, shin turned), measured in picture pixels (x scaled by `aspect`)."""
    import math

    h = height
    y = lambda f: top + f * h  # noqa: E731
    dx = lambda f: f * h / aspect  # noqa: E731  (a horizontal offset of f body heights)
    shin = 0.25 * h
    turn = math.radians(180 - knee_deg)
    kp = {
        0: (cx, y(0.05)), 1: (cx - dx(0.02), y(0.03)), 2: (cx + dx(0.02), y(0.03)), 3: (cx - dx(0.04), y(0.05)),
        4: (cx + dx(0.04), y(0.05)), 5: (cx - dx(0.1), y(0.2)), 6: (cx + dx(0.1), y(0.2)),
        7: (cx - dx(0.12), y(0.35)), 8: (cx + dx(0.12), y(0.35)), 9: (cx - dx(0.12), y(0.5)), 10: (cx + dx(0.12), y(0.5)),
        11: (cx - dx(0.07), y(0.5)), 12: (cx + dx(0.07), y(0.5)), 13: (cx - dx(0.07), y(0.75)), 14: (cx + dx(0.07), y(0.75)),
    }
    for ankle, knee in ((15, 13), (16, 14)):
        kx, ky = kp[knee]
        kp[ankle] = (kx + math.sin(turn) * shin / aspect, ky + math.cos(turn) * shin)
    keypoints = [[*kp[i], (scores[i] if scores else score)] for i in range(17)]
    xs, ys = [p[0] for p in keypoints], [p[1] for p in keypoints]
    bbox = [min(xs) - 0.01, top, max(xs) + 0.01, top + h]
    return schema.person_record(score, bbox, keypoints, track_id)


def synthetic_document(asset_id: str, frames: list[tuple[int, list[dict]]], fps: float = 2.0,
                       size=(640, 360)) -> dict:
    document = schema.document_header(asset_id, "synthetic", fps, {"width": size[0], "height": size[1],
                                      "duration_ms": SYNTHETIC_SECONDS * 1000, "source_fps": 10.0})
    document["frames"] = [schema.frame_record(i, t, persons) for i, (t, persons) in enumerate(frames)]
    return document


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, landscape_h264, start_server):
    """A server over a dataplane of imported (never analysed) clips with results written here:
    'jump' (track 1 jumps across the picture between two samples; track 2 walks), 'crowd' (20 tracks),
    'sizes' (a near and a far person, some keypoints unsure), 'angles' (track 5 with knees at 90°),
    'running' (an execution that is still Started) and 'plain' (no results)."""
    from mie_pose.dataplane import SqliteDataplane

    data_dir = tmp_path_factory.mktemp("synthetic-home")
    dataplane = SqliteDataplane(data_dir)
    ids = {}
    for name in ("jump", "crowd", "sizes", "angles", "running", "plain"):
        clip = landscape_h264.with_name(f"{name}.mp4")
        if not clip.exists():
            shutil.copyfile(landscape_h264, clip)
        ids[name] = dataplane.import_video(clip)
    walk = lambda t: stick_person(0.2 + 0.05 * t / 1000, 0.2, 0.6, 2)  # noqa: E731
    dataplane.store_metadata(ids["jump"], schema.OPERATOR_NAME, synthetic_document(ids["jump"], [
        (0, [stick_person(0.15, 0.3, 0.5, 1), walk(0)]),
        (500, [stick_person(0.15, 0.3, 0.5, 1), walk(500)]),
        (1000, [stick_person(0.85, 0.3, 0.5, 1), walk(1000)]),   # track 1 is on the other side now
        (1500, [stick_person(0.85, 0.3, 0.5, 1), walk(1500)]),
    ]))
    crowd_frames = [(t, [stick_person(0.05 + 0.045 * k, 0.3, 0.3, k + 1) for k in range(20) if (k * 250) <= t])
                    for t in range(0, 5001, 500)]
    dataplane.store_metadata(ids["crowd"], schema.OPERATOR_NAME, synthetic_document(ids["crowd"], crowd_frames),
                             page_frames=3)
    unsure = [0.9] * 17
    unsure[9] = unsure[10] = 0.35  # wrists barely over the default threshold
    dataplane.store_metadata(ids["sizes"], schema.OPERATOR_NAME, synthetic_document(ids["sizes"], [
        (t, [stick_person(0.3, 0.05, 0.9, 1, scores=unsure), stick_person(0.75, 0.45, 0.12, 2)]) for t in (0, 500, 1000)]))
    dataplane.store_metadata(ids["angles"], schema.OPERATOR_NAME, synthetic_document(ids["angles"], [
        (t, [stick_person(0.5, 0.1, 0.8, 5, knee_deg=90 if t >= 1000 else 180)]) for t in range(0, 3001, 500)]))
    execution = dataplane.create_execution(ids["running"], "PoseWorkflow", ["FrameExtractionStage", "PoseDetectionStage"])
    dataplane.update_execution(execution, status="Started", stage="FrameExtractionStage", stage_status="Started")
    server = start_server(dataplane)
    return {"server": server, "ids": ids, "dataplane": dataplane, "execution": execution}


def wait_for_pose(page, timeout=30_000) -> None:
    page.wait_for_selector("video.pose-video")
    page.wait_for_function("() => { const v = document.querySelector('video.pose-video');"
                           " return v.readyState >= 2 && v.videoWidth > 0; }", timeout=timeout)


def error_bar(page) -> str | None:
    bar = page.locator("#error-bar")
    return bar.inner_text() if bar.is_visible() else None


# --- #10 item 7: error states ---------------------------------------------------------------------------
def test_unknown_asset_after_a_real_one_clears_the_video_and_keeps_the_error(page, synthetic, artifacts):
    server = synthetic["server"]
    list_calls = []
    page.on("request", lambda request: list_calls.append(request.url) if request.url.endswith("/asset") else None)
    page.goto(f"{server.url}/#/asset/{synthetic['ids']['jump']}/pose")
    wait_for_pose(page)
    page.evaluate("location.hash = '#/asset/0123456789abcdef0123456789abcdef'")
    page.wait_for_selector("#error-bar:not([hidden])")
    assert "0123456789abcdef" in error_bar(page)  # the API's message naming the asset
    assert page.locator("video").count() == 0, "the old video stays on screen"
    # An execution is running, so the list refreshes every 1.5 s: the error must survive those refreshes.
    calls = len(list_calls)
    deadline = time.monotonic() + 10
    while len(list_calls) < calls + 2:
        assert time.monotonic() < deadline, "the asset list did not refresh"
        page.wait_for_timeout(250)
    page.wait_for_timeout(300)  # let the last refresh render
    assert "0123456789abcdef" in (error_bar(page) or ""), "a list refresh hid the error"
    page.screenshot(path=str(artifacts / "error-unknown-asset.png"))
    # Going to a real asset clears it.
    page.evaluate(f"location.hash = '#/asset/{synthetic['ids']['plain']}/overview'")
    page.wait_for_selector("#error-bar[hidden]", state="attached")


def test_upload_button_is_disabled_while_uploading_and_failures_are_errors(page, synthetic, astronaut_mp4, artifacts):
    server = synthetic["server"]
    held = []
    page.route("**/upload?*", lambda route: held.append(route))
    page.goto(f"{server.url}/")
    page.set_input_files("#upload-file", str(astronaut_mp4))
    button = page.locator("#upload-form button[type=submit]")
    button.click()
    page.wait_for_function("() => document.querySelector('#upload-form button[type=submit]').disabled")
    button.click(force=True)  # a second click while the first upload runs
    page.wait_for_timeout(300)
    assert len(held) == 1, "a second click submitted the upload twice"
    held[0].fulfill(status=415, content_type="application/json",
                    body=json.dumps({"Code": "UnsupportedMediaTypeError", "Message": "not a video this app reads"}))
    message = page.locator("#upload-message")
    message.locator("text=not a video this app reads").wait_for()
    assert message.get_attribute("role") == "alert" and "error" in message.get_attribute("class")
    colour = page.evaluate("getComputedStyle(document.querySelector('#upload-message')).color")
    muted = page.evaluate("getComputedStyle(document.querySelector('.muted')).color")
    assert colour != muted and colour == "rgb(255, 133, 137)", colour  # the error colour, not grey
    assert not button.is_disabled()
    page.screenshot(path=str(artifacts / "upload-error.png"))


# --- #10 item 2 and #9: telling people apart; no skeleton slides between two people ---------------------
def test_palette_is_perceptually_distinct(page, live_server):
    import numpy as np
    from skimage.color import deltaE_ciede2000, rgb2lab

    page.goto(f"{live_server.url}/")
    palette = page.evaluate("async () => (await import('/js/overlay.js')).PALETTE")
    assert len(palette) >= 12
    rgb = np.array([[int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)] for c in palette])
    lab = rgb2lab(rgb.reshape(-1, 1, 3)).reshape(-1, 3)
    n = len(lab)
    delta = np.array([[deltaE_ciede2000(lab[i], lab[j]) for j in range(n)] for i in range(n)])
    np.fill_diagonal(delta, np.inf)
    assert delta.min() >= 15, f"two colours {delta.min():.1f} ΔE00 apart"
    assert min(delta[i, (i + 1) % n] for i in range(n)) >= 25, "consecutive track ids look alike"
    assert lab[:, 0].min() >= 55, "a colour too dark to read on video"


def test_a_track_that_jumps_is_shown_at_the_nearest_sample(page, synthetic, artifacts):
    server = synthetic["server"]
    page.goto(f"{server.url}/")
    pure = page.evaluate("""async () => {
      const o = await import('/js/overlay.js');
      const doc = await (await fetch('/metadata/%s/PoseDetection')).json();
      const frames = doc.results.frames;
      const at = (t) => Object.fromEntries(o.personsAt(frames, t, 500, 16 / 9)
        .map((p) => [p.track_id, +((p.bbox[0] + p.bbox[2]) / 2).toFixed(3)]));
      const near = frames[0].persons[0], far = frames[2].persons[0], walk = frames[1].persons[1];
      return { t700: at(700), t800: at(800), t250: at(250),
               jump: o.implausibleJump(near, far, 500, 16 / 9), walk: o.implausibleJump(frames[0].persons[1], walk, 500, 16 / 9) };
    }""" % synthetic["ids"]["jump"])
    assert pure["jump"] is True and pure["walk"] is False
    assert pure["t700"]["1"] == pytest.approx(0.15, abs=0.002) and pure["t800"]["1"] == pytest.approx(0.85, abs=0.002)
    assert pure["t700"]["2"] == pytest.approx(0.2 + 0.05 * 0.7, abs=0.002)  # the walker is still interpolated
    assert pure["t250"]["2"] == pytest.approx(0.2 + 0.05 * 0.25, abs=0.002)

    page.goto(f"{server.url}/#/asset/{synthetic['ids']['jump']}/pose")
    wait_for_pose(page)
    document = api_document(server, synthetic["ids"]["jump"])
    left, right = document["frames"][0]["persons"][0], document["frames"][2]["persons"][0]
    seek(page, 0.75)  # halfway: interpolating would draw track 1 in the middle of the picture, on nobody
    middle = [[0.5, y, 1.0] for _, y, _ in left["keypoints"]]
    assert not any(probe(page, middle)["hits"]), "a skeleton is drawn between the two people"
    assert all(probe(page, right["keypoints"])["hits"])
    page.screenshot(path=str(artifacts / "track-jump-nearest-sample.png"))
    seek(page, 0.7)
    assert all(probe(page, left["keypoints"])["hits"])


HEAD_INK_JS = """
([bbox]) => {
  const canvas = document.querySelector('canvas.pose-overlay');
  const [x0, y0, w, h] = canvas.dataset.rect.split(',').map(Number);
  const sx = canvas.width / canvas.getBoundingClientRect().width;
  const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  const cx = x0 + (bbox[0] + bbox[2]) / 2 * w, top = y0 + bbox[1] * h;
  for (let y = Math.round((top - 22) * sx); y < Math.round((top - 4) * sx); y++)
    for (let x = Math.round((cx - 14) * sx); x < Math.round((cx + 14) * sx); x++)
      if (px[(y * canvas.width + x) * 4 + 3] > 0) ink++;
  return ink;
}
"""


def test_people_panel_labels_seek_hide_highlight(page, synthetic, artifacts):
    server, asset_id = synthetic["server"], synthetic["ids"]["crowd"]
    document = api_document(server, asset_id)
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    wait_for_pose(page)
    page.wait_for_selector("[data-complete=true]")
    rows = page.locator("table.people tbody tr")
    assert rows.count() == 20  # all four pages arrived
    third = rows.nth(2)
    assert third.locator("th").inner_text() == "#3"
    assert [c.inner_text() for c in third.locator("td.num").all()] == ["0:00.5", "0:05.0", "10"]
    swatch = third.locator(".swatch").evaluate("e => getComputedStyle(e).backgroundColor")
    palette = page.evaluate("async () => (await import('/js/overlay.js')).PALETTE")
    assert swatch == "rgb({}, {}, {})".format(*(int(palette[3 % len(palette)][i:i + 2], 16) for i in (1, 3, 5)))

    page.locator("tr[data-track-id='5'] button.seek").click()
    page.wait_for_function("() => Math.abs(document.querySelector('video.pose-video').currentTime - 1.0) < 0.01")
    seek(page, 5.0)
    assert page.get_attribute("canvas.pose-overlay", "data-persons") == "20"

    person = next(p for p in document["frames"][-1]["persons"] if p["track_id"] == 7)
    assert page.evaluate(HEAD_INK_JS, [person["bbox"]]) == 0
    page.check("#show-ids")
    page.evaluate("() => new Promise(requestAnimationFrame)")
    assert page.evaluate(HEAD_INK_JS, [person["bbox"]]) > 20, "no track id drawn above the head"
    page.screenshot(path=str(artifacts / "people-labels.png"))

    alpha_js = """([x, y]) => { const c = document.querySelector('canvas.pose-overlay');
      const [x0, y0, w, h] = c.dataset.rect.split(',').map(Number); const s = c.width / c.getBoundingClientRect().width;
      return c.getContext('2d').getImageData(Math.round((x0 + x * w) * s), Math.round((y0 + y * h) * s), 1, 1).data[3]; }"""
    hip = lambda p: [(p["keypoints"][11][0] + p["keypoints"][12][0]) / 2, p["keypoints"][11][1]]  # noqa: E731
    assert page.evaluate(alpha_js, hip(person)) > 200
    page.locator("tr[data-track-id='7'] button.hide").click()
    assert page.get_attribute("canvas.pose-overlay", "data-persons") == "19"
    assert page.evaluate(alpha_js, hip(person)) == 0, "a hidden person is still drawn"
    page.locator("tr[data-track-id='7'] button.hide").click()
    assert page.locator("tr[data-track-id='7'] button.hide").get_attribute("aria-pressed") == "false"

    other = next(p for p in document["frames"][-1]["persons"] if p["track_id"] == 12)
    before = page.evaluate(alpha_js, hip(other))
    page.locator("tr[data-track-id='7'] button.highlight").click()
    page.screenshot(path=str(artifacts / "people-highlight.png"))
    assert page.evaluate(alpha_js, hip(other)) < before * 0.5, "the other people are not dimmed"
    assert page.evaluate(alpha_js, hip(person)) > 200


# --- #10 item 6: confidence you can see ------------------------------------------------------------------
ROW_INK_JS = """
([x, y, halfWidth]) => {
  // Alpha-weighted ink width (CSS px) along a horizontal line through (x, y), normalized picture coordinates.
  const c = document.querySelector('canvas.pose-overlay');
  const [x0, y0, w, h] = c.dataset.rect.split(',').map(Number);
  const s = c.width / c.getBoundingClientRect().width;
  const py = Math.round((y0 + y * h) * s), cx = Math.round((x0 + x * w) * s), half = Math.round(halfWidth * s);
  const row = c.getContext('2d').getImageData(cx - half, py, 2 * half + 1, 1).data;
  let ink = 0, peak = 0;
  for (let i = 3; i < row.length; i += 4) { ink += row[i] / 255; peak = Math.max(peak, row[i]); }
  return { width: ink / s, peak };
}
"""


def test_keypoint_confidence_and_line_width_follow_score_and_size(page, synthetic, artifacts):
    server, asset_id = synthetic["server"], synthetic["ids"]["sizes"]
    document = api_document(server, asset_id)
    near, far = document["frames"][1]["persons"]
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    wait_for_pose(page)
    seek(page, 0.5)
    page.screenshot(path=str(artifacts / "confidence-sizes.png"))

    def shin(person):  # the middle of the left shin (knee 13 -> ankle 15, vertical)
        (kx, ky, _), (_, ay, _) = person["keypoints"][13], person["keypoints"][15]
        return [kx, (ky + ay) / 2]

    near_line = page.evaluate(ROW_INK_JS, [*shin(near), 12])
    far_line = page.evaluate(ROW_INK_JS, [*shin(far), 2.5])  # the other shin is 5 px away
    assert far_line["peak"] > 0 and near_line["peak"] > 0
    assert near_line["width"] > 2 * far_line["width"], (near_line, far_line)  # distant people are not blobs
    assert far_line["width"] <= 1.6, far_line

    def middle(person, i, j):
        (ax, ay, _), (bx, by, _) = person["keypoints"][i], person["keypoints"][j]
        return [(ax + bx) / 2, (ay + by) / 2, 3]

    sure = page.evaluate(ROW_INK_JS, middle(near, 5, 7))     # shoulder-elbow, both 0.9
    unsure = page.evaluate(ROW_INK_JS, middle(near, 7, 9))   # elbow-wrist, the wrist 0.35
    assert unsure["peak"] < 0.65 * sure["peak"], (sure, unsure)
    styles = page.evaluate("async () => { const o = await import('/js/overlay.js');"
                           " return [o.keypointStyle(0.35, 200), o.keypointStyle(0.9, 200)]; }")
    assert styles[0]["radius"] < styles[1]["radius"] and styles[0]["alpha"] < styles[1]["alpha"]


# --- #10 item 3: a timeline that says something; joint angles ---------------------------------------------
def test_timeline_shows_people_count_and_seeks_by_click_and_keyboard(page, synthetic, artifacts):
    server, asset_id = synthetic["server"], synthetic["ids"]["crowd"]
    document = api_document(server, asset_id)
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    wait_for_pose(page)
    page.wait_for_selector("[data-complete=true]")
    timeline = page.locator("canvas.pose-timeline")
    assert timeline.get_attribute("role") == "slider" and timeline.get_attribute("tabindex") == "0"
    assert timeline.get_attribute("data-most") == "20"
    # Bar heights grow with the count: sample the ink column height at a few times.
    heights = page.evaluate("""(times) => {
      const c = document.querySelector('canvas.pose-timeline');
      const ctx = c.getContext('2d'); const W = c.width, H = c.height;
      const duration = document.querySelector('video.pose-video').duration * 1000;
      return times.map((t) => { const x = Math.round((t + 100) / duration * W); let ink = 0;
        for (let y = 0; y < H; y++) { const p = ctx.getImageData(x, y, 1, 1).data;
          if (p[2] > 200 && p[0] < 160) ink++; } return ink / H; });
    }""", [500, 2500, 4500])
    counts = [len(f["persons"]) for f in document["frames"] if f["timestamp_ms"] in (500, 2500, 4500)]
    assert counts == [3, 11, 19]
    assert heights[0] < heights[1] < heights[2], heights
    assert heights[2] == pytest.approx(19 / 20, abs=0.12)

    box = timeline.bounding_box()
    timeline.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
    duration = page.evaluate("document.querySelector('video.pose-video').duration")
    page.wait_for_function(f"() => Math.abs(document.querySelector('video.pose-video').currentTime - {duration / 2}) < 0.1")
    timeline.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => Math.abs(document.querySelector('video.pose-video').currentTime - 0.5) < 0.01")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('canvas.pose-timeline').getAttribute('aria-valuetext')"
                           " === '0:01.0, 5 people'")
    page.screenshot(path=str(artifacts / "timeline-people-count.png"))


def test_joint_angle_chart_for_the_followed_person(page, synthetic, artifacts):
    server, asset_id = synthetic["server"], synthetic["ids"]["angles"]
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    wait_for_pose(page)
    page.wait_for_selector("[data-complete=true]")
    page.locator("tr[data-track-id='5'] button.follow").click()
    assert page.locator("tr[data-track-id='5']").get_attribute("class") == "followed"
    readout = page.locator(".angle-readout")
    seek(page, 0.5)
    assert readout.locator("[data-joint='left knee']").inner_text().endswith("180°")
    seek(page, 1.5)
    assert readout.locator("[data-joint='left knee']").inner_text().endswith(" 90°")
    assert readout.locator("[data-joint='right knee']").inner_text().endswith(" 90°")
    import math

    person = api_document(server, asset_id)["frames"][3]["persons"][0]
    (ax, ay, _), (bx, by, _), (cx, cy, _) = (person["keypoints"][i] for i in (5, 7, 9))
    u, v = ((ax - bx) * 640, (ay - by) * 360), ((cx - bx) * 640, (cy - by) * 360)
    elbow = math.degrees(math.acos((u[0] * v[0] + u[1] * v[1]) / math.hypot(*u) / math.hypot(*v)))
    assert readout.locator("[data-joint='left elbow']").inner_text().endswith(f" {round(elbow)}°")
    chart = page.locator("canvas.angle-chart")
    assert chart.get_attribute("data-samples") == "7"
    # The knee lines (both at 90° from 1 s on) are drawn at mid-height of the 0-180° chart.
    ys = page.evaluate("""(colour) => {
      const c = document.querySelector('canvas.angle-chart'); const ctx = c.getContext('2d');
      const duration = document.querySelector('video.pose-video').duration * 1000;
      const x = Math.round(2500 / duration * c.width); const hits = [];
      const want = [parseInt(colour.slice(1, 3), 16), parseInt(colour.slice(3, 5), 16), parseInt(colour.slice(5, 7), 16)];
      for (let y = 0; y < c.height; y++) { const p = ctx.getImageData(x, y, 1, 1).data;
        if (Math.abs(p[0] - want[0]) + Math.abs(p[1] - want[1]) + Math.abs(p[2] - want[2]) < 60 && p[3] > 200) hits.push(y / c.height); }
      return hits; }""", "#00c3c3")
    assert ys and all(abs(y - 0.5) < 0.06 for y in ys), ys
    page.screenshot(path=str(artifacts / "joint-angles.png"))


# --- #10 item 5: player controls ----------------------------------------------------------------------------
def test_player_steps_between_samples_changes_speed_and_lists_shortcuts(page, synthetic, artifacts):
    server, asset_id = synthetic["server"], synthetic["ids"]["jump"]
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    wait_for_pose(page)
    time_of = lambda: page.evaluate("document.querySelector('video.pose-video').currentTime")  # noqa: E731
    page.locator("body").press(".")
    page.wait_for_function("() => Math.abs(document.querySelector('video.pose-video').currentTime - 0.5) < 0.01")
    page.keyboard.press(".")
    page.keyboard.press(".")
    page.wait_for_function("() => Math.abs(document.querySelector('video.pose-video').currentTime - 1.5) < 0.01")
    page.keyboard.press(".")  # the last sample: stays
    page.wait_for_timeout(200)
    assert abs(time_of() - 1.5) < 0.01
    page.keyboard.press(",")
    page.wait_for_function("() => Math.abs(document.querySelector('video.pose-video').currentTime - 1.0) < 0.01")
    page.click("#step-back")
    page.wait_for_function("() => Math.abs(document.querySelector('video.pose-video').currentTime - 0.5) < 0.01")
    page.select_option("#speed", "2")
    assert page.evaluate("document.querySelector('video.pose-video').playbackRate") == 2
    page.locator("body").press("[")
    assert page.evaluate("document.querySelector('video.pose-video').playbackRate") == 1.5
    assert page.input_value("#speed") == "1.5"
    page.click(".shortcuts summary")
    listed = page.locator(".shortcuts dl").inner_text()
    for key in (",", ".", "Space", "[ and ]", "i"):
        assert key in listed
    page.screenshot(path=str(artifacts / "player-controls.png"))


def test_overlay_never_covers_the_native_controls(page, synthetic, artifacts):
    """A person whose feet touch the bottom of the picture: the band where Chromium draws its controls
    (the bottom of the <video> box) has no overlay ink, at several viewport sizes."""
    server, asset_id = synthetic["server"], synthetic["ids"]["sizes"]
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    wait_for_pose(page)
    seek(page, 0.5)
    for viewport in ({"width": 1280, "height": 800}, {"width": 700, "height": 900}, {"width": 1400, "height": 500}):
        page.set_viewport_size(viewport)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        result = page.evaluate("""() => {
          const v = document.querySelector('video.pose-video'), c = document.querySelector('canvas.pose-overlay');
          const vr = v.getBoundingClientRect(), s = c.width / c.getBoundingClientRect().width;
          const band = 68;  // Chromium's control panel height at the bottom of the video box
          const px = c.getContext('2d').getImageData(0, Math.round((vr.height - band) * s), c.width,
            Math.round(band * s)).data;
          let ink = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) ink++;
          const [, y0, , h] = c.dataset.rect.split(',').map(Number);
          return { ink, pictureBottom: y0 + h, videoHeight: vr.height, persons: c.dataset.persons };
        }""")
        assert result["persons"] == "2"
        assert result["ink"] == 0 and result["pictureBottom"] <= result["videoHeight"] - 68, (viewport, result)
    page.screenshot(path=str(artifacts / "overlay-above-controls.png"))


# --- #10 item 1: progress of a running analysis, from MIE's execution record --------------------------------
def mie_execution(execution_id: str, asset_id: str, done: int, total: int) -> dict:
    return {"Id": execution_id, "AssetId": asset_id, "Status": "Started", "CurrentStage": "PoseDetectionStage",
            "Created": "1764600000.0", "Workflow": {"Name": "PoseWorkflow", "StartAt": "FrameExtractionStage", "Stages": {
                "FrameExtractionStage": {"Name": "FrameExtractionStage", "Status": "Complete", "Next": "PoseDetectionStage"},
                "PoseDetectionStage": {"Name": "PoseDetectionStage", "Status": "Started", "End": True,
                                       "Progress": {"FramesDone": done, "FramesTotal": total}}}}}


def test_progress_in_the_asset_list_and_the_pose_tab(page, synthetic, artifacts):
    """The API's answers are replaced with MIE-shaped records whose running stage advances 20 frames per
    answer: the list and the Pose tab show frames done / total and, from the second answer, the time left."""
    server, asset_id = synthetic["server"], synthetic["ids"]["running"]
    calls = {"list": 0, "asset": 0}

    def list_assets(route):
        calls["list"] += 1
        response = route.fetch()
        body = response.json()
        for asset in body["assets"] if isinstance(body, dict) else body:
            if asset["asset_id"] == asset_id:
                asset["latest_execution"] = mie_execution("e1", asset_id, 20 * calls["list"], 200)
        route.fulfill(response=response, json=body)

    def get_asset(route):
        calls["asset"] += 1
        response = route.fetch()
        body = response.json()
        body["executions"] = [mie_execution("e1", asset_id, 20 * calls["asset"], 200)]
        route.fulfill(response=response, json=body)

    page.route(f"{server.url}/asset", list_assets)
    page.route(f"{server.url}/asset/{asset_id}", get_asset)
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    item = page.locator(f"#asset-list li[data-asset-id='{asset_id}']")
    item.locator(".progress-text", has_text="/ 200 frames").wait_for()
    text = item.locator(".progress-text")
    page.wait_for_function(f"() => /PoseDetection: \\d+ \\/ 200 frames · about \\d+ (s|min) left/"
                           f".test(document.querySelector(\"#asset-list li[data-asset-id='{asset_id}'] .progress-text\").textContent)")
    done = int(text.inner_text().split(":")[1].split("/")[0])
    assert int(item.locator("progress").get_attribute("value")) == done
    running = page.locator("#main .running")
    page.wait_for_function("() => /about \\d+ (s|min) left/.test(document.querySelector('#main .running')?.textContent)")
    assert "/ 200 frames" in running.inner_text()
    page.screenshot(path=str(artifacts / "progress-running.png"))


# --- #10 item 4: exports -------------------------------------------------------------------------------
def test_exports_download_through_the_api_with_the_videos_name(page, live_server, analysed, artifacts):
    import csv

    asset_id = analysed["astronaut"]
    document = api_document(live_server, asset_id)
    open_pose_tab(page, live_server, asset_id)
    routes = json.load(urllib.request.urlopen(f"{live_server.url}/routes.json"))
    assert any(r["method"] == "GET" and r["path"] == "/export/{asset_id}/{operator}" for r in routes), \
        "the API has no export route"
    files = {}
    for format_ in ("coco", "csv"):
        button = page.locator(f"button.export[data-format={format_}]")
        with page.expect_download() as info:
            button.click()
        download = info.value
        assert download.suggested_filename.startswith("astronaut-3s"), download.suggested_filename
        files[format_] = artifacts / f"export-{download.suggested_filename}"
        download.save_as(str(files[format_]))
    coco = json.loads(files["coco"].read_text())
    people = sum(len(f["persons"]) for f in document["frames"])
    assert len(coco["annotations"]) == people and len(coco["images"]) == len(document["frames"])
    rows = list(csv.reader(files["csv"].open()))
    assert len(rows) >= people
    with page.expect_download(timeout=120_000) as info:
        page.click("button.export[data-format=mp4]")
    download = info.value
    assert download.suggested_filename.startswith("astronaut-3s") and download.suggested_filename.endswith(".mp4")
    path = artifacts / f"export-{download.suggested_filename}"
    download.save_as(str(path))
    head = path.read_bytes()[:12]
    assert head[4:8] == b"ftyp" and path.stat().st_size > 10_000  # an MP4 file, not an error body


# --- #10 item 8: asset handling ----------------------------------------------------------------------------
def test_clicking_an_asset_opens_pose_when_it_has_results(page, synthetic):
    server = synthetic["server"]
    page.goto(f"{server.url}/")
    page.locator(f"#asset-list li[data-asset-id='{synthetic['ids']['angles']}'] a").click()
    page.wait_for_url(f"**/#/asset/{synthetic['ids']['angles']}/pose")
    wait_for_pose(page)
    page.locator(f"#asset-list li[data-asset-id='{synthetic['ids']['plain']}'] a").click()
    page.wait_for_url(f"**/#/asset/{synthetic['ids']['plain']}/overview")
    assert page.locator("#analyse").inner_text() == "Analyse"  # never analysed: not "again"


def test_overview_facts_people_and_thumbnail(page, live_server, analysed, artifacts):
    asset_id = analysed["astronaut"]
    page.goto(f"{live_server.url}/#/asset/{asset_id}/overview")
    page.wait_for_function("() => document.querySelector('[data-stat=\"tracked people\"]')")
    fact = lambda name: page.locator(f"[data-fact='{name}']").inner_text()  # noqa: E731
    assert fact("duration") == "3.0 s"
    assert fact("resolution") == "512 × 512"
    assert fact("frame rate").startswith("25.00 fps (sampled at 2 fps")
    assert page.locator("[data-stat='tracked people']").inner_text() == "1"
    assert page.locator("[data-stat='most in one frame']").inner_text() == "1"
    page.wait_for_function("() => document.querySelector('video.thumb').readyState >= 2", timeout=20_000)
    assert page.evaluate("document.querySelector('video.thumb').videoWidth") == 512
    assert page.locator("#analyse").inner_text() == "Analyse again"
    page.screenshot(path=str(artifacts / "overview.png"))
    # Overview read the whole document; the Pose tab reuses it instead of fetching every page again.
    pages = []
    page.on("request", lambda request: pages.append(request.url) if "/metadata/" in request.url else None)
    page.click("a[data-tab=pose]")
    wait_for_pose(page)
    page.wait_for_selector("[data-complete=true]")
    assert pages == []


def test_analyse_sends_the_chosen_fps_and_backend(page, synthetic):
    server, asset_id = synthetic["server"], synthetic["ids"]["plain"]
    sent = []

    def start(route):
        sent.append(route.request.post_data_json)
        route.fulfill(json={"Id": "x", "AssetId": asset_id, "Status": "Queued"})

    page.route(f"{server.url}/workflow/execution", start)
    page.goto(f"{server.url}/#/asset/{asset_id}/overview")
    page.fill("#analyse-fps", "1.5")
    page.select_option("#analyse-backend", "blazepose")
    page.click("#analyse")
    deadline = time.monotonic() + 10
    while not sent and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert sent and sent[0]["Input"] == {"AssetId": asset_id}
    assert sent[0]["Configuration"] == {"FrameExtraction": {"FPS": 1.5}, "PoseDetection": {"Backend": "blazepose"}}


def test_delete_search_paging_and_same_names(page, synthetic, landscape_h264, artifacts):
    server, dataplane = synthetic["server"], synthetic["dataplane"]
    same = landscape_h264.with_name("same.mp4")
    shutil.copyfile(landscape_h264, same)
    twins = [dataplane.import_video(same) for _ in range(6)]
    page.goto(f"{server.url}/")
    page.wait_for_selector(f"#asset-list li[data-asset-id='{twins[-1]}']")
    total = len(dataplane.list_assets())
    assert total >= 12
    pager = page.locator("#asset-pager")
    assert pager.is_visible() and pager.locator(".pager-text").inner_text() == f"1–10 of {total}"
    assert page.locator("#asset-list li").count() == 10
    pager.locator(".pager-next").click()
    assert pager.locator(".pager-text").inner_text() == f"11–{total} of {total}"
    page.fill("#asset-search", "same")
    items = page.locator("#asset-list li")
    assert items.count() == 6 and not pager.is_visible()
    labels = [item.locator("a").inner_text() for item in items.all()]
    assert len(set(labels)) == 6 and all(label.startswith("same.mp4 · ") for label in labels), labels
    page.screenshot(path=str(artifacts / "asset-search.png"))

    victim = twins[0]
    page.goto(f"{server.url}/#/asset/{victim}/overview")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-asset")
    page.wait_for_url(f"{server.url}/#/")
    page.wait_for_function(f"() => !document.querySelector(\"#asset-list li[data-asset-id='{victim}']\")")
    assert victim not in [a["asset_id"] for a in dataplane.list_assets()]
    assert not (error_bar(page) or "")


def test_results_are_drawn_as_their_pages_arrive(page, synthetic):
    server, asset_id = synthetic["server"], synthetic["ids"]["crowd"]
    held = []

    def pages(route):
        if "cursor=" in route.request.url:
            held.append(route)
        else:
            route.continue_()

    page.route(f"{server.url}/metadata/{asset_id}/PoseDetection*", pages)
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    wait_for_pose(page)
    page.wait_for_function("() => document.querySelectorAll('table.people tbody tr').length > 0")
    assert len(held) == 1
    assert page.locator("table.people tbody tr").count() == 5  # the first page: frames 0-1 s, tracks 1-5
    assert "so far" in page.locator(".loading-note").inner_text()
    seek(page, 1.0)
    assert page.get_attribute("canvas.pose-overlay", "data-persons") == "5"
    deadline = time.monotonic() + 30
    while not page.locator("[data-complete=true]").count():  # release the held pages one by one
        assert time.monotonic() < deadline, "the document never completed"
        if held:
            held.pop().continue_()
        page.wait_for_timeout(100)
    assert page.locator("table.people tbody tr").count() == 20
    assert page.locator(".loading-note").inner_text() == ""


# --- #10 items 10, 11: accessibility and phones ---------------------------------------------------------------
TEXT_COLOURS_JS = """
() => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return [r, g, b, a]; };
  const background = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c[3] > 0.5) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const node of document.querySelectorAll('body *')) {
    if (!node.checkVisibility || !node.checkVisibility()) continue;
    if (node.closest('[disabled], video, canvas, option')) continue;
    const text = [...node.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join('');
    if (!text) continue;
    const style = getComputedStyle(node);
    out.push({ text: text.slice(0, 40), tag: node.tagName, cls: node.className, fg: parse(style.color).slice(0, 3),
               bg: background(node), size: parseFloat(style.fontSize), weight: Number(style.fontWeight) || 400 });
  }
  return out;
}
"""


def contrast(fg, bg) -> float:
    def luminance(rgb):
        channels = [c / 255 for c in rgb]
        channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_accessibility_names_heading_and_wcag_aa_contrast(page, synthetic, artifacts):
    server = synthetic["server"]
    checked = 0
    for url in (f"{server.url}/#/asset/{synthetic['ids']['crowd']}/pose",
                f"{server.url}/#/asset/{synthetic['ids']['running']}/overview",
                f"{server.url}/#/asset/0123456789abcdef0123456789abcdef"):
        page.goto(url)
        page.wait_for_selector("#asset-list li[data-asset-id]")
        if "pose" in url:
            wait_for_pose(page)
            page.wait_for_selector("[data-complete=true]")
            page.locator("tr[data-track-id='2'] button.follow").click()  # a pressed toggle too
        elif "overview" in url:
            page.wait_for_selector("#analyse")
        else:
            page.wait_for_selector("#error-bar:not([hidden])")
        assert page.locator("h1").count() == 1
        unnamed = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button, [role=slider]')]
          .filter((e) => e.checkVisibility() || e.type === 'file')
          .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
          .map((e) => e.outerHTML.slice(0, 80))""")
        assert not unnamed, unnamed
        failures = []
        for item in page.evaluate(TEXT_COLOURS_JS):
            ratio = contrast(item["fg"], item["bg"])
            large = item["size"] >= 24 or (item["size"] >= 18.66 and item["weight"] >= 700)
            if ratio < (3.0 if large else 4.5):
                failures.append((round(ratio, 2), item))
            checked += 1
        assert not failures, failures
    assert checked > 100
    page.screenshot(path=str(artifacts / "a11y-error-state.png"))
    # The timeline is a keyboard slider with a name and a value.
    page.goto(f"{server.url}/#/asset/{synthetic['ids']['crowd']}/pose")
    wait_for_pose(page)
    slider = page.get_by_role("slider", name="timeline: people per sampled frame; arrows step between samples")
    slider.focus()
    page.keyboard.press("End")
    assert slider.get_attribute("aria-valuenow") == slider.get_attribute("aria-valuemax")


def test_phone_shows_the_video_first_without_bars(browser, synthetic, artifacts):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, bypass_csp=True)
    page = context.new_page()
    try:
        server = synthetic["server"]
        page.goto(f"{server.url}/#/asset/{synthetic['ids']['jump']}/pose")
        wait_for_pose(page)
        seek(page, 0.5)
        layout = page.evaluate("""() => {
          const v = document.querySelector('video.pose-video').getBoundingClientRect();
          const c = document.querySelector('canvas.pose-overlay');
          const [x, y, w, h] = c.dataset.rect.split(',').map(Number);
          return { videoTop: v.top, videoWidth: v.width, videoHeight: v.height, picture: [x, y, w, h],
                   sidebarTop: document.querySelector('.sidebar').getBoundingClientRect().top,
                   scrollWidth: document.documentElement.scrollWidth };
        }""")
        page.screenshot(path=str(artifacts / "phone-pose.png"))
        assert layout["scrollWidth"] <= 390
        assert layout["videoTop"] < 200 and layout["videoTop"] < layout["sidebarTop"], layout
        x, y, w, h = layout["picture"]
        assert layout["videoWidth"] >= 360 and abs(w - layout["videoWidth"]) <= 1 and x <= 1 and y <= 1, layout
        assert layout["videoHeight"] - h <= 74, layout  # only the band for the controls, no bars around
        assert abs(w / h - 16 / 9) < 0.02
    finally:
        context.close()


def test_full_screen_keeps_the_skeletons_and_the_controls_band(page, synthetic, artifacts):
    server, asset_id = synthetic["server"], synthetic["ids"]["jump"]
    document = api_document(server, asset_id)
    page.goto(f"{server.url}/#/asset/{asset_id}/pose")
    wait_for_pose(page)
    seek(page, 0.5)
    page.click("#fullscreen")
    page.wait_for_function("() => document.fullscreenElement?.classList.contains('stage')")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    keypoints = document["frames"][1]["persons"][1]["keypoints"]
    result = probe(page, keypoints)
    page.screenshot(path=str(artifacts / "pose-fullscreen.png"))
    assert all(result["hits"]) and result["letterboxInk"] == 0, result
    x0, y0, w, h = result["picture"]
    assert 70 <= result["video"][1] - h <= 74, result  # the band for the native controls stays under the picture
    assert page.locator("#fullscreen").inner_text() == "Exit full screen"
    page.keyboard.press("f")
    page.wait_for_function("() => !document.fullscreenElement")


def test_progress_from_the_dataplanes_own_record(page, synthetic):
    """The same, unmocked: the engine's progress write (update_execution(progress=...)) reaches the list."""
    server, dataplane, asset_id = synthetic["server"], synthetic["dataplane"], synthetic["ids"]["running"]
    execution = synthetic["execution"]
    dataplane.update_execution(execution, stage="PoseDetectionStage", stage_status="Started", progress=(5, 50))
    page.goto(f"{server.url}/")
    text = page.locator(f"#asset-list li[data-asset-id='{asset_id}'] .progress-text")
    text.wait_for()
    assert text.inner_text().startswith("PoseDetection: 5 / 50 frames")
    dataplane.update_execution(execution, stage="PoseDetectionStage", progress=(25, 50))
    page.wait_for_function(f"() => /PoseDetection: 25 \\/ 50 frames · about \\d+ s left/.test("
                           f"document.querySelector(\"#asset-list li[data-asset-id='{asset_id}'] .progress-text\").textContent)")
