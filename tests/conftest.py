"""Make the repository's module_utils importable as ansible.module_utils.*, as ansible.cfg does; group tests for
pytest-xdist; let test runs from several checkouts share one libvirtd."""
import fcntl
import os
import sys
import time

import ansible.module_utils
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ansible.module_utils.__path__.append(os.path.join(ROOT, "module_utils"))  # type: ignore[attr-defined]
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# manager_api/__init__.py turns gRPC core's fork handlers off, but only takes effect when it runs before grpc is
# first imported; test modules import grpc first, and the manager servers they start then fork ansible-playbook
# children that die before exec (jobs "failed (rc None)", about 1 run in 10). So the tests set it first too.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# `make test` runs pytest-xdist with --dist loadgroup: all tests of one group run on one worker, in file order.
# An integration or collection module is its own group (module-scoped fixtures, fixed libvirt names, tests that
# build on each other); modules that share libvirt objects or a name prefix one of them cleans up share a group.
# Unit tests touch only test:///default (one per process) and their own tmp_path: each goes to whichever worker
# is free, except those sharing a module-scoped fixture, which stay together so it is built once.
SHARED_GROUPS = {
    # stor_common.remove_ours drops every ctest-stor-* pool and network
    "test_pool_module": "ctest-stor", "test_network_module": "ctest-stor", "test_volume_module": "ctest-stor",
    # test_domain_module drops every ctest-dom-* domain, the role test's ctest-dom-roles too
    "test_domain_module": "ctest-dom", "test_alpine_vm_role": "ctest-dom",
    # both use ctest-h3-* names and /var/lib/cocos-test/h3
    "test_manager_faults": "ctest-h3", "test_manager_security": "ctest-h3",
    # the fleet test lists every ctest-h8-* domain; both use /var/lib/cocos-test/h8
    "test_manager_fleet": "ctest-h8", "test_manager_placement": "ctest-h8",
}


def group_of(path) -> str:
    """The xdist group (and lock name) of the test module at `path`."""
    return SHARED_GROUPS.get(path.stem, f"{path.parent.name}-{path.stem}")


def _shares_a_fixture(item: pytest.Item) -> bool:
    defs = getattr(item, "_fixtureinfo", None)
    return defs is not None and any(d.scope != "function" for ds in defs.name2fixturedefs.values() for d in ds)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(items: list) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None and \
                (item.path.parent.name != "unit" or _shares_a_fixture(item)):
            item.add_marker(pytest.mark.xdist_group(group_of(item.path)))


# Integration and collection tests create libvirt objects with fixed names, networks with fixed subnets and bridges,
# and directories under /var/lib/cocos-test. Two runs of the same module at once (two checkouts on one machine)
# would remove each other's objects; so each such module holds its group's lock while it runs, and a second run
# waits for it. Inside one run the groups already keep such modules apart.
LOCK_DIR = "/var/lib/cocos-test/locks"


@pytest.fixture(scope="module", autouse=True)
def _one_run_at_a_time(request: pytest.FixtureRequest):
    if request.path.parent.name not in ("integration", "collection"):
        yield
        return
    os.makedirs(LOCK_DIR, exist_ok=True)
    with open(os.path.join(LOCK_DIR, f"{group_of(request.path)}.lock"), "w", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            started = time.monotonic()
            print(f"\n{request.path.name}: another test run holds {lock.name}; waiting", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
            print(f"{request.path.name}: waited {time.monotonic() - started:.0f} s for {lock.name}", file=sys.stderr)
        yield
