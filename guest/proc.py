"""One way to run build commands: fail with the command and the end of its output, never silently."""

import subprocess
from pathlib import Path


class BuildError(RuntimeError):
    """A build step failed; the message names the step's command and quotes its output."""


def run(cmd: list[str], cwd: Path | None = None, stdout=None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=stdout is None)
    if proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        raise BuildError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-2000:]}")
    return proc.stdout if isinstance(proc.stdout, str) else ""
