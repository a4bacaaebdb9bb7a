"""Build the deployment assets, as MIE lays them out (``./build-s3-dist.sh`` runs this).

    python deployment/build_assets.py --bucket-prefix PREFIX --version VERSION --region REGION \
        [--models-dir DIR | --build-models] [--out DIR] [--templates-only]

Writes under ``--out`` (default: this folder):

- ``global-s3-assets/mie-pose.template``: ``deployment/mie-pose.yaml`` as JSON, with YAML anchors expanded,
  the bucket and version filled in, the state machine generated from ``pose_workflow.json`` and the API
  paths generated from ``api/routes.py``; ``pose-workflow.asl.json`` beside it (the same definition).
- ``regional-s3-assets/mie-pose-lambda.zip``: the ``mie_pose`` package (every Lambda's code) plus crhelper.
- ``regional-s3-assets/opencv-layer.zip``: the OpenCV layer (``opencv/build_layer.py``).
- ``regional-s3-assets/ffmpeg-layer.zip``: the ffmpeg layer of the BrowserProxy function (the same builder,
  ``opencv/ffmpeg-requirements.txt``).
- ``regional-s3-assets/models/<container>/model.tar.gz``: one per SageMaker container, when weights are
  given: ``--models-dir`` (or ``MIE_POSE_MODELS_DIR``) is the output of ``models/build_model_tarballs.py
  --no-pack`` (``<container>/*-symbol.json``, ``*-0000.params``); ``--build-models`` runs that script
  (pretrained GluonCV weights: needs mxnet, gluoncv and the internet once).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

DEPLOYMENT = Path(__file__).resolve().parent
ROOT = DEPLOYMENT.parent
SOURCE = ROOT / "source"
TEMPLATE_SOURCE = DEPLOYMENT / "mie-pose.yaml"
TEMPLATE_NAME = "mie-pose.template"
LAMBDA_ZIP = "mie-pose-lambda.zip"
LAYER_ZIP = "opencv-layer.zip"
FFMPEG_LAYER_ZIP = "ffmpeg-layer.zip"
# Pure-Python packages the Lambda code needs beyond the runtime's boto3 (same pins as the aws extra).
LAMBDA_REQUIREMENTS = ["crhelper==2.0.12"]
SKIP_PARTS = {"__pycache__", ".pytest_cache"}

sys.path.insert(0, str(SOURCE))


class BuildError(RuntimeError):
    pass


# ---- CloudFormation YAML: short-form tags become their long form --------------------------------------


class _CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_cfn_yaml(text: str) -> dict:
    return yaml.load(text, Loader=_CfnLoader)  # noqa: S506  (SafeLoader subclass)


# ---- templates ---------------------------------------------------------------------------------------


def build_template(bucket_prefix: str, version: str) -> tuple[dict, dict]:
    """The filled template and the (placeholder) ASL document."""
    from mie_pose.aws import openapi, state_machine  # noqa: PLC0415

    template = load_cfn_yaml(TEMPLATE_SOURCE.read_text())
    asl = state_machine.build_definition()
    body = openapi.api_body()
    api_hash = openapi.body_hash(body)

    properties = template["Resources"]["StateMachine"]["Properties"]
    properties["DefinitionString"] = state_machine.to_definition_string(asl)
    missing = set(state_machine.substitution_names()) - set(properties["DefinitionSubstitutions"])
    if missing:
        raise BuildError(f"template's DefinitionSubstitutions lack {sorted(missing)}")
    template["Resources"]["RestApi"]["Properties"]["Body"] = body

    text = json.dumps(template, indent=2)
    for placeholder, value in (("%%BUCKET_NAME%%", bucket_prefix), ("%%VERSION%%", version),
                               ("%%API_HASH%%", api_hash)):
        text = text.replace(placeholder, value)
    leftover = re.search(r"%%[A-Z_]+%%", text)
    if leftover:
        raise BuildError(f"unfilled placeholder {leftover.group(0)} in {TEMPLATE_SOURCE.name}")
    return json.loads(text), asl


def write_templates(out: Path, bucket_prefix: str, version: str) -> list[Path]:
    global_dir = out / "global-s3-assets"
    global_dir.mkdir(parents=True, exist_ok=True)
    template, asl = build_template(bucket_prefix, version)
    template_path = global_dir / TEMPLATE_NAME
    template_path.write_text(json.dumps(template, indent=2) + "\n")
    asl_path = global_dir / "pose-workflow.asl.json"
    asl_path.write_text(json.dumps(asl, indent=2) + "\n")
    return [template_path, asl_path]


# ---- Lambda code -------------------------------------------------------------------------------------


def _add_tree(archive: zipfile.ZipFile, root: Path, base: Path) -> None:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(base)
        if path.is_file() and not SKIP_PARTS & set(relative.parts) and path.suffix != ".pyc":
            archive.write(path, relative.as_posix())


def build_lambda_zip(zip_path: Path) -> Path:
    """``mie_pose`` plus the pure-Python requirements, at the zip root as Lambda imports them."""
    with tempfile.TemporaryDirectory(prefix="mie-pose-lambda-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-compile", "--no-warn-conflicts", "--no-deps", "--target", tmp, *LAMBDA_REQUIREMENTS], check=True)
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
            _add_tree(archive, SOURCE / "mie_pose", SOURCE)
            for package in sorted(Path(tmp).iterdir()):
                if package.is_dir() and not package.name.endswith((".dist-info", ".egg-info")) \
                        and package.name != "bin":
                    _add_tree(archive, package, Path(tmp))
    return zip_path


def _layer_builder():
    spec = importlib.util.spec_from_file_location("mie_pose_build_layer", ROOT / "opencv" / "build_layer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_layer_zip(zip_path: Path) -> Path:
    return _layer_builder().build_layer(zip_path)


def build_ffmpeg_layer_zip(zip_path: Path) -> Path:
    builder = _layer_builder()
    return builder.build_layer(zip_path, requirements=builder.FFMPEG_REQUIREMENTS)


# ---- SageMaker model tarballs --------------------------------------------------------------------------


def _models_script():
    spec = importlib.util.spec_from_file_location("mie_pose_build_models", ROOT / "models" / "build_model_tarballs.py")
    if spec is None or not Path(spec.origin).is_file():
        raise BuildError("models/build_model_tarballs.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model_tarballs(models_dir: Path | None, regional: Path, build_models: bool) -> list[Path]:
    script = _models_script()
    if build_models:
        models_dir = regional.parent / "build" / "models"
        script.build(models_dir, random_init=False, pack=False)
    assert models_dir is not None
    written = []
    for container in script.CONTAINERS:
        source = Path(models_dir) / container
        if not list(source.glob("*-symbol.json")) or not list(source.glob("*-0000.params")):
            raise BuildError(f"{source} has no exported network (*-symbol.json + *-0000.params); "
                             "run models/build_model_tarballs.py --no-pack --out DIR first")
        with tempfile.TemporaryDirectory(prefix="mie-pose-model-") as tmp:
            staged = Path(tmp) / container
            shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "code"))
            # The container code always comes from this checkout, never a stale copy beside the weights.
            shutil.copytree(ROOT / "models" / container / "code", staged / "code",
                            ignore=shutil.ignore_patterns("__pycache__"))
            written.append(script.pack_tarball(staged, regional / "models" / container / "model.tar.gz"))
    return written


# ---- main --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket-prefix", required=True, help="assets go to the bucket PREFIX-REGION")
    parser.add_argument("--version", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--out", type=Path, default=DEPLOYMENT)
    parser.add_argument("--models-dir", type=Path, default=os.environ.get("MIE_POSE_MODELS_DIR") or None)
    parser.add_argument("--build-models", action="store_true")
    parser.add_argument("--templates-only", action="store_true")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,40}", args.bucket_prefix):
        parser.error(f"bucket prefix {args.bucket_prefix!r} cannot start an S3 bucket name")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", args.version):
        parser.error(f"version {args.version!r} must be letters, digits, '.', '_' or '-'")

    out = args.out.resolve()
    regional = out / "regional-s3-assets"
    for folder in (out / "global-s3-assets", regional):
        shutil.rmtree(folder, ignore_errors=True)
    try:
        built = write_templates(out, args.bucket_prefix, args.version)
        if not args.templates_only:
            built.append(build_lambda_zip(regional / LAMBDA_ZIP))
            built.append(build_layer_zip(regional / LAYER_ZIP))
            built.append(build_ffmpeg_layer_zip(regional / FFMPEG_LAYER_ZIP))
            if args.models_dir or args.build_models:
                built.extend(build_model_tarballs(args.models_dir, regional, args.build_models))
            else:
                print("warning: no model weights given (--models-dir or MIE_POSE_MODELS_DIR): the SageMaker "
                      "model needs models/<container>/model.tar.gz in the regional bucket before deploying",
                      file=sys.stderr)
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(f"{path.relative_to(out)}  {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
