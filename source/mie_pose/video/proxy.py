"""Browser proxies: an H.264 copy of an asset's video for players that cannot decode the original.

Why: OpenCV writes MPEG-4 Part 2 (``mp4v``) and users upload AVI or MKV; browsers play neither, so the
Pose tab would show an empty player. The proxy is made once with Debian's ffmpeg (libx264, yuv420p,
faststart, timestamps passed through so overlay times still match) and cached next to the asset's
media as ``proxy/browser.mp4``. Without ffmpeg the original is used and the reason is reported.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from ..storage import BROWSER_PROXY_NAME, MediaLocation, browser_proxy_location

log = logging.getLogger("mie_pose.video.proxy")

PROXY_NAME = BROWSER_PROXY_NAME
# (container names ffprobe reports, codecs) that Chromium, Firefox and Safari all play as they are.
_PLAYABLE = [
    ({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}, {"h264"}),
    ({"matroska", "webm"}, {"vp8", "vp9", "av1"}),
]
_PLAYABLE_PIX_FMTS = {"yuv420p", "yuvj420p"}
TRANSCODE_TIMEOUT_S = 1800

_locks: dict[str, threading.Lock] = {}
_playable: dict[tuple, bool] = {}
_failed: dict[Path, str] = {}  # originals ffmpeg could not convert, so a bad file is tried once per process
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class BrowserMedia:
    """What to send a browser for one asset: ``kind`` is original, proxy or unconverted (see ``reason``)."""

    path: Path
    kind: str
    reason: str = ""


def source_path(dataplane, asset_id: str) -> Path:
    asset = dataplane.get_asset(asset_id)
    return dataplane.storage.path_for(MediaLocation.from_event(asset["media"]["Video"]))


def proxy_path(dataplane, asset_id: str) -> Path:
    """Where the proxy lives: ``private/assets/<id>/proxy/browser.mp4`` beside the asset's input."""
    video = MediaLocation.from_event(dataplane.get_asset(asset_id)["media"]["Video"])
    return dataplane.storage.path_for(browser_proxy_location(video))


def browser_media(dataplane, asset_id: str, ffmpeg: str | None = None) -> BrowserMedia:
    """Return the file to play in a browser, making the H.264 proxy first when the original needs one."""
    original = source_path(dataplane, asset_id)
    proxy = proxy_path(dataplane, asset_id)
    if proxy.is_file():
        return BrowserMedia(proxy, "proxy")
    ffmpeg = ffmpeg or shutil.which("ffmpeg")
    if ffmpeg is None:
        log.warning("ffmpeg is missing: serving %s as it is; browsers may not play it", original.name)
        return BrowserMedia(original, "unconverted", "ffmpeg is missing")
    if _playable_cached(original, ffmpeg):
        return BrowserMedia(original, "original")
    with _lock_for(asset_id):
        if proxy.is_file():  # another thread made it while this one waited
            return BrowserMedia(proxy, "proxy")
        if original in _failed:
            return BrowserMedia(original, "unconverted", _failed[original])
        try:
            transcode_h264(original, proxy, ffmpeg)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("no browser proxy for asset %s: %s", asset_id, exc)
            _failed[original] = f"transcoding failed: {_one_line(exc)}"
            return BrowserMedia(original, "unconverted", _failed[original])
    return BrowserMedia(proxy, "proxy")


def ensure_browser_proxy(dataplane, asset_id: str, ffmpeg: str | None = None) -> Path:
    """Make (once) and return the browser-playable file of an asset; the original when that is playable
    already, or when no proxy can be made (logged)."""
    return browser_media(dataplane, asset_id, ffmpeg).path


def is_browser_playable(path: Path, ffprobe: str | None) -> bool:
    """True when the container and first video stream are ones every major browser decodes."""
    if ffprobe is None:
        return False
    try:
        result = subprocess.run(
            [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
             "format=format_name:stream=codec_name,pix_fmt", "-of", "json", str(path)],
            capture_output=True, timeout=60, check=True)
        info = json.loads(result.stdout)
        formats = set(info["format"]["format_name"].split(","))
        stream = info["streams"][0]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return False
    if stream.get("pix_fmt") not in _PLAYABLE_PIX_FMTS:
        return False
    return any(formats & containers and stream.get("codec_name") in codecs for containers, codecs in _PLAYABLE)


def transcode_h264(source: Path, target: Path, ffmpeg: str = "ffmpeg") -> Path:
    """Write an H.264/yuv420p/faststart mp4 of ``source`` at ``target`` (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{target.name}")
    command = [
        ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(source),
        "-map", "0:v:0", "-map", "0:a:0?",
        # yuv420p needs even sizes; keep the timestamps so overlay times stay those of the original.
        "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-fps_mode", "passthrough",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-movflags", "+faststart", "-f", "mp4", str(partial),
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=TRANSCODE_TIMEOUT_S)
        if result.returncode != 0:
            raise subprocess.SubprocessError(result.stderr.decode(errors="replace").strip() or "ffmpeg failed")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("browser proxy written: %s", target)
    return target


def _playable_cached(path: Path, ffmpeg: str) -> bool:
    """is_browser_playable, asked once per file version: a player sends many range requests."""
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _playable:
        _playable[key] = is_browser_playable(path, _ffprobe_beside(ffmpeg))
    return _playable[key]


def _ffprobe_beside(ffmpeg: str) -> str | None:
    sibling = Path(ffmpeg).with_name("ffprobe")
    return str(sibling) if sibling.is_file() else shutil.which("ffprobe")


def _lock_for(asset_id: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(asset_id, threading.Lock())


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__
