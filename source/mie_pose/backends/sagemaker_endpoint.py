"""SageMakerEndpointBackend: persons from the deployed inference pipeline (person detector -> pose estimator).

The endpoint takes one JPEG (``application/x-image``) or a batch (``application/json``:
``{"images": [base64 JPEG, ...]}``) and answers the pose container's JSON:
``{"version": 1, "images": [{"width", "height", "persons": [schema person, ...]}, ...]}``, coordinates
already normalized to 0..1 (see ``models/pose-estimator-alphapose/code/inference.py``).

Throttling (``ThrottlingException``, or ``ModelError`` with an original status of 429 or 503) is retried
with exponential backoff and full jitter; after the last attempt ``EndpointThrottled`` is raised, which the
state machine retries once more at its own pace.
"""

from __future__ import annotations

import base64
import json
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


class EndpointError(RuntimeError):
    """The endpoint answered something that is not the pose container's output."""


class EndpointThrottled(RuntimeError):
    """The endpoint kept throttling after every retry."""


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
    """A ``PoseBackend`` whose network runs behind a SageMaker endpoint."""

    name = "sagemaker"

    def __init__(self, endpoint_name: str, client, *, max_batch: int = 100, max_attempts: int = 6,
                 base_delay: float = 0.5, max_delay: float = 20.0, jpeg_quality: int = 90,
                 sleep: Callable[[float], None] = time.sleep):
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

    @classmethod
    def from_environment(cls, endpoint_name: str | None = None) -> "SageMakerEndpointBackend":
        """The endpoint named by the argument or ``ENDPOINT_NAME``, with a sagemaker-runtime client."""
        from .. import aws_runtime  # noqa: PLC0415

        return cls(endpoint_name or aws_runtime.setting("ENDPOINT_NAME"), aws_runtime.client("sagemaker-runtime"))

    def __call__(self, image_bgr: np.ndarray) -> list[Person]:
        body = self._invoke(self._encode(image_bgr), IMAGE_TYPE)
        return parse_response(body, 1)[0]

    def batch(self, images_bgr: Sequence[np.ndarray]) -> list[list[Person]]:
        return self.batch_encoded([self._encode(image) for image in images_bgr])

    def batch_encoded(self, jpegs: Sequence[bytes]) -> list[list[Person]]:
        """Persons for each JPEG, in order; one request per group that fits the request size limit."""
        results: list[list[Person]] = []
        for group in request_groups([len(j) for j in jpegs], self.max_batch):
            images = [base64.b64encode(jpegs[i]).decode("ascii") for i in group]
            body = self._invoke(json.dumps({"images": images}).encode(), JSON_TYPE)
            results.extend(parse_response(body, len(group)))
        return results

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
            except Exception as exc:  # noqa: BLE001  (botocore ClientError; only throttling is retried)
                if not is_throttling(exc):
                    raise
                if attempt + 1 == self.max_attempts:
                    raise EndpointThrottled(f"endpoint {self.endpoint_name} throttled {self.max_attempts} times: "
                                            f"{exc}") from exc
                self.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt)))
        raise AssertionError("unreachable")
