"""Browser proxies: an H.264 copy of an asset's video for players that cannot decode the original.

Why: OpenCV writes MPEG-4 Part 2 (``mp4v``) and users upload AVI or MKV; browsers play neither, so the
Pose tab would show an empty player. The proxy is made once with Debian's ffmpeg (libx264, yuv420p,
faststart, timestamps passed through so overlay times still match) and cached next to the asset's
media as ``proxy/browser.mp4``. Without ffmpeg the original is used and the reason is reported.

The decision (``needs_browser_proxy``) and the command (``transcode_h264``) are shared with the AWS
BrowserProxy step (``mie_pose.aws.browser_proxy``), which runs where only a static ffmpeg exists (PyPI
``imageio-ffmpeg``, no ffprobe, no OpenCV): ``find_ffmpeg`` falls back to that binary, and without ffprobe
the container, codec and pixel format are read from ``ffmpeg -i``'s stream summary.
"""

from __future__ import annotations

import json
import logging
import os
import re
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
    ffmpeg = ffmpeg or find_ffmpeg()
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


def find_ffmpeg() -> str | None:
    """ffmpeg on PATH, else the static binary of PyPI ``imageio-ffmpeg`` when that is installed (the AWS
    layer's), else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg  # noqa: PLC0415  (optional)

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001  (not installed, or its binary is missing: no ffmpeg)
        return None


@dataclass(frozen=True)
class StreamInfo:
    """What the playability decision needs: container names, first video stream's codec and pixel format."""

    formats: frozenset
    codec: str | None
    pix_fmt: str | None

    def browser_playable(self) -> bool:
        if self.pix_fmt not in _PLAYABLE_PIX_FMTS:
            return False
        return any(self.formats & containers and self.codec in codecs for containers, codecs in _PLAYABLE)


def probe_stream(path: Path, ffmpeg: str | None, ffprobe: str | None = None) -> StreamInfo | None:
    """The container and first video stream of ``path`` by ffprobe when given, else by ``ffmpeg -i``; None
    when neither tool is there or the file is not readable media."""
    try:
        if ffprobe:
            result = subprocess.run(
                [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                 "format=format_name:stream=codec_name,pix_fmt", "-of", "json", str(path)],
                capture_output=True, timeout=60, check=True)
            info = json.loads(result.stdout)
            stream = info["streams"][0]
            return StreamInfo(frozenset(info["format"]["format_name"].split(",")), stream.get("codec_name"),
                              stream.get("pix_fmt"))
        if ffmpeg:
            # No output file: ffmpeg prints the input summary and exits 1 ("At least one output file...").
            result = subprocess.run([ffmpeg, "-nostdin", "-hide_banner", "-i", str(path)],
                                    capture_output=True, timeout=60)
            return parse_ffmpeg_summary(result.stderr.decode(errors="replace"))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None
    return None


_INPUT_LINE = re.compile(r"^Input #0, (?P<formats>.+?), from ", re.MULTILINE)
_VIDEO_LINE = re.compile(r"^\s*Stream #0:\d+\S*: Video: (?P<rest>.+)$", re.MULTILINE)


def parse_ffmpeg_summary(text: str) -> StreamInfo | None:
    """The container names and first video stream of ``ffmpeg -i``'s summary, e.g.::

        Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'clip.mp4':
          Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), ...

    (the names ffprobe reports as format_name, codec_name and pix_fmt)."""
    source, video = _INPUT_LINE.search(text), _VIDEO_LINE.search(text)
    if not source or not video:
        return None
    fields = _top_level_fields(video.group("rest"))
    codec = fields[0].split()[0] if fields and fields[0].split() else None
    pix_fmt = (re.match(r"\w*", fields[1]).group(0) or None) if len(fields) > 1 else None
    return StreamInfo(frozenset(name.strip() for name in source.group("formats").split(",")), codec, pix_fmt)


def _top_level_fields(text: str) -> list[str]:
    """Split on commas outside parentheses: ``yuv420p(tv, bt709)`` stays one field."""
    fields, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return fields


def is_browser_playable(path: Path, ffmpeg: str | None, ffprobe: str | None = None) -> bool:
    """True when the container and first video stream are ones every major browser decodes (False when it
    cannot be told: no ffmpeg/ffprobe, or not media)."""
    info = probe_stream(path, ffmpeg, ffprobe)
    return info is not None and info.browser_playable()


def needs_browser_proxy(path: Path, ffmpeg: str) -> bool:
    """The decision, local and on AWS: ffprobe beside ffmpeg (or on PATH) when there is one, else ffmpeg."""
    return not is_browser_playable(path, ffmpeg, _ffprobe_beside(ffmpeg))


def transcode_h264(source: Path, target: Path, ffmpeg: str = "ffmpeg", timeout_s: float = TRANSCODE_TIMEOUT_S) -> Path:
    """Write an H.264/yuv420p/faststart mp4 of ``source`` at ``target`` (atomically); give up (TimeoutExpired)
    after ``timeout_s``."""
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
        result = subprocess.run(command, capture_output=True, timeout=timeout_s)
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
        _playable[key] = not needs_browser_proxy(path, ffmpeg)
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
