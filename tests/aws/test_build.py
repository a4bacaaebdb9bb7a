"""./build-s3-dist.sh --no-upload produces every asset; bad arguments fail with a message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

from .conftest import ROOT

SCRIPT = ROOT / "build-s3-dist.sh"


def _run(*args, env=None, timeout=240):
    return subprocess.run([shutil.which("bash"), str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _fake_exported_models(folder):
    """The layout models/build_model_tarballs.py --no-pack writes (weights need not be real to pack them)."""
    for container, model in (("person-detector-yolo3", "yolo3_mobilenet1.0_coco"),
                             ("pose-estimator-alphapose", "alpha_pose_resnet101_v1b_coco")):
        (folder / container).mkdir(parents=True)
        (folder / container / f"{model}-symbol.json").write_text("{}")
        (folder / container / f"{model}-0000.params").write_bytes(b"\0" * 64)
    return folder


def test_build_without_upload_writes_every_asset(tmp_path):
    out = tmp_path / "dist"
    models = _fake_exported_models(tmp_path / "exported")
    result = _run("--no-upload", "--models-dir", str(models), "my-dist", "v9.9.9", "eu-west-1",
                  env={"MIE_POSE_DIST_DIR": str(out)})
    assert result.returncode == 0, result.stdout + result.stderr

    template = json.loads((out / "global-s3-assets" / "mie-pose.template").read_text())
    text = json.dumps(template)
    assert "%%" not in text and "my-dist-${AWS::Region}" in text and "mie-pose/v9.9.9/" in text
    assert (out / "global-s3-assets" / "pose-workflow.asl.json").is_file()

    regional = out / "regional-s3-assets"
    with zipfile.ZipFile(regional / "mie-pose-lambda.zip") as archive:
        names = set(archive.namelist())
    for handler in ("frame_extraction", "pose_detection", "workflow", "api", "upload_trigger", "register_workflow"):
        assert f"mie_pose/aws/{handler}.py" in names
    assert "mie_pose/workflow/pose_workflow.json" in names and "crhelper/__init__.py" in names
    assert not any("__pycache__" in name for name in names)

    with zipfile.ZipFile(regional / "opencv-layer.zip") as archive:
        names = archive.namelist()
    assert any(n.startswith("python/cv2/") for n in names) and any(n.startswith("python/numpy/") for n in names)
    assert any(n.startswith("python/numpy-1.23.5.dist-info/") for n in names)
    assert any("cpython-311-x86_64-linux-gnu" in n for n in names)

    # The BrowserProxy function's layer: imageio-ffmpeg's static ffmpeg, executable once unzipped.
    with zipfile.ZipFile(regional / "ffmpeg-layer.zip") as archive:
        binaries = [i for i in archive.infolist() if i.filename.startswith("python/imageio_ffmpeg/binaries/ffmpeg-")]
        unzipped = sum(i.file_size for i in archive.infolist())
    assert len(binaries) == 1 and binaries[0].external_attr >> 16 & 0o111 == 0o111
    assert unzipped < 150e6  # plus the function's code, well under Lambda's 250 MB

    for container in ("person-detector-yolo3", "pose-estimator-alphapose"):
        with tarfile.open(regional / "models" / container / "model.tar.gz") as tar:
            members = tar.getnames()
        assert "code/inference.py" in members and any(m.endswith("-symbol.json") for m in members)


def test_missing_arguments_fail_with_a_message():
    result = _run("only-a-prefix")
    assert result.returncode != 0 and "expected DIST_BUCKET_PREFIX VERSION REGION" in result.stderr
    result = _run("--no-upload", "--bogus", "a", "b", "c")
    assert result.returncode != 0 and "unknown option --bogus" in result.stderr


def test_models_dir_without_weights_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _run("--no-upload", "--models-dir", str(tmp_path / "empty"), "my-dist", "v1", "us-east-1",
                  env={"MIE_POSE_DIST_DIR": str(tmp_path / "dist")})
    assert result.returncode == 1 and "no exported network" in result.stderr


def test_upload_needs_the_aws_cli(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the script's tools but no aws
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = _run("my-dist", "v1", "us-east-1", env={"PATH": str(bin_dir), "MIE_POSE_DIST_DIR": str(tmp_path),
                                                     "PYTHON": sys.executable})
    assert result.returncode != 0 and "aws CLI" in result.stderr
