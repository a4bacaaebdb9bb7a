"""The dependency floor: the package and all its extras resolve for CPython 3.11, 3.12 and 3.13 on manylinux x86_64.

pip resolves the requirements of pyproject.toml (base + every extra together: a set that resolves as a whole
resolves in any part) for each Python with ``pip install --dry-run --only-binary :all: --python-version X
--platform ...``, so no interpreter of that version is needed. It asks the package index (PyPI), so a result
is kept for a week in ~/.cache/mie-pose/resolution/, keyed by the requirements, the Python and the platforms:
a re-run with unchanged requirements is instant (MIE_POSE_RESOLVE_FRESH=1 asks the index again).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PYTHONS = ("3.11", "3.12", "3.13")
# glibc 2.17 (manylinux2014) to 2.28: ai-edge-litert's wheels need 2.27.
PLATFORMS = ["manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 29))]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mie-pose" / "resolution"
CACHE_SECONDS = 7 * 24 * 3600


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def requirements() -> list[str]:
    table = project()
    return [*table["dependencies"], *(r for extra in table["optional-dependencies"].values() for r in extra)]


def _report_path(python: str, reqs: list[str]) -> Path:
    key = json.dumps({"python": python, "platforms": PLATFORMS, "requirements": sorted(reqs)}).encode()
    return CACHE / f"{python}-{hashlib.sha256(key).hexdigest()[:16]}.json"


def _resolve_command(python: str, reqs: list[str], report: Path) -> list[str]:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--disable-pip-version-check", "--only-binary", ":all:", "--python-version", python,
            "--implementation", "cp", *platforms, "--report", str(report), *reqs]


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    """{python: pip's installation report}, resolved in parallel, from the cache when fresh."""
    reqs = requirements()
    CACHE.mkdir(parents=True, exist_ok=True)
    fresh = os.environ.get("MIE_POSE_RESOLVE_FRESH") == "1"
    running = {}
    for python in PYTHONS:
        path = _report_path(python, reqs)
        if fresh or not path.exists() or time.time() - path.stat().st_mtime > CACHE_SECONDS:
            tmp = path.with_suffix(".tmp")
            running[python] = (path, tmp, subprocess.Popen(_resolve_command(python, reqs, tmp), text=True,
                                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    failures = []
    for python, (path, tmp, process) in running.items():
        _, stderr = process.communicate(timeout=600)
        if process.returncode != 0:
            errors = [line for line in stderr.splitlines() if "is ignored: it is neither" not in line]
            failures.append(f"CPython {python}: " + "\n".join(errors[-15:]))
        else:
            tmp.replace(path)
    assert not failures, "dependencies do not resolve:\n" + "\n\n".join(failures)
    return {python: json.loads(_report_path(python, reqs).read_text()) for python in PYTHONS}


def _installed(report: dict) -> dict[str, str]:
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


@pytest.mark.parametrize("python", PYTHONS)
def test_base_and_every_extra_resolve_to_wheels(reports, python):
    installed = _installed(reports[python])
    for requirement in map(Requirement, requirements()):
        name = canonicalize_name(requirement.name)
        assert name in installed, f"{name} missing from the resolution for CPython {python}"
        assert requirement.specifier.contains(installed[name], prereleases=True), (name, installed[name])
    for item in reports[python]["install"]:
        assert item["download_info"]["url"].endswith(".whl"), item["download_info"]["url"]  # wheels only
    assert int(installed["numpy"].split(".")[0]) >= 2
    assert "mxnet" not in installed and "gluoncv" not in installed


def test_every_upper_bound_says_why():
    """The project's rule: no upper bound (``<``, ``<=``, ``==``, ``~=``) without a measured reason beside it."""
    lines = PYPROJECT.read_text().splitlines()
    for index, line in enumerate(lines):
        match = re.match(r'\s*"([A-Za-z0-9_.\[\],-]+\s*[^"]*)",?\s*(#.*)?$', line)
        if not match or not re.search(r"(<|==|~=)", match.group(1)):
            continue
        comment = [match.group(2) or ""]
        above = index - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            comment.append(lines[above])
            above -= 1
        assert "measured" in " ".join(comment).lower(), f"pyproject.toml line {index + 1}: {line.strip()}"


def test_the_readme_names_the_pythons_the_classifiers_name():
    classifiers = [c.rsplit(" :: ", 1)[1] for c in project()["classifiers"] if c.startswith("Programming Language")]
    assert classifiers == list(PYTHONS)
    readme = (ROOT / "README.md").read_text()
    assert all(f"3.{minor}" in readme for minor in (11, 12, 13))
    assert "Python 3.11, 3.12 and 3.13" in readme
