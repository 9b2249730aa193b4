"""TLS on both servers with a self-signed certificate made in the test."""
from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from manager_support import agent_server, curl, make_config, manager_server

from cocos_pb import manager_pb2, manager_pb2_grpc


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_manager(tmp_path_factory):
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    with agent_server() as (recorder, port, _):
        config = make_config(server_cert=str(cert), server_key=str(key), agent_grpc_url=f"127.0.0.1:{port}")
        with manager_server(config) as mgr:
            yield mgr, cert, recorder


def test_https_with_the_ca_works(tls_manager):
    mgr, cert, _ = tls_manager
    status, _, body = curl("--cacert", str(cert), f"https://127.0.0.1:{mgr.http_port}/health")
    assert status == 200 and '"pass"' in body


def test_https_without_trust_fails_on_the_certificate(tls_manager):
    mgr, _, _ = tls_manager
    untrusted = subprocess.run(["curl", "-sS", f"https://127.0.0.1:{mgr.http_port}/health"], capture_output=True,
                               text=True, timeout=30)
    # 60: certificate problem, so the server really presents our self-signed cert (no other failure gives 60).
    assert untrusted.returncode == 60, untrusted.stderr
    assert "self-signed certificate" in untrusted.stderr


def test_plain_http_is_refused_by_the_tls_server(tls_manager):
    """The TLS server accepts the connection, reads a plain HTTP request where a TLS ClientHello belongs and closes
    the connection without answering: curl's 52 (empty reply), not 7 (nothing listening) or 28 (timeout)."""
    mgr, _, _ = tls_manager
    plain = subprocess.run(["curl", "-sS", "-m", "10", f"http://127.0.0.1:{mgr.http_port}/health"],
                           capture_output=True, text=True, timeout=30)
    assert (plain.returncode, plain.stdout) == (52, ""), plain.stderr
    assert "Empty reply from server" in plain.stderr
    with socket.create_connection(("127.0.0.1", mgr.http_port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(4096) == b""  # closed, not a byte of HTTP (nor the health body) sent in the clear
    status, _, body = curl("--cacert", str(tls_manager[1]), f"https://127.0.0.1:{mgr.http_port}/health")
    assert status == 200 and '"pass"' in body  # the server still serves TLS after refusing plain requests


def test_grpc_over_tls(tls_manager):
    mgr, cert, recorder = tls_manager
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(mgr.grpc_target, creds) as chan:
        reply = manager_pb2_grpc.ManagerServiceStub(chan).Run(
            manager_pb2.RunRequest(name="tls", owner="o", datasets=["d"], algorithms=["a"], ttl=5), timeout=10)
    assert recorder.received[-1]["id"] == reply.ID
    with grpc.insecure_channel(mgr.grpc_target) as chan, pytest.raises(grpc.RpcError) as err:
        manager_pb2_grpc.ManagerServiceStub(chan).Run(manager_pb2.RunRequest(name="x"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
