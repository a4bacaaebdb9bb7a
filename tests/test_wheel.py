"""The wheel works anywhere: built (through the sdist), installed in a fresh venv outside the checkout, then
``mie-pose install-models``, ``analyze`` on a real street clip, ``serve``, and the page in a browser.

Nothing of the checkout is on the path: the venv is made in a temporary folder, the commands run there with
a clean environment, and the test checks that the package, its web app and its detector weights are the
venv's own files. Downloads come from the index through pip's cache, so a re-run is quick.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DETECTOR = "mie_pose/models/person-detector-nanodet/nanodet-m-416-fp16.tflite"
POSE_ESTIMATOR = "mie_pose/models/pose-estimator-movenet/movenet-lightning-fp16.tflite"
LANDMARKS = "mie_pose/models/pose-estimator-blazepose/pose-landmark-full-pruned.tflite"
SHIPPED = (DETECTOR, POSE_ESTIMATOR, LANDMARKS)
# Weights whose upstream states no licence must never ship (models/PROVENANCE.md).
UNLICENSED = "mie_pose/models/person-detector-centernet/centernet-mbv3-coco-512-fp16.tflite"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def run(command: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist, and the wheel built from it (what ``python -m build`` does)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out, env=dict(os.environ))
    return {"sdist": next(out.glob("mie_pose-*.tar.gz")), "wheel": next(out.glob("mie_pose-*-py3-none-any.whl"))}


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> dict:
    """A fresh venv outside the checkout with the wheel installed, and a clean environment that uses it."""
    place = tmp_path_factory.mktemp("elsewhere")
    venv = place / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=place, env=dict(os.environ))
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "VIRTUAL_ENV", "MIE_POSE_MODEL_DIR", "MIE_POSE_WEBAPP",
                          "MIE_POSE_PERSON_DETECTOR", "PYTHONHOME"}}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", MIE_POSE_HOME=str(place / "home"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(dist["wheel"])], cwd=place, env=env)
    return {"venv": venv, "env": env, "place": place}


def test_the_sdist_and_the_wheel_carry_the_web_app_and_the_weights(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
    assert {"mie_pose/webapp/index.html", "mie_pose/webapp/js/main.js", *SHIPPED} <= names
    folders = [weights.rsplit("/", 1)[0] for weights in SHIPPED]
    assert {f"{folder}/{name}" for folder in folders for name in ("LICENSE", "NOTICE")} <= names
    assert UNLICENSED not in names
    assert not any(name.endswith(".py") and name.startswith("mie_pose/models/") and "/code/" not in name
                   for name in names)  # the models folder's build scripts are not modules of the package
    with tarfile.open(dist["sdist"]) as sdist:
        members = {member.name.partition("/")[2]: member for member in sdist.getmembers()}
    assert members["source/mie_pose/webapp/index.html"].isfile()
    for weights in SHIPPED:
        assert members[f"source/{weights}"].isfile() and members[f"source/{weights}"].size > 1_000_000
    assert not any(name.startswith(("models/", "webapp/")) for name in members)  # shipped once, as package data
    assert f"source/{UNLICENSED}" not in members


def test_installed_package_uses_only_its_own_files(installed):
    python = installed["venv"] / "bin" / "python"
    probe = ("import json, mie_pose, mie_pose.resources as r; print(json.dumps([mie_pose.__file__, str(r.webapp_dir()),"
             " str(r.model_file('person-detector-nanodet/nanodet-m-416-fp16.tflite')),"
             " str(r.model_file('pose-estimator-movenet/movenet-lightning-fp16.tflite'))]))")
    paths = json.loads(run([str(python), "-c", probe], cwd=installed["place"], env=installed["env"]).stdout)
    site = installed["venv"].resolve()
    for path in map(Path, paths):
        assert site in path.resolve().parents and ROOT not in path.resolve().parents, path
        assert path.exists(), path


def test_install_models_analyze_serve_and_the_page(installed, vtest_mp4):
    venv, env, place = installed["venv"], installed["env"], installed["place"]
    cli = str(venv / "bin" / "mie-pose")
    run([cli, "install-models"], cwd=place, env=env)
    clip = place / "street.mp4"
    shutil.copyfile(vtest_mp4, clip)
    out = place / "street-pose.json"
    result = run([cli, "analyze", str(clip), "--fps", "1", "--max-frames", "3", "--no-progress",
                  "--output", str(out)], cwd=place, env=env)
    asset_id = result.stdout.splitlines()[0].split()[1]
    document = json.loads(out.read_text())
    assert len(document["frames"]) == 3
    assert sum(len(frame["persons"]) for frame in document["frames"]) >= 6  # pedestrians in every frame

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([cli, "serve", "--port", str(port)], cwd=place, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/asset", timeout=5) as response:
                    assets = json.load(response)["assets"]
                break
            except OSError:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "mie-pose serve did not answer within 60 s"
                time.sleep(0.3)
        assert [asset["asset_id"] for asset in assets] == [asset_id]
        with urllib.request.urlopen(f"{url}/") as response:
            assert response.status == 200 and b"<html" in response.read()
        _the_page_lists_the_asset(url, asset_id, "street.mp4")
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "web app not found" not in stderr


def _the_page_lists_the_asset(url: str, asset_id: str, name: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: install Debian package chromium (./run test does)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}/")
            item = page.locator(f"#asset-list li[data-asset-id='{asset_id}']", has_text=name)
            item.wait_for(timeout=30_000)
            item.locator(".badge", has_text="Complete").wait_for(timeout=30_000)
            assert not errors, errors
        finally:
            browser.close()
