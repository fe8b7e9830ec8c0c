"""Bearer tokens and roles: the tokens file and the decision; the edge interceptor (rpc/edge.py) applies it.

The tokens file has one token per line, optionally followed by its role;
blank lines and ``#`` comments are skipped::

    # who                      token                              role
    3f9c1d0e8b7a6f5e4d3c2b1a09f8e7d6                              infer
    a1b2c3d4e5f60718293a4b5c6d7e8f90aa55bb66cc77dd88              admin

Roles: ``infer`` may call the inference RPCs (Predict, PredictStream, Feedback,
the read-only model and calibration RPCs, KServe's); ``admin`` may also call
the RPCs that change what is served (Recalibrate). Tokens are kept only as
SHA-256 digests and never logged; errors name line numbers, not tokens.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger("candor.server")

INFER, ADMIN = "infer", "admin"
ROLES = (INFER, ADMIN)
MIN_TOKEN_CHARS = 16  # shorter secrets are guessable; refuse them at start-up
ADMIN_METHODS = frozenset({"/candor.v1.InferenceService/Recalibrate"})
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenTable:
    roles: dict[bytes, str]  # SHA-256 of the token -> role

    def role(self, token: str) -> str | None:
        return self.roles.get(_digest(token))


def load_tokens(path: str | Path) -> TokenTable:
    """Read a tokens file; a ValueError names the line and what is wrong with it (never the token)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"auth tokens file {path}: cannot read ({e})") from e
    roles: dict[bytes, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2:
            raise ValueError(f"auth tokens file {path}: line {n}: expected 'TOKEN [ROLE]', got {len(fields)} fields")
        token, role = fields[0], fields[1] if len(fields) == 2 else INFER
        if role not in ROLES:
            raise ValueError(f"auth tokens file {path}: line {n}: unknown role {role!r} (expected {' or '.join(ROLES)})")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"auth tokens file {path}: line {n}: token shorter than {MIN_TOKEN_CHARS} characters")
        if _digest(token) in roles:
            raise ValueError(f"auth tokens file {path}: line {n}: the same token appears twice")
        roles[_digest(token)] = role
    if not roles:
        raise ValueError(f"auth tokens file {path}: no tokens (one per line, optionally followed by a role)")
    return TokenTable(roles)


def decide(table: TokenTable, method: str, metadata: dict[str, str]) -> tuple[grpc.StatusCode, str] | None:
    """None when the call may go ahead, else the status code and message to refuse it with."""
    header = metadata.get("authorization")
    if header is None:
        return grpc.StatusCode.UNAUTHENTICATED, "missing credentials: send metadata 'authorization: Bearer <token>'"
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return grpc.StatusCode.UNAUTHENTICATED, "malformed authorization metadata: expected 'Bearer <token>'"
    role = table.role(token.strip())
    if role is None:
        return grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token"
    if method in ADMIN_METHODS and role != ADMIN:
        rpc = method.rsplit("/", 1)[-1]
        return grpc.StatusCode.PERMISSION_DENIED, f"{rpc} needs the admin role; this token has role {role!r}"
    return None


def warn_if_open(tokens_file: str) -> None:
    """Say loudly at start-up that every caller may call everything."""
    if not tokens_file:
        log.warning("AUTHENTICATION IS OFF: any caller may call every RPC, including Recalibrate. "
                    "Set --auth-tokens-file (or CANDOR_AUTH_TOKENS_FILE) to require bearer tokens.")  # fmt: skip
