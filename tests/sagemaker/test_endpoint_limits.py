"""The endpoint client fitted to SageMaker's 60 s limit (issue 13 item 6): timeouts, retries, request sizes.

A fake ``sagemaker-runtime`` client stands for the endpoint; ``ClientError`` is botocore's own.
"""

from __future__ import annotations

import io
import json

import pytest

pytest.importorskip("botocore")
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError  # noqa: E402

from mie_pose.backends import sagemaker_endpoint as endpoint  # noqa: E402
from mie_pose.backends.sagemaker_endpoint import EndpointTimeout, SageMakerEndpointBackend  # noqa: E402


def _answer(count: int) -> bytes:
    person = {"score": 0.9, "bbox": [0.1, 0.1, 0.5, 0.9], "keypoints": [[0.2, 0.3, 0.8]] * 17, "track_id": None}
    return json.dumps({"version": 1, "images": [{"width": 64, "height": 48, "persons": [person]}] * count}).encode()


def _timeout_error() -> ClientError:
    message = ('Received server error (0) from primary with message "Your invocation timed out while waiting for '
               'a response from container primary."')
    return ClientError({"Error": {"Code": "ModelError", "Message": message}, "OriginalStatusCode": 0},
                       "InvokeEndpoint")


class Endpoint:
    """Answers in ``per_image`` seconds per image (on a fake clock); times out past ``limit`` seconds."""

    def __init__(self, per_image: float, limit: float = endpoint.INVOCATION_LIMIT_S, failures=()):
        self.per_image, self.limit, self.failures = per_image, limit, list(failures)
        self.now, self.calls = 0.0, []

    def clock(self) -> float:
        return self.now

    def invoke_endpoint(self, EndpointName, Body, ContentType, Accept):  # noqa: N803
        count = len(json.loads(Body)["images"]) if ContentType == "application/json" else 1
        self.calls.append(count)
        if self.failures:
            raise self.failures.pop(0)
        seconds = count * self.per_image
        self.now += min(seconds, self.limit)
        if seconds > self.limit:
            raise _timeout_error()
        return {"Body": io.BytesIO(_answer(count))}


def test_client_config_waits_past_the_limit_and_leaves_retries_to_us():
    config = endpoint.endpoint_config()
    assert endpoint.INVOCATION_LIMIT_S < config.read_timeout <= 90
    assert config.connect_timeout <= 10
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}


def test_runtime_client_uses_the_config(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = endpoint.runtime_client()
    assert client.meta.config.read_timeout == endpoint.READ_TIMEOUT_S
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert client.meta.region_name == "eu-west-1"


def test_default_request_size_is_derived_from_the_measured_cost():
    per_image = endpoint.DETECTOR_S_PER_IMAGE + endpoint.PLANNED_PERSONS_PER_IMAGE * endpoint.POSE_S_PER_PERSON
    assert endpoint.DEFAULT_MAX_BATCH == int(endpoint.REQUEST_BUDGET_S // per_image) == 6
    assert endpoint.DEFAULT_MAX_BATCH * per_image <= endpoint.INVOCATION_LIMIT_S / 2


def test_a_model_timeout_halves_the_batch_and_keeps_every_answer_in_order():
    # 12 s per image: 6 images (72 s) time out, 3 (36 s) fit.
    fake = Endpoint(per_image=12.0)
    backend = SageMakerEndpointBackend("ep", fake, clock=fake.clock, sleep=lambda s: pytest.fail("slept"))
    persons = backend.batch_encoded([b"x" * 10] * 12)
    assert len(persons) == 12 and all(len(p) == 1 for p in persons)
    assert fake.calls[:3] == [6, 3, 3]  # halved, both halves sent
    assert max(fake.calls[3:]) <= 3  # later requests stay small enough
    assert all(count * 12.0 <= 60 for count in fake.calls[1:])


def test_one_image_past_the_limit_raises_endpoint_timeout():
    fake = Endpoint(per_image=61.0)
    backend = SageMakerEndpointBackend("ep", fake, clock=fake.clock)
    with pytest.raises(EndpointTimeout):
        backend.batch_encoded([b"x"] * 2)
    assert fake.calls == [2, 1]


def test_a_read_timeout_of_the_client_counts_as_a_model_timeout():
    fake = Endpoint(per_image=0.1, failures=[ReadTimeoutError(endpoint_url="https://runtime.sagemaker/ep")])
    backend = SageMakerEndpointBackend("ep", fake, clock=fake.clock, initial_batch=4)
    assert len(backend.batch_encoded([b"x"] * 4)) == 4
    assert fake.calls[:3] == [4, 2, 2]


def test_request_size_follows_the_measured_seconds_per_image():
    fast = Endpoint(per_image=0.5)  # a GPU-like endpoint: the size grows (x2 at most) to the cap
    backend = SageMakerEndpointBackend("ep", fast, clock=fast.clock, max_batch=40)
    backend.batch_encoded([b"x" * 10] * 120)
    assert fast.calls == [6, 12, 24, 40, 38]
    slow = Endpoint(per_image=9.0)  # slower than planned: shrinks to 30 s / 9 s = 3 images
    backend = SageMakerEndpointBackend("ep", slow, clock=slow.clock)
    backend.batch_encoded([b"x" * 10] * 12)
    assert slow.calls == [6, 3, 3]


def test_connection_errors_before_sending_are_retried_but_other_model_errors_are_not():
    fake = Endpoint(per_image=0.1, failures=[EndpointConnectionError(endpoint_url="https://runtime.sagemaker")])
    backend = SageMakerEndpointBackend("ep", fake, clock=fake.clock, sleep=lambda s: None)
    assert len(backend.batch_encoded([b"x"] * 3)) == 3 and fake.calls == [3, 3]
    error = ClientError({"Error": {"Code": "ModelError", "Message": "Received server error (500)"},
                         "OriginalStatusCode": 500}, "InvokeEndpoint")
    fake = Endpoint(per_image=0.1, failures=[error])
    backend = SageMakerEndpointBackend("ep", fake, clock=fake.clock, sleep=lambda s: pytest.fail("slept"))
    with pytest.raises(ClientError):
        backend.batch_encoded([b"x"] * 3)
    assert not endpoint.is_model_timeout(error) and endpoint.is_model_timeout(_timeout_error())
