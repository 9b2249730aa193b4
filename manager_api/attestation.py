"""Verify a run's vTPM attestation: the agent's TPM quote against a fresh nonce and what the manager uploaded.

The verdict is four checks, each passed or failed with the reason (docs/ATTESTATION.md says what they establish
and what they do not):
  signature     the TPMT_SIGNATURE verifies over the TPMS_ATTEST bytes with the returned attestation key (AK); the
                AK is a restricted fixedTPM signing key (the TPM signs with it only what it produced itself) and,
                as a primary key, the quote's qualifiedSigner; the attest is a TPM-generated quote (magic
                TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE)
  nonce         the quote's extraData equals the nonce of this request
  pcr_digest    the quote's PCR selection is exactly the returned PCRs, and their digest is the quote's pcrDigest
  measurements  the returned value of the measurement PCR (23) equals the value recomputed from zeros by extending
                sha256(manifest bytes the manager sent), then sha256 of each algorithm and dataset it uploaded, in
                upload order
Structures are parsed here from the TPM 2.0 Library specification, Part 2 (Structures), big-endian, strictly (a
trailing byte is an error); signatures are checked with `cryptography`. The verifier shares no code with the agent
or its TSS, so a marshalling slip on one side cannot hide on the other.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from manager_api.domains import RequestError

if TYPE_CHECKING:
    from manager_api.runs import RunService

MEASUREMENT_PCR = 23  # the agent's choice (agent/tpm.py); tests/unit/test_manager_verdict.py keeps them equal
NONCE_MIN, NONCE_MAX = 16, 32  # a client's nonce; the TPM takes at most the AK's digest size (32 for sha256)
TPM_GENERATED_VALUE = 0xFF544347  # Part 2, 6.2: "\xffTCG"
TPM_ST_ATTEST_QUOTE = 0x8018  # Part 2, 6.9
ALG_RSA, ALG_ECC, ALG_NULL = 0x0001, 0x0023, 0x0010
ALG_RSASSA, ALG_RSAPSS, ALG_ECDSA = 0x0014, 0x0016, 0x0018
HASHES = {0x0004: ("sha1", hashes.SHA1), 0x000B: ("sha256", hashes.SHA256), 0x000C: ("sha384", hashes.SHA384),
          0x000D: ("sha512", hashes.SHA512)}
CURVES: dict[int, type[ec.EllipticCurve]] = {0x0003: ec.SECP256R1, 0x0004: ec.SECP384R1, 0x0005: ec.SECP521R1}
# Permanent handles of the hierarchies a primary key can belong to (Part 2, 7.4), by the name we report.
HIERARCHIES = {"endorsement": 0x4000000B, "owner": 0x40000001, "platform": 0x4000000C}
# TPMA_OBJECT bits (Part 2, 8.3)
FIXED_TPM, RESTRICTED, SIGN = 1 << 1, 1 << 16, 1 << 18
CHECKS = ("signature", "nonce", "pcr_digest", "measurements")
NOT_ESTABLISHED = (
    "that the attestation key lives in this guest's TPM: nothing ties it to the TPM's endorsement key or swtpm's "
    "certificate authority, so whoever controls the guest or the agent's connection can answer with a software key",
    "that the agent measured honestly: PCR 23 holds what the agent process extended; the firmware's boot PCRs (0-7) "
    "are returned but not compared with reference values, so the kernel and agent that ran are not attested",
    "anything from hardware: without SEV-SNP or TDX, the TPM is emulated by the host (swtpm), which can read and "
    "forge its state",
)


class MalformedEvidence(ValueError):
    """The evidence is not the TPM structure it claims to be; the message says where."""


@dataclass(frozen=True)
class Evidence:
    """What the agent returned (cocos.agent.v1.VtpmQuote): raw TPM structures plus the PCR values it read."""

    attest: bytes
    signature: bytes
    ak_public: bytes
    pcr_bank: str
    pcrs: dict[int, bytes]
    measurement_pcr: int
    measurements: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    checks: list[Check]
    expected_pcr: bytes

    @property
    def verified(self) -> bool:
        return all(check.ok for check in self.checks)


@dataclass(frozen=True)
class RunAttestation:
    """One answer of POST /runs/{id}/attestation: the evidence, what the manager expected, and the verdict."""

    run_id: str
    nonce: bytes
    nonce_from_client: bool
    evidence: Evidence
    expected: list[tuple[str, bytes]]
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        e = self.evidence
        return {
            "run": self.run_id, "verified": self.verdict.verified, "nonce": self.nonce.hex(),
            "nonce_source": "client" if self.nonce_from_client else "manager",
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.verdict.checks],
            "expected": {"pcr": MEASUREMENT_PCR, "value": self.verdict.expected_pcr.hex(),
                         "measurements": _log(self.expected)},
            "evidence": {"type": "vtpm", "attest": _b64(e.attest), "signature": _b64(e.signature),
                         "ak_public": _b64(e.ak_public), "pcr_bank": e.pcr_bank,
                         "pcrs": {str(index): value.hex() for index, value in sorted(e.pcrs.items())},
                         "measurement_pcr": e.measurement_pcr, "measurements": _log(e.measurements)},
            "not_established": list(NOT_ESTABLISHED),
        }


def attest_run(runs: RunService, run_id: str, nonce: bytes | None = None) -> RunAttestation:
    """Ask the run's agent for a vTPM quote and verify it. `nonce`: the client's (NONCE_MIN to NONCE_MAX bytes), or
    None for 32 random bytes drawn here. RequestError for a bad nonce or an unknown (404) / superseded (409) run;
    AgentError when the agent cannot attest (FAILED_PRECONDITION: no TPM in the guest)."""
    from_client = nonce is not None
    if nonce is None:
        nonce = secrets.token_bytes(NONCE_MAX)
    elif not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise RequestError("nonce", f"must be {NONCE_MIN} to {NONCE_MAX} bytes, got {len(nonce)}")
    quote, expected = runs.vtpm_attestation(run_id, nonce)
    evidence = Evidence(
        attest=quote.attest, signature=quote.signature, ak_public=quote.ak_public, pcr_bank=quote.pcr_bank,
        pcrs={pcr.index: pcr.value for pcr in quote.pcrs}, measurement_pcr=quote.measurement_pcr,
        measurements=[(m.kind, m.sha256) for m in quote.measurements])
    return RunAttestation(run_id, nonce, from_client, evidence, expected, verify(evidence, nonce, expected))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _log(measurements: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [{"kind": kind, "sha256": digest.hex()} for kind, digest in measurements]


def replay(measurements: list[tuple[str, bytes]]) -> bytes:
    """The sha256 PCR value after extending zeros with each digest in order (TPM2_PCR_Extend, Part 3, 22.2)."""
    value = bytes(32)
    for _kind, digest in measurements:
        value = hashlib.sha256(value + digest).digest()
    return value


def verify(evidence: Evidence, nonce: bytes, expected: list[tuple[str, bytes]]) -> Verdict:
    """Every check of the module docstring; `expected` is [(kind, sha256 digest)] of what the manager sent, in order.

    Never raises for bad evidence: a part that does not parse fails its checks, naming the reason.
    """
    expected_pcr = replay(expected)
    try:
        quote = _Reader(evidence.attest, "TPMS_ATTEST").attest()
    except MalformedEvidence as exc:
        return Verdict([Check(name, False, f"the quote does not parse: {exc}") for name in CHECKS], expected_pcr)
    return Verdict([
        _signature_check(evidence, quote),
        _nonce_check(quote, nonce),
        _pcr_digest_check(evidence, quote),
        _measurements_check(evidence, expected, expected_pcr),
    ], expected_pcr)


@dataclass(frozen=True)
class _Quote:
    qualified_signer: bytes
    extra_data: bytes
    selection: list[tuple[int, list[int]]]  # (hash algorithm, PCR indices ascending)
    pcr_digest: bytes
    magic: int
    kind: int


@dataclass(frozen=True)
class _Key:
    public_area: bytes  # TPMT_PUBLIC as marshalled: its hash is the key's name
    name_alg: int
    attributes: int
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey

    def name(self) -> bytes:
        """TPM2B_NAME contents: nameAlg || H_nameAlg(TPMT_PUBLIC) (Part 1, 16)."""
        return self._named(self.public_area)

    def primary_of(self, qualified_signer: bytes) -> str | None:
        """The hierarchy of which this key, as a primary key, has `qualified_signer` as its qualified name.

        Part 1, 16: QN(key) = nameAlg || H_nameAlg(QN(parent) || Name(key)); a hierarchy's QN is its handle.
        """
        for hierarchy, handle in HIERARCHIES.items():
            if hmac.compare_digest(self._named(struct.pack(">I", handle) + self.name()), qualified_signer):
                return hierarchy
        return None

    def _named(self, data: bytes) -> bytes:
        if self.name_alg not in HASHES:
            raise MalformedEvidence(f"unsupported nameAlg 0x{self.name_alg:04x}")
        return struct.pack(">H", self.name_alg) + hashlib.new(HASHES[self.name_alg][0], data).digest()


class _Reader:
    """A strict big-endian cursor over one TPM structure."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.what, self.at = data, what, 0

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise MalformedEvidence(f"{self.what} ends after {len(self.data)} bytes, inside a field at byte {self.at}")
        chunk = self.data[self.at:self.at + size]
        self.at += size
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def tpm2b(self) -> bytes:
        return self.take(self.u16())

    def end(self) -> None:
        if self.at != len(self.data):
            raise MalformedEvidence(f"{self.what} has {len(self.data) - self.at} bytes after its end")

    def attest(self) -> _Quote:
        """TPMS_ATTEST (Part 2, 10.12.12) holding a TPMS_QUOTE_INFO (10.12.4)."""
        magic, kind = self.u32(), self.u16()
        signer, extra = self.tpm2b(), self.tpm2b()
        self.take(8 + 4 + 4 + 1 + 8)  # clockInfo (clock, resetCount, restartCount, safe), firmwareVersion
        if kind != TPM_ST_ATTEST_QUOTE:
            raise MalformedEvidence(f"the attest is of type 0x{kind:04x}, not a quote (TPM_ST_ATTEST_QUOTE 0x8018)")
        selection = []
        for _ in range(self.u32()):
            algorithm, mask = self.u16(), self.tpm2b_select()
            selection.append((algorithm, [n for n in range(len(mask) * 8) if mask[n // 8] >> (n % 8) & 1]))
        digest = self.tpm2b()
        self.end()
        return _Quote(signer, extra, selection, digest, magic, kind)

    def tpm2b_select(self) -> bytes:
        return self.take(self.u8())  # TPMS_PCR_SELECTION: sizeofSelect is one byte

    def public(self) -> _Key:
        """TPM2B_PUBLIC (Part 2, 12.2.5) of an RSA or ECC key."""
        area = self.tpm2b()
        self.end()
        inner = _Reader(area, "TPMT_PUBLIC")
        kind, name_alg, attributes = inner.u16(), inner.u16(), inner.u32()
        inner.tpm2b()  # authPolicy
        key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
        if kind == ALG_ECC:
            inner.symmetric()
            inner.scheme()
            curve = inner.u16()
            inner.scheme()  # kdf
            x, y = inner.tpm2b(), inner.tpm2b()
            if curve not in CURVES:
                raise MalformedEvidence(f"unsupported ECC curve 0x{curve:04x}")
            numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), CURVES[curve]())
            try:
                key = numbers.public_key()
            except ValueError as exc:
                raise MalformedEvidence(f"the ECC point is not on the curve: {exc}") from None
        elif kind == ALG_RSA:
            inner.symmetric()
            inner.scheme()
            inner.u16()  # keyBits
            exponent = inner.u32() or 65537  # Part 2, 12.2.3.5: zero means the default 2^16 + 1
            modulus = inner.tpm2b()
            key = rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
        else:
            raise MalformedEvidence(f"unsupported key type 0x{kind:04x} (RSA or ECC expected)")
        inner.end()
        return _Key(area, name_alg, attributes, key)

    def symmetric(self) -> None:
        """TPMT_SYM_DEF_OBJECT: algorithm, then keyBits and mode unless TPM_ALG_NULL."""
        if self.u16() != ALG_NULL:
            self.take(4)

    def scheme(self) -> None:
        """TPMT_ECC_SCHEME / TPMT_RSA_SCHEME / TPMT_KDF_SCHEME: scheme, then its hash unless TPM_ALG_NULL."""
        if self.u16() != ALG_NULL:
            self.take(2)


def _signature_check(evidence: Evidence, quote: _Quote) -> Check:
    try:
        key = _Reader(evidence.ak_public, "TPM2B_PUBLIC").public()
        signed = _verify_signature(key, evidence.signature, evidence.attest)
    except MalformedEvidence as exc:
        return Check("signature", False, str(exc))
    if not signed:
        return Check("signature", False, "the signature does not verify over the quote with the returned key")
    if key.attributes & (RESTRICTED | SIGN | FIXED_TPM) != RESTRICTED | SIGN | FIXED_TPM:
        return Check("signature", False, f"the key is not a restricted fixedTPM signing key (TPMA_OBJECT "
                                         f"0x{key.attributes:08x}): it could sign data the TPM did not produce")
    hierarchy = key.primary_of(quote.qualified_signer)
    if hierarchy is None:
        return Check("signature", False, "the quote's qualifiedSigner is not the returned key as a primary key")
    if quote.magic != TPM_GENERATED_VALUE:
        return Check("signature", False, f"magic 0x{quote.magic:08x} is not TPM_GENERATED_VALUE")
    return Check("signature", True, "a TPM-generated quote, signed by the returned restricted signing key (a "
                                    f"primary key of the {hierarchy} hierarchy)")


def _verify_signature(key: _Key, signature: bytes, message: bytes) -> bool:
    """TPMT_SIGNATURE (Part 2, 11.3.4) over `message`: ECDSA (r, s) or RSASSA / RSAPSS."""
    reader = _Reader(signature, "TPMT_SIGNATURE")
    algorithm, hash_alg = reader.u16(), reader.u16()
    if hash_alg not in HASHES:
        raise MalformedEvidence(f"unsupported signature hash 0x{hash_alg:04x}")
    chosen = HASHES[hash_alg][1]()
    try:
        if algorithm == ALG_ECDSA and isinstance(key.key, ec.EllipticCurvePublicKey):
            r, s = reader.tpm2b(), reader.tpm2b()
            reader.end()
            der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            key.key.verify(der, message, ec.ECDSA(chosen))
        elif algorithm in (ALG_RSASSA, ALG_RSAPSS) and isinstance(key.key, rsa.RSAPublicKey):
            raw = reader.tpm2b()
            reader.end()
            pss = padding.PSS(padding.MGF1(chosen), chosen.digest_size)
            key.key.verify(raw, message, padding.PKCS1v15() if algorithm == ALG_RSASSA else pss, chosen)
        else:
            raise MalformedEvidence(f"signature algorithm 0x{algorithm:04x} does not fit the key")
    except InvalidSignature:
        return False
    return True


def _nonce_check(quote: _Quote, nonce: bytes) -> Check:
    if hmac.compare_digest(quote.extra_data, nonce):
        return Check("nonce", True, f"extraData is this request's nonce ({nonce.hex()})")
    return Check("nonce", False, f"extraData {quote.extra_data.hex() or '(empty)'} is not this request's nonce "
                                 f"{nonce.hex()}: the quote is not fresh")


def _pcr_digest_check(evidence: Evidence, quote: _Quote) -> Check:
    bank = next((alg for alg, (name, _) in HASHES.items() if name == evidence.pcr_bank), None)
    if bank is None:
        return Check("pcr_digest", False, f"unknown PCR bank {evidence.pcr_bank!r}")
    if [alg for alg, _ in quote.selection] != [bank]:
        return Check("pcr_digest", False, f"the quote selects banks {[hex(a) for a, _ in quote.selection]}, "
                                          f"not only {evidence.pcr_bank}")
    selected = quote.selection[0][1]
    if selected != sorted(evidence.pcrs):
        returned = sorted(evidence.pcrs)
        return Check("pcr_digest", False, f"the quote covers PCRs {selected}, the evidence returns {returned}")
    # pcrDigest uses the signing scheme's hash (Part 3, 18.4: TPM2_Quote), which TPMT_SIGNATURE names.
    scheme_hash = evidence.signature[2:4]
    algorithm = HASHES.get(int.from_bytes(scheme_hash, "big"), ("sha256", hashes.SHA256))[0]
    digest = hashlib.new(algorithm, b"".join(evidence.pcrs[index] for index in selected)).digest()
    if not hmac.compare_digest(digest, quote.pcr_digest):
        return Check("pcr_digest", False, "the returned PCR values do not hash to the quote's pcrDigest")
    return Check("pcr_digest", True, f"the returned {evidence.pcr_bank} PCRs {selected} are the quoted ones")


def _measurements_check(evidence: Evidence, expected: list[tuple[str, bytes]], expected_pcr: bytes) -> Check:
    index = evidence.measurement_pcr
    if index != MEASUREMENT_PCR:
        return Check("measurements", False,
                     f"the agent names PCR {index} as its measurement PCR, not {MEASUREMENT_PCR}")
    actual = evidence.pcrs.get(index)
    if actual is None:
        return Check("measurements", False, f"PCR {index} is not among the quoted PCRs")
    if hmac.compare_digest(actual, expected_pcr):
        return Check("measurements", True, f"PCR {index} = the manifest and the {len(expected) - 1} uploads the "
                                           "manager sent, in order")
    return Check("measurements", False, f"PCR {index} is {actual.hex()}, the manager's uploads give "
                                        f"{expected_pcr.hex()}; {_first_difference(evidence.measurements, expected)}")


def _first_difference(reported: list[tuple[str, bytes]], expected: list[tuple[str, bytes]]) -> str:
    """Where the agent's (unsigned) measurement log parts from what the manager sent: a hint, not evidence."""
    for position, (theirs, ours) in enumerate(zip(reported, expected, strict=False), 1):
        if theirs != ours:
            return (f"the agent reports {theirs[0]} sha256:{theirs[1].hex()} as measurement {position}, the manager "
                    f"sent {ours[0]} sha256:{ours[1].hex()}")
    if len(reported) != len(expected):
        return f"the agent reports {len(reported)} measurements, the manager sent {len(expected)}"
    return "the agent's log lists what the manager sent, but the quoted PCR is not that log's value"
