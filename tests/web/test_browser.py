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
  const fit = getComputedStyle(video).objectFit;
  const scale = Math.min(vr.width / video.videoWidth, vr.height / video.videoHeight);
  const w = video.videoWidth * scale, h = video.videoHeight * scale;
  const x0 = vr.left - cr.left + (vr.width - w) / 2, y0 = vr.top - cr.top + (vr.height - h) / 2;
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
  return { fit, hits, ink, letterboxInk, picture: [x0, y0, w, h], box: [cr.width, cr.height],
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
        cursor = page["cursor"]
        if cursor is None:
            return document


def open_pose_tab(page, server, asset_id: str) -> None:
    page.goto(f"{server.url}/#/asset/{asset_id}")
    page.wait_for_selector("table.executions")
    page.click("a[data-tab=pose]")
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
        width, height = result["box"]
        x0, y0, w, h = result["picture"]
        assert (x0 > 1) != (y0 > 1), f"{label}: a square clip is letterboxed on one axis, got {result['picture']}"

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
    with page.expect_download() as download_info:
        page.click("button.download")
    path = artifacts / "download.json"
    download_info.value.save_as(str(path))
    assert json.loads(path.read_text()) == document


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
    asset_id = item.get_attribute("data-asset-id")
    assert page.url.endswith(f"#/asset/{asset_id}")
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
