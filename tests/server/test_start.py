"""How `candor serve` starts: ports and the repository checked before any model loads, overall
health that waits for a model, and the version policy (the newest N plus the named ones)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from candor.calibration.manifest import read_manifest, write_manifest
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow  # real servers in child processes


def serve(repo, *flags: str) -> subprocess.CompletedProcess:
    """`candor serve` expected to exit at once (a start-up error)."""
    cmd = [sys.executable, "-m", "candor", "serve", "--model-repository", str(repo), "--grpc-host", "127.0.0.1",
           "--metrics-host", "127.0.0.1", "--data-dir", str(repo.parent / "data"), *flags]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("candor serve:")]
    assert all(w in line for w in words), line
    assert "ready on" not in result.stderr, "a model loaded before the port was checked"


@pytest.fixture
def taken():
    """A port another process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_grpc_port_in_use_is_one_line_before_any_model_loads(served_repo, taken):
    result = serve(served_repo, "--grpc-port", str(taken), "--metrics-port", "0")
    assert_one_line(result, f"127.0.0.1:{taken}", "in use", "--grpc-port", "CANDOR_GRPC_PORT")


def test_a_metrics_port_in_use_names_the_port_and_the_setting(served_repo, taken):
    result = serve(served_repo, "--grpc-port", "0", "--metrics-port", str(taken))
    assert_one_line(result, f"127.0.0.1:{taken}", "in use", "--metrics-port")


def test_a_missing_repository_is_an_error(tmp_path):
    result = serve(tmp_path / "nosuchdir", "--grpc-port", "0", "--metrics-port", "0")
    assert_one_line(result, "nosuchdir", "does not exist", "--model-repository")
    (tmp_path / "afile").write_text("")
    assert_one_line(serve(tmp_path / "afile", "--grpc-port", "0", "--metrics-port", "0"), "is not a folder")


def test_an_empty_repository_warns_and_is_not_serving_until_a_model_is_ready(digits_repo, tmp_path):
    repo = tmp_path / "models"
    repo.mkdir()
    server = start_server(repo, "--poll-interval-seconds", "0.2")
    try:
        assert any("NO MODELS" in line and "NOT_SERVING" in line for line in server.process.output)
        with server.client() as client:
            assert client.health() == "NOT_SERVING"
            assert client.health("candor.live") == "SERVING"  # what liveness asks: a restart would mend nothing
            shutil.copytree(digits_repo / "digits", repo / "digits")
            wait_for(lambda: client.health() == "SERVING", timeout=60)
    finally:
        assert server.stop() == 0


def test_allow_empty_reports_serving_with_no_model(tmp_path):
    repo = tmp_path / "models"
    repo.mkdir()
    server = start_server(repo, "--allow-empty")
    try:
        assert any("NO MODELS" in line and "SERVING (--allow-empty)" in line for line in server.process.output)
        with server.client() as client:
            assert client.health() == "SERVING"
    finally:
        assert server.stop() == 0


def copy_version(source, target, version: int) -> None:
    """digits v1's files as another version (the manifest names its own version)."""
    shutil.copytree(source, target)
    write_manifest(read_manifest(source / "candor.json").replace(version=version), target / "candor.json")


def served_versions(server) -> dict[str, str]:
    with server.client() as client:
        return {m.version: m.state for m in client.models() if m.name == "digits"}


@pytest.fixture
def four_versions(digits_repo, tmp_path):
    repo = tmp_path / "models"
    for version in (1, 2, 3, 10):  # 10 after 3: by number, not by name
        copy_version(digits_repo / "digits/1", repo / f"digits/{version}", version)
    return repo


def test_the_newest_two_versions_are_served_by_default_and_a_new_one_retires_the_oldest(four_versions, digits_repo):
    server = start_server(four_versions, "--poll-interval-seconds", "0.2")
    try:
        assert served_versions(server) == {"3": "READY", "10": "READY"}
        assert any("version 2 is not served" in line and "--serve-latest" in line for line in server.process.output)
        assert server.metric("candor_model_ready", model="digits", version="2") == 0
        copy_version(digits_repo / "digits/1", four_versions / "digits/11", 11)
        wait_for(lambda: served_versions(server) == {"10": "READY", "11": "READY"}, timeout=60)
        assert 'version="3"' not in "".join(x for x in server.metrics_text().splitlines() if x.startswith("candor_model_info"))
    finally:
        assert server.stop() == 0


def test_named_versions_are_served_besides_the_newest_and_zero_serves_all(four_versions):
    server = start_server(four_versions, "--serve-versions", "digits:1, other:4", "--serve-latest", "1")
    try:
        assert served_versions(server) == {"1": "READY", "10": "READY"}
    finally:
        assert server.stop() == 0
    server = start_server(four_versions, "--serve-latest", "0")
    try:
        assert set(served_versions(server)) == {"1", "2", "3", "10"}
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("value", ["digits", "digits:0", "digits:x", ":3"])
def test_a_bad_version_list_is_one_line(served_repo, value):
    assert_one_line(serve(served_repo, "--serve-versions", value), "serve_versions", "MODEL:VERSION", repr(value.strip()))
