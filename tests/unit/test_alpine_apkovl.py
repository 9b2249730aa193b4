"""The alpine_apkovl module in-process (tests.helpers.run_module: its main(), AnsibleModule, check and diff mode):
the archive it writes, when it rewrites it, what it reports, and the input it refuses. Local files only."""
from __future__ import annotations

import gzip
import importlib
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.helpers import check_apply_apply_check, run_module

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ0ZXN0a2V5Zm9ydGhlYXBrb3ZsdGVzdDAwMDAw test@cocos\n"


def overlay(path: Path, **changes: object) -> dict[str, object]:
    """Module arguments for a small overlay like the role's, with `changes` replacing whole options."""
    return {
        "path": str(path),
        "directories": [{"path": "root", "mode": "0700"}, {"path": "root/.ssh", "mode": "0700"},
                        {"path": "etc/local.d"}],
        "files": [{"path": "etc/hostname", "content": "cocos\n"},
                  {"path": "root/.ssh/authorized_keys", "content": KEY, "mode": "0600"},
                  {"path": "etc/local.d/agent.start", "content": "#!/bin/sh\nagent &\n", "mode": "0755"},
                  {"path": "etc/.default_boot_services"}],
        "links": [{"path": "etc/runlevels/default/sshd", "target": "/etc/init.d/sshd"}],
        **changes,
    }


def own(result: dict[str, object]) -> dict[str, object]:
    """The keys the module sets itself (exit_json adds the file's stat for a `path` key, as copy's result has it)."""
    return {key: result[key] for key in ("changed", "failed", "members", "added", "removed", "modified", "diff")}


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def content(path: Path, name: str) -> bytes:
    with tarfile.open(path, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None, name
        return handle.read()


def test_check_apply_apply_check(tmp_path):
    archive = tmp_path / "cocos.apkovl.tar.gz"
    checked, applied, again, _ = check_apply_apply_check("alpine_apkovl", overlay(archive))
    assert checked["added"] == applied["added"] == applied["members"]
    assert "etc/runlevels/default/sshd" in applied["members"] and "etc/runlevels" in applied["members"]
    assert again["added"] == again["removed"] == again["modified"] == []
    assert archive.exists()


def test_check_mode_writes_nothing(tmp_path):
    archive = tmp_path / "new" / "cocos.apkovl.tar.gz"
    result = run_module("alpine_apkovl", overlay(archive), check=True)
    assert result["changed"] and not result["failed"]
    assert not archive.parent.exists()


def test_a_rerun_leaves_the_file_untouched(tmp_path):
    archive = tmp_path / "cocos.apkovl.tar.gz"
    run_module("alpine_apkovl", overlay(archive))
    before = archive.stat()
    result = run_module("alpine_apkovl", overlay(archive))
    assert not result["changed"]
    after = archive.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_members_are_root_owned_at_mtime_zero_in_tree_order(tmp_path):
    archive = tmp_path / "cocos.apkovl.tar.gz"
    run_module("alpine_apkovl", overlay(archive))
    found = members(archive)
    assert [m.name for m in found] == [
        "etc", "etc/.default_boot_services", "etc/hostname", "etc/local.d", "etc/local.d/agent.start",
        "etc/runlevels", "etc/runlevels/default", "etc/runlevels/default/sshd", "root", "root/.ssh",
        "root/.ssh/authorized_keys"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in found} == {(0, 0, "", "", 0)}
    by_name = {m.name: m for m in found}
    kinds = {name: ("dir" if m.isdir() else "link" if m.issym() else "file" if m.isfile() else "?")
             for name, m in by_name.items()}
    modes = {name: m.mode for name, m in by_name.items() if not m.issym()}
    assert kinds["etc/runlevels/default/sshd"] == "link"
    assert by_name["etc/runlevels/default/sshd"].linkname == "/etc/init.d/sshd"
    assert [name for name, kind in kinds.items() if kind == "dir"] == [
        "etc", "etc/local.d", "etc/runlevels", "etc/runlevels/default", "root", "root/.ssh"]
    # Given modes are kept; implied parents and entries without a mode get 0755 (directories) or 0644 (files).
    assert modes == {"etc": 0o755, "etc/.default_boot_services": 0o644, "etc/hostname": 0o644, "etc/local.d": 0o755,
                     "etc/local.d/agent.start": 0o755, "etc/runlevels": 0o755, "etc/runlevels/default": 0o755,
                     "root": 0o700, "root/.ssh": 0o700, "root/.ssh/authorized_keys": 0o600}
    assert content(archive, "root/.ssh/authorized_keys") == KEY.encode()
    assert content(archive, "etc/.default_boot_services") == b""
    header = archive.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08" and header[3] == 0, "no file name or other optional gzip fields"
    assert header[4:8] == b"\0\0\0\0", "gzip header mtime 0"
    assert oct(archive.stat().st_mode & 0o777) == "0o644"


def test_two_builds_are_byte_identical_whatever_the_order_given(tmp_path):
    args = overlay(tmp_path / "a.apkovl.tar.gz")
    reordered = {key: list(reversed(value)) if isinstance(value, list) else value for key, value in args.items()}
    reordered["path"] = str(tmp_path / "b.apkovl.tar.gz")
    run_module("alpine_apkovl", args)
    run_module("alpine_apkovl", reordered)
    assert (tmp_path / "a.apkovl.tar.gz").read_bytes() == (tmp_path / "b.apkovl.tar.gz").read_bytes()


@pytest.mark.parametrize("change, kind, names", [
    ({"files": [{"path": "etc/hostname", "content": "other\n"}]}, "modified", ["etc/hostname"]),
    ({"files": [{"path": "etc/hostname", "content": "cocos\n", "mode": "0600"}]}, "modified", ["etc/hostname"]),
    ({"links": [{"path": "etc/runlevels/default/sshd", "target": "/etc/init.d/dropbear"}]}, "modified",
     ["etc/runlevels/default/sshd"]),
    ({"links": [{"path": "etc/runlevels/default/sshd", "target": "/etc/init.d/sshd"},
                {"path": "etc/runlevels/default/local", "target": "/etc/init.d/local"}]}, "added",
     ["etc/runlevels/default/local"]),
    # The link's parents were only implied by it, so they go with it.
    ({"links": []}, "removed", ["etc/runlevels", "etc/runlevels/default", "etc/runlevels/default/sshd"]),
    ({"directories": [{"path": "root", "mode": "0755"}]}, "modified", ["root"]),
])
def test_a_changed_member_rewrites_the_archive_as_check_mode_predicted(tmp_path, change, kind, names):
    archive = tmp_path / "cocos.apkovl.tar.gz"
    base = overlay(archive, files=[{"path": "etc/hostname", "content": "cocos\n"}])
    base["directories"] = [{"path": "root", "mode": "0700"}]
    run_module("alpine_apkovl", base)
    old = archive.read_bytes()
    args = {**base, **change}
    predicted = run_module("alpine_apkovl", args, check=True, diff=True)
    assert archive.read_bytes() == old
    result = run_module("alpine_apkovl", args, diff=True)
    assert own(predicted) == own(result)
    assert result["changed"]
    assert {key: result[key] for key in ("added", "removed", "modified") if result[key]} == {kind: names}
    assert archive.read_bytes() != old
    assert not run_module("alpine_apkovl", args)["changed"]


def test_diff_shows_the_members_and_the_text_of_changed_files(tmp_path):
    archive = tmp_path / "cocos.apkovl.tar.gz"
    run_module("alpine_apkovl", overlay(archive))
    result = run_module("alpine_apkovl", overlay(archive, files=[{"path": "etc/hostname", "content": "other\n"}]),
                        diff=True)
    before, after = result["diff"]["before"].splitlines(), result["diff"]["after"].splitlines()
    assert "root/.ssh/authorized_keys file 0600" in before and "root/.ssh/authorized_keys file 0600" not in after
    assert "etc/runlevels/default/sshd link -> /etc/init.d/sshd" in before and after
    assert before[before.index("etc/hostname file 0644") + 1] == "  | cocos"
    assert after[after.index("etc/hostname file 0644") + 1] == "  | other"
    assert "root/ directory 0700" in before and result["diff"]["before_header"] == str(archive)


def test_an_archive_gnu_tar_made_with_the_same_members_is_kept(tmp_path):
    """Archives the role wrote with tar before this module are adopted, not rewritten (nor the ISO repacked)."""
    stage = tmp_path / "stage"
    (stage / "etc" / "runlevels" / "default").mkdir(parents=True)
    (stage / "etc" / "hostname").write_text("cocos\n")
    (stage / "etc" / "runlevels" / "default" / "sshd").symlink_to("/etc/init.d/sshd")
    for directory in (stage / "etc", stage / "etc" / "runlevels", stage / "etc" / "runlevels" / "default"):
        directory.chmod(0o755)
    (stage / "etc" / "hostname").chmod(0o644)
    archive = tmp_path / "cocos.apkovl.tar.gz"
    subprocess.run(["tar", "--create", "--gzip", f"--file={archive}", f"--directory={stage}", "--sort=name",
                    "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "etc"], check=True)
    old = archive.read_bytes()
    args = {"path": str(archive), "files": [{"path": "etc/hostname", "content": "cocos\n"}],
            "links": [{"path": "etc/runlevels/default/sshd", "target": "/etc/init.d/sshd"}]}
    assert not run_module("alpine_apkovl", args)["changed"]
    assert archive.read_bytes() == old


def test_an_unreadable_archive_is_replaced_with_a_warning(tmp_path):
    # Another test in this worker may have imported the controller, whose `ansible` package then takes warn() for
    # its own display: run_module must still return the module's warnings (this once failed only under xdist).
    importlib.import_module("ansible._internal")
    archive = tmp_path / "cocos.apkovl.tar.gz"
    archive.write_bytes(gzip.compress(b"not a tar")[:12])
    result = run_module("alpine_apkovl", overlay(archive, files=[], directories=[], links=[]))
    assert result["changed"] and result["members"] == []
    assert any("not a readable gzip'd tar" in warning for warning in result["warnings"]), result["warnings"]
    assert members(archive) == []
    assert not run_module("alpine_apkovl", overlay(archive, files=[], directories=[], links=[]))["changed"]


def test_the_archive_is_replaced_by_a_rename_keeping_its_mode(tmp_path):
    """A reader that opened the old archive still reads it whole; no temporary file stays behind."""
    archive = tmp_path / "cocos.apkovl.tar.gz"
    run_module("alpine_apkovl", overlay(archive))
    archive.chmod(0o600)
    old = archive.read_bytes()
    with open(archive, "rb") as reader:
        run_module("alpine_apkovl", overlay(archive, links=[]))
        assert reader.read() == old
    assert archive.read_bytes() != old
    assert archive.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["cocos.apkovl.tar.gz"]


def test_absent_removes_the_archive_once(tmp_path):
    archive = tmp_path / "cocos.apkovl.tar.gz"
    run_module("alpine_apkovl", overlay(archive))
    args = {"path": str(archive), "state": "absent"}
    checked = run_module("alpine_apkovl", args, check=True, diff=True)
    assert checked["changed"] and archive.exists()
    assert "etc/hostname" in checked["removed"] and checked["diff"]["after"] == ""
    removed = run_module("alpine_apkovl", args, diff=True)
    assert own(removed) == own(checked) and not archive.exists()
    assert not run_module("alpine_apkovl", args)["changed"]


@pytest.mark.parametrize("change, message", [
    ({"files": [{"path": "/etc/hostname", "content": "x"}]}, "files[0]: path '/etc/hostname' must be relative"),
    ({"files": [{"path": "etc/../../x", "content": "x"}]}, "must not have '..'"),
    ({"links": [{"path": "etc/./x", "target": "/y"}]}, "links[0]: path 'etc/./x' must not have"),
    ({"directories": [{"path": "etc/"}]}, "trailing '/'"),
    ({"files": [{"path": "etc/hostname", "content": "a"}, {"path": "etc/hostname", "content": "b"}]},
     "etc/hostname is given twice (as a file and as a file)"),
    ({"files": [{"path": "etc/x", "content": "a"}], "links": [{"path": "etc/x", "target": "/y"}]},
     "etc/x is given twice (as a file and as a link)"),
    ({"files": [{"path": "etc/hostname", "content": "a"}, {"path": "etc/hostname/x", "content": "b"}]},
     "etc/hostname is a file, so etc/hostname/x cannot lie under it"),
    ({"files": [{"path": "etc/x", "content": "a", "mode": 420}]},
     "files[0] (etc/x): mode must be an octal string such as '0644', not 420 (quote it"),
    ({"directories": [{"path": "root", "mode": "rwx------"}]}, "directories[0] (root): mode must be an octal string"),
    ({"directories": [{"path": "root", "mode": "0789"}]}, "mode must be an octal string"),
    ({"links": [{"path": "etc/x", "target": ""}]}, "links[0] (etc/x): target must be a non-empty string"),
])
def test_bad_input_fails_clearly_and_changes_nothing(tmp_path, change, message):
    archive = tmp_path / "cocos.apkovl.tar.gz"
    run_module("alpine_apkovl", overlay(archive))
    old = archive.read_bytes()
    for check in (True, False):
        result = run_module("alpine_apkovl", overlay(archive, **change), check=check)
        assert result["failed"] and not result["changed"]
        assert message in result["msg"], result["msg"]
        assert "Traceback" not in result["msg"]
    assert archive.read_bytes() == old and sorted(os.listdir(tmp_path)) == ["cocos.apkovl.tar.gz"]
    fresh = tmp_path / "fresh" / "new.apkovl.tar.gz"
    assert run_module("alpine_apkovl", overlay(fresh, **change))["failed"]
    assert not fresh.parent.exists()


def test_a_directory_at_the_archive_path_fails(tmp_path):
    result = run_module("alpine_apkovl", overlay(tmp_path))
    assert result["failed"] and result["msg"] == f"{tmp_path} is a directory, not an overlay archive"
