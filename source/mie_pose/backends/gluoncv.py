"""The ``gluoncv`` backend: a local stand-in of the SageMaker endpoint (two-container serial pipeline).

Each container (``person-detector-yolo3``, then ``pose-estimator-alphapose``) runs its own ``code/`` in its
own process of the MXNet environment (``.venv-mxnet``: the MXNet inference container's packages), under
the container's serving toolkit: MMS's Python worker loads ``sagemaker_mxnet_serving_container``'s handler
service, which imports ``code/inference.py`` (``models/sagemaker_local/worker.py``). This process speaks
to each worker in MMS's own front-end protocol, and chains them as SageMaker chains a serial pipeline: the
request goes to the detector with its content type, the detector's answer body and content type are the
pose container's request. The client side is ``SageMakerEndpointBackend`` itself, so the requests
(``application/json`` chunks of base64 JPEGs), chunking and answers are those of the deployed endpoint.

This process never imports MXNet. ``model_dir`` is the build script's output
(``models/build_model_tarballs.py``): one folder per container (exported nets + ``code/``) and
``sagemaker_local/worker.py``. The MXNet Python is ``$MIE_POSE_MXNET_PYTHON``, else ``.venv-mxnet`` beside
this environment's venv, else ``.venv-mxnet`` in the working directory.
"""

from __future__ import annotations

import atexit
import io
import os
import struct
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from .sagemaker_endpoint import JSON_TYPE, SageMakerEndpointBackend

DETECTOR = "person-detector-yolo3"
POSE_ESTIMATOR = "pose-estimator-alphapose"
CONTAINERS = (DETECTOR, POSE_ESTIMATOR)
HANDLER_SERVICE = "sagemaker_mxnet_serving_container.handler_service"
WORKER = Path("sagemaker_local") / "worker.py"
# Packages this environment has and the MXNet inference container does not.
NOT_IN_CONTAINER = ("cv2", "mie_pose")
LOAD_TIMEOUT_S = 300


class ContainerError(RuntimeError):
    """A container's model server failed to start or load its model."""


class ModelError(RuntimeError):
    """A container answered an error, shaped like botocore's ``ModelError`` from ``invoke_endpoint``."""

    def __init__(self, status: int, message: str, container: str):
        super().__init__(f"{container} answered {status}: {message[:500]}")
        self.response = {"Error": {"Code": "ModelError", "Message": message[:2000]},
                         "OriginalStatusCode": status, "OriginalMessage": message[:2000]}


def find_mxnet_python() -> Path:
    """The Python of the MXNet environment (see the module docstring)."""
    configured = os.environ.get("MIE_POSE_MXNET_PYTHON")
    candidates = [Path(configured)] if configured else [
        Path(sys.prefix).parent / ".venv-mxnet" / "bin" / "python", Path.cwd() / ".venv-mxnet" / "bin" / "python"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("the MXNet environment is missing: set MIE_POSE_MXNET_PYTHON or make .venv-mxnet "
                            "(./run setup_mxnet_venv, or ./run test); looked at " + ", ".join(map(str, candidates)))


# ---- MMS's front-end <-> worker protocol (what the Java front end writes and reads) -----------------


def _string(value) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return struct.pack("!i", len(data)) + data


def load_message(model_name: str, model_dir: str, handler: str = HANDLER_SERVICE, batch_size: int = 1,
                 gpu: int = -1) -> bytes:
    """``L``: model name, model dir, batch size, handler, gpu id (-1: none), io file descriptor (none)."""
    return (b"L" + _string(model_name) + _string(model_dir) + struct.pack("!i", batch_size) + _string(handler)
            + struct.pack("!i", gpu) + _string(""))


def predict_message(body: bytes, content_type: str, accept: str, request_id: str) -> bytes:
    """``I`` with one request: its headers (as the front end forwards them) and its ``body`` parameter."""
    headers = [("Content-Type", content_type), ("Accept", accept), ("Content-Length", str(len(body)))]
    message = bytearray(b"I" + _string(request_id))
    for name, value in headers:
        message += _string(name) + _string(value)
    message += struct.pack("!i", -1)
    message += _string("body") + _string(content_type) + _string(body)
    message += struct.pack("!i", -1) + struct.pack("!i", -1)
    return bytes(message)


class _Reader:
    def __init__(self, stream):
        self.stream = stream

    def exactly(self, length: int) -> bytes:
        data = self.stream.read(length)
        if data is None or len(data) != length:
            raise ContainerError("the container's model server closed its pipe")
        return data

    def integer(self) -> int:
        return struct.unpack("!i", self.exactly(4))[0]

    def string(self) -> bytes:
        length = self.integer()
        return self.exactly(length) if length > 0 else b""


def read_load_response(stream) -> tuple[int, str]:
    reader = _Reader(stream)
    code, message = reader.integer(), reader.string().decode("utf-8", "replace")
    reader.integer()  # end of (empty) predictions
    return code, message


def read_predict_response(stream) -> list[dict]:
    """The worker's answer: per request ``{"status", "content_type", "phrase", "headers", "body"}``."""
    reader = _Reader(stream)
    batch_code, batch_message = reader.integer(), reader.string().decode("utf-8", "replace")
    answers = []
    while True:
        length = reader.integer()
        if length == -1:
            return answers
        request_id = reader.exactly(length).decode("utf-8") if length else ""
        content_type = reader.string().decode("utf-8")
        status = reader.integer()
        phrase = reader.string().decode("utf-8", "replace")
        headers = {}
        for _ in range(max(0, reader.integer())):
            key = reader.string().decode("utf-8")
            headers[key] = reader.string().decode("utf-8")
        body = reader.string()
        if batch_code != 200 and body == b"error":
            status, phrase = batch_code, batch_message
        answers.append({"request_id": request_id, "status": status, "content_type": content_type,
                        "phrase": phrase, "headers": headers, "body": body})


# ---- one container, one pipeline ---------------------------------------------------------------------


class ContainerServer:
    """One container's model server: the MMS worker of ``<model_dir>/<container>`` in the MXNet venv."""

    def __init__(self, container_dir, worker: Path, python=None, environment: dict | None = None,
                 block_imports=NOT_IN_CONTAINER, threads: int | None = None):
        self.container_dir = Path(container_dir).resolve()
        self.name = self.container_dir.name
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        threads = str(threads or os.cpu_count() or 1)
        # Locally the worker may use every core (the container's default is 1 thread per worker).
        env.update({"OMP_NUM_THREADS": threads, "MXNET_CPU_WORKER_NTHREADS": threads})
        env.update(environment or {})
        command = [str(python or find_mxnet_python()), str(Path(worker).resolve())]
        for name in block_imports:
            command += ["--block-import", name]
        self._lock = threading.Lock()
        self._stderr_tail: list[str] = []
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env, cwd=str(self.container_dir))
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        atexit.register(self.close)
        try:
            self._send(load_message("model", str(self.container_dir)))
            code, message = read_load_response(self.process.stdout)
        except (ContainerError, OSError) as exc:
            self.close()
            raise ContainerError(f"{self.name}: model server died while loading: {exc}\n{self.log_tail()}") from None
        if code != 200:
            self.close()
            raise ContainerError(f"{self.name}: model load failed ({code}): {message}\n{self.log_tail()}")

    def _drain_stderr(self):
        for line in io.TextIOWrapper(self.process.stderr, errors="replace"):
            self._stderr_tail = (self._stderr_tail + [line.rstrip()])[-40:]

    def log_tail(self) -> str:
        return "\n".join(self._stderr_tail)

    def _send(self, message: bytes):
        self.process.stdin.write(message)
        self.process.stdin.flush()

    def invoke(self, body: bytes, content_type: str, accept: str = JSON_TYPE) -> dict:
        """One request, as the model server's ``/invocations`` passes it to the worker; the worker's answer."""
        with self._lock:
            if self.process.poll() is not None:
                raise ContainerError(f"{self.name}: model server exited\n{self.log_tail()}")
            try:
                self._send(predict_message(bytes(body), content_type, accept, uuid.uuid4().hex))
                (answer,) = read_predict_response(self.process.stdout)
            except (ContainerError, OSError) as exc:
                raise ContainerError(f"{self.name}: {exc}\n{self.log_tail()}") from None
        return answer

    def close(self):
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _Body(io.BytesIO):
    """``invoke_endpoint``'s streaming ``Body``."""


class LocalPipelineClient:
    """``invoke_endpoint`` of a serial inference pipeline, run by local container model servers."""

    def __init__(self, servers):
        self.servers = list(servers)

    @classmethod
    def start(cls, model_dir, containers=CONTAINERS, environment: dict | None = None, python=None,
              threads: int | None = None) -> "LocalPipelineClient":
        model_dir = Path(model_dir)
        worker = model_dir / WORKER
        for container in containers:
            if not (model_dir / container).is_dir():
                raise FileNotFoundError(
                    f"{model_dir / container} is missing: model_dir needs one folder per container "
                    f"({', '.join(containers)}), as models/build_model_tarballs.py writes them")
        for container in containers:
            if not list((model_dir / container).glob("*-symbol.json")):
                raise FileNotFoundError(f"no *-symbol.json in {model_dir / container}")
        if not worker.is_file():
            raise FileNotFoundError(f"{worker} is missing: rebuild with models/build_model_tarballs.py")
        python = python or find_mxnet_python()
        servers = []
        try:
            for container in containers:
                servers.append(ContainerServer(model_dir / container, worker, python, environment, threads=threads))
        except BaseException:
            for server in servers:
                server.close()
            raise
        return cls(servers)

    def invoke_endpoint(self, EndpointName: str = "local", Body: bytes = b"", ContentType: str = JSON_TYPE,  # noqa: N803
                        Accept: str = JSON_TYPE, **_ignored) -> dict:
        body, content_type = Body, ContentType
        for index, server in enumerate(self.servers):
            last = index == len(self.servers) - 1
            answer = server.invoke(body, content_type, Accept if last else JSON_TYPE)
            if answer["status"] != 200:
                raise ModelError(answer["status"], answer["body"].decode("utf-8", "replace") or answer["phrase"],
                                 server.name)
            body, content_type = answer["body"], answer["content_type"] or JSON_TYPE
        return {"Body": _Body(body), "ContentType": content_type, "InvokedProductionVariant": "local"}

    def close(self):
        for server in self.servers:
            server.close()


class GluonCVBackend(SageMakerEndpointBackend):
    """YOLOv3 person boxes, then AlphaPose keypoints per box, from local container model servers.

    ``GluonCVBackend(model_dir, threshold=None, max_persons=None, short=None)``; ``backend(image_bgr)``,
    ``backend.batch(images_bgr)`` as every ``PoseBackend``. Options given become the detector container's
    environment (``MIE_POSE_DETECTOR_THRESHOLD``, ``MIE_POSE_MAX_PERSONS``, ``MIE_POSE_DETECTOR_SHORT``), as
    a SageMaker Model's container Environment would set them.
    """

    name = "gluoncv"

    def __init__(self, model_dir, threshold: float | None = None, max_persons: int | None = None,
                 short: int | None = None, python=None, threads: int | None = None, **options):
        self.model_dir = Path(model_dir)
        environment = {env: str(value) for env, value in (("MIE_POSE_DETECTOR_THRESHOLD", threshold),
                                                           ("MIE_POSE_MAX_PERSONS", max_persons),
                                                           ("MIE_POSE_DETECTOR_SHORT", short)) if value is not None}
        client = LocalPipelineClient.start(self.model_dir, environment=environment, python=python, threads=threads)
        super().__init__("local", client, **options)

    def close(self):
        self.client.close()
