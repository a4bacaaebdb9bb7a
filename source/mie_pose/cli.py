"""The ``mie-pose`` command line: analyse videos, read results, manage models.

Every user-facing failure ends as one readable line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from . import __version__, schema
from .dataplane import DataplaneError, SqliteDataplane

EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"FPS must be a positive finite number, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mie-pose", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mie-pose {__version__}")
    parser.add_argument("--data-dir", help="dataplane folder (default: $MIE_POSE_HOME or ~/.mie-pose)")
    parser.add_argument("--api", default=os.environ.get("MIE_POSE_API") or None, metavar="URL",
                        help="read through this dataplane/workflow API (MIE's routes; `mie-pose serve`'s URL, "
                             "default $MIE_POSE_API) instead of the local data dir: results, list, delete")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser("analyze", help="run the pose workflow on a video")
    analyze.add_argument("video", type=Path)
    analyze.add_argument("--fps", type=_fps, help="frames sampled per second of video (default 2)")
    analyze.add_argument("--backend", help="pose backend: topdown (default), topdown-movenet, blazepose, gluoncv")
    analyze.add_argument("--model-dir", help="model folder for the backend (gluoncv: the exported nets)")
    analyze.add_argument("--max-frames", type=_positive_int, help="stop after this many sampled frames")
    analyze.add_argument("--max-width", type=_positive_int, help="downscale frames wider than this")
    analyze.add_argument("--output", type=Path, help="also write the result document to this JSON file")
    analyze.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    results = commands.add_parser("results", help="print the stored PoseDetection document of an asset")
    results.add_argument("asset_id")
    results.add_argument("--operator", default=schema.OPERATOR_NAME)

    commands.add_parser("list", help="list assets and their workflow executions")

    delete = commands.add_parser("delete", help="delete an asset with its media, results and executions")
    delete.add_argument("asset_id")

    export = commands.add_parser("export", help="export an asset's results: COCO keypoints JSON, CSV, or MP4 overlay")
    export.add_argument("asset_id")
    export.add_argument("--format", required=True, choices=("coco", "csv", "mp4"))
    export.add_argument("-o", "--output", required=True, type=Path, help="file to write")
    export.add_argument("--operator", default=schema.OPERATOR_NAME,
                        help="which document (default PoseDetection; PoseDetectionRaw: unsmoothed)")

    serve = commands.add_parser("serve", help="serve the web app and the dataplane/workflow API locally")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8080)

    routes = commands.add_parser("routes", help="print the API route table")
    routes.add_argument("--json", action="store_true")

    install = commands.add_parser(
        "install-models", help="fetch the BlazePose detector from the mediapipe wheel (the landmark model ships "
                               "with the package)")
    install.add_argument("--model-dir", help="where to put it (default: the venv's share/mie-pose/models)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(message)s")
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"mie-pose: error: {exc}", file=sys.stderr)
        return exc.code
    except (DataplaneError, OSError) as exc:
        print(f"mie-pose: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("mie-pose: interrupted", file=sys.stderr)
        return 130


def _dataplane(args) -> SqliteDataplane:
    return SqliteDataplane(args.data_dir)


def cmd_analyze(args) -> int:
    from .workflow import WorkflowEngine

    video: Path = args.video
    if not video.exists():
        raise CliError(f"no such file: {video}", EXIT_USAGE)
    if not video.is_file():
        raise CliError(f"not a file: {video}", EXIT_USAGE)
    overrides = {"FrameExtraction": {}, "PoseDetection": {}}
    for key, value in (("FPS", args.fps), ("MaxFrames", args.max_frames), ("MaxWidth", args.max_width)):
        if value is not None:
            overrides["FrameExtraction"][key] = value
    for key, value in (("Backend", args.backend), ("ModelDir", args.model_dir)):
        if value is not None:
            overrides["PoseDetection"][key] = value

    dataplane = _dataplane(args)
    started = time.monotonic()
    asset_id = dataplane.import_video(video)
    engine = WorkflowEngine(dataplane, dataplane.storage)
    with _ProgressBars(enabled=not args.no_progress) as bars:
        execution = engine.run(asset_id, overrides, progress=bars.update)
    elapsed = time.monotonic() - started
    print(f"asset {asset_id}")
    for stage in execution["Workflow"]["Stages"].values():
        for output in stage.get("Outputs") or []:
            for warning in (output.get("MetaData") or {}).get("Warnings", []):
                print(f"mie-pose: warning: {output['Name']}: {warning}", file=sys.stderr)
    if execution["Status"] != "Complete":
        raise CliError(f"workflow {execution['Id']} failed: {execution.get('Message') or execution['Status']}")
    _prepare_browser_proxy(dataplane, asset_id)
    document = dataplane.read_document(asset_id, schema.OPERATOR_NAME)
    frames = document["frames"]
    persons = sum(len(frame["persons"]) for frame in frames)
    with_people = sum(1 for frame in frames if frame["persons"])
    most = max((len(frame["persons"]) for frame in frames), default=0)
    print(f"workflow {execution['Id']}: Complete in {elapsed:.1f} s")
    print(f"frames {len(frames)} at {document['fps']:g} fps, {with_people} with people, "
          f"persons {persons} (at most {most} in one frame), backend {document['backend']}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(document))
        print(f"results written to {args.output}")
    print(f"results stored in {dataplane.data_dir} (read them with: mie-pose results {asset_id})")
    return 0


def _prepare_browser_proxy(dataplane, asset_id: str) -> None:
    """Make the web app's H.264 copy now, so the first page load does not wait for ffmpeg."""
    from .video.proxy import ensure_browser_proxy

    try:
        ensure_browser_proxy(dataplane, asset_id)
    except Exception as exc:  # noqa: BLE001  (the analysis succeeded; playback falls back to the original)
        logging.getLogger("mie_pose.cli").warning("no browser proxy for %s: %s", asset_id, exc)


class _Api:
    """The few MIE routes the CLI reads, over HTTP (``--api``)."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def call(self, method: str, path: str, params: dict | None = None):
        url = self.base + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, method=method, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310  (the user's URL)
                body = response.read().decode()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("Message") or exc.reason
            except ValueError:
                message = exc.reason
            raise CliError(f"{method} {path}: {exc.code} {message}") from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach the API at {self.base}: {exc.reason}") from None
        try:
            return json.loads(body)
        except ValueError:
            return body  # a view's string (Chalice sends it as it is)

    def pages(self, path: str):
        """MIE's pagination: follow ``cursor`` until a page has none."""
        params = None
        while True:
            page = self.call("GET", path, params)
            yield page
            if "cursor" not in page:
                return
            params = {"cursor": page["cursor"]}


def cmd_results(args) -> int:
    if args.api:
        document = None
        for page in _Api(args.api).pages(f"/metadata/{urllib.parse.quote(args.asset_id)}/{urllib.parse.quote(args.operator)}"):
            results = page["results"]
            if document is None:
                document = dict(results)
            else:
                document.setdefault("frames", []).extend(results.get("frames", []))
    else:
        document = _dataplane(args).read_document(args.asset_id, args.operator)
    json.dump(document, sys.stdout)
    sys.stdout.write("\n")
    return 0


def _list_through_api(base: str) -> int:
    api = _Api(base)
    asset_ids = api.call("GET", "/metadata")["assets"] or []
    if not asset_ids:
        print("no assets yet")
    for asset_id in asset_ids:
        first = api.call("GET", f"/metadata/{urllib.parse.quote(asset_id)}")["results"]
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(first.get("Created") or 0)))
        print(f"{asset_id}  {created}  {str(first.get('S3Key') or '').rsplit('/', 1)[-1]}")
        for execution in reversed(api.call("GET", f"/workflow/execution/asset/{urllib.parse.quote(asset_id)}")):
            print(_execution_line(api.call("GET", f"/workflow/execution/{urllib.parse.quote(execution['Id'])}")))
    return 0


def cmd_list(args) -> int:
    from .workflow.engine import mark_dead_runs

    if args.api:
        return _list_through_api(args.api)
    dataplane = _dataplane(args)
    assets = dataplane.list_assets()
    if not assets:
        print("no assets yet: run mie-pose analyze VIDEO")
    for asset in assets:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(asset["created"]))
        print(f"{asset['asset_id']}  {created}  {asset['source_name']}")
        for execution in mark_dead_runs(dataplane, dataplane.list_executions(asset["asset_id"])):
            print(_execution_line(execution))
    return 0


def _execution_line(execution: dict) -> str:
    """One execution as `mie-pose list` prints it, whether the record came from the dataplane or the API."""
    line = f"    execution {execution['Id']}  {execution['Status']}"
    progress = _running_progress(execution)
    if progress:
        line += f"  {progress}"
    if execution.get("Message"):
        line += f"  ({execution['Message']})"
    return line


def _running_progress(execution: dict) -> str:
    """"PoseDetectionStage 120/400 frames" for a running execution, else ""."""
    if execution["Status"] not in ("Queued", "Started"):
        return ""
    stage = execution["Workflow"]["Stages"].get(execution.get("CurrentStage") or "", {})
    progress = stage.get("Progress")
    if not progress:
        return execution.get("CurrentStage") or ""
    total = progress.get("FramesTotal")
    return f"{execution['CurrentStage']} {progress['FramesDone']}/{total if total is not None else '?'} frames"


def cmd_delete(args) -> int:
    from .dataplane.base import Status
    from .workflow.engine import mark_dead_runs

    if args.api:
        print(_Api(args.api).call("DELETE", f"/metadata/{urllib.parse.quote(args.asset_id)}"))
        return 0
    dataplane = _dataplane(args)
    dataplane.get_asset(args.asset_id)
    running = [e for e in mark_dead_runs(dataplane, dataplane.list_executions(args.asset_id)) if e["Status"] in Status.ACTIVE]
    if running:
        raise CliError(f"workflow {running[0]['Id']} is {running[0]['Status']} on asset {args.asset_id}: "
                       "delete it once it has ended")
    summary = dataplane.delete_asset(args.asset_id)
    print(f"deleted asset {args.asset_id}: {summary['Media']} media objects, results of "
          f"{', '.join(summary['Operators']) or 'no operators'}")
    return 0


def cmd_export(args) -> int:
    from .exports import FORMATS, ExportError

    dataplane = _dataplane(args)
    try:
        summary = FORMATS[args.format](dataplane, args.asset_id, args.output, operator=args.operator)
    except ExportError as exc:
        raise CliError(str(exc)) from None
    details = ", ".join(f"{k} {v}" for k, v in summary.items())
    print(f"{args.format} written to {args.output} ({details})")
    return 0


def cmd_serve(args) -> int:
    from .server import serve

    serve(_dataplane(args), host=args.host, port=args.port)
    return 0


def cmd_routes(args) -> int:
    from .api.routes import routes_as_json

    table = routes_as_json()
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        for route in table:
            print(f"{route['method']:<6} {route['path']:<42} {route['description']}")
    return 0


def cmd_install_models(args) -> int:
    from .backends.blazepose import install_weights

    path = install_weights(args.model_dir)
    print(f"BlazePose detector model in {path}")
    return 0


class _ProgressBars:
    """One tqdm bar per operator: frames done/total and rate, on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bars: dict[str, object] = {}

    def __enter__(self):
        return self

    def update(self, stage: str, operator_name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(operator_name)
        if bar is None:
            for finished in self.bars.values():  # one stage at a time: close the previous bar first
                finished.close()
            bar = self.bars[operator_name] = tqdm(total=total, desc=f"{operator_name:<16}", unit="frame",
                                                  file=sys.stderr, dynamic_ncols=True)
        if total != bar.total:
            bar.total = total
        bar.update(done - bar.n)

    def __exit__(self, *exc):
        for bar in self.bars.values():
            bar.close()


COMMANDS = {
    "analyze": cmd_analyze,
    "results": cmd_results,
    "list": cmd_list,
    "delete": cmd_delete,
    "export": cmd_export,
    "serve": cmd_serve,
    "routes": cmd_routes,
    "install-models": cmd_install_models,
}

if __name__ == "__main__":
    sys.exit(main())
