"""A real software TPM 2.0 (swtpm, Debian package swtpm) on 127.0.0.1 for tests of the TPM code, no VM needed.

swtpm serves the TPM command channel on a port P and its control channel on P+1, which is where tpm2-tools'
swtpm TCTI looks for it (`swtpm:host=127.0.0.1,port=P`). `not-need-init,startup-clear` makes it answer commands
at once, as a TPM after the firmware's TPM2_Startup(CLEAR).
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

START_TIMEOUT = 10.0


def _two_free_ports() -> int:
    """A port P with P+1 also free on 127.0.0.1 a moment ago (swtpm binds both right after)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free loopback ports")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def software_tpm(parent: str | None = None) -> Iterator[str]:
    """Start swtpm with a fresh state directory; yield the tpm2-tools TCTI string; stop it (by pid) afterwards."""
    swtpm = shutil.which("swtpm")
    if swtpm is None:
        raise AssertionError("swtpm is missing: scripts/setup.sh installs it (Debian package swtpm)")
    state = tempfile.mkdtemp(prefix="swtpm-", dir=parent)
    proc = None
    try:
        for _ in range(5):  # another process may take a port between our check and swtpm's bind
            port = _two_free_ports()
            proc = subprocess.Popen(
                [swtpm, "socket", "--tpm2", "--tpmstate", f"dir={state}",
                 "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                 "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                 "--flags", "not-need-init,startup-clear"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + START_TIMEOUT
            while proc.poll() is None and not _listening(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is None and _listening(port):
                yield f"swtpm:host=127.0.0.1,port={port}"
                return
            _stop(proc)
        raise AssertionError(f"swtpm did not start: {proc.stderr.read().decode() if proc and proc.stderr else ''}")
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(state, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()
