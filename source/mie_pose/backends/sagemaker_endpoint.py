"""SageMakerEndpointBackend: persons from the deployed inference pipeline (person detector -> pose estimator).

The endpoint takes one JPEG (``application/x-image``) or a batch (``application/json``:
``{"images": [base64 JPEG, ...]}``) and answers the pose container's JSON:
``{"version": 1, "images": [{"width", "height", "persons": [schema person, ...]}, ...]}``, coordinates
already normalized to 0..1 (see ``models/pose-estimator-alphapose/code/inference.py``).

SageMaker real-time containers must answer within 60 s. The client (``endpoint_config``) waits 70 s, so
the endpoint's own timeout arrives first as a ``ModelError``, and botocore retries nothing itself: a
blind re-send of a multi-MB batch that just took 60 s would take 60 s again. Instead:

- throttling (``ThrottlingException``, or ``ModelError`` with an original status of 429 or 503) and
  connection failures before a request was sent are retried with exponential backoff and full jitter;
  after the last attempt ``EndpointThrottled`` is raised, which the state machine retries at its own pace;
- a model timeout halves the batch and sends both halves (one image that still times out raises
  ``EndpointTimeout``), and later requests stay at the smaller size;
- the images per request start at ``DEFAULT_MAX_BATCH`` (derived below from the measured per-image and
  per-person cost) and then follow the measured seconds per image, so a request is planned to take half
  the limit, never more than ``max_batch`` images or ``MAX_REQUEST_BYTES``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
from typing import Callable, Sequence

import numpy as np

from .base import Person

JSON_TYPE = "application/json"
IMAGE_TYPE = "application/x-image"
# InvokeEndpoint refuses request bodies over 6 MB; keep a margin for the JSON around the base64.
MAX_REQUEST_BYTES = 5_500_000
RETRYABLE_STATUS = {429, 503}

# SageMaker real-time inference: a container must answer within 60 s. The client waits a little longer,
# so that the endpoint's own timeout (a ModelError) arrives first and can be told apart.
INVOCATION_LIMIT_S = 60.0
READ_TIMEOUT_S = 70.0
CONNECT_TIMEOUT_S = 10.0
# Plan each request to take half the limit: room for a frame with more persons than planned, a slower
# instance, and the first request after a cold start.
REQUEST_BUDGET_S = INVOCATION_LIMIT_S / 2
# Measured by models/sagemaker_local/measure_cost.py through the containers' own transform_fn, on the
# random-init nets (the same compute as the pretrained ones), 1 MXNet thread as the serving container sets
# per worker, on this project's 2-core x86 machine while shared (CPU seconds, medians of 3):
#   detector: 1.53 s per 1280x720 JPEG (network input 512x910)
#   pose:     0.31-0.39 s per person (1, 4 and 8 persons; batches of 8 crops)
# GPU (the stack's default ml.g4dn.2xlarge) was not measured: no GPU here. Re-run the script on the
# endpoint's instance type to re-derive; the measured seconds per image below adapt the size anyway.
DETECTOR_S_PER_IMAGE = 1.53
POSE_S_PER_PERSON = 0.39
# Persons per frame to plan for: vtest.avi's street scene has 5.9 per frame (counted by eye), rounded up.
PLANNED_PERSONS_PER_IMAGE = 8
# = floor(30 s / (1.53 + 8 x 0.39) s) = floor(30 / 4.65) = 6 images per request (CPU worst case planned).
DEFAULT_MAX_BATCH = max(1, int(REQUEST_BUDGET_S // (DETECTOR_S_PER_IMAGE + PLANNED_PERSONS_PER_IMAGE * POSE_S_PER_PERSON)))
# After each answer the next request may grow to at most twice the last one's images (crowded frames can
# follow empty ones).
MAX_GROWTH = 2.0


def endpoint_config():
    """botocore ``Config`` for ``sagemaker-runtime``: 70 s read, 10 s connect, no botocore retries (see above)."""
    from botocore.config import Config  # noqa: PLC0415

    return Config(read_timeout=READ_TIMEOUT_S, connect_timeout=CONNECT_TIMEOUT_S, tcp_keepalive=True,
                  retries={"mode": "standard", "total_max_attempts": 1})


def runtime_client():
    """A ``sagemaker-runtime`` client with ``endpoint_config`` in this process's region."""
    import boto3  # noqa: PLC0415

    return boto3.client("sagemaker-runtime", config=endpoint_config(),
                        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


class EndpointError(RuntimeError):
    """The endpoint answered something that is not the pose container's output."""


class EndpointThrottled(RuntimeError):
    """The endpoint kept throttling after every retry."""


class EndpointTimeout(RuntimeError):
    """One image alone took the endpoint past its 60 s limit."""


def _error_details(exc: Exception) -> tuple[str, int | None]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("OriginalStatusCode")
    if status is None:
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    try:
        return code, int(status) if status is not None else None
    except (TypeError, ValueError):
        return code, None


def is_throttling(exc: Exception) -> bool:
    code, status = _error_details(exc)
    if code in ("ThrottlingException", "TooManyRequestsException", "ServiceUnavailable"):
        return True
    return code == "ModelError" and status in RETRYABLE_STATUS


# Raised by botocore before a request reached the endpoint: safe to send again.
CONNECT_ERRORS = ("EndpointConnectionError", "ConnectTimeoutError")
# Raised by botocore while waiting for the answer: the endpoint may have worked on it until its limit.
READ_ERRORS = ("ReadTimeoutError", "ConnectionClosedError")


def is_connect_error(exc: Exception) -> bool:
    return type(exc).__name__ in CONNECT_ERRORS


def is_model_timeout(exc: Exception) -> bool:
    """The endpoint (or the client's read timeout) gave up on a request that ran too long."""
    if type(exc).__name__ in READ_ERRORS:
        return True
    code, status = _error_details(exc)
    if code != "ModelError":
        return False
    response = getattr(exc, "response", None) or {}
    message = " ".join(str(v) for v in (response.get("Error", {}).get("Message"), response.get("OriginalMessage"),
                                        exc) if v).lower()
    return status in (408, 504) or "timed out" in message or "timeout" in message


def parse_person(record: dict) -> Person:
    keypoints = np.asarray(record["keypoints"], dtype=np.float32)
    if keypoints.shape != (17, 3) or len(record["bbox"]) != 4:
        raise EndpointError(f"malformed person: bbox {record.get('bbox')!r}, keypoints {keypoints.shape}")
    return Person(score=float(record.get("score", 0.0)), bbox=tuple(float(v) for v in record["bbox"]),
                  keypoints=keypoints, track_id=record.get("track_id"))


def parse_response(body: bytes | str, expected_images: int) -> list[list[Person]]:
    try:
        answer = json.loads(body)
        images = answer["images"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EndpointError(f"endpoint answer is not the pose container's JSON: {exc}") from None
    if len(images) != expected_images:
        raise EndpointError(f"endpoint answered {len(images)} images for {expected_images} sent")
    return [[parse_person(p) for p in image.get("persons", [])] for image in images]


def request_groups(sizes: Sequence[int], max_batch: int, max_bytes: int = MAX_REQUEST_BYTES) -> list[range]:
    """Split images (by encoded size) into consecutive groups that fit one request each."""
    groups, start, total = [], 0, 0
    for index, size in enumerate(sizes):
        cost = (size + 2) * 4 // 3 + 4  # base64 plus quotes and comma
        if index > start and (index - start >= max_batch or total + cost > max_bytes):
            groups.append(range(start, index))
            start, total = index, 0
        total += cost
    if start < len(sizes):
        groups.append(range(start, len(sizes)))
    return groups


class SageMakerEndpointBackend:
    """A ``PoseBackend`` whose network runs behind a SageMaker endpoint.

    ``max_batch`` caps the images per request (the operator's ``EndpointBatch``); within it the size is
    planned from measured seconds per image (module docstring). ``clock`` and ``sleep`` are for tests.
    """

    name = "sagemaker"

    def __init__(self, endpoint_name: str, client, *, max_batch: int = 100, max_attempts: int = 6,
                 base_delay: float = 0.5, max_delay: float = 20.0, jpeg_quality: int = 90,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 initial_batch: int = DEFAULT_MAX_BATCH, request_budget_s: float = REQUEST_BUDGET_S):
        if not endpoint_name:
            raise ValueError("SageMakerEndpointBackend needs an endpoint name")
        self.endpoint_name = endpoint_name
        self.client = client
        self.max_batch = max(1, int(max_batch))
        self.max_attempts = max(1, int(max_attempts))
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jpeg_quality = jpeg_quality
        self.sleep = sleep
        self.clock = clock
        self.request_budget_s = request_budget_s
        self.planned_batch = max(1, int(initial_batch))

    @classmethod
    def from_environment(cls, endpoint_name: str | None = None) -> "SageMakerEndpointBackend":
        """The endpoint named by the argument or ``ENDPOINT_NAME``, with a ``runtime_client()``."""
        from .. import aws_runtime  # noqa: PLC0415

        return cls(endpoint_name or aws_runtime.setting("ENDPOINT_NAME"), runtime_client())

    def __call__(self, image_bgr: np.ndarray) -> list[Person]:
        body = self._invoke(self._encode(image_bgr), IMAGE_TYPE)
        return parse_response(body, 1)[0]

    def batch(self, images_bgr: Sequence[np.ndarray]) -> list[list[Person]]:
        return self.batch_encoded([self._encode(image) for image in images_bgr])

    def batch_encoded(self, jpegs: Sequence[bytes]) -> list[list[Person]]:
        """Persons for each JPEG, in order; requests sized by ``planned_batch``, ``max_batch`` and bytes."""
        sizes = [len(j) for j in jpegs]
        results: list[list[Person]] = []
        start = 0
        while start < len(jpegs):
            group = request_groups(sizes[start:], min(self.max_batch, self.planned_batch))[0]
            group = range(start + group.start, start + group.stop)
            results.extend(self._invoke_group(jpegs, group))
            start = group.stop
        return results

    def _invoke_group(self, jpegs: Sequence[bytes], group: range) -> list[list[Person]]:
        images = [base64.b64encode(jpegs[i]).decode("ascii") for i in group]
        started = self.clock()
        try:
            body = self._invoke(json.dumps({"images": images}).encode(), JSON_TYPE)
        except Exception as exc:  # noqa: BLE001  (only a model timeout is handled here)
            if not is_model_timeout(exc):
                raise
            if len(group) == 1:
                raise EndpointTimeout(f"endpoint {self.endpoint_name}: one image took past the "
                                      f"{INVOCATION_LIMIT_S:.0f} s limit: {exc}") from exc
            half = len(group) // 2
            self.planned_batch = max(1, half)
            return (self._invoke_group(jpegs, range(group.start, group.start + half))
                    + self._invoke_group(jpegs, range(group.start + half, group.stop)))
        self._observe(self.clock() - started, len(group))
        return parse_response(body, len(group))

    def _observe(self, seconds: float, images: int) -> None:
        """Plan the next request from this one's seconds per image (at most ``MAX_GROWTH`` times larger)."""
        per_image = max(seconds, 1e-6) / images
        fitting = max(1, int(self.request_budget_s // per_image))
        self.planned_batch = max(1, min(fitting, int(images * MAX_GROWTH), self.max_batch))

    def _encode(self, image_bgr: np.ndarray) -> bytes:
        import cv2  # noqa: PLC0415

        ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise EndpointError("cannot encode image as JPEG")
        return encoded.tobytes()

    def _invoke(self, body: bytes, content_type: str) -> bytes:
        for attempt in range(self.max_attempts):
            try:
                response = self.client.invoke_endpoint(EndpointName=self.endpoint_name, Body=body,
                                                       ContentType=content_type, Accept=JSON_TYPE)
                return response["Body"].read()
            except Exception as exc:  # noqa: BLE001  (botocore errors; throttling and connect errors are retried)
                if not (is_throttling(exc) or is_connect_error(exc)):
                    raise
                if attempt + 1 == self.max_attempts:
                    raise EndpointThrottled(f"endpoint {self.endpoint_name} throttled or unreachable "
                                            f"{self.max_attempts} times: {exc}") from exc
                self.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt)))
        raise AssertionError("unreachable")
