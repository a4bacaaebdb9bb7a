"""Operator PoseDetection: run a pose backend on every sampled frame, track and smooth, store the documents.

Configuration: ``mie_pose.operators.configuration.PoseDetectionConfiguration`` (Backend, ModelDir,
PageFrames, Tracking, Smoothing, Workers, Pipeline, EndpointBatch, MediaType, Enabled).

Documents (``mie_pose.schema`` shape, written through the dataplane's MIE operator-results write
``store_asset_metadata``, one page of ``PageFrames`` frames per call, the last with ``end``):

- ``PoseDetection``: what the app, the API and the exports read. With smoothing on, its keypoints are
  One-Euro filtered per track (boxes, scores and track ids as detected).
- ``PoseDetectionRaw``: the backend's keypoints as they came out, with the same track ids; written only
  with smoothing on (otherwise ``PoseDetection`` is raw already and a stale ``PoseDetectionRaw`` is deleted).

Steps (``Operator``), the same for the local engine and AWS:

- ``plan``: read the frame manifest, cut it into chunks of ``PageFrames`` frames (chunk i is page i).
- ``work`` (one chunk): detect persons on its frames and, with tracking on, each person's appearance
  descriptor (the tracker's colour cue, from the same JPEG); stage both as ``PoseDetection/pages/{i}.json``
  in the run's scratch space. Locally the backend runs in a pipeline (a reader thread, ``Workers`` backend
  threads, results collected in frame order; at most ``2 * Workers + 1`` frames in flight); with the
  ``sagemaker`` backend a chunk is one batched endpoint request.
- ``commit``: tracking and smoothing need every frame in time order, so the staged pages stream through
  one ``TemporalProcessor`` (``track_frame``; a few pages read ahead, pages written behind in order), and
  each tracked page is written as the next page of the results. Readers see the previous document until
  the last page's ``end`` publishes the new one.
- ``cleanup``: delete the staged pages; a chunk still running when cleanup starts finds the cancel marker
  and deletes its own page.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import cv2
import numpy as np

from .. import schema
from ..backends import BackendError, create_backend
from ..backends.registry import THREADED_BACKENDS, build_backend, resolve_name
from ..storage import MediaLocation
from ..tracking import TemporalProcessor
from ..tracking.temporal import appearance_descriptors, track_frame
from .configuration import PoseDetectionConfiguration
from .contract import Job, Operator, OperatorError, OperatorRuntime, operator_handler
from .frame_extraction import cancel_marker, mark_cancelled

NAME = schema.OPERATOR_NAME
RAW_NAME = NAME + "Raw"
# Backends that can be built once per worker thread (their own interpreters); any other backend runs on
# one worker.
MAX_WORKERS = 4
READ_THREADS = 8
# The commit's page streaming: pages read ahead of the tracker.
READ_AHEAD = 4
DESCRIPTOR_DTYPE = "<f4"
SAGEMAKER = "sagemaker"


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


def worker_count(backend_name: str, workers) -> int:
    """Backend threads: ``workers`` (the parsed Configuration's: an int or "auto"), 1 for backends that
    cannot be built once per thread."""
    count = min(MAX_WORKERS, usable_cores()) if workers in (None, "auto") else int(workers)
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


def plan_chunks(frame_count: int, page_frames: int) -> list[dict]:
    return [{"Page": page, "Start": start, "End": min(start + page_frames, frame_count)}
            for page, start in enumerate(range(0, max(frame_count, 1), page_frames))]


def encode_descriptor(descriptor) -> str | None:
    """A float32 descriptor as base64 of its bytes: decodes to exactly the array the chunk computed."""
    if descriptor is None:
        return None
    return base64.b64encode(np.asarray(descriptor, DESCRIPTOR_DTYPE).tobytes()).decode("ascii")


def decode_descriptor(text: str | None):
    if text is None:
        return None
    return np.frombuffer(base64.b64decode(text), DESCRIPTOR_DTYPE).astype(np.float32)


def staged_page(job: Job, bucket: str, page: int) -> MediaLocation:
    return MediaLocation(bucket, f"{staging_prefix(job)}{int(page):06d}.json")


def staging_prefix(job: Job) -> str:
    return f"{job.scratch_prefix()}{NAME}/pages/"


def _prefetch(pool: ThreadPoolExecutor, load, count: int, depth: int):
    """``load(0) .. load(count - 1)`` in order, at most ``depth`` of them running ahead of the consumer."""
    pending: deque = deque()
    for number in range(count):
        pending.append(pool.submit(load, number))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class ResultsWriter:
    """One document written page by page through MIE's operator-results write (``store_asset_metadata``
    with ``paginate``; the last page with ``end``). A dataplane without it gets the whole document
    through ``store_metadata`` at the end."""

    def __init__(self, dataplane, asset_id: str, operator: str, workflow_id: str, page_frames: int):
        self.dataplane, self.asset_id, self.operator = dataplane, asset_id, operator
        self.workflow_id, self.page_frames = workflow_id, page_frames
        self.paginated = callable(getattr(dataplane, "store_asset_metadata", None))
        self.pending: dict | None = None
        self.collected: dict | None = None

    def add(self, page: dict) -> None:
        if not self.paginated:
            if self.collected is None:
                self.collected = dict(page, frames=[])
            self.collected["frames"].extend(page["frames"])
            return
        if self.pending is not None:
            self.dataplane.store_asset_metadata(self.asset_id, self.operator, self.workflow_id, self.pending,
                                                paginate=True, end=False)
        self.pending = page

    def finish(self) -> None:
        if not self.paginated:
            self.dataplane.store_metadata(self.asset_id, self.operator, self.collected, page_frames=self.page_frames)
            return
        self.dataplane.store_asset_metadata(self.asset_id, self.operator, self.workflow_id, self.pending,
                                            paginate=True, end=True)


class PoseDetection(Operator):
    name = NAME

    def _manifest(self, job: Job, runtime: OperatorRuntime) -> tuple[MediaLocation, dict]:
        cached = getattr(job, "_manifest", None)
        if cached is None:
            location, manifest = load_manifest(runtime, job.event.input_media)
            for entry in manifest["frames"]:
                entry.setdefault("width", manifest["video"]["width"])
                entry.setdefault("height", manifest["video"]["height"])
            cached = job._manifest = (location, manifest)
        return cached

    def backend_name(self, job: Job) -> str:
        try:
            return resolve_name(job.configuration.Backend)
        except BackendError as exc:
            raise OperatorError(str(exc)) from None

    def plan(self, job: Job, runtime: OperatorRuntime) -> dict:
        config: PoseDetectionConfiguration = job.configuration
        name = self.backend_name(job)
        if name != SAGEMAKER:
            self._pool(job, name)  # a backend that cannot start fails here, before any frame
        location, manifest = self._manifest(job, runtime)
        frame_count = len(manifest["frames"])
        return {"Items": plan_chunks(frame_count, config.PageFrames), "FrameCount": frame_count,
                "Backend": name, "Bucket": location.bucket}

    def expected_frames(self, plan: dict) -> int | None:
        return plan.get("FrameCount")

    def progress(self, job: Job, plan: dict, runtime: OperatorRuntime) -> int | None:
        staged = len(runtime.storage.list_keys(plan["Bucket"], staging_prefix(job)))
        return min(staged * job.configuration.PageFrames, plan["FrameCount"])

    def _pool(self, job: Job, name: str) -> "BackendPool":
        config: PoseDetectionConfiguration = job.configuration
        workers = worker_count(name, config.Workers) if config.Pipeline else 1
        try:
            return backend_pool(name, config.ModelDir, workers)
        except BackendError as exc:
            raise OperatorError(str(exc)) from None

    def detect(self, job: Job, plan: dict, entries: list[dict], runtime: OperatorRuntime, tick=None):
        """(frame records, appearance descriptors per frame or None) for ``entries``, in order."""
        config: PoseDetectionConfiguration = job.configuration
        bucket = plan["Bucket"]
        if plan["Backend"] == SAGEMAKER:
            return self._detect_on_endpoint(config, bucket, entries, runtime, tick)
        pool = self._pool(job, plan["Backend"])
        frames, appearances = [], []
        with pool.lock:
            source = (iter_pipelined(runtime, bucket, entries, pool.backends) if config.Pipeline
                      else iter_sequential(runtime, bucket, entries, pool.backends[0]))
            for record, found in source:
                frames.append(record)
                appearances.append([encode_descriptor(d) for d in found])
                if tick:
                    tick(1)
        return frames, appearances if config.Tracking else None

    def _detect_on_endpoint(self, config, bucket, entries, runtime, tick):
        from ..backends.sagemaker_endpoint import SageMakerEndpointBackend  # noqa: PLC0415

        backend = SageMakerEndpointBackend.from_environment(config.ModelDir)
        backend.max_batch = int(config.EndpointBatch or len(entries) or 1)
        with ThreadPoolExecutor(READ_THREADS) as threads:
            jpegs = list(threads.map(lambda e: runtime.storage.read_bytes(MediaLocation(bucket, e["key"])), entries))
            persons = backend.batch_encoded(jpegs) if jpegs else []
            frames = [schema.frame_record(entry["index"], entry["timestamp_ms"], persons_to_records(found))
                      for entry, found in zip(entries, persons)]
            # OpenCV releases the GIL: the frames decode in parallel.
            appearances = list(threads.map(frame_appearances, jpegs, frames)) if config.Tracking else None
        if tick:
            tick(len(frames))
        return frames, appearances

    def work(self, job: Job, plan: dict, item: dict, runtime: OperatorRuntime, tick=None) -> dict:
        _, manifest = self._manifest(job, runtime)
        entries = manifest["frames"][int(item["Start"]):int(item["End"])]
        frames, appearances = self.detect(job, plan, entries, runtime, tick)
        header = schema.document_header(job.asset_id, plan["Backend"], manifest["fps"], manifest["video"])
        schema.validate_document(dict(header, frames=frames))
        bucket, storage = plan["Bucket"], runtime.storage
        page = staged_page(job, bucket, item["Page"])
        storage.write_bytes(page, json.dumps({"frames": frames, "appearances": appearances}).encode(),
                            "application/json")
        if storage.exists(MediaLocation(bucket, cancel_marker(job.asset_id, job.execution_id, NAME))):
            storage.delete_prefix(bucket, page.key)  # cleanup ran while this chunk was detecting
            raise OperatorError("PoseDetection was cancelled while this chunk ran")
        return {"Page": item["Page"], "Frames": len(frames), "Persons": sum(len(f["persons"]) for f in frames)}

    def commit(self, job: Job, plan: dict, runtime: OperatorRuntime) -> tuple[dict, dict]:
        config: PoseDetectionConfiguration = job.configuration
        _, manifest = self._manifest(job, runtime)
        entries, bucket, storage = manifest["frames"], plan["Bucket"], runtime.storage
        smoothing = config.one_euro()
        processor = TemporalProcessor(tracking=config.Tracking, smoothing=smoothing)
        header = schema.document_header(job.asset_id, plan["Backend"], manifest["fps"], manifest["video"])
        pages = len(plan["Items"])
        writers = {NAME: ResultsWriter(runtime.dataplane, job.asset_id, NAME, job.execution_id, config.PageFrames)}
        if processor.smoothing:
            writers[RAW_NAME] = ResultsWriter(runtime.dataplane, job.asset_id, RAW_NAME, job.execution_id,
                                              config.PageFrames)

        def load(number: int) -> dict:
            location = staged_page(job, bucket, number)
            if not storage.exists(location):
                raise OperatorError(f"chunk {number} of {pages} did not report back")
            return json.loads(storage.read_bytes(location))

        entry_of = iter(entries)
        persons, track_ids = 0, set()
        with ThreadPoolExecutor(READ_AHEAD) as threads:
            for number, staged in enumerate(_prefetch(threads, load, pages, READ_AHEAD)):
                appearances = staged.get("appearances") or [None] * len(staged["frames"])
                raw_page, smoothed_page = [], []
                for record, encoded in zip(staged["frames"], appearances):
                    entry = next(entry_of, None)
                    if entry is None or entry["index"] != record["index"]:
                        raise OperatorError(f"page {number} holds frame {record['index']}, the manifest has "
                                            f"{None if entry is None else entry['index']} there")
                    descriptors = [decode_descriptor(d) for d in encoded] if encoded is not None else None
                    raw, smoothed = track_frame(processor, entry, record, descriptors)
                    persons += len(raw["persons"])
                    track_ids.update(p["track_id"] for p in raw["persons"] if p["track_id"] is not None)
                    raw_page.append(raw)
                    smoothed_page.append(smoothed)
                if processor.smoothing:
                    smoothed_doc = dict(header, frames=smoothed_page)
                    schema.validate_document(smoothed_doc)
                    writers[RAW_NAME].add(dict(header, operator=RAW_NAME, frames=raw_page))
                    writers[NAME].add(smoothed_doc)
                else:
                    writers[NAME].add(dict(header, frames=raw_page))
        if next(entry_of, None) is not None:
            raise OperatorError("the staged pages hold fewer frames than the manifest")
        if RAW_NAME in writers:
            writers[RAW_NAME].finish()
        writers[NAME].finish()
        if RAW_NAME not in writers:
            runtime.dataplane.delete_metadata(job.asset_id, RAW_NAME)
        storage.delete_prefix(bucket, staging_prefix(job))
        metadata = {"Frames": len(entries), "Persons": persons, "Pages": pages, "Backend": plan["Backend"],
                    "Tracks": len(track_ids), "Smoothed": processor.smoothing}
        if processor.smoothing:
            metadata["RawOperator"] = RAW_NAME
        return {}, metadata

    def cleanup(self, job: Job, plan: dict | None, runtime: OperatorRuntime) -> None:
        if not plan or not plan.get("Bucket"):
            return
        bucket = plan["Bucket"]
        try:
            mark_cancelled(runtime.storage, bucket, job, NAME)
        finally:
            runtime.storage.delete_prefix(bucket, staging_prefix(job))


def frame_appearances(jpeg: bytes, record: dict) -> list:
    """Each person's encoded descriptor, from the frame's JPEG (the image the local backends use too)."""
    image = decode_frame(jpeg, record["index"])
    return [encode_descriptor(d) for d in appearance_descriptors(image, record)]


OPERATOR = PoseDetection()
handler = operator_handler(OPERATOR)
