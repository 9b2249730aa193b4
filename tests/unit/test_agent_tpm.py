"""The agent's measurements and vTPM quotes against a real software TPM (swtpm on 127.0.0.1), over real gRPC.

tpm2-tools' own `tpm2_checkquote` is the independent verifier here; the manager's verifier has its own tests.
"""

import hashlib
import subprocess

import grpc
import pytest
from agent_testlib import DATASET_A, DATASET_B, SUM_ALGORITHM, manifest, rpc_error, running_agent, upload_all

from agent import tpm
from cocos_pb import agent_v1_pb2, agent_v1_pb2_grpc
from tests.swtpm_support import software_tpm

V1 = agent_v1_pb2
NONCE = bytes(range(32))


@pytest.fixture
def tcti(tmp_path):
    with software_tpm(str(tmp_path)) as value:
        yield value


def chain(*contents: bytes) -> bytes:
    value = bytes(32)
    for content in contents:
        value = tpm.extend_value(value, hashlib.sha256(content).digest())
    return value


def attest(agent, nonce: bytes = NONCE, kind: int = V1.ATTESTATION_TYPE_VTPM,
           tee_nonce: bytes = b"") -> V1.AttestationResponse:
    stub = agent_v1_pb2_grpc.AgentServiceStub(agent.channel)
    return stub.Attestation(V1.AttestationRequest(type=kind, vtpm_nonce=nonce, tee_nonce=tee_nonce), timeout=30)


def checkquote(tmp_path, quote: V1.VtpmQuote, nonce: bytes) -> subprocess.CompletedProcess:
    """tpm2_checkquote: the signature by the returned AK over `attest`, and the nonce in it.

    (Its PCR check takes only tpm2-tools' own serialized PCR file, so the PCR digest is checked by the caller.)
    """
    files = {"attest": quote.attest, "signature": quote.signature, "ak.pub": quote.ak_public}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return subprocess.run(
        ["tpm2_checkquote", "-u", str(tmp_path / "ak.pub"), "-m", str(tmp_path / "attest"), "-s",
         str(tmp_path / "signature"), "-g", "sha256", "-q", nonce.hex()],
        capture_output=True, text=True, check=False)


def pcr_digest(quote: V1.VtpmQuote) -> bytes:
    """The quote's pcrDigest: TPMS_QUOTE_INFO ends TPMS_ATTEST with a TPM2B_DIGEST (size 32 for sha256)."""
    assert quote.attest[-34:-32] == b"\x00\x20"
    return quote.attest[-32:]


def test_run_and_uploads_are_measured_in_arrival_order_and_the_quote_checks_out(tcti, tmp_path):
    with running_agent(tpm_tcti=tcti) as agent:
        computation = manifest()
        agent.run(computation)
        agent.data(DATASET_B)  # uploads in any order: the PCR follows arrival
        agent.algo(SUM_ALGORITHM)
        agent.data(DATASET_A)
        reply = attest(agent)
    quote = reply.vtpm
    assert reply.type == V1.ATTESTATION_TYPE_VTPM and reply.tee_report == b""
    assert quote.measurement_pcr == tpm.MEASUREMENT_PCR == 23 and quote.pcr_bank == "sha256"
    assert [pcr.index for pcr in quote.pcrs] == list(tpm.QUOTED_PCRS)
    assert [(m.kind, m.sha256) for m in quote.measurements] == [
        ("manifest", hashlib.sha256(computation).digest()), ("dataset", hashlib.sha256(DATASET_B).digest()),
        ("algorithm", hashlib.sha256(SUM_ALGORITHM).digest()), ("dataset", hashlib.sha256(DATASET_A).digest())]
    pcrs = {pcr.index: pcr.value for pcr in quote.pcrs}
    assert pcrs[23] == chain(computation, DATASET_B, SUM_ALGORITHM, DATASET_A)
    assert pcr_digest(quote) == hashlib.sha256(b"".join(pcr.value for pcr in quote.pcrs)).digest()
    checked = checkquote(tmp_path, quote, NONCE)
    assert checked.returncode == 0, checked.stderr
    assert checkquote(tmp_path, quote, bytes(32)).returncode != 0  # another nonce: tpm2_checkquote refuses


def test_a_new_run_resets_the_measurement_pcr(tcti):
    with running_agent(tpm_tcti=tcti) as agent:
        agent.run(manifest())
        upload_all(agent)
        second = manifest(id="comp-2")
        agent.run(second)
        quote = attest(agent).vtpm
    assert {pcr.index: pcr.value for pcr in quote.pcrs}[23] == chain(second)
    assert [m.kind for m in quote.measurements] == ["manifest"]


def test_the_same_tpm_gives_the_same_attestation_key_and_fresh_quotes(tcti):
    with running_agent(tpm_tcti=tcti) as agent:
        first, second = attest(agent, b"first").vtpm, attest(agent, b"second").vtpm
    with running_agent(tpm_tcti=tcti) as restarted:
        third = attest(restarted, b"third").vtpm
    assert first.ak_public == second.ak_public == third.ak_public
    assert first.attest != second.attest
    assert b"first" in first.attest and b"second" in second.attest


def test_without_a_tpm_vtpm_attestation_is_failed_precondition_and_runs_still_work():
    with running_agent() as agent:  # tpm_tcti="none"
        agent.run(manifest())
        upload_all(agent)
        assert agent.result() == b"15,30=45"
        error = rpc_error(attest, agent)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details().startswith("no TPM in this guest")


def test_tee_types_without_their_device_say_which_device_is_missing(tmp_path):
    sev, tdx = str(tmp_path / "sev-guest"), str(tmp_path / "tdx_guest")
    with running_agent(sev_device=sev, tdx_device=tdx) as agent:
        snp = rpc_error(attest, agent, b"", V1.ATTESTATION_TYPE_SNP, b"n" * 64)
        tdx_error = rpc_error(attest, agent, b"", V1.ATTESTATION_TYPE_TDX, b"n")
        both = rpc_error(attest, agent, NONCE, V1.ATTESTATION_TYPE_SNP_VTPM, b"n")
    assert snp.code() == tdx_error.code() == both.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert snp.details() == f"no SEV-SNP guest device {sev} in this guest: no SEV-SNP report"
    assert tdx_error.details() == f"no TDX guest device {tdx} in this guest: no TDX report"
    assert sev in both.details()


@pytest.mark.parametrize(("kind", "vtpm_nonce", "tee_nonce", "message"), [
    (V1.ATTESTATION_TYPE_UNSPECIFIED, NONCE, b"", "type must be one of SNP, TDX, VTPM, SNP_VTPM, got "
                                                  "ATTESTATION_TYPE_UNSPECIFIED"),
    (99, NONCE, b"", "unknown attestation type 99"),
    (V1.ATTESTATION_TYPE_VTPM, b"", b"", "vtpm_nonce must be 1 to 32 bytes for ATTESTATION_TYPE_VTPM"),
    (V1.ATTESTATION_TYPE_VTPM, bytes(33), b"", "vtpm_nonce must be 1 to 32 bytes for ATTESTATION_TYPE_VTPM"),
    (V1.ATTESTATION_TYPE_SNP, b"", bytes(65), "tee_nonce must be 1 to 64 bytes for ATTESTATION_TYPE_SNP"),
    (V1.ATTESTATION_TYPE_SNP_VTPM, NONCE, b"", "tee_nonce must be 1 to 64 bytes for ATTESTATION_TYPE_SNP_VTPM"),
])
def test_bad_requests_are_invalid_argument(tcti, kind, vtpm_nonce, tee_nonce, message):
    with running_agent(tpm_tcti=tcti) as agent:
        error = rpc_error(attest, agent, vtpm_nonce, kind, tee_nonce)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == message


def test_a_tpm_that_fails_refuses_the_upload_and_keeps_the_computation(tcti, tmp_path):
    with running_agent(tpm_tcti=tcti) as agent:
        agent.run(manifest())
        agent.server.session._tpm.tcti = "swtpm:host=127.0.0.1,port=1"  # type: ignore[union-attr]  # nothing there
        error = rpc_error(agent.algo, SUM_ALGORITHM)
        assert error.code() == grpc.StatusCode.UNAVAILABLE and error.details().startswith("tpm2_pcrextend failed")
        assert agent.state == "receiving_algorithm"  # nothing stored: the PCR and the uploads still agree


def test_the_measurement_pcr_cannot_be_one_the_os_owns(tcti):
    # PCR 15 is the highest the OS owns: the TPM refuses to reset it at locality 0, PCR 23 it resets.
    device = tpm.Tpm(tcti, "/nonexistent")
    device.reset()
    with pytest.raises(Exception, match="bad locality"):
        device._tool("tpm2_pcrreset", "15")
