"""Build the deployment assets, as MIE lays them out (``./build-s3-dist.sh`` runs this).

    python deployment/build_assets.py --bucket-prefix PREFIX --version VERSION --region REGION \
        [--models-dir DIR | --build-models] [--out DIR] [--templates-only] [--lambda-runtime python3.11]

Writes under ``--out`` (default: this folder):

- ``global-s3-assets/mie-pose.template``: ``deployment/mie-pose.yaml`` as JSON, with YAML anchors expanded,
  the bucket and version filled in, the state machine generated from ``pose_workflow.json`` and the API
  paths generated from ``api/routes.py``; ``pose-workflow.asl.json`` beside it (the same definition).
- ``regional-s3-assets/mie-pose-lambda.zip``: the ``mie_pose`` package (every Lambda's code) plus crhelper.
- ``regional-s3-assets/opencv-layer.zip``: the OpenCV layer (``opencv/build_layer.py``), numpy and OpenCV in
  the base package's version ranges, wheels for ``--lambda-runtime`` (the template's only allowed runtime).
- ``regional-s3-assets/ffmpeg-layer.zip``: the ffmpeg layer of the BrowserProxy function (the same builder,
  ``opencv/ffmpeg-requirements.txt``).
- ``regional-s3-assets/models/<container>/model.tar.gz``: one per SageMaker container, when weights are
  given: ``--models-dir`` (or ``MIE_POSE_MODELS_DIR``) is the output of ``models/build_model_tarballs.py
  --no-pack`` (``<container>/*-symbol.json``, ``*-0000.params``); ``--build-models`` runs that script
  (pretrained GluonCV weights: needs mxnet, gluoncv and the internet once).

The build fails when any function's code and layers together unzip past Lambda's limit (262,144,000 bytes),
and prints each function's unzipped total.
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
import tomllib
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
# Pure-Python packages the Lambda code needs beyond the runtime's boto3 (pins read from the aws extra).
LAMBDA_PACKAGES = ["crhelper"]
# Package data no Lambda reads: the web app (served from its own bucket) and the local models.
LAMBDA_SKIP = ("mie_pose/webapp/", "mie_pose/models/")
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
# Lambda refuses a function whose code and layers unzip to this many bytes or more.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
DEFAULT_RUNTIME = "python3.11"
# The DLC registry account per region (from the SageMaker SDK's image_uris data, see the file's "source").
DLC_IMAGES = DEPLOYMENT / "mxnet-inference-images.json"
# Endpoint instance types offered, by family: the image tag's processor. GPU families whose CUDA the MXNet
# 1.9 DLC (CUDA 11.2) runs on; g6/p5 need newer CUDA and are left out.
INSTANCE_FAMILIES = {
    "gpu": {"g4dn": ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"],
            "g5": ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"],
            "p3": ["2xlarge", "8xlarge", "16xlarge"]},
    "cpu": {"m5": ["large", "xlarge", "2xlarge", "4xlarge", "12xlarge"],
            "c5": ["large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "18xlarge"],
            "c6i": ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge"]},
}

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


def build_template(bucket_prefix: str, version: str, runtime: str = DEFAULT_RUNTIME) -> tuple[dict, dict]:
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
    _fill_image_mappings(template)

    text = json.dumps(template, indent=2)
    for placeholder, value in (("%%BUCKET_NAME%%", bucket_prefix), ("%%VERSION%%", version),
                               ("%%API_HASH%%", api_hash), ("%%LAMBDA_RUNTIME%%", runtime)):
        text = text.replace(placeholder, value)
    leftover = re.search(r"%%[A-Z_]+%%", text)
    if leftover:
        raise BuildError(f"unfilled placeholder {leftover.group(0)} in {TEMPLATE_SOURCE.name}")
    return json.loads(text), asl


def instance_processors() -> dict[str, str]:
    return {f"ml.{family}.{size}": processor for processor, families in INSTANCE_FAMILIES.items()
            for family, sizes in families.items() for size in sizes}


def _fill_image_mappings(template: dict) -> None:
    """The DLC account per region and the processor per instance type, as Mappings; the instance type
    parameter allows exactly the mapped types."""
    images = json.loads(DLC_IMAGES.read_text())
    mappings = template.setdefault("Mappings", {})
    mappings["MxnetInferenceAccount"] = {region: {"Account": account}
                                         for region, account in sorted(images["registries"].items())}
    processors = instance_processors()
    mappings["EndpointInstanceProcessor"] = {kind: {"Processor": p} for kind, p in sorted(processors.items())}
    parameter = template["Parameters"]["EndpointInstanceType"]
    if parameter["Default"] not in processors:
        raise BuildError(f"EndpointInstanceType's default {parameter['Default']} is not in INSTANCE_FAMILIES")
    parameter["AllowedValues"] = sorted(processors)


def write_templates(out: Path, bucket_prefix: str, version: str, runtime: str = DEFAULT_RUNTIME) -> list[Path]:
    global_dir = out / "global-s3-assets"
    global_dir.mkdir(parents=True, exist_ok=True)
    template, asl = build_template(bucket_prefix, version, runtime)
    template_path = global_dir / TEMPLATE_NAME
    template_path.write_text(json.dumps(template, indent=2) + "\n")
    asl_path = global_dir / "pose-workflow.asl.json"
    asl_path.write_text(json.dumps(asl, indent=2) + "\n")
    return [template_path, asl_path]


# ---- Lambda code -------------------------------------------------------------------------------------


def _add_tree(archive: zipfile.ZipFile, root: Path, base: Path) -> None:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(base)
        if path.is_file() and not SKIP_PARTS & set(relative.parts) and path.suffix != ".pyc" \
                and not relative.as_posix().startswith(LAMBDA_SKIP):
            archive.write(path, relative.as_posix())


def lambda_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """``LAMBDA_PACKAGES`` with the aws extra's pins."""
    extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["aws"]
    pinned = {re.split(r"[\s\[<>=!~;]", line, 1)[0].lower(): line for line in extra}
    missing = [name for name in LAMBDA_PACKAGES if name not in pinned]
    if missing:
        raise BuildError(f"pyproject.toml's aws extra lacks {missing}")
    return [pinned[name] for name in LAMBDA_PACKAGES]


def build_lambda_zip(zip_path: Path) -> Path:
    """``mie_pose`` plus the pure-Python requirements, at the zip root as Lambda imports them."""
    with tempfile.TemporaryDirectory(prefix="mie-pose-lambda-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-compile", "--no-warn-conflicts", "--no-deps", "--target", tmp,
                        *lambda_requirements()], check=True)
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


def build_layer_zip(zip_path: Path, runtime: str = DEFAULT_RUNTIME) -> Path:
    return _layer_builder().build_layer(zip_path, runtime=runtime)


def build_ffmpeg_layer_zip(zip_path: Path, runtime: str = DEFAULT_RUNTIME) -> Path:
    builder = _layer_builder()
    return builder.build_layer(zip_path, requirements=builder.FFMPEG_REQUIREMENTS, runtime=runtime)


# ---- Lambda size limit ---------------------------------------------------------------------------------


def _asset_name(content: dict) -> str:
    """The regional asset a Code / Content block points at (its S3Key's file name)."""
    key = content["S3Key"]
    key = key.get("Fn::Sub", key) if isinstance(key, dict) else key
    return str(key).rsplit("/", 1)[-1]


def function_packages(template: dict) -> dict[str, list[str]]:
    """{function: [code zip, layer zips...]} as the template attaches them."""
    resources = template["Resources"]
    packages = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        zips = [_asset_name(props["Code"])]
        for layer in props.get("Layers", []):
            zips.append(_asset_name(resources[layer["Ref"]]["Properties"]["Content"]))
        packages[name] = zips
    return packages


def unzipped_size(zip_path: Path) -> int:
    with zipfile.ZipFile(zip_path) as archive:
        return sum(info.file_size for info in archive.infolist())


def check_function_sizes(template: dict, regional: Path, limit: int = LAMBDA_UNZIPPED_LIMIT) -> dict[str, int]:
    """Each function's code + layers, unzipped, in bytes; BuildError when one reaches Lambda's limit."""
    sizes, cache = {}, {}
    for function, zips in function_packages(template).items():
        for name in zips:
            if name not in cache:
                if not (regional / name).is_file():
                    raise BuildError(f"{function} needs {name}, which the build did not write")
                cache[name] = unzipped_size(regional / name)
        sizes[function] = sum(cache[name] for name in zips)
    over = {f: s for f, s in sizes.items() if s >= limit}
    if over:
        raise BuildError("code + layers unzip past Lambda's limit of " f"{limit:,} bytes: " +
                         ", ".join(f"{f} {s:,}" for f, s in sorted(over.items())))
    return sizes


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
    parser.add_argument("--lambda-runtime", default=DEFAULT_RUNTIME,
                        choices=sorted(_layer_builder().RUNTIMES),
                        help="runtime of every function; the layers are built for it (default %(default)s)")
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
        built = write_templates(out, args.bucket_prefix, args.version, args.lambda_runtime)
        sizes = {}
        if not args.templates_only:
            built.append(build_lambda_zip(regional / LAMBDA_ZIP))
            built.append(build_layer_zip(regional / LAYER_ZIP, args.lambda_runtime))
            built.append(build_ffmpeg_layer_zip(regional / FFMPEG_LAYER_ZIP, args.lambda_runtime))
            sizes = check_function_sizes(json.loads(built[0].read_text()), regional)
            if args.models_dir or args.build_models:
                built.extend(build_model_tarballs(args.models_dir, regional, args.build_models))
            else:
                print("warning: no model weights given (--models-dir or MIE_POSE_MODELS_DIR): the SageMaker "
                      "model needs models/<container>/model.tar.gz in the regional bucket before deploying",
                      file=sys.stderr)
    except (BuildError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(f"{path.relative_to(out)}  {path.stat().st_size / 1e6:.2f} MB")
    for function, size in sorted(sizes.items()):
        print(f"{function}: code + layers unzip to {size / 1e6:.1f} MB (limit {LAMBDA_UNZIPPED_LIMIT / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
