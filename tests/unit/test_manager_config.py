"""Configuration from the environment: defaults, parsing, and errors that name the variable."""
from __future__ import annotations

import pytest

from manager_api.config import ConfigError, from_env


def test_defaults_match_the_original_manager():
    cfg = from_env({})
    assert (cfg.http_port, cfg.grpc_port, cfg.agent_grpc_url) == (9021, 7001, "localhost:7002")
    assert cfg.agent_retry_total == 30.0 and cfg.token is None and not cfg.tls


def test_values_are_parsed(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    cfg = from_env({"CC_MANAGER_HTTP_PORT": "8080", "CC_MANAGER_AGENT_GRPC_TIMEOUT": "500ms",
                    "CC_MANAGER_AGENT_RETRY_TOTAL": "10s", "CC_MANAGER_LOG_LEVEL": "DEBUG",
                    "CC_MANAGER_SERVER_CERT": str(cert), "CC_MANAGER_SERVER_KEY": str(cert),
                    "CC_MANAGER_XML_DIR": str(tmp_path), "CC_MANAGER_TOKEN": "t"})
    assert cfg.http_port == 8080 and cfg.agent_grpc_timeout == 0.5 and cfg.agent_retry_total == 10.0
    assert cfg.log_level == "debug" and cfg.tls and cfg.xml_dir == str(tmp_path) and cfg.token == "t"


@pytest.mark.parametrize("env, names", [
    ({"CC_MANAGER_HTTP_PORT": "http"}, ["CC_MANAGER_HTTP_PORT"]),
    ({"CC_MANAGER_GRPC_PORT": "70000"}, ["CC_MANAGER_GRPC_PORT"]),
    ({"CC_MANAGER_AGENT_GRPC_TIMEOUT": "-1"}, ["CC_MANAGER_AGENT_GRPC_TIMEOUT"]),
    ({"CC_MANAGER_LOG_LEVEL": "loud"}, ["CC_MANAGER_LOG_LEVEL"]),
    ({"CC_MANAGER_XML_DIR": "/nonexistent/dir"}, ["CC_MANAGER_XML_DIR"]),
    ({"CC_MANAGER_SERVER_CERT": "/nonexistent.pem"}, ["CC_MANAGER_SERVER_CERT"]),
    ({"CC_MANAGER_HTTP_PORT": "x", "CC_MANAGER_LOG_LEVEL": "y"}, ["CC_MANAGER_HTTP_PORT", "CC_MANAGER_LOG_LEVEL"]),
])
def test_errors_name_every_bad_variable(env, names):
    with pytest.raises(ConfigError) as err:
        from_env(env)
    for name in names:
        assert name in str(err.value)


def test_cert_without_key_is_refused(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="set together"):
        from_env({"CC_MANAGER_SERVER_CERT": str(cert)})
