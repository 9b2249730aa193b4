"""What our modules themselves cost in a converged no-op: the pool, volume and running-domain managers run
in-process, as each module's main() runs them, without ansible's per-task start-up around them.

Converges the objects of bench/modules_noop.yml once, then times --runs converged runs of each manager
(connection, planning, result) and prints the minimum and the median in milliseconds: the minimum is the
cost without interference, the median what a loaded machine adds. Run from the repository root, or from a
checkout of an older commit to compare (both against the same libvirtd, one after the other):
  .venv/bin/python bench/managers_noop.py [--runs 100] [--prefix ctest-bench-mgr] [--keep]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.insert(0, os.path.join(ROOT, "module_utils"))  # as ansible.cfg does
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402

from library import libvirt_domain, libvirt_pool, libvirt_volume  # noqa: E402
from module_utils.cocos_libvirt import domain, pool, volume  # noqa: E402
from module_utils.cocos_libvirt.common import connect  # noqa: E402

URI = "qemu:///system"


def tasks(prefix: str, directory: str) -> list[tuple[str, Any, Any, dict[str, Any]]]:
    """bench/modules_noop.yml's three tasks: (name, module, manager factory, arguments)."""
    disk = f"{prefix}-disk.qcow2"
    return [
        ("pool", libvirt_pool, pool.build_manager, {"name": f"{prefix}-pool", "path": directory, "autostart": True}),
        ("volume", libvirt_volume, volume.build_manager, {"pool": f"{prefix}-pool", "name": disk, "capacity": "64MiB"}),
        ("domain", libvirt_domain, domain.DomainManager,
         {"name": f"{prefix}-dom", "state": "running", "domain_type": "qemu", "memory": "128MiB", "vcpus": 1,
          "disks": [{"pool": f"{prefix}-pool", "volume": disk}]}),
    ]


def run(module: Any, build: Any, args: dict[str, Any]) -> dict[str, Any]:
    params = ArgumentSpecValidator(module.argument_spec()).validate({"uri": URI, **args}).validated_parameters
    conn = connect(URI)
    try:
        return build(conn, SimpleNamespace(params=params, check_mode=False, _diff=False)).run()
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--prefix", default="ctest-bench-mgr")
    parser.add_argument("--dir", default="/var/lib/cocos-test/bench/mgr-pool", help="the pool's directory")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark objects defined")
    args = parser.parse_args()
    todo = tasks(args.prefix, args.dir)
    for _, module, build, margs in todo:
        run(module, build, margs)
    try:
        print("| manager | min ms | median ms |\n|---|---|---|")
        for name, module, build, margs in todo:
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                result = run(module, build, margs)
                times.append((time.perf_counter() - start) * 1000)
                if result["changed"]:
                    sys.exit(f"{name}: a converged run changed {result['actions']}: not idempotent")
            print(f"| {name} | {min(times):.2f} | {statistics.median(times):.2f} |")
    finally:
        if not args.keep:
            run(libvirt_domain, domain.DomainManager, {"name": f"{args.prefix}-dom", "state": "absent",
                                                       "remove_storage": True})
            run(libvirt_pool, pool.build_manager, {"name": f"{args.prefix}-pool", "state": "absent"})


if __name__ == "__main__":
    main()
