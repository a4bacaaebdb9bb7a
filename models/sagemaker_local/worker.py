"""One SageMaker MXNet container's model server, locally: MMS's Python worker, over stdin/stdout.

    .venv-mxnet/bin/python worker.py [--block-import cv2 ...]

In the MXNet inference container, multi-model-server's Java front end starts ``mms.model_service_worker``
and talks to it over a socket in MMS's binary protocol (``mms.protocol.otf_message_handler``): one load
message (``L``: model name, model dir, batch size, handler), then one predict message (``I``) per request
with its headers and body. This worker reads exactly those messages on stdin and writes the worker's
exact answers on stdout, through MMS's own decoder, model loader (``mms.model_loader``, which initializes
``sagemaker_mxnet_serving_container.handler_service.HandlerService`` as the container's entry point does)
and ``Service.predict``. Only the socket, the forked process per connection and the log FIFOs are left out.

Set up as the container and its front end set it up: ``SAGEMAKER_PROGRAM`` (default ``inference.py``)
imported from ``<model dir>/code`` on the path, request bodies not decoded (``decode_input_request=false``
of the toolkit's MMS config), the serving container's MXNet thread defaults unless the environment says
otherwise. ``--block-import NAME`` makes a module unimportable, for packages this environment has but
the container does not (Python OpenCV).

One difference from MMS 1.1.8, on purpose: a handler service whose ``initialize`` raises makes the load
fail here with that error (MMS logs nothing and answers every request 503 "Prediction failed").
"""

from __future__ import annotations

import argparse
import importlib.abc
import os
import sys

# The MXNet serving container's defaults (sagemaker_mxnet_serving_container.serving) and MMS's worker's.
CONTAINER_ENV = {
    "MXNET_CPU_WORKER_NTHREADS": "1",
    "MXNET_CPU_PRIORITY_NTHREADS": "1",
    "MXNET_KVSTORE_REDUCTION_NTHREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MXNET_USE_OPERATOR_TUNING": "0",
    "MMS_DECODE_INPUT_REQUEST": "false",
    "SAGEMAKER_PROGRAM": "inference.py",
}
HANDLER_SERVICE = "sagemaker_mxnet_serving_container.handler_service"


class BlockedImports(importlib.abc.MetaPathFinder):
    """Refuses to import the named top-level packages, as if they were not installed."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (not in the SageMaker MXNet container)",
                                      name=fullname)
        return None


class Pipe:
    """The ``recv``/``send`` of MMS's socket, on two file descriptors."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd

    def recv(self, length: int) -> bytes:
        return os.read(self.read_fd, length)

    def send(self, data) -> None:
        view = memoryview(bytes(data))
        while view:
            view = view[os.write(self.write_fd, view):]


def load(message: dict):
    """MMS's worker's load: the model loader initializes the handler service; returns (service, code, text)."""
    from mms.model_loader import ModelLoaderFactory

    model_dir = message["modelPath"].decode("utf-8")
    code_dir = os.path.join(model_dir, "code")
    sys.path.insert(0, code_dir)
    os.environ["PYTHONPATH"] = code_dir + os.pathsep + os.environ.get("PYTHONPATH", "")
    loader = ModelLoaderFactory.get_model_loader(model_dir)
    gpu = message.get("gpu")
    service = loader.load(message["modelName"].decode("utf-8"), model_dir, message["handler"].decode("utf-8"),
                          gpu, int(message.get("batchSize", 1)))
    handler = getattr(service._entry_point, "__self__", None)  # noqa: SLF001  (MMS keeps it private)
    if handler is not None and getattr(handler, "_service", True) is None:
        # MMS swallowed initialize()'s error: run the toolkit's check again to report it.
        try:
            handler._user_module_transformer(model_dir)  # noqa: SLF001
        except Exception as exc:  # noqa: BLE001
            return None, 500, f"handler service failed to initialize: {type(exc).__name__}: {exc}"
        return None, 500, "handler service failed to initialize"
    return service, 200, f"loaded model {message['modelName'].decode('utf-8')}. [PID]:{os.getpid()}"


def serve(pipe: Pipe) -> int:
    from mms.protocol.otf_message_handler import create_load_model_response, retrieve_msg

    service = None
    while True:
        try:
            command, message = retrieve_msg(pipe)
        except ValueError:  # the front end closed the pipe
            return 0
        if command == b"L":
            try:
                service, code, text = load(message)
            except Exception as exc:  # noqa: BLE001  (reported to the front end, as MMS reports load errors)
                service, code, text = None, 500, f"{type(exc).__name__}: {exc}"
            pipe.send(create_load_model_response(code, text))
        elif service is None:
            from mms.protocol.otf_message_handler import create_predict_response

            pipe.send(create_predict_response(None, {0: "none"}, "model not loaded", 503))
        else:
            pipe.send(service.predict(message))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block-import", action="append", default=[], metavar="NAME",
                        help="make this package unimportable (repeatable)")
    args = parser.parse_args(argv)
    for key, value in CONTAINER_ENV.items():
        os.environ.setdefault(key, value)
    if args.block_import:
        sys.meta_path.insert(0, BlockedImports(args.block_import))
    # Answers go to the real stdout; anything the toolkit or the script prints goes to stderr.
    answers = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(Pipe(0, answers))


if __name__ == "__main__":
    sys.exit(main())
