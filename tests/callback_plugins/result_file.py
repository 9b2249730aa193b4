"""Callback for tests/helpers.py: write each host's complete task result as JSON to a file.

<host>.json holds the last task's result (an ad-hoc run has one); <host>.jsonl one line per task, in order
(a playbook of several runs of a module).

The built-in tree callback drops `diff`, `warnings` and `failed`, which are exactly what module tests
check, so tests read this file instead. Enabled only by tests/helpers.py (COCOS_RESULT_DIR is set).
"""
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: result_file
type: aggregate
short_description: write complete task results to $COCOS_RESULT_DIR/<host>.json and .jsonl (tests only)
description: Used by the test helper that runs one module ad hoc.
requirements: [COCOS_RESULT_DIR set in the environment]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "result_file"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, failed: bool) -> None:
        directory = os.environ.get("COCOS_RESULT_DIR")
        if not directory:
            return
        data = {k: v for k, v in dict(result._result).items() if not k.startswith("_ansible_")}
        data.setdefault("failed", failed)
        path = os.path.join(directory, f"{result._host.get_name()}.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, default=str)
        with open(path + "l", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(data, default=str) + "\n")

    def v2_runner_on_ok(self, result) -> None:
        self._write(result, False)

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        self._write(result, True)

    def v2_runner_on_unreachable(self, result) -> None:
        self._write(result, True)
