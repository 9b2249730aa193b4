"""Record every program the machine executes, system-wide, with fanotify: the input of scripts/install_closure.py.

    python3 scripts/exec_watch.py OUTPUT      # as root; stop it with SIGTERM or SIGINT

fanotify (fanotify(7)) reports FAN_OPEN_EXEC (Linux >= 5.0) whenever the kernel opens a file to execute it: the
program of an execve/execveat, the script and its #! interpreter, the ELF interpreter (ld-linux) and uselib(2)
libraries. A filesystem mark (FAN_MARK_FILESYSTEM, fanotify_mark(2), Linux >= 4.20) covers every open of a file on
that filesystem by any process, in any mount namespace: programs that daemons started outside the caller's process
tree execute (libvirtd running qemu-system-x86_64, swtpm, dnsmasq) are seen as well. The watched process is never
stopped (a notification group, FAN_CLASS_NOTIF, only reads a queue), so the cost is one queued event per exec.

Once the marks are in place the watcher prints one line, "exec_watch: watching ...", on stdout (and nothing after
it): a caller that waits for that line before it starts its workload misses no exec. OUTPUT (created or truncated)
then gets each executed file's path once, in order of first execution, one per line, flushed as it is written, so
a watcher that dies still leaves what it saw. Paths are the kernel's (readlink of the event's descriptor,
/proc/self/fd/N): absolute, symbolic links resolved (/bin/sh is /usr/bin/dash), " (deleted)" appended to a file
removed before the event was read, a newline inside a name written as the two characters \\n. Lines that start with
"#" are the watcher's own: "# exec_watch: lost ..." when events were lost (queue overflow, no descriptor left), and
"# exec_watch: stopped, N exec events" as the last line after SIGTERM/SIGINT, once the queued events are read; a
list without that line is incomplete.

Not covered: files on filesystems that are not marked. The marks go on the filesystem (st_dev) of /, of the
repository, of sys.prefix and sys.base_prefix, and of WATCHED_DIRS where they exist; any other filesystem (a tmpfs
such as /dev/shm or /run, another mount point, one mounted after the start, a container's overlay root) and programs
run from memory (memfd_create) go unseen. A file executed through a mount private to another mount namespace (the
fleet's bind mounts) is named by its path in that namespace. On a machine where other work runs, its execs are
recorded too.

Exit status: 0 stopped by a signal with no event lost, 1 events lost or a malformed event (the list is incomplete),
2 fanotify unavailable (not root, a kernel without FAN_OPEN_EXEC or filesystem marks, a container that forbids it)
or OUTPUT not writable; one line on stderr.
Standard library only (ctypes on libc's fanotify_init(2) and fanotify_mark(2)): runs under Debian's /usr/bin/python3
and the .venv's Python alike.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import os
import select
import signal
import struct
import sys
from typing import BinaryIO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Directories whose filesystems are marked besides /, the repository and the Python prefixes (when they exist).
WATCHED_DIRS = ("/tmp", "/var", "/var/tmp", "/var/lib/cocos-test", "/usr", "/usr/local", "/opt", "/root", "/home",
                "/srv")

# <linux/fanotify.h>, <fcntl.h>
FAN_CLOEXEC = 0x01
FAN_NONBLOCK = 0x02
FAN_CLASS_NOTIF = 0x00
FAN_UNLIMITED_QUEUE = 0x10
FAN_MARK_ADD = 0x01
FAN_MARK_FILESYSTEM = 0x100
FAN_OPEN_EXEC = 0x1000
FAN_Q_OVERFLOW = 0x4000
FAN_NOFD = -1
FANOTIFY_METADATA_VERSION = 3
AT_FDCWD = -100
# struct fanotify_event_metadata: __u32 event_len, __u8 vers, __u8 reserved, __u16 metadata_len,
# __aligned_u64 mask, __s32 fd, __s32 pid (24 bytes, native byte order).
METADATA = struct.Struct("=IBBHQii")
# Bytes per read(2): the kernel opens a descriptor for every event it copies, so a read holds at most 4096 / 24 = 170
# of them open at once, well under the usual 1024 limit (running out would drop events: fanotify(7), EMFILE).
READ_SIZE = 4096


class WatchError(Exception):
    """fanotify cannot be used here (the message says why); main() prints it and exits 2."""


@functools.cache
def _libc() -> ctypes.CDLL:
    """libc with the fanotify wrappers' signatures set, loaded once."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
    libc.fanotify_init.restype = ctypes.c_int
    libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    libc.fanotify_mark.restype = ctypes.c_int
    return libc


def open_group() -> int:
    """A non-blocking fanotify notification group with an unlimited queue (fanotify_init(2)): its descriptor.

    Event descriptors are opened read-only and close-on-exec. WatchError when the kernel or the caller's privileges
    do not allow it (EPERM without CAP_SYS_ADMIN, ENOSYS or EINVAL on a kernel without fanotify or these flags).
    """
    try:
        libc = _libc()
        fd = libc.fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
                                os.O_RDONLY | getattr(os, "O_LARGEFILE", 0) | os.O_CLOEXEC)
    except AttributeError as exc:  # a libc without the wrappers (glibc has them since 2.13)
        raise WatchError(f"fanotify unavailable: {exc}") from exc
    if fd < 0:
        code = ctypes.get_errno()
        hint = " (needs root: CAP_SYS_ADMIN)" if code == errno.EPERM else ""
        raise WatchError(f"fanotify_init failed: {os.strerror(code)}{hint}")
    return fd


def filesystems(extra: tuple[str, ...] = ()) -> dict[int, str]:
    """{st_dev: first directory seen on it} for /, REPO, sys.prefix, sys.base_prefix, WATCHED_DIRS and extra.

    Directories that do not exist are left out; one directory per filesystem is kept (a filesystem mark covers the
    whole filesystem, wherever it is mounted).
    """
    found: dict[int, str] = {}
    for path in ("/", REPO, sys.prefix, sys.base_prefix, *WATCHED_DIRS, *extra):
        try:
            found.setdefault(os.stat(path).st_dev, path)
        except OSError:
            continue
    return found


def mark(group: int, path: str) -> None:
    """Watch FAN_OPEN_EXEC on the whole filesystem that holds path (fanotify_mark(2), FAN_MARK_FILESYSTEM).

    WatchError on failure: EINVAL on a kernel without FAN_OPEN_EXEC (< 5.0) or filesystem marks (< 4.20), EPERM,
    EXDEV (a btrfs subvolume, which cannot carry a filesystem mark).
    """
    if _libc().fanotify_mark(group, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC, AT_FDCWD,
                             os.fsencode(path)) < 0:
        raise WatchError(f"fanotify_mark on the filesystem of {path} failed: {os.strerror(ctypes.get_errno())}")


def parse_events(buffer: bytes) -> list[tuple[int, int, int]]:
    """The (mask, fd, pid) of each struct fanotify_event_metadata in what one read(2) of the group returned.

    fd is FAN_NOFD (-1) for an event without a file (FAN_Q_OVERFLOW). ValueError on a metadata version other than
    FANOTIFY_METADATA_VERSION or a truncated event (fanotify(7): FAN_EVENT_OK).
    """
    events = []
    offset = 0
    while offset + METADATA.size <= len(buffer):
        event_len, vers, _, _, mask, fd, pid = METADATA.unpack_from(buffer, offset)
        if vers != FANOTIFY_METADATA_VERSION:
            raise ValueError(f"fanotify metadata version {vers}, expected {FANOTIFY_METADATA_VERSION}")
        if event_len < METADATA.size or offset + event_len > len(buffer):
            raise ValueError(f"truncated fanotify event ({event_len} bytes at offset {offset} of {len(buffer)})")
        events.append((mask, fd, pid))
        offset += event_len
    if offset != len(buffer):
        raise ValueError(f"{len(buffer) - offset} stray bytes after the last fanotify event")
    return events


class Recorder:
    """Appends each new path to an open binary file, one a line, flushed per batch; counts events and losses."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.seen: set[bytes] = set()
        self.events = 0
        self.lost = 0

    def drain(self, group: int) -> None:
        """Read every event queued on group (until EAGAIN), record its path, close its descriptor."""
        while True:
            try:
                buffer = os.read(group, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:  # EMFILE/ENFILE: the kernel dropped the event whose descriptor it could not open
                self.note_lost(f"read failed: {exc.strerror}")
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                    raise
                continue
            for mask, fd, _ in parse_events(buffer):
                if mask & FAN_Q_OVERFLOW:
                    self.note_lost("queue overflow")
                if fd == FAN_NOFD:
                    continue
                try:
                    path = os.readlink(f"/proc/self/fd/{fd}".encode())
                finally:
                    os.close(fd)
                self.events += 1
                if path not in self.seen:
                    self.seen.add(path)
                    self.out.write(path.replace(b"\n", b"\\n") + b"\n")
        self.out.flush()

    def note_lost(self, why: str) -> None:
        self.lost += 1
        self.out.write(f"# exec_watch: lost events: {why}\n".encode())


def watch(output: str, group: int, wake: int) -> int:
    """Mark, announce, record group's events to output until wake (the signal wakeup pipe) is readable.

    Returns the exit status (module docstring). WatchError when a mark fails, OSError when output cannot be written.
    """
    marked = filesystems()
    for path in marked.values():
        mark(group, path)
    with open(output, "wb") as out:
        recorder = Recorder(out)
        print(f"exec_watch: watching {len(marked)} filesystem(s) at {' '.join(marked.values())}, writing {output}",
              flush=True)
        poller = select.poll()
        poller.register(group, select.POLLIN)
        poller.register(wake, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            recorder.drain(group)  # before stopping too: every exec that happened before the signal is queued
            if wake in ready:
                break
        out.write(f"# exec_watch: stopped, {recorder.events} exec events\n".encode())
    print(f"exec_watch: {recorder.events} exec events, {len(recorder.seen)} programs, {recorder.lost} losses",
          file=sys.stderr)
    return 1 if recorder.lost else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: exec_watch.py OUTPUT   (as root; SIGTERM or SIGINT stops it)", file=sys.stderr)
        return 2
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)  # the wakeup pipe carries it; no exception inside a read
    try:
        return watch(args[0], open_group(), read_end)
    except WatchError as exc:
        print(f"exec_watch: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"exec_watch: {exc.filename or 'fanotify'}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a malformed event: what was recorded so far stays, without the "stopped" line
        print(f"exec_watch: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
