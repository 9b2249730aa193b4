"""The whole loop on the real libvirtd: manager process → POST /domain → TCG q35 guest under UEFI (OVMF, libvirt's
firmware auto-selection) with libvirt's emulated TPM 2.0 →
boots the built ISO → the agent inside answers through the loopback forward → POST /run, uploads, result → the
manager verifies the run's attestation with a fresh nonce (a wrong nonce, a tampered quote and a changed dataset
fail) → errors → DELETE → nothing left.

Select with `pytest -m e2e`. One guest at a time (2 shared cores); under 5 minutes here.
"""
from __future__ import annotations

import base64
import dataclasses
import time

import grpc
import libvirt
import pytest
from run_support import (
    DATASET_A,
    DATASET_B,
    EXPECTED,
    FAILING_ALGORITHM,
    SLEEPING_ALGORITHM,
    SUM_ALGORITHM,
    run_body,
    sha256,
)

import guest
from cocos_pb import agent_pb2, agent_pb2_grpc
from guest import e2e
from guest.vm import wait_for_agent
from manager_api import attestation
from manager_api.client import ManagerClient, ManagerError

pytestmark = [pytest.mark.system, pytest.mark.vm, pytest.mark.e2e]

AGENT_TIMEOUT = 180  # boot to agent under TCG: about a minute here, room for a loaded CI machine


@pytest.fixture(scope="module")
def loop():
    if not e2e.ISO.exists():
        pytest.fail(f"{e2e.ISO} is missing: run 'make guest' first (make test does)")
    setting = e2e.prepare()
    manager = None
    try:
        manager = e2e.start_manager(setting)
        yield setting, manager, ManagerClient(manager.base)
    finally:
        if manager is not None:
            manager.stop()
        e2e.cleanup(setting)


def expect_error(call, *args) -> ManagerError:
    with pytest.raises(ManagerError) as info:
        call(*args)
    return info.value


def full_run(client: ManagerClient, algorithm: bytes, ttl: int = 60) -> str:
    run_id = client.run(run_body(ttl=ttl))
    assert client.upload_algorithm(run_id, algorithm) == sha256(algorithm)
    for dataset in (DATASET_A, DATASET_B):
        assert client.upload_dataset(run_id, dataset) == sha256(dataset)
    return run_id


def test_1_post_domain_boots_the_guest_and_its_agent(loop):
    setting, _, client = loop
    assert client.create_domain("pool.xml", "vol.xml", "dom.xml") == setting.domain
    forwards = client.domain(setting.domain)["forwarded_ports"]
    assert {"host_address": "127.0.0.1", "host_port": setting.port, "guest_port": 7002, "protocol": "tcp"} in forwards
    # A health check through the forward: QEMU accepts TCP on the host side even before the agent listens.
    waited = wait_for_agent(setting.port, AGENT_TIMEOUT)
    print(f"POST /domain returned; agent SERVING {waited:.1f} s later")


def test_1b_the_guest_runs_under_uefi_with_a_tpm_and_the_same_request_again_settles(loop):
    """The guest booted OVMF (libvirt's auto-selected pflash loader) with the emulated TPM; POSTing the same
    definitions again converges without restarting it (libvirt gives a restarted domain a new ID)."""
    setting, _, client = loop
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.lookupByName(setting.domain)
        started_as = dom.ID()
        live = dom.XMLDesc(0)
        assert "<os firmware='efi'>" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert "type='pflash'" in live and "<tpm model='tpm-crb'>" in live
        # What the guest itself saw (test_guest_boot checks the BIOS and Secure Boot ways the same way).
        console = setting.console.read_text(errors="replace")
        assert "cocos-init: platform firmware=uefi lockdown=none tpm=2" in console
        assert "cocos-init: eth0 10.0.2.15/24" in console
        assert console.index("cocos-init: eth0") < console.index(guest.MARKER)  # the address precedes the marker
        assert "insmod" not in console, "a kernel module failed to load"
        assert client.create_domain("pool.xml", "vol.xml", "dom.xml") == setting.domain
        again = conn.lookupByName(setting.domain)
        assert again.isActive() and again.ID() == started_as, "the same request restarted the guest"
    finally:
        conn.close()
    wait_for_agent(setting.port, 30)


def test_2_run_reaches_the_domains_agent_and_returns_the_result(loop):
    setting, _, client = loop
    started = time.monotonic()
    run_id = full_run(client, SUM_ALGORITHM)
    # The configured agent URL is a dead port: the address was learned from the domain the manager created.
    status = client.run_status(run_id)
    assert status["agent"] == f"127.0.0.1:{setting.port}" and status["domain"] == setting.domain
    assert client.result(run_id) == EXPECTED
    assert client.run_status(run_id)["state"] == "complete"
    print(f"run to result in the guest: {time.monotonic() - started:.1f} s")


def evidence_of(answer: dict) -> attestation.Evidence:
    """The evidence of a POST /runs/{id}/attestation answer, as the verifier takes it."""
    raw = answer["evidence"]
    return attestation.Evidence(
        base64.b64decode(raw["attest"]), base64.b64decode(raw["signature"]), base64.b64decode(raw["ak_public"]),
        raw["pcr_bank"], {int(i): bytes.fromhex(v) for i, v in raw["pcrs"].items()}, raw["measurement_pcr"],
        [(m["kind"], bytes.fromhex(m["sha256"])) for m in raw["measurements"]])


def test_2b_the_guests_tpm_attests_the_run_and_a_wrong_nonce_or_a_tampered_quote_fails(loop):
    _, _, client = loop
    run_id = full_run(client, SUM_ALGORITHM)
    assert client.result(run_id) == EXPECTED
    started = time.monotonic()
    answer = client.attest(run_id)
    print(f"attestation (quote in the guest's vTPM, verdict): {time.monotonic() - started:.2f} s")
    assert answer["verified"] is True, answer["checks"]
    assert answer["nonce_source"] == "manager" and answer["evidence"]["pcrs"]["23"] == answer["expected"]["value"]
    expected = [(m["kind"], bytes.fromhex(m["sha256"])) for m in answer["expected"]["measurements"]]
    nonce, evidence = bytes.fromhex(answer["nonce"]), evidence_of(answer)
    assert attestation.verify(evidence, nonce, expected).verified  # the same verdict, recomputed here
    replayed = attestation.verify(evidence, bytes(32), expected)  # an old quote offered for a new nonce
    assert [c.name for c in replayed.checks if not c.ok] == ["nonce"]
    flipped = bytearray(evidence.attest)
    flipped[-40] ^= 1
    tampered = attestation.verify(dataclasses.replace(evidence, attest=bytes(flipped)), nonce, expected)
    assert "signature" in [c.name for c in tampered.checks if not c.ok]
    again = client.attest(run_id, nonce=b"c" * 16)  # a client's nonce: the quote is fresh for the client
    assert again["verified"] is True and again["nonce"] == (b"c" * 16).hex()


def test_2c_a_dataset_changed_behind_the_managers_back_fails_the_verdict(loop):
    setting, _, client = loop
    run_id = client.run(run_body())
    client.upload_algorithm(run_id, SUM_ALGORITHM)
    client.upload_dataset(run_id, DATASET_A)
    with grpc.insecure_channel(f"127.0.0.1:{setting.port}") as channel:  # straight to the agent, not via the manager
        agent_pb2_grpc.AgentServiceStub(channel).Data(agent_pb2.DataRequest(dataset=b"99,99\n"), timeout=30)
    answer = client.attest(run_id)
    assert answer["verified"] is False
    failed = {c["name"]: c["detail"] for c in answer["checks"] if not c["ok"]}
    assert list(failed) == ["measurements"], failed
    assert "the agent reports 4 measurements, the manager sent 3" in failed["measurements"]


TPM_PROBE = b"""import os
try:
    os.close(os.open("/dev/tpmrm0", os.O_RDWR))
    verdict = "opened"
except OSError as exc:
    verdict = type(exc).__name__
open(os.environ["RESULT_PATH"], "w").write(verdict)
"""


def test_2d_an_algorithm_cannot_open_the_tpm(loop):
    # The agent's measurements are only worth something if the algorithm cannot reset PCR 23 or extend it.
    _, _, client = loop
    assert client.result(full_run(client, TPM_PROBE)) == b"PermissionError"


def test_3_failing_algorithm_is_422_with_its_stderr(loop):
    _, _, client = loop
    run_id = full_run(client, FAILING_ALGORITHM)
    err = expect_error(client.result, run_id)
    assert err.status == 422 and err.body["agent_code"] == "ABORTED"
    assert "exit status 3" in err.body["error"] and "no such column: price" in err.body["error"]


def test_4_algorithm_past_its_ttl_is_504(loop):
    _, _, client = loop
    run_id = full_run(client, SLEEPING_ALGORITHM, ttl=3)
    started = time.monotonic()
    err = expect_error(client.result, run_id)
    assert err.status == 504 and err.body["agent_code"] == "DEADLINE_EXCEEDED" and "ttl" in err.body["error"]
    assert time.monotonic() - started < 30
    assert client.run_status(run_id)["state"] == "failed"


def test_5_out_of_order_calls_are_409(loop):
    _, _, client = loop
    run_id = client.run(run_body())
    err = expect_error(client.result, run_id)  # no algorithm, no datasets yet
    assert err.status == 409 and err.body["agent_code"] == "FAILED_PRECONDITION"
    newer = client.run(run_body(name="newer"))
    err = expect_error(client.upload_algorithm, run_id, SUM_ALGORITHM)  # the agent now holds the newer run
    assert err.status == 409 and newer in err.body["error"]


def test_6_delete_leaves_nothing(loop):
    setting, _, client = loop
    assert client.delete_domain(setting.domain) == {"name": setting.domain, "host": "localhost", "deleted": True}
    assert expect_error(client.domain, setting.domain).status == 404
    assert e2e.leftovers(setting) == []
    assert not e2e.port_open(setting.port), "the agent forward still accepts connections"
    e2e.cleanup(setting)  # the pool is the test's own (DELETE keeps pools: other domains may use them)
    assert not e2e.pool_exists(setting.pool)
