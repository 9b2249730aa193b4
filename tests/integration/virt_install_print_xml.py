"""`virt-install --print-xml` for many argument lists, through one libvirt connection.

Run by the system's /usr/bin/python3, not the venv: Debian's virt-install (package virtinst) is a Python
program that imports gi, libosinfo's introspection data and the system's libvirt bindings from
/usr/share/virt-manager. Input on stdin: {"uri": URI, "rows": {id: [arg, ...]}}; output on stdout:
{id: {"xml": text}} or {id: {"error": text}} when virt-install refused that argument list.

Each argument list goes through virt-install's own entry point, `virtinstall.main(conn=...)`, the way
virt-manager's test suite drives it: the XML is what `virt-install --print-xml ARGS` prints, without a
new connection and capability probe per list (0.8 s each on this host, 2 s and more under load).
"""
from __future__ import annotations

import contextlib
import io
import json
import sys

VIRT_MANAGER = "/usr/share/virt-manager"  # where virtinst puts the package /usr/bin/virt-install imports


def print_xml(conn: object, args: list[str]) -> dict[str, str]:
    from virtinst import virtinstall

    sys.argv = ["virt-install", "--print-xml", *args]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            virtinstall.main(conn=conn)
    except SystemExit as exc:  # virt-install's fail(): the message went to stderr
        return {"error": f"{err.getvalue().strip()} (exit {exc.code})"}
    except Exception as exc:  # noqa: BLE001 - any refusal is reported per row, the others still print
        return {"error": f"{type(exc).__name__}: {exc}\n{err.getvalue().strip()}"}
    return {"xml": out.getvalue()}


def main() -> None:
    sys.path.insert(0, VIRT_MANAGER)
    from virtinst import cli

    request = json.load(sys.stdin)
    conn = cli.getConnection(request["uri"])
    json.dump({row: print_xml(conn, args) for row, args in request["rows"].items()}, sys.stdout)


if __name__ == "__main__":
    main()
