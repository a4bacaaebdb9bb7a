"""PoseDetection on AWS: frames in chunks through a Map state, one page of results per chunk, one commit.

- ``plan`` reads the frame manifest and cuts it into chunks of ``PageFrames`` frames: chunk i is page i.
- ``chunk`` (one Map iteration) sends its JPEGs to the SageMaker endpoint in one batched request (split
  only when the JPEGs pass InvokeEndpoint's 6 MB body limit) and writes page i of a new, uncommitted
  version of the document (``DynamoDataplane.put_page``). With tracking on, it also decodes its JPEGs and
  stores each person's appearance descriptor (the tracker's colour cue, ``appearance_descriptors``) as
  page i of the internal, never-published ``PoseDetectionAppearance`` under the same version.
- ``commit`` runs tracking and smoothing, which need every frame in time order: it streams the staged
  pages in order (a few pages read ahead and written behind, so memory does not grow with the video) through
  one ``TemporalProcessor`` (``track_frame``, the step the local operator runs on each frame), rewrites
  them with track ids, writes the smoothed pages, then publishes the headers of ``PoseDetection`` and
  ``PoseDetectionRaw`` in one DynamoDB transaction (``commit_documents``). Until then readers see the
  previous documents or none; ``cleanup`` discards the pages of a failed run.

The documents are the local operator's (``mie_pose.operators.pose_inference``): the same Configuration
(``Tracking``, ``Smoothing``, parsed by its ``temporal_settings``), the same descriptors from the same
JPEGs, the same processor, so for the same detections the same two documents: ``PoseDetection`` (smoothed
keypoints) and ``PoseDetectionRaw`` (the endpoint's keypoints, same track ids) with smoothing on;
``PoseDetection`` alone (and any stale ``PoseDetectionRaw`` deleted) with smoothing or tracking off.

Where pages are staged: with smoothing on, chunks write ``PoseDetectionRaw`` pages, and the commit
overwrites each one in place with the same frames plus track ids (the tracker ignores incoming track ids, so
a retried commit computes the same result) and writes the smoothed ``PoseDetection`` page beside it. With
smoothing off, chunks write ``PoseDetection`` pages directly and the commit only adds track ids. A commit
retried after its transaction went through finds the header already at its version and does not redo it.

The records are built by the same functions the local operator uses (``persons_to_records``,
``schema.frame_record``, ``schema.validate_document``).
"""

from __future__ import annotations

import base64
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import aws_runtime, schema
from ..backends.sagemaker_endpoint import SageMakerEndpointBackend
from ..dataplane.base import DEFAULT_PAGE_FRAMES
from ..dataplane.dynamodb import StagedDocument
from ..operators.contract import STATUS_COMPLETE, OperatorError
from ..operators.pose_inference import (NAME, RAW_NAME, decode_frame, load_manifest, persons_to_records,
                                        temporal_settings)
from ..storage import MediaLocation
from ..tracking import TemporalProcessor, appearance_descriptors, track_frame
from . import state as workflow_state
from .state import StepFailed

BACKEND = SageMakerEndpointBackend.name
READ_THREADS = 8
# Staged pages of appearance descriptors: written by the chunks, read by the commit, never published.
APPEARANCE_NAME = NAME + "Appearance"
# The commit's page streaming: pages read ahead of the tracker, and pages waiting to be written.
READ_AHEAD = 4
WRITE_BEHIND = 4
DESCRIPTOR_DTYPE = "<f4"


def _page_frames(configuration: dict) -> int:
    try:
        value = int(configuration.get("PageFrames") or DEFAULT_PAGE_FRAMES)
    except (TypeError, ValueError):
        raise StepFailed(f"PageFrames must be a positive integer, got {configuration.get('PageFrames')!r}") from None
    if value < 1:
        raise StepFailed(f"PageFrames must be a positive integer, got {value}")
    return value


def plan_chunks(frame_count: int, page_frames: int) -> list[dict]:
    return [{"Page": page, "Start": start, "End": min(start + page_frames, frame_count)}
            for page, start in enumerate(range(0, max(frame_count, 1), page_frames))]


def staging_operator(smoothing) -> str:
    """Where the chunks write their pages: the raw document's when a smoothed one is made beside it."""
    return RAW_NAME if smoothing is not None else NAME


def encode_descriptor(descriptor) -> str | None:
    """A float32 descriptor as base64 of its bytes: decodes to exactly the array the chunk computed."""
    if descriptor is None:
        return None
    return base64.b64encode(np.asarray(descriptor, DESCRIPTOR_DTYPE).tobytes()).decode("ascii")


def decode_descriptor(text: str | None):
    if text is None:
        return None
    return np.frombuffer(base64.b64decode(text), DESCRIPTOR_DTYPE).astype(np.float32)


def frame_appearances(jpeg: bytes, record: dict) -> list:
    """Each person's encoded descriptor, from the frame's JPEG (the image the local operator uses too)."""
    image = decode_frame(jpeg, record["index"])
    return [encode_descriptor(d) for d in appearance_descriptors(image, record)]


def plan(state: dict, runtime) -> dict:
    runtime.dataplane.update_execution(state["WorkflowExecutionId"], stage=workflow_state.stage_of(NAME),
                                       stage_status="Started")
    configuration = workflow_state.configuration(state, NAME)
    backend = str(configuration.get("Backend") or BACKEND).lower()
    if backend != BACKEND:
        raise StepFailed(f"backend {backend!r} is not deployed on AWS; this stack runs {BACKEND!r}")
    temporal_settings(configuration)  # refuse a bad Tracking/Smoothing before any frame is sent
    _, manifest = load_manifest(runtime, state.get("Media") or {})
    frame_count = len(manifest["frames"])
    return {"Chunks": plan_chunks(frame_count, _page_frames(configuration)), "FrameCount": frame_count,
            "Version": runtime.dataplane.new_version(), "Configuration": configuration}


def chunk(state: dict, item: dict, runtime, backend=None) -> dict:
    location, manifest = load_manifest(runtime, state.get("Media") or {})
    entries = manifest["frames"][int(item["Start"]):int(item["End"])]
    configuration = state.get("Configuration") or {}
    tracking, smoothing = temporal_settings(configuration)
    backend = backend or SageMakerEndpointBackend(
        aws_runtime.setting("ENDPOINT_NAME"), aws_runtime.client("sagemaker-runtime"),
        max_batch=int(configuration.get("EndpointBatch") or len(entries) or 1))
    with ThreadPoolExecutor(READ_THREADS) as pool:
        jpegs = list(pool.map(lambda e: runtime.storage.read_bytes(MediaLocation(location.bucket, e["key"])), entries))
        persons = backend.batch_encoded(jpegs) if jpegs else []
        frames = [schema.frame_record(entry["index"], entry["timestamp_ms"], persons_to_records(found))
                  for entry, found in zip(entries, persons)]
        # OpenCV releases the GIL: the frames decode in parallel.
        appearances = list(pool.map(frame_appearances, jpegs, frames)) if tracking else None
    del jpegs
    page = schema.document_header(state["AssetId"], BACKEND, manifest["fps"], manifest["video"])
    page["frames"] = frames
    schema.validate_document(page)
    asset_id, version, number = state["AssetId"], state["Version"], int(item["Page"])
    if appearances is not None:
        runtime.dataplane.put_page(asset_id, APPEARANCE_NAME, version, number, appearances)
    runtime.dataplane.put_page(asset_id, staging_operator(smoothing), version, number, frames)
    return {"Page": item["Page"], "Frames": len(frames), "Persons": sum(len(f["persons"]) for f in frames)}


def _prefetch(pool: ThreadPoolExecutor, load, count: int, depth: int):
    """``load(0) .. load(count - 1)`` in order, at most ``depth`` of them running ahead of the consumer."""
    pending: deque = deque()
    for number in range(count):
        pending.append(pool.submit(load, number))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def track_pages(dataplane, asset_id: str, version: str, pages: int, entries: list[dict], smoothing,
                header: dict) -> int:
    """Track (and smooth) the staged pages in frame order and write the results back; return the track count.

    One page of frames and descriptors at a time goes through one ``TemporalProcessor`` (track ids
    continue across pages); at most ``READ_AHEAD`` pages are being read and ``WRITE_BEHIND`` written.
    """
    processor = TemporalProcessor(tracking=True, smoothing=smoothing)
    source = staging_operator(smoothing)
    entry_of = iter(entries)
    track_ids: set[int] = set()

    def load(number: int) -> tuple[list, list]:
        frames = dataplane.read_page(asset_id, source, version, number)
        appearances = dataplane.read_page(asset_id, APPEARANCE_NAME, version, number)
        if frames is None or appearances is None or len(appearances) != len(frames):
            raise StepFailed(f"page {number} of {NAME} for {asset_id} is missing or incomplete (version {version})")
        return frames, appearances

    def store(number: int, raw: list, smoothed: list | None) -> None:
        if smoothed is None:
            dataplane.put_page(asset_id, NAME, version, number, raw)
        else:
            dataplane.put_page(asset_id, RAW_NAME, version, number, raw)
            dataplane.put_page(asset_id, NAME, version, number, smoothed)

    with ThreadPoolExecutor(READ_AHEAD + WRITE_BEHIND) as pool:
        writes: deque = deque()
        for number, (frames, appearances) in enumerate(_prefetch(pool, load, pages, READ_AHEAD)):
            raw_page, smoothed_page = [], [] if processor.smoothing else None
            for record, encoded in zip(frames, appearances):
                entry = next(entry_of, None)
                if entry is None or entry["index"] != record["index"]:
                    raise StepFailed(f"page {number} holds frame {record['index']}, the manifest has "
                                     f"{None if entry is None else entry['index']} there")
                if len(encoded) != len(record["persons"]):
                    raise StepFailed(f"frame {record['index']}: {len(encoded)} descriptors for "
                                     f"{len(record['persons'])} persons")
                raw, filtered = track_frame(processor, entry, record, [decode_descriptor(d) for d in encoded])
                track_ids.update(p["track_id"] for p in raw["persons"])
                raw_page.append(raw)
                if smoothed_page is not None:
                    smoothed_page.append(filtered)
            if smoothed_page is not None:
                schema.validate_document(dict(header, frames=smoothed_page))
            writes.append(pool.submit(store, number, raw_page, smoothed_page))
            while len(writes) > WRITE_BEHIND:
                writes.popleft().result()
        while writes:
            writes.popleft().result()
    if next(entry_of, None) is not None:
        raise StepFailed("the pages hold fewer frames than the manifest")
    return len(track_ids)


def count_tracks(dataplane, asset_id: str, version: str, pages: int) -> int:
    track_ids: set = set()
    for number in range(pages):
        for frame in dataplane.read_page(asset_id, NAME, version, number) or []:
            track_ids.update(p["track_id"] for p in frame["persons"] if p["track_id"] is not None)
    return len(track_ids)


def commit(state: dict, runtime) -> dict:
    plan_result = state["Plan"]
    results = plan_result.get("Results") or []
    if len(results) != len(plan_result["Chunks"]):
        raise StepFailed(f"{len(results)} of {len(plan_result['Chunks'])} chunks reported back")
    configuration = plan_result["Configuration"]
    tracking, smoothing = temporal_settings(configuration)
    _, manifest = load_manifest(runtime, state.get("Media") or {})
    entries = manifest["frames"]
    for entry in entries:
        entry.setdefault("width", manifest["video"]["width"])
        entry.setdefault("height", manifest["video"]["height"])
    asset_id, version = state["AssetId"], plan_result["Version"]
    pages, frame_count = len(plan_result["Chunks"]), plan_result["FrameCount"]
    header = schema.document_header(asset_id, BACKEND, manifest["fps"], manifest["video"])
    dataplane = runtime.dataplane
    documents = [StagedDocument(NAME, version, header, pages, frame_count)]
    if smoothing is not None:
        documents.insert(0, StagedDocument(RAW_NAME, version, dict(header, operator=RAW_NAME), pages, frame_count))
    tracks = 0
    if tracking and dataplane.committed_version(asset_id, NAME) == version:
        # A retry of a commit whose transaction went through: the documents are published already.
        tracks = count_tracks(dataplane, asset_id, version, pages)
    else:
        if tracking:
            tracks = track_pages(dataplane, asset_id, version, pages, entries, smoothing, header)
        dataplane.commit_documents(asset_id, documents, delete=() if smoothing is not None else (RAW_NAME,))
    dataplane.discard_version(asset_id, APPEARANCE_NAME, version)
    metadata = {"Frames": frame_count, "Persons": sum(r["Persons"] for r in results), "Pages": pages,
                "Backend": BACKEND, "Tracks": tracks, "Smoothed": smoothing is not None}
    if smoothing is not None:
        metadata["RawOperator"] = RAW_NAME
    output = {"Name": NAME, "Status": STATUS_COMPLETE, "Media": dict(state.get("Media") or {}),
              "MetaData": metadata, "Configuration": configuration}
    runtime.dataplane.update_execution(state["WorkflowExecutionId"], stage=workflow_state.stage_of(NAME),
                                       stage_status=STATUS_COMPLETE, stage_output={NAME: output})
    return workflow_state.advance(state, output)


def cleanup(state: dict, runtime) -> None:
    """Discard the pages of the uncommitted version, if the plan step got as far as choosing one (a version
    a header already points at is published, and stays)."""
    version = (state.get("Plan") or {}).get("Version")
    if not version:
        return
    for operator in (NAME, RAW_NAME, APPEARANCE_NAME):
        if runtime.dataplane.committed_version(state["AssetId"], operator) != version:
            runtime.dataplane.discard_version(state["AssetId"], operator, version)


def handler(event: dict, context=None) -> dict:
    return workflow_state.run_step(NAME, event, {"plan": plan, "chunk": chunk, "commit": commit},
                                   failures=(OperatorError, schema.SchemaError))
