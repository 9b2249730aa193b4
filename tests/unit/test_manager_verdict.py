"""The manager's verdict on real TPM quotes (swtpm on 127.0.0.1 through the agent's own TPM code): a genuine quote
passes every check; a wrong nonce, a tampered quote, tampered PCR values and a changed dataset each fail theirs."""
from __future__ import annotations

import hashlib
import subprocess

import pytest

from agent import tpm
from manager_api import attestation
from manager_api.attestation import Evidence, replay, verify
from tests.swtpm_support import software_tpm

MANIFEST = b'{"id":"run-1","name":"sum"}'
ALGORITHM, DATASET_A, DATASET_B = b"print(1)\n", b"1,2\n", b"3,4\n"
NONCE = bytes(range(100, 132))


def digests(*pairs: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    return [(kind, hashlib.sha256(content).digest()) for kind, content in pairs]


SENT = digests(("manifest", MANIFEST), ("algorithm", ALGORITHM), ("dataset", DATASET_A), ("dataset", DATASET_B))


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    with software_tpm(str(tmp_path_factory.mktemp("swtpm"))) as tcti:
        yield tpm.Tpm(tcti, str(tmp_path_factory.mktemp("agent-tpm")))


@pytest.fixture(scope="module")
def evidence(device) -> Evidence:
    """A computation measured and quoted exactly as the agent does it."""
    device.reset()
    for _kind, digest in SENT:
        device.extend(digest)
    quote = device.quote(NONCE)
    return Evidence(quote.attest, quote.signature, quote.ak_public, tpm.BANK, quote.pcrs, tpm.MEASUREMENT_PCR, SENT)


def failed(verdict: attestation.Verdict) -> dict[str, str]:
    return {check.name: check.detail for check in verdict.checks if not check.ok}


def with_byte_flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1:]


def test_a_genuine_quote_passes_every_check(evidence):
    verdict = verify(evidence, NONCE, SENT)
    assert failed(verdict) == {} and verdict.verified
    assert [check.name for check in verdict.checks] == ["signature", "nonce", "pcr_digest", "measurements"]
    assert verdict.expected_pcr == evidence.pcrs[23] == replay(SENT)


def test_the_measurement_pcr_is_the_one_the_agent_extends():
    assert attestation.MEASUREMENT_PCR == tpm.MEASUREMENT_PCR


def test_a_wrong_nonce_fails_only_the_nonce_check(evidence):
    verdict = verify(evidence, bytes(32), SENT)
    assert list(failed(verdict)) == ["nonce"] and not verdict.verified
    assert "the quote is not fresh" in failed(verdict)["nonce"]


@pytest.mark.parametrize("position", [10, 60, -40])  # inside qualifiedSigner, clockInfo, the PCR selection/digest
def test_a_tampered_quote_fails_the_signature(evidence, position):
    tampered = Evidence(**{**vars(evidence), "attest": with_byte_flipped(evidence.attest, position)})
    verdict = verify(tampered, NONCE, SENT)
    assert "signature" in failed(verdict) and not verdict.verified


def test_a_tampered_signature_fails(evidence):
    tampered = Evidence(**{**vars(evidence), "signature": with_byte_flipped(evidence.signature, 20)})
    assert failed(verify(tampered, NONCE, SENT)) == {
        "signature": "the signature does not verify over the quote with the returned key"}


def test_another_key_fails_the_signature(device, evidence, tmp_path):
    other = tpm.Tpm(device.tcti, str(tmp_path))
    other._ak = None
    # The same TPM, another hierarchy: a different restricted key, whose name the quote does not carry.
    subprocess.run(["tpm2_createprimary", "-Q", "-C", "o", "-g", "sha256", "-G", tpm.AK_ALGORITHM, "-a",
                    tpm.AK_ATTRIBUTES, "-c", str(tmp_path / "k.ctx")], env={"TPM2TOOLS_TCTI": device.tcti}, check=True)
    subprocess.run(["tpm2_readpublic", "-Q", "-c", str(tmp_path / "k.ctx"), "-o", str(tmp_path / "k.pub")],
                   env={"TPM2TOOLS_TCTI": device.tcti}, check=True)
    subprocess.run(["tpm2_flushcontext", "-t"], env={"TPM2TOOLS_TCTI": device.tcti}, check=True)
    swapped = Evidence(**{**vars(evidence), "ak_public": (tmp_path / "k.pub").read_bytes()})
    assert list(failed(verify(swapped, NONCE, SENT))) == ["signature"]


def test_tampered_pcr_values_fail_the_pcr_digest(evidence):
    pcrs = {**evidence.pcrs, 0: bytes(32 * [0xAA])}
    verdict = verify(Evidence(**{**vars(evidence), "pcrs": pcrs}), NONCE, SENT)
    assert failed(verdict) == {"pcr_digest": "the returned PCR values do not hash to the quote's pcrDigest"}


def test_a_pcr_left_out_fails_the_pcr_digest(evidence):
    pcrs = {index: value for index, value in evidence.pcrs.items() if index != 7}
    verdict = verify(Evidence(**{**vars(evidence), "pcrs": pcrs}), NONCE, SENT)
    assert list(failed(verdict)) == ["pcr_digest"] and "the quote covers PCRs [0, 1, 2, 3, 4, 5, 6, 7, 23]" in \
        failed(verdict)["pcr_digest"]


def test_a_changed_dataset_fails_the_measurements_and_says_which(evidence):
    expected = digests(("manifest", MANIFEST), ("algorithm", ALGORITHM), ("dataset", b"1,2,999\n"),
                       ("dataset", DATASET_B))
    verdict = verify(evidence, NONCE, expected)
    assert list(failed(verdict)) == ["measurements"]
    detail = failed(verdict)["measurements"]
    assert f"PCR 23 is {evidence.pcrs[23].hex()}" in detail
    assert (f"the agent reports dataset sha256:{hashlib.sha256(DATASET_A).hexdigest()} as measurement 3, the manager "
            f"sent dataset sha256:{hashlib.sha256(b'1,2,999' + bytes([10])).hexdigest()}") in detail


def test_uploads_in_another_order_fail_the_measurements(evidence):
    reordered = [SENT[0], SENT[1], SENT[3], SENT[2]]
    assert list(failed(verify(evidence, NONCE, reordered))) == ["measurements"]


def test_a_missing_upload_fails_the_measurements(evidence):
    verdict = verify(evidence, NONCE, SENT[:3])
    assert list(failed(verdict)) == ["measurements"]


def test_an_unparsable_quote_fails_every_check_with_the_reason(evidence):
    truncated = Evidence(**{**vars(evidence), "attest": evidence.attest[:40]})
    verdict = verify(truncated, NONCE, SENT)
    assert set(failed(verdict)) == {"signature", "nonce", "pcr_digest", "measurements"}
    assert failed(verdict)["nonce"].startswith("the quote does not parse: TPMS_ATTEST ends after 40 bytes")


def test_an_rsa_attestation_key_verifies_too(device, tmp_path):
    env = {"TPM2TOOLS_TCTI": device.tcti}
    run = [("tpm2_createprimary", "-Q", "-C", "e", "-g", "sha256", "-G", "rsa2048:rsassa-sha256:null", "-a",
            tpm.AK_ATTRIBUTES, "-c", "rsa.ctx"),
           ("tpm2_quote", "-Q", "-c", "rsa.ctx", "-l", "sha256:23", "-q", NONCE.hex(), "-m", "attest", "-s", "sig",
            "-o", "pcrs", "-F", "values", "-g", "sha256"),
           ("tpm2_readpublic", "-Q", "-c", "rsa.ctx", "-o", "rsa.pub"),
           ("tpm2_flushcontext", "-t")]
    for command in run:
        subprocess.run(command, env=env, cwd=tmp_path, check=True)
    rsa = Evidence((tmp_path / "attest").read_bytes(), (tmp_path / "sig").read_bytes(),
                   (tmp_path / "rsa.pub").read_bytes(), "sha256", {23: (tmp_path / "pcrs").read_bytes()}, 23, [])
    verdict = verify(rsa, NONCE, [])
    assert failed(verdict).keys() <= {"measurements"}  # PCR 23 holds the module's extends, not the empty list
    assert verdict.checks[0].ok and verdict.checks[0].detail.startswith("a TPM-generated quote")
