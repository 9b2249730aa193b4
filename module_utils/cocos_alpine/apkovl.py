"""Alpine's local backup overlay ("apkovl"): the gzip'd tar that Alpine's initramfs unpacks over the root file
system at boot (<hostname>.apkovl.tar.gz at the top of a boot medium; see Alpine's wiki, "Alpine local backup").

The overlay is described declaratively (directories, files with text content, symbolic links). build_members()
validates that description; the archive's members are compared with it by name, type, permission bits, owner,
content and link target (never by mtime or tar dialect, so an archive GNU tar made with the same members is
adopted); archive_bytes() writes the reproducible archive: members in tree order, owner 0:0 numeric, mtime 0,
gzip header without name and with mtime 0. OverlayManager.run() makes that one comparison and uses its result for
check mode, diff and the real run, and replaces the file atomically only when the members differ.

Standard library only: this runs on the managed host through AnsiballZ.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DIRECTORY, FILE, LINK = "directory", "file", "link"
# Permission bits of members whose entry gives none, and of directories only implied by a deeper path. A symbolic
# link's bits mean nothing on Linux; tar records 0777 for them and the comparison ignores them.
DEFAULT_MODES = {DIRECTORY: 0o755, FILE: 0o644, LINK: 0o777}
MODE_PATTERN = re.compile(r"0?[0-7]{3,4}")
# Files up to this many bytes that decode as UTF-8 are shown line by line in the diff, others by size and sha256.
DIFF_TEXT_BYTES = 4096
# Permission bits of a new archive file (an existing one keeps its own).
ARCHIVE_FILE_MODE = 0o644


class ApkovlError(Exception):
    """Input the overlay cannot be built from, or a file system error writing it; the message says what and where."""


@dataclass(frozen=True)
class Member:
    """One archive member as the comparison sees it.

    path: relative to the guest's / ("etc/hostname"), no leading "./", no trailing "/".
    kind: DIRECTORY, FILE, LINK, or "other (tar type X)" for what an existing archive may hold beyond those.
    mode: permission bits (0o644); 0o777 for links. uid, gid: numeric owner.
    data: a file's bytes (b"" otherwise). target: a link's target ("" otherwise).
    """

    path: str
    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""


def check_path(value: Any, where: str) -> str:
    """A member path as given: relative, normalised, no "." or ".." parts. Raises ApkovlError naming `where`."""
    if not isinstance(value, str) or not value:
        raise ApkovlError(f"{where}: path must be a non-empty string, not {value!r}")
    if value.startswith("/"):
        raise ApkovlError(f"{where}: path {value!r} must be relative to the guest's / (write 'etc/x', not '/etc/x')")
    parts = value.split("/")
    if ".." in parts or "." in parts or "" in parts or "\0" in value:
        raise ApkovlError(f"{where}: path {value!r} must not have '..', '.' or empty parts (nor a trailing '/')")
    return value


def parse_mode(value: Any, where: str) -> int:
    """Permission bits from an octal string ("0644", "755"). Raises ApkovlError for anything else, ints included:
    YAML reads an unquoted 0644 as the number 420, which is not what was meant."""
    if not isinstance(value, str) or not MODE_PATTERN.fullmatch(value):
        hint = " (quote it: YAML reads an unquoted 0644 as the number 420)" if isinstance(value, int) else ""
        raise ApkovlError(f"{where}: mode must be an octal string such as '0644', not {value!r}{hint}")
    return int(value, 8)


def _entries(files: Iterable[dict[str, Any]], directories: Iterable[dict[str, Any]],
             links: Iterable[dict[str, Any]]) -> list[Member]:
    """The members the options name, each checked, in the order given."""
    out = []
    for index, entry in enumerate(directories):
        where = f"directories[{index}]"
        out.append(Member(check_path(entry.get("path"), where), DIRECTORY,
                          parse_mode(entry.get("mode", "0755"), f"{where} ({entry.get('path')})")))
    for index, entry in enumerate(files):
        where = f"files[{index}]"
        path = check_path(entry.get("path"), where)
        content = entry.get("content", "")
        if not isinstance(content, str):
            raise ApkovlError(f"{where} ({path}): content must be text, not {type(content).__name__}")
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ApkovlError(f"{where} ({path}): content is not encodable as UTF-8: {exc.reason}") from exc
        out.append(Member(path, FILE, parse_mode(entry.get("mode", "0644"), f"{where} ({path})"), data=data))
    for index, entry in enumerate(links):
        where = f"links[{index}]"
        path = check_path(entry.get("path"), where)
        target = entry.get("target")
        if not isinstance(target, str) or not target or "\0" in target:
            raise ApkovlError(f"{where} ({path}): target must be a non-empty string, not {target!r}")
        out.append(Member(path, LINK, DEFAULT_MODES[LINK], target=target))
    return out


def build_members(files: Iterable[dict[str, Any]] = (), directories: Iterable[dict[str, Any]] = (),
                  links: Iterable[dict[str, Any]] = ()) -> dict[str, Member]:
    """The overlay's members by path: the given ones plus every parent directory they imply (mode 0755 unless
    `directories` gives it).

    files: [{path, content (text, written UTF-8), mode (octal string, default "0644")}];
    directories: [{path, mode (default "0755")}]; links: [{path, target}].
    Raises ApkovlError for a bad path or mode, a path given twice, or a path under a file or link.
    """
    given: dict[str, Member] = {}
    for member in _entries(files, directories, links):
        if member.path in given:
            first = given[member.path].kind
            raise ApkovlError(f"{member.path} is given twice (as a {first} and as a {member.kind}): each path once")
        given[member.path] = member
    members = dict(given)
    for member in given.values():
        parent = posixpath.dirname(member.path)
        while parent:
            found = members.get(parent)
            if found is None:
                members[parent] = Member(parent, DIRECTORY, DEFAULT_MODES[DIRECTORY])
            elif found.kind != DIRECTORY:
                raise ApkovlError(f"{parent} is a {found.kind}, so {member.path} cannot lie under it")
            parent = posixpath.dirname(parent)
    return members


def _tree_order(members: Iterable[Member]) -> list[Member]:
    """Each directory before what it holds, siblings by name: the order GNU tar's --sort=name gives."""
    return sorted(members, key=lambda member: member.path.split("/"))


def archive_bytes(members: dict[str, Member]) -> bytes:
    """The .apkovl.tar.gz for `members`, byte for byte the same for the same members (on one zlib version):
    GNU tar format, tree order, owner 0:0 without names, mtime 0, and a gzip header with mtime 0 and no file name."""
    tar_data = io.BytesIO()
    with tarfile.open(fileobj=tar_data, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member in _tree_order(members.values()):
            info = tarfile.TarInfo(member.path)
            info.mode, info.uid, info.gid, info.mtime = member.mode, member.uid, member.gid, 0
            info.uname = info.gname = ""
            if member.kind == DIRECTORY:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif member.kind == LINK:
                info.type, info.linkname = tarfile.SYMTYPE, member.target
                tar.addfile(info)
            else:
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as compressed:
        compressed.write(tar_data.getvalue())
    return out.getvalue()


def _from_tarinfo(tar: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    path = info.name
    while path.startswith("./"):
        path = path[2:]
    path = path.rstrip("/")
    if info.isdir():
        return Member(path, DIRECTORY, info.mode & 0o7777, info.uid, info.gid)
    if info.issym():
        return Member(path, LINK, DEFAULT_MODES[LINK], info.uid, info.gid, target=info.linkname)
    if info.isreg():
        handle = tar.extractfile(info)
        data = handle.read() if handle is not None else b""
        return Member(path, FILE, info.mode & 0o7777, info.uid, info.gid, data=data)
    return Member(path, f"other (tar type {info.type.decode('ascii', 'replace')})", info.mode & 0o7777,
                  info.uid, info.gid, target=info.linkname)


class UnreadableArchive(ApkovlError):
    """The file at the archive's path is there but is no gzip'd tar (truncated, or something else)."""


def read_members(path: str) -> dict[str, Member] | None:
    """The members of the archive at `path` by path, or None when there is no file.

    Raises ApkovlError when `path` is a directory, and UnreadableArchive (an ApkovlError) when the file is not a
    gzip'd tar that reads to its end.
    """
    if os.path.isdir(path):
        raise ApkovlError(f"{path} is a directory, not an overlay archive")
    if not os.path.lexists(path):
        return None
    try:
        with tarfile.open(path, "r:gz") as tar:
            return {member.path: member for member in (_from_tarinfo(tar, info) for info in tar.getmembers())
                    if member.path}
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise UnreadableArchive(f"{path} is not a readable gzip'd tar ({exc})") from exc


def write_atomically(path: str, data: bytes) -> None:
    """Replace `path` with `data`: a temporary file in the same directory, flushed to disk, then renamed over it, so
    a reader sees the old archive or the new one, never part of one. Missing parent directories are created (0755).
    An existing file keeps its permission bits, a new one gets 0644. Raises ApkovlError on a file system error."""
    directory = os.path.dirname(path) or "."
    temporary = None
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else ARCHIVE_FILE_MODE
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), mode)
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        raise ApkovlError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if temporary is not None and os.path.lexists(temporary):
            os.unlink(temporary)


def describe(members: dict[str, Member] | None) -> str:
    """A text listing of members for diff mode: one line per member in tree order ("etc/hostname file 0644",
    "etc/x link -> /y"), a file's text below it ("  | line") up to DIFF_TEXT_BYTES, else its size and sha256."""
    lines = []
    for member in _tree_order((members or {}).values()):
        if member.kind == LINK:
            lines.append(f"{member.path} link -> {member.target}")
            continue
        owner = "" if (member.uid, member.gid) == (0, 0) else f" owner {member.uid}:{member.gid}"
        lines.append(f"{member.path}{'/' if member.kind == DIRECTORY else ''} {member.kind} {member.mode:04o}{owner}")
        if member.kind == FILE:
            lines.extend(f"  | {line}" for line in _shown(member.data))
    return "".join(line + "\n" for line in lines)


def _shown(data: bytes) -> list[str]:
    if len(data) <= DIFF_TEXT_BYTES:
        try:
            return data.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            pass
    return [f"({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})"]


class OverlayManager:
    """Converge one overlay archive. params: the module's options (path, state, files, directories, links)."""

    def __init__(self, params: dict[str, Any], check_mode: bool = False, diff: bool = False) -> None:
        self.params = params
        self.check_mode = check_mode
        self.diff = diff

    def run(self) -> dict[str, Any]:
        """Compare once, then write (present), remove (absent) or do nothing; the result dict is the same in check
        mode: changed, path, members (names after the run), added, removed, modified (names), warnings, and diff
        when asked. Raises ApkovlError for bad input (before anything is touched) or a failed write."""
        path = self.params["path"]
        present = self.params.get("state", "present") == "present"
        desired = build_members(self.params.get("files") or (), self.params.get("directories") or (),
                                self.params.get("links") or ()) if present else {}
        warnings = []
        try:
            current = read_members(path)
            exists = current is not None
        except UnreadableArchive as exc:
            current, exists = None, True
            warnings.append(f"{exc}: {'replacing' if present else 'removing'} it")
        before = current or {}
        # A missing or unreadable archive is written even for no members, so the file is always a valid overlay.
        changed = (current is None or desired != current) if present else exists
        result: dict[str, Any] = {
            "changed": changed, "path": path, "members": sorted(desired), "warnings": warnings,
            "added": sorted(set(desired) - set(before)), "removed": sorted(set(before) - set(desired)),
            "modified": sorted(name for name in set(desired) & set(before) if desired[name] != before[name])}
        if self.diff:
            result["diff"] = {"before": describe(current), "after": describe(desired) if present else "",
                              "before_header": path if exists else f"{path} (absent)",
                              "after_header": path if present else f"{path} (absent)"}
        if changed and not self.check_mode:
            if present:
                write_atomically(path, archive_bytes(desired))
            else:
                self._remove(path)
        return result

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ApkovlError(f"cannot remove {path}: {exc.strerror or exc}") from exc
