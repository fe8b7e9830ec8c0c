"""TLS and mutual TLS for the gRPC port, from PEM files named in the settings."""

from __future__ import annotations

from pathlib import Path

import grpc


def _pem(path: str, what: str, marker: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot read ({e.strerror or e})") from e
    if marker.encode() not in data:
        raise ValueError(f"{what} {path}: not a PEM file with a '{marker}' block")
    return data


def server_credentials(cert_file: str, key_file: str, client_ca_file: str = "") -> grpc.ServerCredentials:
    """TLS with the server's certificate chain and key; with ``client_ca_file``, clients must
    present a certificate signed by that CA (mutual TLS) or the handshake fails."""
    chain = _pem(cert_file, "tls_cert_file", "BEGIN CERTIFICATE")
    key = _pem(key_file, "tls_key_file", "PRIVATE KEY")
    ca = _pem(client_ca_file, "tls_client_ca_file", "BEGIN CERTIFICATE") if client_ca_file else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)


def describe(client_ca_file: str, cert_file: str) -> str:
    return "mutual TLS" if client_ca_file else "TLS" if cert_file else "plaintext"
