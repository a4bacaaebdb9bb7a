"""The services an operator step needs, passed in by its runner (the local engine or a Lambda adapter).

Nothing here knows where it runs: the local engine builds a runtime from its dataplane and storage, the
AWS adapters from the Lambda's environment (``mie_pose.aws_runtime``). Keeping this apart from both is
what lets the operators import neither runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..storage import Storage


@dataclass
class OperatorRuntime:
    """``storage`` for media and scratch files, ``dataplane`` for results (MIE's ``store_asset_metadata``),
    ``progress(done, total)`` where someone watches (the local engine)."""

    storage: Storage
    dataplane: Any  # mie_pose.dataplane.base.Dataplane, or a client of an existing MIE dataplane
    progress: Callable[[int, int], None] | None = None


class LocalContext:
    """The ``context`` the local engine passes a handler: it carries the runtime (Lambda's context does not)."""

    def __init__(self, runtime: OperatorRuntime):
        self.runtime = runtime
