"""Build a Lambda layer zip (``python/`` with numpy + opencv-python-headless) without Docker.

    python opencv/build_layer.py OUT.zip [--requirements opencv/ffmpeg-requirements.txt] [--runtime python3.11]

The same builder makes the ffmpeg layer from ``ffmpeg-requirements.txt`` (PyPI imageio-ffmpeg: its
manylinux wheel holds a static ffmpeg, found by ``mie_pose.video.proxy.find_ffmpeg``); a layer of its own,
since OpenCV's and ffmpeg together exceed Lambda's 250 MB unzipped limit.

Versions: a bare name in a requirements file takes its version range from the base package's dependencies
in ``pyproject.toml`` (one floor for the package and its Lambdas); a line with a version keeps it.

pip fetches wheels for the Lambda runtime's Python and platform (``RUNTIMES``: python3.11 runs on Amazon
Linux 2, glibc 2.26, so manylinux2014 wheels only; python3.12+ on Amazon Linux 2023), whatever the build
machine runs. Downloads go through pip's own cache (~/.cache/pip); the finished zip is cached in
~/.cache/mie-pose keyed by the resolved requirements and the platform, so a second build is a copy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
FFMPEG_REQUIREMENTS = HERE / "ffmpeg-requirements.txt"
PYPROJECT = HERE.parent / "pyproject.toml"
DEFAULT_RUNTIME = "python3.11"
# Lambda runtime -> (Python version, the manylinux tags its operating system's glibc runs).
RUNTIMES = {
    "python3.11": ("3.11", ["manylinux2014_x86_64"]),
    "python3.12": ("3.12", ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"]),
    "python3.13": ("3.13", ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"]),
}
# Not needed at run time: tests, headers, caches, console scripts and OpenCV's Haar cascades (9 MB; nothing
# here detects with them). The unzipped layer must stay under Lambda's 250 MB with the function's code.
PRUNE_DIRS = {"__pycache__", "tests", "testing", "include"}
PRUNE_PREFIXES = ("python/bin/", "python/cv2/data/")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def platform_args(runtime: str = DEFAULT_RUNTIME) -> list[str]:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown Lambda runtime {runtime!r} (one of {', '.join(RUNTIMES)})")
    version, platforms = RUNTIMES[runtime]
    args = [arg for platform in platforms for arg in ("--platform", platform)]
    return [*args, "--implementation", "cp", "--python-version", version, "--only-binary=:all:"]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_dependencies(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """{normalized name: requirement line} of the base package's dependencies."""
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    found = {}
    for line in project.get("dependencies", []):
        match = _NAME.match(line.split(";")[0].strip())
        if match:
            found[_normalized(match.group(1))] = line.split(";")[0].strip()
    return found


def layer_requirements(requirements: Path = REQUIREMENTS, pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement lines pip installs: bare names get the base package's range from pyproject.toml."""
    base = None
    lines = []
    for raw in Path(requirements).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _NAME.match(line)
        if match and not match.group(3):
            base = base_dependencies(pyproject) if base is None else base
            name = _normalized(match.group(1))
            if name not in base:
                raise ValueError(f"{Path(requirements).name}: {match.group(1)} has no version here and is not a "
                                 f"dependency in {Path(pyproject).name}")
            line = base[name]
        lines.append(line)
    return lines


def cache_dir() -> Path:
    return Path(os.environ.get("MIE_POSE_CACHE") or Path.home() / ".cache" / "mie-pose")


def requirements_key(requirements: Path = REQUIREMENTS, runtime: str = DEFAULT_RUNTIME) -> str:
    text = "\n".join([*layer_requirements(requirements), *platform_args(runtime), *PRUNE_PREFIXES])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def install(target: Path, requirements: Path = REQUIREMENTS, runtime: str = DEFAULT_RUNTIME) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--no-warn-conflicts", "--target", str(target), *platform_args(runtime),
               *layer_requirements(requirements)]
    subprocess.run(command, check=True)


def zip_tree(root: Path, zip_path: Path) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(part in PRUNE_DIRS for part in relative.parts[:-1]) or path.suffix == ".pyc" \
                    or relative.as_posix().startswith(PRUNE_PREFIXES):
                continue
            if path.is_file():
                archive.write(path, relative.as_posix())  # keeps the mode: ffmpeg stays executable


def build_layer(out_zip: Path, use_cache: bool = True, requirements: Path = REQUIREMENTS,
                runtime: str = DEFAULT_RUNTIME) -> Path:
    out_zip = Path(out_zip)
    requirements = Path(requirements)
    name = "opencv" if requirements.resolve() == REQUIREMENTS else requirements.stem.removesuffix("-requirements")
    cached = cache_dir() / f"{name}-layer-{runtime}-{requirements_key(requirements, runtime)}.zip"
    if use_cache and cached.is_file():
        out_zip.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, out_zip)
        return out_zip
    with tempfile.TemporaryDirectory(prefix="mie-pose-layer-") as tmp:
        python_dir = Path(tmp) / "python"
        install(python_dir, requirements, runtime)
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
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, choices=sorted(RUNTIMES),
                        help="the Lambda runtime the layer is for (its Python and platform)")
    args = parser.parse_args(argv)
    path = build_layer(args.out_zip, use_cache=not args.no_cache, requirements=args.requirements,
                       runtime=args.runtime)
    print(f"Layer: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
