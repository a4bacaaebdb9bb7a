"""Build the OpenCV Lambda layer zip (``python/`` with numpy + opencv-python-headless) without Docker.

    python opencv/build_layer.py OUT.zip [--requirements opencv/ffmpeg-requirements.txt]

The same builder makes the ffmpeg layer from ``ffmpeg-requirements.txt`` (PyPI imageio-ffmpeg: its
manylinux wheel holds a static ffmpeg, found by ``mie_pose.video.proxy.find_ffmpeg``); a layer of its own,
since OpenCV's and ffmpeg together exceed Lambda's 250 MB unzipped limit.

pip fetches manylinux wheels for Lambda's platform (``--platform manylinux2014_x86_64 --python-version 3.11
--only-binary=:all:``), whatever the build machine runs. Downloads go through pip's own cache
(~/.cache/pip); the finished zip is cached in ~/.cache/mie-pose keyed by requirements.txt, so a second
build is a copy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
FFMPEG_REQUIREMENTS = HERE / "ffmpeg-requirements.txt"
PLATFORM_ARGS = ["--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.11",
                 "--only-binary=:all:"]
# Not needed at run time: tests, headers and caches (the unzipped layer must stay under Lambda's 250 MB).
PRUNE_DIRS = {"__pycache__", "tests", "testing", "include"}


def cache_dir() -> Path:
    return Path(os.environ.get("MIE_POSE_CACHE") or Path.home() / ".cache" / "mie-pose")


def requirements_key(requirements: Path = REQUIREMENTS) -> str:
    return hashlib.sha256(requirements.read_bytes() + " ".join(PLATFORM_ARGS).encode()).hexdigest()[:16]


def install(target: Path, requirements: Path = REQUIREMENTS) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--no-warn-conflicts",
               "--target", str(target), *PLATFORM_ARGS, "-r", str(requirements)]
    subprocess.run(command, check=True)


def zip_tree(root: Path, zip_path: Path) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(part in PRUNE_DIRS for part in relative.parts[:-1]) or path.suffix == ".pyc":
                continue
            if path.is_file():
                archive.write(path, relative.as_posix())  # keeps the mode: ffmpeg stays executable


def build_layer(out_zip: Path, use_cache: bool = True, requirements: Path = REQUIREMENTS) -> Path:
    out_zip = Path(out_zip)
    requirements = Path(requirements)
    name = "opencv" if requirements.resolve() == REQUIREMENTS else requirements.stem.removesuffix("-requirements")
    cached = cache_dir() / f"{name}-layer-{requirements_key(requirements)}.zip"
    if use_cache and cached.is_file():
        out_zip.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, out_zip)
        return out_zip
    with tempfile.TemporaryDirectory(prefix="mie-pose-layer-") as tmp:
        python_dir = Path(tmp) / "python"
        install(python_dir, requirements)
        zip_tree(Path(tmp), out_zip)
    if use_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out_zip, cached)
    return out_zip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_zip", type=Path)
    parser.add_argument("--no-cache", action="store_true", help="rebuild even when a cached zip exists")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS,
                        help=f"what the layer holds (default {REQUIREMENTS.name}; {FFMPEG_REQUIREMENTS.name}: ffmpeg)")
    args = parser.parse_args(argv)
    path = build_layer(args.out_zip, use_cache=not args.no_cache, requirements=args.requirements)
    print(f"Layer: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
