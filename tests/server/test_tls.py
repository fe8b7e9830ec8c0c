"""TLS and mutual TLS on the gRPC port, with a throwaway CA made by the test."""

from __future__ import annotations

import grpc
import pytest

from candor.client import CandorError
from tests.certs import Authority
from tests.conftest import run_candor
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, rogue = Authority(folder, "candor-ca"), Authority(folder, "rogue-ca")
    return {"ca": ca, "server": ca.issue("server", server=True), "client": ca.issue("client", server=False),
            "rogue_client": rogue.issue("client", server=False), "rogue": rogue}  # fmt: skip


def tls_flags(pki, mutual: bool) -> list[str]:
    flags = ["--tls-cert", str(pki["server"].cert), "--tls-key", str(pki["server"].key)]
    return flags + (["--tls-client-ca", str(pki["ca"].files.cert)] if mutual else [])


def refused(client, rows) -> grpc.StatusCode:
    with pytest.raises(CandorError) as e:
        client.predict(rows, model="digits", timeout=5)
    return grpc.StatusCode[e.value.code]


def test_tls_serves_clients_that_trust_its_ca(served_repo, pki, digits_rows):
    server = start_server(served_repo, "--poll-interval-seconds", "0", *tls_flags(pki, mutual=False))
    try:
        assert "(gRPC, TLS)" in "".join(server.process.output)
        with server.client(root_certificates=pki["ca"].files.cert.read_bytes()) as client:
            assert len(client.predict(digits_rows[:2], model="digits").prediction_ids) == 2
        with server.client(retries=0) as plaintext:
            assert refused(plaintext, digits_rows[:1]) == grpc.StatusCode.UNAVAILABLE
        with server.client(retries=0, root_certificates=pki["rogue"].files.cert.read_bytes()) as wrong_ca:
            assert refused(wrong_ca, digits_rows[:1]) == grpc.StatusCode.UNAVAILABLE
        health = run_candor("health", "--target", server.target, "--ca-cert", str(pki["ca"].files.cert))
        assert health.returncode == 0 and "SERVING" in health.stdout, health.stderr
    finally:
        assert server.stop() == 0


def test_mutual_tls_requires_a_client_certificate_from_the_ca(served_repo, pki, digits_rows):
    server = start_server(served_repo, "--poll-interval-seconds", "0", *tls_flags(pki, mutual=True))
    ca = pki["ca"].files.cert.read_bytes()
    try:
        assert "(gRPC, mutual TLS)" in "".join(server.process.output)
        client_cert, client_key = pki["client"].cert.read_bytes(), pki["client"].key.read_bytes()
        with server.client(root_certificates=ca, certificate_chain=client_cert, private_key=client_key) as client:
            assert len(client.predict(digits_rows[:2], model="digits").prediction_ids) == 2
        with server.client(retries=0, root_certificates=ca) as no_cert:
            assert refused(no_cert, digits_rows[:1]) == grpc.StatusCode.UNAVAILABLE
        rogue_cert, rogue_key = pki["rogue_client"].cert.read_bytes(), pki["rogue_client"].key.read_bytes()
        with server.client(retries=0, root_certificates=ca, certificate_chain=rogue_cert, private_key=rogue_key) as rogue:
            assert refused(rogue, digits_rows[:1]) == grpc.StatusCode.UNAVAILABLE
        health = run_candor("health", "--target", server.target, "--ca-cert", str(pki["ca"].files.cert), "--client-cert",
                            str(pki["client"].cert), "--client-key", str(pki["client"].key))  # fmt: skip
        assert health.returncode == 0, health.stderr
    finally:
        assert server.stop() == 0


def test_tls_and_tokens_together(served_repo, pki, digits_rows, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("tls-and-token-0123456789\n")
    server = start_server(served_repo, "--poll-interval-seconds", "0", *tls_flags(pki, mutual=False),
                          "--auth-tokens-file", str(tokens))
    ca = pki["ca"].files.cert.read_bytes()
    try:
        with server.client(root_certificates=ca, token="tls-and-token-0123456789") as client:
            assert len(client.predict(digits_rows[:1], model="digits").prediction_ids) == 1
        with server.client(retries=0, root_certificates=ca) as no_token:
            assert refused(no_token, digits_rows[:1]) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "{server_cert}"], "tls_cert_file and tls_key_file go together"),
        (["--tls-client-ca", "{ca}"], "tls_client_ca_file (mutual TLS) needs tls_cert_file"),
        (["--tls-cert", "{missing}", "--tls-key", "{server_key}"], "tls_cert_file {missing}: cannot read"),
        (["--tls-cert", "{server_key}", "--tls-key", "{server_key}"], "not a PEM file with a 'BEGIN CERTIFICATE' block"),
        (["--tls-cert", "{server_cert}", "--tls-key", "{server_cert}"], "not a PEM file with a 'PRIVATE KEY' block"),
    ],
)
def test_bad_tls_settings_stop_the_start(served_repo, pki, tmp_path, flags, message):
    values = {"server_cert": pki["server"].cert, "server_key": pki["server"].key, "ca": pki["ca"].files.cert,
              "missing": tmp_path / "missing.pem"}  # fmt: skip
    flags = [f.format(**values) for f in flags]
    result = run_candor("serve", "--model-repository", str(served_repo), "--grpc-port", "0", "--metrics-port", "0", *flags,
                        timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert message.format(**values) in result.stderr
