"""PoseDetection on AWS: frames in chunks through a Map state, one page of results per chunk, one commit.

- ``plan`` reads the frame manifest and cuts it into chunks of ``PageFrames`` frames: chunk i is page i.
- ``chunk`` (one Map iteration) sends its JPEGs to the SageMaker endpoint in one batched request (split
  only when the JPEGs pass InvokeEndpoint's 6 MB body limit) and writes page i of a new, uncommitted
  version of the document (``DynamoDataplane.put_page``).
- ``commit`` writes the header that makes that version the document, in one atomic PutItem. Until then
  readers see the previous document or none; ``cleanup`` discards the pages of a failed run.

The records are built by the same functions the local operator uses (``persons_to_records``,
``schema.frame_record``, ``schema.validate_document``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .. import aws_runtime, schema
from ..backends.sagemaker_endpoint import SageMakerEndpointBackend
from ..dataplane.base import DEFAULT_PAGE_FRAMES
from ..operators.contract import STATUS_COMPLETE, OperatorError
from ..operators.pose_inference import NAME, load_manifest, persons_to_records
from ..storage import MediaLocation
from . import state as workflow_state
from .state import StepFailed

BACKEND = SageMakerEndpointBackend.name
READ_THREADS = 8


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


def plan(state: dict, runtime) -> dict:
    runtime.dataplane.update_execution(state["WorkflowExecutionId"], stage=workflow_state.stage_of(NAME),
                                       stage_status="Started")
    configuration = workflow_state.configuration(state, NAME)
    backend = str(configuration.get("Backend") or BACKEND).lower()
    if backend != BACKEND:
        raise StepFailed(f"backend {backend!r} is not deployed on AWS; this stack runs {BACKEND!r}")
    _, manifest = load_manifest(runtime, state.get("Media") or {})
    frame_count = len(manifest["frames"])
    return {"Chunks": plan_chunks(frame_count, _page_frames(configuration)), "FrameCount": frame_count,
            "Version": runtime.dataplane.new_version(), "Configuration": configuration}


def chunk(state: dict, item: dict, runtime, backend=None) -> dict:
    location, manifest = load_manifest(runtime, state.get("Media") or {})
    entries = manifest["frames"][int(item["Start"]):int(item["End"])]
    with ThreadPoolExecutor(READ_THREADS) as pool:
        jpegs = list(pool.map(lambda e: runtime.storage.read_bytes(MediaLocation(location.bucket, e["key"])), entries))
    configuration = state.get("Configuration") or {}
    backend = backend or SageMakerEndpointBackend(
        aws_runtime.setting("ENDPOINT_NAME"), aws_runtime.client("sagemaker-runtime"),
        max_batch=int(configuration.get("EndpointBatch") or len(entries) or 1))
    persons = backend.batch_encoded(jpegs) if jpegs else []
    frames = [schema.frame_record(entry["index"], entry["timestamp_ms"], persons_to_records(found))
              for entry, found in zip(entries, persons)]
    page = schema.document_header(state["AssetId"], BACKEND, manifest["fps"], manifest["video"])
    page["frames"] = frames
    schema.validate_document(page)
    runtime.dataplane.put_page(state["AssetId"], NAME, state["Version"], int(item["Page"]), frames)
    return {"Page": item["Page"], "Frames": len(frames), "Persons": sum(len(f["persons"]) for f in frames)}


def commit(state: dict, runtime) -> dict:
    plan_result = state["Plan"]
    results = plan_result.get("Results") or []
    if len(results) != len(plan_result["Chunks"]):
        raise StepFailed(f"{len(results)} of {len(plan_result['Chunks'])} chunks reported back")
    _, manifest = load_manifest(runtime, state.get("Media") or {})
    header = schema.document_header(state["AssetId"], BACKEND, manifest["fps"], manifest["video"])
    runtime.dataplane.commit_metadata(state["AssetId"], NAME, plan_result["Version"], header,
                                      pages=len(plan_result["Chunks"]), frames=plan_result["FrameCount"])
    output = {"Name": NAME, "Status": STATUS_COMPLETE, "Media": dict(state.get("Media") or {}),
              "MetaData": {"Frames": plan_result["FrameCount"], "Persons": sum(r["Persons"] for r in results),
                           "Pages": len(plan_result["Chunks"]), "Backend": BACKEND},
              "Configuration": plan_result["Configuration"]}
    runtime.dataplane.update_execution(state["WorkflowExecutionId"], stage=workflow_state.stage_of(NAME),
                                       stage_status=STATUS_COMPLETE, stage_output={NAME: output})
    return workflow_state.advance(state, output)


def cleanup(state: dict, runtime) -> None:
    """Discard the pages of the uncommitted version, if the plan step got as far as choosing one."""
    version = (state.get("Plan") or {}).get("Version")
    if version:
        runtime.dataplane.discard_version(state["AssetId"], NAME, version)


def handler(event: dict, context=None) -> dict:
    workflow_state.log_event(NAME, event)
    runtime = aws_runtime.runtime_from_environment()
    step = event.get("Step")
    try:
        if step == "plan":
            return plan(event["State"], runtime)
        if step == "chunk":
            return chunk(event["State"], event["Item"], runtime)
        if step == "commit":
            return commit(event["State"], runtime)
    except (OperatorError, schema.SchemaError) as exc:
        raise StepFailed(str(exc)) from None
    raise StepFailed(f"unknown PoseDetection step {step!r}")
