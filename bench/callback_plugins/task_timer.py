"""Writes each task's wall time as JSON lines to $COCOS_TASK_TIMES (ansible-core has no profile_tasks)."""
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_timer
type: aggregate
short_description: per-task wall time as JSON lines
description: Appends one JSON object per finished task to the file named by COCOS_TASK_TIMES.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._started: dict[str, float] = {}

    def v2_playbook_on_task_start(self, task, is_conditional):  # noqa: ANN001
        self._started[task._uuid] = time.monotonic()

    def _record(self, result, status: str) -> None:  # noqa: ANN001
        path = os.environ.get("COCOS_TASK_TIMES")
        start = self._started.get(result._task._uuid)
        if not path or start is None:
            return
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"task": result._task.get_name(), "status": status,
                                  "changed": bool(result._result.get("changed")),
                                  "seconds": time.monotonic() - start}) + "\n")

    def v2_runner_on_ok(self, result):  # noqa: ANN001
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):  # noqa: ANN001
        self._record(result, "failed")
