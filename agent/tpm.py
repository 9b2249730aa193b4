"""The guest's TPM 2.0 through tpm2-tools (Debian `tpm2-tools`): measure into a PCR, quote with a nonce.

Why the command-line tools and not Python bindings: the agent must start fast under TCG, and the tools cost nothing
until used (no cffi or cryptography import at start); the same Debian build runs in the guest and in the tests
(against swtpm on 127.0.0.1), so what is tested is what ships.

Measurements: PCR 23 of the sha256 bank. The TCG PC Client Platform TPM Profile gives PCRs 16-23 to applications
and lets software at locality 0 reset 16 (debug) and 23 (application support); 0-15 belong to firmware and the OS
and cannot be reset. A Run resets PCR 23 and extends it with the sha256 of the manifest bytes, then every upload
extends it with the sha256 of its content, in arrival order. So after a computation's uploads:
    PCR23 = E(...E(E(0^32, sha256(manifest)), sha256(upload 1))..., sha256(upload n)),  E(p, d) = sha256(p || d)
which a verifier recomputes from what it sent. 16 is the debug PCR (the profile says verifiers should not trust it)
and an OS PCR (8-15) cannot be reset, so it would mix every earlier computation into the value.

The attestation key (AK) is a primary key of the endorsement hierarchy created from a fixed template (ECC NIST
P-256, ECDSA-SHA256, restricted signing, fixedTPM): the same TPM gives the same key every time. A restricted key
signs only structures the TPM itself produced (TPM_GENERATED_VALUE), so a quote cannot be forged by asking the TPM
to sign chosen bytes. Nothing here ties the AK to the endorsement key's certificate (see docs/ATTESTATION.md).
"""

import hashlib
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

from agent.errors import AttestationFailed, NoAttestationDevice

MEASUREMENT_PCR = 23
BANK = "sha256"
# The firmware's boot measurements (0-7: SeaBIOS or OVMF, option ROMs, boot loader) and ours. The boot PCRs are
# reported for a verifier's policy; the manager's verdict evaluates only MEASUREMENT_PCR.
QUOTED_PCRS = (0, 1, 2, 3, 4, 5, 6, 7, MEASUREMENT_PCR)
MAX_NONCE = 32  # qualifyingData of a sha256 AK: at most the digest size (upstream Cocos: vTPM nonce <= 32 bytes)
AK_ATTRIBUTES = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
AK_ALGORITHM = "ecc256:ecdsa-sha256:null"
DEVICES = ("/dev/tpmrm0", "/dev/tpm0")  # the kernel's resource manager first
COMMAND_TIMEOUT = 30.0  # seconds per tool; a TPM answers in milliseconds, TCG and a busy host make it slower


@dataclass(frozen=True)
class Quote:
    """TPM2_Quote's output as the TPM marshalled it (TPM 2.0 Library Part 2):

    attest: TPMS_ATTEST, the bytes the AK signed; signature: TPMT_SIGNATURE; ak_public: TPM2B_PUBLIC of the AK;
    pcrs: PCR index -> value of the sha256 bank, read under the same lock as the quote.
    """

    attest: bytes
    signature: bytes
    ak_public: bytes
    pcrs: dict[int, bytes]


def extend_value(pcr: bytes, digest: bytes) -> bytes:
    """TPM2_PCR_Extend for one sha256 bank: sha256(old value || digest)."""
    return hashlib.sha256(pcr + digest).digest()


def detect_tcti(configured: str) -> str | None:
    """The TCTI to use: `configured` ("none" disables the TPM), else the first TPM device node present, else None."""
    if configured == "none":
        return None
    if configured:
        return configured
    for device in DEVICES:
        if os.path.exists(device):
            return f"device:{device}"
    return None


class Tpm:
    """Serialised tpm2-tools calls against one TPM (TCTI string as tpm2-tools takes it, e.g. device:/dev/tpmrm0)."""

    def __init__(self, tcti: str, state_dir: str) -> None:
        self.tcti = tcti
        self._state_dir = state_dir
        self._lock = threading.Lock()
        self._ak: tuple[str, bytes] | None = None  # saved context file, TPM2B_PUBLIC
        # Without the kernel's resource manager (swtpm's socket, a raw /dev/tpm0) every object a tool loads stays
        # in the TPM's few transient slots until flushed; through /dev/tpmrm0 the kernel flushes them at close.
        self._flush = not tcti.startswith("device:/dev/tpmrm")

    def reset(self) -> None:
        """Set MEASUREMENT_PCR back to zeros (TPM2_PCR_Reset, allowed at locality 0 for PCR 23)."""
        with self._lock:
            self._tool("tpm2_pcrreset", str(MEASUREMENT_PCR))

    def extend(self, digest: bytes) -> None:
        """Extend MEASUREMENT_PCR's sha256 bank with a 32-byte digest; AttestationFailed if the TPM refuses."""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError("a sha256 digest is 32 bytes")
        with self._lock:
            self._tool("tpm2_pcrextend", f"{MEASUREMENT_PCR}:{BANK}={digest.hex()}")

    def quote(self, nonce: bytes) -> Quote:
        """TPM2_Quote over QUOTED_PCRS with `nonce` as qualifying data, signed by the AK (created on first use)."""
        if not 0 < len(nonce) <= MAX_NONCE:
            raise ValueError(f"the vTPM nonce must be 1 to {MAX_NONCE} bytes")
        import tempfile  # not at start-up: the agent's import time counts under TCG

        with self._lock:
            context, ak_public = self._attestation_key()
            with tempfile.TemporaryDirectory(dir=self._state_dir, prefix="quote-") as out:
                files = {name: os.path.join(out, name) for name in ("attest", "signature", "pcrs")}
                selection = f"{BANK}:{','.join(str(index) for index in QUOTED_PCRS)}"
                try:
                    self._tool("tpm2_quote", "-Q", "-c", context, "-l", selection, "-q", nonce.hex(), "-g", BANK,
                               "-m", files["attest"], "-s", files["signature"], "-o", files["pcrs"], "-F", "values")
                finally:
                    self._flush_transient()
                data = {name: _read(path) for name, path in files.items()}
        size = hashlib.sha256().digest_size
        values = data["pcrs"]
        if len(values) != size * len(QUOTED_PCRS):
            count = len(QUOTED_PCRS)
            raise AttestationFailed(f"tpm2_quote returned {len(values)} bytes of PCR values for {count} PCRs")
        pcrs = {index: values[n * size:(n + 1) * size] for n, index in enumerate(QUOTED_PCRS)}
        return Quote(data["attest"], data["signature"], ak_public, pcrs)

    def _attestation_key(self) -> tuple[str, bytes]:
        """The AK's saved context and TPM2B_PUBLIC, created once per agent process (a primary key is re-derivable)."""
        if self._ak is None:
            os.makedirs(self._state_dir, mode=0o700, exist_ok=True)
            context, public = os.path.join(self._state_dir, "ak.ctx"), os.path.join(self._state_dir, "ak.pub")
            try:
                self._tool("tpm2_createprimary", "-Q", "-C", "e", "-g", BANK, "-G", AK_ALGORITHM, "-a", AK_ATTRIBUTES,
                           "-c", context)
                self._tool("tpm2_readpublic", "-Q", "-c", context, "-o", public, "-f", "tss")
            finally:
                self._flush_transient()
            self._ak = (context, _read(public))
        return self._ak

    def _flush_transient(self) -> None:
        if self._flush:
            self._tool("tpm2_flushcontext", "--transient-object")

    def _tool(self, name: str, *args: str) -> None:
        """Run one tpm2-tools command (no shell; vfork+exec, never a fork of the threaded agent)."""
        path = shutil.which(name, path="/usr/bin:/bin")
        if path is None:
            raise NoAttestationDevice(f"{name} is missing (Debian package tpm2-tools): the TPM cannot be used")
        env = {"TPM2TOOLS_TCTI": self.tcti, "PATH": "/usr/bin:/bin", "LANG": "C"}
        try:
            proc = subprocess.run([path, *args], env=env, capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise AttestationFailed(f"{name} did not finish within {COMMAND_TIMEOUT:g} s ({self.tcti})") from None
        if proc.returncode != 0:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            # tpm2-tools' own "ERROR: Esys_X(0x...) - tpm:...: reason" line says most; the TSS log lines less.
            reason = next((line for line in lines if line.startswith("ERROR: ")), lines[-1] if lines else "")
            raise AttestationFailed(f"{name} failed with exit status {proc.returncode} ({self.tcti}): {reason}")


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
