"""Bearer tokens with roles: the tokens file, the decision, and a real server refusing and admitting calls."""

from __future__ import annotations

import re
import shutil

import grpc
import numpy as np
import pytest

from candor.client import CandorError
from candor.server.rpc.auth import ADMIN, INFER, decide, load_tokens
from tests.conftest import run_candor
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes

INFER_TOKEN = "infer-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-fedcba9876543210"
RECALIBRATE = "/candor.v1.InferenceService/Recalibrate"
PREDICT = "/candor.v1.InferenceService/Predict"


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"# callers\n{INFER_TOKEN}\n\n{ADMIN_TOKEN} admin   # operators\n")
    return path


@pytest.fixture(scope="module")
def guarded(digits_repo, tokens_file, tmp_path_factory):
    repo = tmp_path_factory.mktemp("guarded") / "models"
    shutil.copytree(digits_repo, repo)
    running = start_server(repo, "--poll-interval-seconds", "0", "--auth-tokens-file", str(tokens_file))
    yield running
    running.stop()


def code_of(call) -> tuple[grpc.StatusCode, str]:
    """The status of a refused call, made through the SDK (its own exception) or a raw stub (grpc's)."""
    with pytest.raises((CandorError, grpc.RpcError)) as e:
        call()
    if isinstance(e.value, CandorError):
        return grpc.StatusCode[e.value.code], e.value.message
    return e.value.code(), e.value.details()


def test_tokens_file_roles_and_comments(tokens_file):
    table = load_tokens(tokens_file)
    assert table.role(INFER_TOKEN) == INFER and table.role(ADMIN_TOKEN) == ADMIN
    assert table.role("not-a-token-at-all-000") is None
    assert INFER_TOKEN.encode() not in b"".join(table.roles)  # only digests are kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{INFER_TOKEN} root\n", "line 1: unknown role 'root'"),
        ("short admin\n", "line 1: token shorter than 16 characters"),
        (f"# c\n{INFER_TOKEN}\n{INFER_TOKEN} admin\n", "line 3: the same token appears twice"),
        (f"{INFER_TOKEN} admin extra\n", "line 1: expected 'TOKEN [ROLE]', got 3 fields"),
        ("# nobody\n\n", "no tokens"),
    ],
)
def test_bad_tokens_files_are_refused_without_echoing_secrets(tmp_path, text, message):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        load_tokens(path)
    assert INFER_TOKEN not in str(e.value)


def test_decisions(tokens_file):
    table = load_tokens(tokens_file)
    assert decide(table, PREDICT, {})[0] == grpc.StatusCode.UNAUTHENTICATED
    assert decide(table, PREDICT, {"authorization": f"Basic {INFER_TOKEN}"})[1].startswith("malformed authorization")
    assert decide(table, PREDICT, {"authorization": "Bearer "})[0] == grpc.StatusCode.UNAUTHENTICATED
    assert decide(table, PREDICT, {"authorization": "Bearer wrong-token-wrong-token"})[1] == "unknown bearer token"
    assert decide(table, PREDICT, {"authorization": f"bearer {INFER_TOKEN}"}) is None  # the scheme is case-insensitive
    assert decide(table, RECALIBRATE, {"authorization": f"Bearer {INFER_TOKEN}"})[0] == grpc.StatusCode.PERMISSION_DENIED
    assert decide(table, RECALIBRATE, {"authorization": f"Bearer {ADMIN_TOKEN}"}) is None
    assert decide(table, PREDICT, {"authorization": f"Bearer {ADMIN_TOKEN}"}) is None  # admin may infer too


def test_calls_without_a_valid_token_are_refused(guarded, digits_rows):
    with guarded.client(retries=0) as anonymous:
        code, message = code_of(lambda: anonymous.predict(digits_rows[:2], model="digits"))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization: Bearer" in message
        assert code_of(lambda: anonymous.models())[0] == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: anonymous.feedback(["x" * 32], [1], model="digits"))[0] == grpc.StatusCode.UNAUTHENTICATED
    with guarded.client(retries=0, token="wrong-token-wrong-token") as wrong:
        assert code_of(lambda: wrong.predict(digits_rows[:2], model="digits")) == (grpc.StatusCode.UNAUTHENTICATED,
                                                                                    "unknown bearer token")  # fmt: skip
    assert guarded.metric("candor_auth_refusals_total", reason="unauthenticated") >= 4


def test_streams_and_kserve_are_guarded_too(guarded):
    with grpc.insecure_channel(guarded.target) as channel:
        stream = channel.stream_stream("/candor.v1.InferenceService/PredictStream")
        assert code_of(lambda: list(stream(iter([b""]), timeout=10)))[0] == grpc.StatusCode.UNAUTHENTICATED
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
        assert code_of(lambda: live(b"", timeout=10))[0] == grpc.StatusCode.UNAUTHENTICATED
        assert live(b"", timeout=10, metadata=(("authorization", f"Bearer {INFER_TOKEN}"),)) == b"\x08\x01"  # live: true


def test_infer_role_predicts_and_only_admin_recalibrates(guarded, digits_rows):
    with guarded.client(token=INFER_TOKEN) as caller:
        result = caller.predict(digits_rows[:3], model="digits")
        assert len(result.prediction_ids) == 3
        code, message = code_of(lambda: caller.recalibrate("digits", dry_run=True))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert message == "Recalibrate needs the admin role; this token has role 'infer'"
    with guarded.client(token=ADMIN_TOKEN, retries=0) as admin:
        # Past the interceptor: the servicer's own answer (no feedback stored yet).
        assert code_of(lambda: admin.recalibrate("digits", dry_run=True))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert guarded.metric("candor_auth_refusals_total", reason="permission_denied") >= 1


def test_health_is_open_and_reflection_closed_by_default(guarded):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with guarded.client() as anonymous:
        assert anonymous.health() == "SERVING" and anonymous.health("digits") == "SERVING"
    with grpc.insecure_channel(guarded.target) as channel:
        with pytest.raises(grpc.RpcError) as e:
            ProtoReflectionDescriptorDatabase(channel).get_services()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tokens_never_reach_the_log(guarded):
    out = "".join(guarded.process.output)
    assert "authentication on: 2 token(s)" in out
    assert INFER_TOKEN not in out and ADMIN_TOKEN not in out


def test_cli_takes_a_token(guarded, tmp_path, digits_rows):
    rows = tmp_path / "rows.npy"
    np.save(rows, digits_rows[:2])
    ok = run_candor("predict", "--target", guarded.target, "--model", "digits", "--input", str(rows), "--token", INFER_TOKEN)
    assert ok.returncode == 0, ok.stderr
    refused = run_candor("predict", "--target", guarded.target, "--model", "digits", "--input", str(rows))
    assert refused.returncode == 1 and "UNAUTHENTICATED: missing credentials" in refused.stderr
    denied = run_candor("recalibrate", "--target", guarded.target, "--model", "digits", "--dry-run", "--token", INFER_TOKEN)
    assert denied.returncode == 1 and "PERMISSION_DENIED: Recalibrate needs the admin role" in denied.stderr


def test_locked_health_and_open_reflection(served_repo, tokens_file):
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--auth-tokens-file", str(tokens_file),
                          "--auth-lock-health",
                          "--auth-open-reflection")  # fmt: skip
    try:
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

        with server.client(retries=0) as anonymous:
            assert code_of(lambda: anonymous.health())[0] == grpc.StatusCode.UNAUTHENTICATED
        with server.client(token=INFER_TOKEN) as caller:
            assert caller.health() == "SERVING"
        with grpc.insecure_channel(server.target) as channel:
            assert "candor.v1.InferenceService" in ProtoReflectionDescriptorDatabase(channel).get_services()
    finally:
        assert server.stop() == 0


def test_no_tokens_is_said_loudly(server):
    assert "AUTHENTICATION IS OFF" in "".join(server.process.output)


def test_a_bad_tokens_file_stops_the_start(served_repo, tmp_path):
    bad = tmp_path / "tokens"
    bad.write_text(f"{INFER_TOKEN} superuser\n")
    result = run_candor("serve", "--model-repository", str(served_repo), "--grpc-port", "0", "--metrics-port", "0",
                        "--auth-tokens-file", str(bad), timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert "line 1: unknown role 'superuser'" in result.stderr and INFER_TOKEN not in result.stderr
    missing = run_candor("serve", "--model-repository", str(served_repo), "--grpc-port", "0", "--metrics-port", "0",
                         "--auth-tokens-file", str(tmp_path / "nope"), timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "cannot read" in missing.stderr
