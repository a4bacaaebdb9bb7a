"""Operator PoseDetection: run a pose backend on every sampled frame, track and smooth, store the documents.

Configuration::

    {"Backend": name (default "topdown"), "ModelDir": path | null, "PageFrames": int,
     "Tracking": true | false (default true),
     "Smoothing": false | true | {"MinCutoff": Hz, "Beta": Hz per person-height/s, "DCutoff": Hz}
                  (default true: One-Euro with mie_pose.tracking.smoothing's defaults),
     "Workers": int | "auto" (backend worker threads; default "auto": sized to the cores),
     "Pipeline": true | false (default true; false runs the plain one-frame-at-a-time loop)}

Documents (both in the ``mie_pose.schema`` shape, stored per asset in the dataplane):

- ``PoseDetection``: what the app, the API and the exports read. With smoothing on, its keypoints are
  One-Euro filtered per track (boxes, scores and track ids as detected).
- ``PoseDetectionRaw``: the backend's keypoints as they came out, with the same track ids. Stored only
  when smoothing is on (otherwise ``PoseDetection`` is already raw and a stale ``PoseDetectionRaw`` is
  deleted). The smoothed document is the default one because the smoothed keypoints are what people
  want to look at and export; analysis that must see the network's own output reads the raw one.

Each document is written in one atomic replace; the raw one goes first and is removed again if the
smoothed one cannot be stored, so a failure half way stores nothing.

Pipeline: a reader thread reads and decodes the JPEG frames, ``Workers`` threads each run their own
backend instance (TFLite interpreters are not thread-safe; LiteRT and OpenCV release the GIL, so the
workers overlap on the cores), and the calling thread collects results back in frame order, then tracks
and smooths them. At most ``in_flight`` frames (twice the workers, plus one) exist at any time, whatever
the video's length. Results are identical to the sequential loop.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import threading
from typing import Callable, Iterator

import cv2
import numpy as np

from .. import schema
from ..backends import BackendError, create_backend
from ..backends.registry import THREADED_BACKENDS, build_backend, resolve_name
from ..dataplane.base import DEFAULT_PAGE_FRAMES
from ..storage import MediaLocation
from ..tracking import OneEuroConfig, TemporalProcessor
from ..tracking.temporal import appearance_descriptors, track_frame
from .contract import STATUS_COMPLETE, OperatorError, OperatorEvent, OperatorOutput, OperatorRuntime, operator

NAME = schema.OPERATOR_NAME
RAW_NAME = NAME + "Raw"
# Backends that can be built once per worker thread (their own interpreters); any other backend runs on
# one worker.
MAX_WORKERS = 4


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


def read_frame(runtime: OperatorRuntime, bucket: str, entry: dict) -> np.ndarray:
    return decode_frame(runtime.storage.read_bytes(MediaLocation(bucket, entry["key"])), entry["index"])


def decode_frame(jpeg: bytes, index: int) -> np.ndarray:
    """A stored frame's JPEG as a BGR image; a frame that does not decode fails the operator."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise OperatorError(f"frame {index} is not a readable JPEG")
    return image


def detect(backend, entry: dict, image: np.ndarray) -> dict:
    return schema.frame_record(entry["index"], entry["timestamp_ms"], persons_to_records(backend(image)))


def detect_with_appearance(backend, entry: dict, image: np.ndarray) -> tuple[dict, list]:
    """The frame record and each person's colour descriptor (the tracker's appearance cue)."""
    record = detect(backend, entry, image)
    return record, appearance_descriptors(image, record)


def iter_sequential(runtime: OperatorRuntime, bucket: str, entries: list[dict], backend) -> Iterator[tuple]:
    """One frame at a time: read, decode, detect. The reference the pipeline must match."""
    for entry in entries:
        yield detect_with_appearance(backend, entry, read_frame(runtime, bucket, entry))


def analyse_frames(runtime: OperatorRuntime, bucket: str, entries: list[dict], backend) -> list[dict]:
    """Run the backend on each manifest entry, sequentially; return schema frame records."""
    frames = []
    for done, (record, _) in enumerate(iter_sequential(runtime, bucket, entries, backend), start=1):
        frames.append(record)
        if runtime.progress:
            runtime.progress(done, len(entries))
    return frames


class _Stop(Exception):
    pass


def iter_pipelined(runtime: OperatorRuntime, bucket: str, entries: list[dict], backends: list) -> Iterator[tuple]:
    """(frame record, appearance descriptors) in manifest order, computed by a reader thread and one worker thread per backend.

    ``in_flight`` bounds the frames between the reader and the collector (decoded images in the queue,
    frames in the workers, results waiting for an earlier frame), so memory does not grow with the video.
    """
    workers = len(backends)
    in_flight = threading.Semaphore(2 * workers + 1)
    images: queue.Queue = queue.Queue(maxsize=workers + 1)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    done_marker = object()

    def put(q: queue.Queue, item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def reader() -> None:
        try:
            for seq, entry in enumerate(entries):
                while not in_flight.acquire(timeout=0.1):
                    if stop.is_set():
                        raise _Stop
                put(images, (seq, entry, read_frame(runtime, bucket, entry)))
        except _Stop:
            return
        except BaseException as exc:  # noqa: BLE001  (handed to the collector, which raises it)
            results.put((-1, exc))
        for _ in range(workers):
            try:
                put(images, done_marker)
            except _Stop:
                return

    def worker(backend) -> None:
        while not stop.is_set():
            try:
                item = images.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is done_marker:
                return
            seq, entry, image = item
            try:
                results.put((seq, detect_with_appearance(backend, entry, image)))
            except BaseException as exc:  # noqa: BLE001
                results.put((-1, exc))
                return
            finally:
                del image, item

    threads = [threading.Thread(target=reader, name="pose-reader", daemon=True)]
    threads += [threading.Thread(target=worker, args=(b,), name=f"pose-worker-{i}", daemon=True)
                for i, b in enumerate(backends)]
    for thread in threads:
        thread.start()
    pending: dict[int, dict] = {}
    try:
        for expected in range(len(entries)):
            while expected not in pending:
                seq, value = results.get()
                if seq < 0:
                    raise value
                pending[seq] = value
            record = pending.pop(expected)
            in_flight.release()
            yield record
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def worker_count(backend_name: str, configuration: dict) -> int:
    value = configuration.get("Workers", "auto")
    if value in (None, "", "auto"):
        count = min(MAX_WORKERS, usable_cores())
    else:
        try:
            count = int(value)
        except (TypeError, ValueError):
            raise OperatorError(f"Workers must be a positive integer or \"auto\", got {value!r}") from None
        if count < 1 or count > 64:
            raise OperatorError(f"Workers must be between 1 and 64, got {value!r}")
    return count if backend_name in THREADED_BACKENDS else 1


class BackendPool:
    """``workers`` instances of one backend, each used by one thread at a time (checked out as a whole)."""

    def __init__(self, backends: list):
        self.backends = backends
        self.lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def backend_pool(name: str, model_dir: str | None, workers: int) -> BackendPool:
    """Build once per process: model loading costs more than a short clip's analysis.

    One worker uses the registry's shared instance; several get an instance each, with the cores split
    between them so that their interpreters' threads do not oversubscribe the machine.
    """
    if workers == 1:
        return BackendPool([create_backend(name, model_dir)])
    threads = max(1, usable_cores() // workers)
    return BackendPool([build_backend(name, model_dir, threads) for _ in range(workers)])


def _flag(configuration: dict, key: str, default: bool) -> bool:
    value = configuration.get(key, default)
    if value is None:
        return default
    if isinstance(value, str):
        if value.strip().lower() in ("true", "yes", "on", "1"):
            return True
        if value.strip().lower() in ("false", "no", "off", "0"):
            return False
    if isinstance(value, bool):
        return value
    raise OperatorError(f"{key} must be true or false, got {value!r}")


def temporal_settings(configuration: dict) -> tuple[bool, OneEuroConfig | None]:
    tracking = _flag(configuration, "Tracking", True)
    try:
        smoothing = OneEuroConfig.from_configuration(configuration.get("Smoothing", True))
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    if smoothing is not None and not tracking:
        if "Smoothing" in configuration and configuration["Smoothing"] not in (None, True):
            raise OperatorError("Smoothing needs Tracking: smoothing is done per track")
        smoothing = None
    return tracking, smoothing


def run_frames(runtime: OperatorRuntime, bucket: str, entries: list[dict], backends: list, pipelined: bool,
               processor: TemporalProcessor, progress: Callable[[int, int], None] | None = None):
    """Detect, track and smooth every frame; return (raw frames, smoothed frames or None)."""
    source = (iter_pipelined(runtime, bucket, entries, backends) if pipelined
              else iter_sequential(runtime, bucket, entries, backends[0]))
    raw, smoothed = [], [] if processor.smoothing else None
    for done, (entry, (record, appearances)) in enumerate(zip(entries, source), start=1):
        record, filtered = track_frame(processor, entry, record, appearances)
        raw.append(record)
        if smoothed is not None:
            smoothed.append(filtered)
        if progress:
            progress(done, len(entries))
    return raw, smoothed


@operator(NAME)
def handler(event: OperatorEvent, runtime: OperatorRuntime) -> OperatorOutput:
    configuration = dict(event.configuration)
    tracking, smoothing = temporal_settings(configuration)
    pipelined = _flag(configuration, "Pipeline", True)
    try:
        name = resolve_name(configuration.get("Backend"))
        workers = worker_count(name, configuration) if pipelined else 1
        pool = backend_pool(name, configuration.get("ModelDir"), workers)
    except BackendError as exc:
        raise OperatorError(str(exc)) from None
    location, manifest = load_manifest(runtime, event.media)
    entries = manifest["frames"]
    for entry in entries:
        entry.setdefault("width", manifest["video"]["width"])
        entry.setdefault("height", manifest["video"]["height"])
    processor = TemporalProcessor(tracking=tracking, smoothing=smoothing)
    with pool.lock:
        raw_frames, smoothed_frames = run_frames(runtime, location.bucket, entries, pool.backends, pipelined,
                                                 processor, runtime.progress)
    backend_name = pool.backends[0].name
    page_frames = int(configuration.get("PageFrames") or DEFAULT_PAGE_FRAMES)
    raw = schema.document_header(event.asset_id, backend_name, manifest["fps"], manifest["video"])
    raw["frames"] = raw_frames
    schema.validate_document(raw)
    dataplane = runtime.dataplane
    if smoothed_frames is None:
        pages = dataplane.store_metadata(event.asset_id, NAME, raw, page_frames=page_frames)
        dataplane.delete_metadata(event.asset_id, RAW_NAME)
    else:
        document = dict(raw, frames=smoothed_frames)
        schema.validate_document(document)
        raw["operator"] = RAW_NAME
        dataplane.store_metadata(event.asset_id, RAW_NAME, raw, page_frames=page_frames)
        try:
            pages = dataplane.store_metadata(event.asset_id, NAME, document, page_frames=page_frames)
        except BaseException:
            dataplane.delete_metadata(event.asset_id, RAW_NAME)
            raise
    persons = sum(len(frame["persons"]) for frame in raw_frames)
    tracks = len({p["track_id"] for frame in raw_frames for p in frame["persons"] if p["track_id"] is not None})
    metadata = {"Frames": len(raw_frames), "Persons": persons, "Pages": pages, "Backend": backend_name,
                "Tracks": tracks, "Smoothed": smoothed_frames is not None}
    if smoothed_frames is not None:
        metadata["RawOperator"] = RAW_NAME
    return OperatorOutput(name=NAME, status=STATUS_COMPLETE, media=dict(event.media), metadata=metadata,
                          configuration=configuration)
