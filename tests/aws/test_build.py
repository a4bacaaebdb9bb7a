"""./build-s3-dist.sh --no-upload produces every asset; bad arguments fail with a message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

from packaging.requirements import Requirement

from .conftest import ROOT, load_build_assets

build_assets = load_build_assets()

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
    assert any("cpython-311-x86_64-linux-gnu" in n for n in names)
    assert not any(n.startswith(("python/cv2/data/", "python/bin/")) for n in names)  # pruned
    # numpy and OpenCV in the base package's ranges (pyproject.toml), whatever they are.
    base = build_assets._layer_builder().base_dependencies()
    for package in ("numpy", "opencv-python-headless"):
        versions = [n.split("/")[1].removesuffix(".dist-info").rsplit("-", 1)[1] for n in names
                    if n.startswith(f"python/{package.replace('-', '_')}-") and n.endswith(".dist-info/METADATA")]
        assert len(versions) == 1 and Requirement(base[package]).specifier.contains(versions[0]), (package, versions)
    assert "scipy" not in {n.split("/")[1] for n in names}

    # The BrowserProxy function's layer: imageio-ffmpeg's static ffmpeg, executable once unzipped.
    with zipfile.ZipFile(regional / "ffmpeg-layer.zip") as archive:
        binaries = [i for i in archive.infolist() if i.filename.startswith("python/imageio_ffmpeg/binaries/ffmpeg-")]
        unzipped = sum(i.file_size for i in archive.infolist())
    assert len(binaries) == 1 and binaries[0].external_attr >> 16 & 0o111 == 0o111
    assert unzipped < 150e6  # plus the function's code, well under Lambda's 250 MB

    # Every function's code + layers, as the template attaches them, fit Lambda's unzipped limit.
    assert "code + layers unzip to" in result.stdout
    sizes = build_assets.check_function_sizes(template, regional)
    assert set(sizes) == {n for n, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
    assert max(sizes.values()) < build_assets.LAMBDA_UNZIPPED_LIMIT
    assert all(template["Resources"][n]["Properties"]["Runtime"] == {"Ref": "LambdaRuntime"} for n in sizes)
    assert template["Parameters"]["LambdaRuntime"]["AllowedValues"] == ["python3.11"]

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


def test_a_function_over_lambdas_unzipped_limit_fails_the_build(tmp_path):
    template = {"Resources": {
        "Layer": {"Type": "AWS::Lambda::LayerVersion", "Properties": {"Content": {"S3Key": "v/big-layer.zip"}}},
        "Small": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": "v/code.zip"}}},
        "Big": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": "v/code.zip"},
                                                                "Layers": [{"Ref": "Layer"}]}}}}
    for name, size in (("code.zip", 1000), ("big-layer.zip", 5000)):
        with zipfile.ZipFile(tmp_path / name, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("python/blob.bin", b"\0" * size)  # compresses to almost nothing: unzipped counts
    assert build_assets.check_function_sizes(template, tmp_path, limit=10_000) == {"Small": 1000, "Big": 6000}
    try:
        build_assets.check_function_sizes(template, tmp_path, limit=6000)
    except build_assets.BuildError as exc:
        assert "Big 6,000" in str(exc) and "Small" not in str(exc)
    else:
        raise AssertionError("6,000 bytes against a 6,000 byte limit must fail")


def test_layer_versions_come_from_the_base_package(tmp_path):
    builder = build_assets._layer_builder()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["numpy>=2.1", "Opencv_Python-Headless>=4.10,<5; '
                         'python_version >= \'3.11\'"]\n')
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nnumpy\nopencv-python-headless\nimageio-ffmpeg==0.7.0\n")
    assert builder.layer_requirements(requirements, pyproject) == [
        "numpy>=2.1", "Opencv_Python-Headless>=4.10,<5", "imageio-ffmpeg==0.7.0"]
    requirements.write_text("scipy\n")
    try:
        builder.layer_requirements(requirements, pyproject)
    except ValueError as exc:
        assert "scipy" in str(exc)
    else:
        raise AssertionError("a bare name that pyproject.toml does not list must fail")
    # Python 3.11 Lambdas run on Amazon Linux 2 (glibc 2.26): manylinux2014 wheels only.
    assert builder.platform_args("python3.11")[:2] == ["--platform", "manylinux2014_x86_64"]
    assert "manylinux_2_28_x86_64" not in builder.platform_args("python3.11")
