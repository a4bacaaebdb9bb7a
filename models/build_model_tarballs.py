"""Build the two SageMaker ``model.tar.gz`` files of the GluonCV inference pipeline.

    python models/build_model_tarballs.py --out build/models            # pretrained (needs internet once)
    python models/build_model_tarballs.py --out /tmp/m --random-init    # same layout, random weights, offline

For each container (``person-detector-yolo3``, ``pose-estimator-alphapose``) it writes

    OUT/<container>/<model>-symbol.json, <model>-0000.params, code/inference.py   (the unpacked model dir)
    OUT/tarballs/<container>/model.tar.gz                                        (the same files, for S3)

``OUT`` is then also the ``model_dir`` of ``mie_pose.backends.gluoncv.GluonCVBackend``, the local stand-in
of the endpoint, which also finds the containers' local model server here (``OUT/sagemaker_local/``).
The containers load only these files: no pip install, no weight download at boot.

Needs the MXNet venv (``.venv-mxnet``, made by ``./run``). ``--reuse`` keeps networks already exported into
``OUT`` with the same model and input shape (random-init builds for tests) and refreshes only ``code/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import time
import warnings
from pathlib import Path

MODELS_ROOT = Path(__file__).resolve().parent

# container -> (GluonCV model name, example input shape used to trace the graph before export)
CONTAINERS = {
    "person-detector-yolo3": ("yolo3_mobilenet1.0_coco", (1, 3, 512, 512)),
    "pose-estimator-alphapose": ("alpha_pose_resnet101_v1b_coco", (1, 3, 256, 192)),
}


def build_net(model_name: str, random_init: bool = False):
    """The GluonCV network, pretrained from the model zoo or randomly initialized without any download."""
    import mxnet as mx
    from gluoncv import model_zoo

    if random_init:
        mx.random.seed(RANDOM_SEED)  # the same random weights on every build
    # pretrained_base=False always: the full pretrained weights replace the backbone's anyway.
    net = model_zoo.get_model(model_name, pretrained=not random_init, pretrained_base=False)
    if random_init:
        # yolo3 leaves its parameters uninitialized; alpha_pose has initialized its own already.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.initialize(mx.init.Uniform(), force_reinit=False)
    return net


def export_net(net, input_shape, model_dir: Path, model_name: str) -> tuple[Path, Path]:
    """Hybridize, trace once with ``input_shape`` and write ``<model_name>-symbol.json`` + ``-0000.params``."""
    import mxnet as mx

    model_dir.mkdir(parents=True, exist_ok=True)
    net.hybridize(static_alloc=False)
    net(mx.nd.zeros(input_shape))
    prefix = str(model_dir / model_name)
    net.export(prefix, epoch=0)
    return Path(prefix + "-symbol.json"), Path(prefix + "-0000.params")


RANDOM_SEED = 0
LOCAL_SERVER = "sagemaker_local"
EXPORT_STAMP = ".export.json"


def stage_container(container: str, out_dir: Path, random_init: bool = False, input_shape=None,
                    reuse: bool = False) -> Path:
    """Write the unpacked model dir of one container: exported network plus its ``code/``."""
    model_name, default_shape = CONTAINERS[container]
    model_dir = out_dir / container
    stamp = {"model": model_name, "input_shape": list(input_shape or default_shape),
             "random_init": random_init, "seed": RANDOM_SEED if random_init else None}
    stamp_path = model_dir / EXPORT_STAMP
    reused = reuse and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp
    if not reused:
        if model_dir.exists():
            shutil.rmtree(model_dir)
        net = build_net(model_name, random_init=random_init)
        export_net(net, input_shape or default_shape, model_dir, model_name)
        stamp_path.write_text(json.dumps(stamp))
    code_dir = model_dir / "code"
    if code_dir.exists():
        shutil.rmtree(code_dir)
    shutil.copytree(MODELS_ROOT / container / "code", code_dir, ignore=shutil.ignore_patterns("__pycache__"))
    return model_dir


def stage_local_server(out_dir: Path) -> Path:
    """Copy the local model server (``models/sagemaker_local/worker.py``) beside the containers."""
    target = out_dir / LOCAL_SERVER
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MODELS_ROOT / LOCAL_SERVER / "worker.py", target / "worker.py")
    return target


def pack_tarball(model_dir: Path, tar_path: Path, compresslevel: int = 6) -> Path:
    """``model.tar.gz`` with the model dir's files at the archive root, as SageMaker unpacks it."""
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz", compresslevel=compresslevel) as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.name != EXPORT_STAMP:
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    return tar_path


def build(out_dir, random_init: bool = False, containers=None, compresslevel: int = 6,
          pack: bool = True, input_shapes: dict | None = None, reuse: bool = False) -> dict:
    """Stage (and pack) every container; returns ``{container: {"model_dir", "tarball"}}``."""
    out_dir = Path(out_dir)
    stage_local_server(out_dir)
    result = {}
    for container in containers or CONTAINERS:
        shape = (input_shapes or {}).get(container)
        model_dir = stage_container(container, out_dir, random_init=random_init, input_shape=shape, reuse=reuse)
        tarball = None
        if pack:
            tarball = pack_tarball(model_dir, out_dir / "tarballs" / container / "model.tar.gz", compresslevel)
        result[container] = {"model_dir": model_dir, "tarball": tarball}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/models", help="output folder (default: build/models)")
    parser.add_argument("--random-init", action="store_true",
                        help="random weights instead of the model zoo's (offline; for tests)")
    parser.add_argument("--container", action="append", choices=sorted(CONTAINERS),
                        help="build only this container (repeatable; default: both)")
    parser.add_argument("--compresslevel", type=int, default=6, help="gzip level 1-9 (default 6)")
    parser.add_argument("--no-pack", action="store_true", help="stage the model dirs only, no tarballs")
    parser.add_argument("--reuse", action="store_true",
                        help="keep networks already exported into OUT (same model and shape); refresh code/")
    args = parser.parse_args(argv)
    started = time.time()
    built = build(args.out, random_init=args.random_init, containers=args.container,
                  compresslevel=args.compresslevel, pack=not args.no_pack, reuse=args.reuse)
    for container, paths in built.items():
        print(f"{container}: {paths['model_dir']}" + (f" -> {paths['tarball']}" if paths["tarball"] else ""))
    print(f"done in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
