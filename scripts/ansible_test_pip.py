"""Give ansible-test the pip bootstrap script it would otherwise download (idempotent).

ansible-test makes each sanity test's virtual environment without pip and runs
~/.ansible/test/cache/get_pip_<pip version>.py in it, first downloading that script from a CI file host
this machine cannot reach. The stand-in written here does the same job with what every CPython has: it
installs the bundled pip with ``python -m ensurepip --upgrade`` in a child process (ensurepip points
PIP_CONFIG_FILE at /dev/null in its own environment, which must not leak into the install that follows),
then runs ``python -m pip install`` with ansible-test's arguments, so the pinned pip comes from the
package index pip is configured for. ``--no-setuptools``/``--no-wheel`` are get-pip.py options that pip
itself does not know; pip installs neither unless asked, so they are dropped.

    python scripts/ansible_test_pip.py     # prints the path; writes it only when missing or outdated

A real get-pip script already in the cache (one downloaded where that host is reachable) is left alone.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys

MARKER = "# cocos-ai-manager: get-pip stand-in"

STAND_IN = MARKER + '''
"""Installs pip for ansible-test without downloading get-pip.py (written by scripts/ansible_test_pip.py)."""
import subprocess
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")

subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True)
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
'''

# ansible_test/_internal/python_requirements.py: get_venv_packages() -> default_packages = dict(pip='24.2', ...)
_PIP_VERSION = re.compile(r"default_packages\s*=\s*dict\(\s*pip\s*=\s*'([0-9.]+)'")


def ansible_test_pip_version() -> str:
    """The pip version ansible-test bootstraps (e.g. '24.2'), read from the installed ansible-test.

    Raises RuntimeError when ansible-test is missing or no longer states it where this script looks.
    """
    spec = importlib.util.find_spec("ansible_test")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("ansible-test is not installed in this Python (it comes with ansible-core)")
    source = os.path.join(list(spec.submodule_search_locations)[0], "_internal", "python_requirements.py")
    with open(source, encoding="utf-8") as handle:
        match = _PIP_VERSION.search(handle.read())
    if match is None:
        raise RuntimeError(f"cannot find the bootstrap pip version in {source}; update scripts/ansible_test_pip.py")
    return match.group(1)


def cache_path(pip_version: str, home: str | None = None) -> str:
    """Where ansible-test looks for the bootstrap script: ~/.ansible/test/cache/get_pip_24_2.py for 24.2."""
    base = home if home is not None else os.path.expanduser("~")
    name = "get_pip_" + pip_version.replace(".", "_") + ".py"
    return os.path.join(base, ".ansible", "test", "cache", name)


def ensure_stand_in(path: str) -> bool:
    """Write the stand-in to path unless it is there already or a real get-pip script is; True if written."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
        if current == STAND_IN or not current.startswith(MARKER):
            return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(STAND_IN)
    os.replace(temporary, path)
    return True


def main() -> int:
    try:
        path = cache_path(ansible_test_pip_version())
    except RuntimeError as exc:
        print(f"ansible_test_pip: {exc}", file=sys.stderr)
        return 1
    ensure_stand_in(path)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
