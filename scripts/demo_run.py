"""make demo, last step: the computation run end to end against the demo VM that site.yml booted.

Starts `python -m manager_api` on ephemeral loopback ports, sends POST /run naming the demo domain (the manager
reads the agent's address from that domain's forward of guest port 7002: 127.0.0.1:7020 by the role's
defaults), uploads a sum algorithm and two CSV datasets, fetches the result and prints it. The computation is the
one tests/integration/test_e2e.py runs. Exits non-zero, with the manager's error, if any step fails.

    .venv/bin/python scripts/demo_run.py [--domain NAME] [--agent-port 7020]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guest.demo import DATASET_A, DATASET_B, EXPECTED, SUM_ALGORITHM, run_body  # noqa: E402
from guest.e2e import start_manager_process  # noqa: E402
from guest.vm import wait_for_agent  # noqa: E402
from manager_api.client import ManagerClient, ManagerError  # noqa: E402


def step(text: str) -> None:
    print(f"   {text}", flush=True)


def computation(client: ManagerClient, domain: str) -> bytes:
    run_id = client.run(run_body(name="demo-sum", domain=domain))
    status = client.run_status(run_id)
    step(f"POST /run -> id {run_id}, agent {status['agent']} (learned from domain {status['domain']})")
    step(f"algorithm sum.py -> sha256 {client.upload_algorithm(run_id, SUM_ALGORITHM)[:16]}...")
    for name, dataset in (("a.csv", DATASET_A), ("b.csv", DATASET_B)):
        step(f"dataset {name} {dataset!r} -> sha256 {client.upload_dataset(run_id, dataset)[:16]}...")
    started = time.monotonic()
    result = client.result(run_id)
    step(f"GET /runs/{run_id}/result in {time.monotonic() - started:.2f} s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="QEmu-alpine-standard-x86_64")
    parser.add_argument("--agent-port", type=int, default=7020, help="for the readiness check only")
    args = parser.parse_args()
    step(f"waiting for the agent's health check on 127.0.0.1:{args.agent_port}")
    step(f"agent SERVING after {wait_for_agent(args.agent_port, 120):.1f} s")
    with tempfile.TemporaryDirectory(prefix="cocos-demo-run-") as tmp:
        manager = start_manager_process(Path(tmp) / "manager.log", {})
        try:
            step(f"manager on {manager.base} (pid {manager.proc.pid})")
            result = computation(ManagerClient(manager.base), args.domain)
        except ManagerError as exc:
            print(f"demo run failed: {exc}", file=sys.stderr)
            return 1
        finally:
            manager.stop()
    print(f"\nresult computed inside the VM: {result.decode(errors='replace')}")
    if result != EXPECTED:
        print(f"expected {EXPECTED.decode()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
