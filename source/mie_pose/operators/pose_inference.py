"""Operator PoseDetection: run a pose backend on every sampled frame and store the document.

Configuration: ``{"Backend": name (default "topdown"), "ModelDir": path | null, "PageFrames": int}``.
The document (see ``mie_pose.schema``) is written to the dataplane in one atomic replace, so a failure
half way stores nothing.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from .. import schema
from ..backends import BackendError, create_backend
from ..dataplane.base import DEFAULT_PAGE_FRAMES
from ..storage import MediaLocation
from .contract import STATUS_COMPLETE, OperatorError, OperatorEvent, OperatorOutput, OperatorRuntime, operator

NAME = schema.OPERATOR_NAME


def persons_to_records(persons) -> list[dict]:
    return [schema.person_record(p.score, p.bbox, np.asarray(p.keypoints).tolist(), p.track_id) for p in persons]


def load_manifest(runtime: OperatorRuntime, media: dict) -> tuple[MediaLocation, dict]:
    if "Frames" not in media:
        raise OperatorError("no frame manifest: run FrameExtraction first (Input.Media.Frames is missing)")
    location = MediaLocation.from_event(media["Frames"])
    try:
        return location, json.loads(runtime.storage.read_bytes(location))
    except ValueError as exc:
        raise OperatorError(f"frame manifest is not valid JSON: {exc}") from None


def analyse_frames(runtime: OperatorRuntime, bucket: str, entries: list[dict], backend) -> list[dict]:
    """Run the backend on each manifest entry; return schema frame records."""
    frames = []
    for done, entry in enumerate(entries, start=1):
        data = runtime.storage.read_bytes(MediaLocation(bucket, entry["key"]))
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise OperatorError(f"frame {entry['index']} is not a readable JPEG")
        frames.append(schema.frame_record(entry["index"], entry["timestamp_ms"], persons_to_records(backend(image))))
        if runtime.progress:
            runtime.progress(done, len(entries))
    return frames


@operator(NAME)
def handler(event: OperatorEvent, runtime: OperatorRuntime) -> OperatorOutput:
    configuration = dict(event.configuration)
    try:
        backend = create_backend(configuration.get("Backend"), configuration.get("ModelDir"))
    except BackendError as exc:
        raise OperatorError(str(exc)) from None
    location, manifest = load_manifest(runtime, event.media)
    frames = analyse_frames(runtime, location.bucket, manifest["frames"], backend)
    document = schema.document_header(event.asset_id, backend.name, manifest["fps"], manifest["video"])
    document["frames"] = frames
    schema.validate_document(document)
    page_frames = int(configuration.get("PageFrames") or DEFAULT_PAGE_FRAMES)
    pages = runtime.dataplane.store_metadata(event.asset_id, NAME, document, page_frames=page_frames)
    persons = sum(len(frame["persons"]) for frame in frames)
    return OperatorOutput(
        name=NAME,
        status=STATUS_COMPLETE,
        media=dict(event.media),
        metadata={"Frames": len(frames), "Persons": persons, "Pages": pages, "Backend": backend.name},
        configuration=configuration,
    )
