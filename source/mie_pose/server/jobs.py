"""WorkflowQueue: the local ``start_workflow`` service, one execution at a time on a worker thread.

Why one worker: an analysis already uses every core, so running two side by side only makes both slow;
the API answers at once with the execution id (Status Queued) and the web app polls it.
"""

from __future__ import annotations

import logging
import queue
import threading

from ..workflow import WorkflowEngine

log = logging.getLogger("mie_pose.server.jobs")


class WorkflowQueue:
    def __init__(self, dataplane, after_run=None):
        self.dataplane = dataplane
        self.engine = WorkflowEngine(dataplane, dataplane.storage)
        self._after_run = after_run  # after_run(asset_id), e.g. make the browser proxy
        self._jobs: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="mie-pose-workflow", daemon=True)
        self._worker.start()

    def start_workflow(self, asset_id: str, configuration: dict, definition: dict | None = None) -> str:
        """Create the execution record (Queued) and queue it; return its id without waiting.

        ``definition`` is a registered workflow (else the built-in one runs). Locally a handler is imported
        and called, so only ``mie_pose`` code may be named: the API must not become a way to call anything.
        """
        engine = self.engine
        if definition is not None:
            foreign = sorted(name for name, operator in definition["Operators"].items()
                             if not str(operator.get("Handler", "")).startswith("mie_pose."))
            if foreign:
                from ..api.core import ApiError  # noqa: PLC0415

                raise ApiError(400, f"operators {', '.join(foreign)} have no local handler (a mie_pose import path)")
            engine = WorkflowEngine(self.dataplane, self.dataplane.storage, definition)
        execution_id = engine.start(asset_id)
        self._jobs.put((engine, asset_id, configuration, execution_id))
        return execution_id

    def join(self) -> None:
        """Wait until every queued execution has finished (tests)."""
        self._jobs.join()

    def stop(self) -> None:
        self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                self._run(*job)
            finally:
                self._jobs.task_done()

    def _run(self, engine: WorkflowEngine, asset_id: str, configuration: dict, execution_id: str) -> None:
        try:
            execution = engine.run(asset_id, configuration, execution_id=execution_id)
            log.info("workflow %s on asset %s: %s", execution_id, asset_id, execution.get("Status"))
        except Exception as exc:  # noqa: BLE001  (the worker must survive a failed run)
            log.exception("workflow %s failed", execution_id)
            self.dataplane.update_execution(execution_id, status="Error", message=str(exc) or type(exc).__name__)
        if self._after_run is not None:
            try:
                self._after_run(asset_id)
            except Exception:  # noqa: BLE001
                log.exception("after-run step failed for asset %s", asset_id)
