"""Build BlazePose full's landmark model without the two heads mie-pose never reads.

    python prune.py SOURCE OUT.tflite

SOURCE is the PyPI ``mediapipe==0.10.14`` wheel (any platform's: the .tflite files are the same) or the
``pose_landmark_full.tflite`` taken out of it. Run once, offline, in a throwaway TensorFlow venv (the one
``../person-detector-centernet/README.md`` describes); never a run-time dependency.

Why: the model has five outputs, and TFLite runs every operator of the graph whatever outputs are read. Two of
them, the 256x256 segmentation mask (``Identity_2``) and the 3D world landmarks (``Identity_4``), are never
used; the operators only they need take about 30 % of the model's run time on x86 (one thread). The pruned graph keeps
``Identity`` (landmarks), ``Identity_1`` (presence) and ``Identity_3`` (heatmap) and every operator they
depend on, untouched and in the same order, so those three outputs are bit-identical to the full model's.
Nothing is retrained or requantized; unused tensors and weight buffers are dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from pathlib import Path

WHEEL_MEMBER = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"
SOURCE_SHA256 = "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"
KEPT_OUTPUTS = (b"Identity", b"Identity_1", b"Identity_3")  # landmarks, presence, heatmap


def read_source(path: Path) -> bytes:
    data = zipfile.ZipFile(path).read(WHEEL_MEMBER) if zipfile.is_zipfile(path) else path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != SOURCE_SHA256:
        raise SystemExit(f"{path}: sha256 {got}, expected mediapipe 0.10.14's {SOURCE_SHA256}")
    return data


def operators_needed(subgraph, outputs: list[int]) -> set[int]:
    """Indices of the operators that the ``outputs`` tensors depend on (walking back from them)."""
    producer = {t: i for i, op in enumerate(subgraph.operators) for t in op.outputs}
    needed, pending = set(), list(outputs)
    while pending:
        op_index = producer.get(pending.pop())
        if op_index is not None and op_index not in needed:
            needed.add(op_index)
            pending.extend(t for t in subgraph.operators[op_index].inputs if t >= 0)
    return needed


def prune(model) -> None:
    """Keep only ``KEPT_OUTPUTS`` and what they need, renumbering tensors and buffers densely."""
    (subgraph,) = model.subgraphs
    outputs = [t for t in subgraph.outputs if subgraph.tensors[t].name in KEPT_OUTPUTS]
    assert len(outputs) == len(KEPT_OUTPUTS), "the source model's outputs are not the expected ones"
    needed = operators_needed(subgraph, outputs)
    operators = [op for i, op in enumerate(subgraph.operators) if i in needed]
    kept = sorted({t for op in operators for t in [*op.inputs, *op.outputs] if t >= 0}
                  | set(subgraph.inputs) | set(outputs))
    tensor_index = {old: new for new, old in enumerate(kept)}
    for op in operators:
        op.inputs = [tensor_index[t] if t >= 0 else t for t in op.inputs]
        op.outputs = [tensor_index[t] for t in op.outputs]
    tensors = [subgraph.tensors[t] for t in kept]
    metadata = model.metadata or []
    buffers = sorted({0} | {t.buffer for t in tensors} | {m.buffer for m in metadata})  # 0: the empty buffer
    buffer_index = {old: new for new, old in enumerate(buffers)}
    for item in [*tensors, *metadata]:
        item.buffer = buffer_index[item.buffer]
    model.buffers = [model.buffers[b] for b in buffers]
    subgraph.inputs = [tensor_index[t] for t in subgraph.inputs]
    subgraph.outputs = [tensor_index[t] for t in outputs]
    subgraph.tensors, subgraph.operators = tensors, operators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="mediapipe 0.10.14 wheel, or its pose_landmark_full.tflite")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(read_source(args.source)))
    before = len(model.subgraphs[0].operators)
    prune(model)
    args.out.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    print(f"{args.out}: {len(model.subgraphs[0].operators)} of {before} operators, "
          f"sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
