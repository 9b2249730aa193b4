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
# Unit tests touch only test:///default (one per process) and their own tmp_path, so each goes to whichever worker
# is free, except in the modules of UNIT_TOGETHER, whose module-scoped fixtures are then built once.
SHARED_GROUPS = {
    # stor_common.remove_ours drops every ctest-stor-* pool and network
    "test_pool_module": "ctest-stor", "test_network_module": "ctest-stor", "test_volume_module": "ctest-stor",
    # both use ctest-h3-* names and /var/lib/cocos-test/h3
    "test_manager_faults": "ctest-h3", "test_manager_security": "ctest-h3",
    # the fleet test lists every ctest-h8-* domain; both use /var/lib/cocos-test/h8
    "test_manager_fleet": "ctest-h8", "test_manager_placement": "ctest-h8",
}
UNIT_TOGETHER = {"test_apkovl", "test_build_collection", "test_manager_verdict", "test_role_preflight"}
# Integration modules whose libvirt objects are named uniquely per run (a uuid): each parameter of their
# parametrized module fixture is a group of its own (one guest boot each) and no lock is needed.
PER_PARAMETER = {"test_guest_boot"}
# Seconds a group took in a measured run (docs/BENCHMARKS.md, `.ci/run` of 2026-12-08, -n 3 with Molecule beside): the
# scheduler hands out the longest first, so no long group starts last and runs alone. Groups not named count a second
# per test.
GROUP_SECONDS = {
    "integration-test_e2e": 143, "ctest-h8": 128, "integration-test_converge_cases": 118, "ctest-h3": 113,
    "integration-test_guest_boot[uefi-secure-boot-tpm]": 111, "integration-test_manager_domain": 81,
    "integration-test_manager_domain_rollback": 79, "integration-test_convergence_corpus": 70,
    "collection-test_collection_converge": 64, "collection-test_collection_ansible_test": 60,
    "integration-test_domain_module": 49, "integration-test_confidential_domain_module": 31, "ctest-stor": 30,
    "unit-test_apkovl": 26, "integration-test_manager_hardening": 22,
}


def group_of(nodeid: str) -> str:
    """The group (and lock name) of a test, from its node id ("tests/unit/test_x.py::test_y[z]")."""
    path = nodeid.split("::", 1)[0]
    area, module = os.path.basename(os.path.dirname(path)), os.path.splitext(os.path.basename(path))[0]
    if area == "unit" and module not in UNIT_TOGETHER:
        return nodeid
    if module in PER_PARAMETER:
        return f"{area}-{module}[{nodeid.partition('[')[2]}" if "[" in nodeid else nodeid
    return SHARED_GROUPS.get(module, f"{area}-{module}")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadgroup with the groups of group_of(). xdist 3.8's own loadgroup reads xdist_group marks but
    silently stops grouping under pytest 9.2 (pytest-xdist#1386), so the groups come from node ids here."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            longest = max(self.workqueue, key=lambda group: GROUP_SECONDS.get(group, len(self.workqueue[group])))
            self.workqueue.move_to_end(longest, last=False)
            super()._assign_work_unit(node)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(items: list) -> None:
    """Refuse a unit test module that shares a module-scoped fixture but is not in UNIT_TOGETHER: spread over
    workers, each would build the fixture again (and may depend on the order of its tests)."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        info = getattr(item, "_fixtureinfo", None)
        if info is None or "/unit/" not in f"/{path}" or group_of(item.nodeid) != item.nodeid:
            continue
        for defs in info.name2fixturedefs.values():
            shared = [d for d in defs if d.scope != "function" and d.baseid.startswith("tests/unit")]
            if shared:
                raise pytest.UsageError(f"{path}: fixture {shared[0].argname!r} is {shared[0].scope}-scoped; "
                                        "add the module to UNIT_TOGETHER in tests/conftest.py")


# Integration and collection tests create libvirt objects with fixed names, networks with fixed subnets and bridges,
# and directories under /var/lib/cocos-test. Two runs of the same module at once (two checkouts on one machine)
# would remove each other's objects; so each such module holds its group's lock while it runs, and a second run
# waits for it. Inside one run the groups already keep such modules apart.
LOCK_DIR = "/var/lib/cocos-test/locks"


@pytest.fixture(scope="module", autouse=True)
def _one_run_at_a_time(request: pytest.FixtureRequest):
    if request.path.parent.name not in ("integration", "collection") or request.path.stem in PER_PARAMETER:
        yield
        return
    os.makedirs(LOCK_DIR, exist_ok=True)
    with open(os.path.join(LOCK_DIR, f"{group_of(request.node.nodeid)}.lock"), "w", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            started = time.monotonic()
            print(f"\n{request.path.name}: another test run holds {lock.name}; waiting", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
            print(f"{request.path.name}: waited {time.monotonic() - started:.0f} s for {lock.name}", file=sys.stderr)
        yield
