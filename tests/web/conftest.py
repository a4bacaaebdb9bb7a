"""Fixtures of the web tests: a dataplane with analysed clips and a live local server on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mie_pose.dataplane import SqliteDataplane
from mie_pose.server import make_server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def mie_pose_cli() -> list[str]:
    """The venv's ``mie-pose`` (or ``python -m mie_pose.cli`` when the script is not installed)."""
    script = Path(sys.executable).with_name("mie-pose")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mie_pose.cli"]


def analyze(data_dir: Path, video: Path, *extra: str) -> str:
    """Run ``mie-pose analyze`` as a user would; return the new asset id."""
    env = {**os.environ, "MIE_POSE_HOME": str(data_dir)}
    result = subprocess.run([*mie_pose_cli(), "analyze", str(video), "--no-progress", *extra],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mie-pose analyze failed: {result.stderr}"
    first = result.stdout.splitlines()[0]
    assert first.startswith("asset "), result.stdout
    return first.split()[1]


class LiveServer:
    def __init__(self, dataplane: SqliteDataplane, **options):
        self.dataplane = dataplane
        self.server = make_server(dataplane, "127.0.0.1", 0, **options)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.host, self.port, self.url = host, port, f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def short_avi(vtest_avi, media_dir) -> Path:
    """Three seconds of vtest.avi as an MJPEG AVI (a container and codec no browser plays)."""
    import cv2

    capture = cv2.VideoCapture(str(vtest_avi))
    path = media_dir / "vtest-3s.avi"
    writer = None
    for _ in range(30):
        ok, frame = capture.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    capture.release()
    writer.release()
    return path


@pytest.fixture(scope="session")
def analysed(tmp_path_factory, astronaut_mp4, black_mp4, short_avi) -> dict:
    """A data dir holding the astronaut clip (one person), a black clip and a short AVI, all analysed."""
    data_dir = tmp_path_factory.mktemp("mie-pose-home")
    return {
        "data_dir": data_dir,
        "astronaut": analyze(data_dir, astronaut_mp4),
        "black": analyze(data_dir, black_mp4),
        "avi": analyze(data_dir, short_avi),
    }


@pytest.fixture(scope="session")
def live_server(analysed):
    server = LiveServer(SqliteDataplane(analysed["data_dir"]))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def start_server():
    """start_server(dataplane, **make_server options) -> LiveServer, stopped at the end of the session."""
    servers = []

    def start(dataplane, **options) -> LiveServer:
        servers.append(LiveServer(dataplane, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
