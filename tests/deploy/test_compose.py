"""The compose stack, checked without an engine: Debian's docker-compose parses and resolves
the files, and every command, path, port and dependency is checked against the repo and the image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from candor.cli import build_parser
from candor.server.core.settings import Settings
from tests.conftest import REPO_ROOT
from tests.deploy.images import PINNED, exec_form, last, stages

BASE = ["compose.yaml"]
GPU = ["compose.yaml", "compose.gpu.yaml"]


def resolved(files: list[str], env: dict[str, str] | None = None) -> dict:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed; .ci/run installs Debian's docker-compose package")
    args = [a for f in files for a in ("-f", str(REPO_ROOT / f))]
    environment = {k: v for k, v in os.environ.items() if k != "CANDOR_PUBLISH_HOST"} | (env or {})
    result = subprocess.run([exe, *args, "config"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                            env=environment)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return resolved(BASE)


@pytest.fixture(scope="module")
def stack(config) -> dict:
    return config["services"]


def candor_args(service: dict, stage: str) -> list[str]:
    """The argument list the container runs: compose's entrypoint or the image's, then its command."""
    entrypoint = service.get("entrypoint") or exec_form(last(stages()[stage], "ENTRYPOINT"))
    return [*entrypoint, *service.get("command", [])]


def mounts(service: dict) -> dict[str, str]:
    """{container path: source} for a service's volumes (bind sources are absolute after `config`)."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            source, target = v.split(":")[:2]
        else:
            source, target = v["source"], v["target"]
        out[target] = source
    return out


def test_compose_files_parse(stack):
    assert set(stack) == {"trainer", "server", "simulator", "prometheus", "grafana"}


def test_images_are_pinned_or_built_here(stack):
    for name, service in stack.items():
        if "build" in service:
            assert Path(service["build"]["context"]).resolve() == REPO_ROOT
            assert service["build"].get("target", "server") in stages(), f"{name}: unknown build target"
        assert PINNED.match(service["image"]), f"{name}: image {service['image']} is not a pinned release"


def test_commands_are_real_candor_verbs_with_real_flags(stack):
    server = candor_args(stack["server"], "server")
    assert server[:2] == ["candor", "serve"]
    args = build_parser().parse_args(server[1:])
    simulator = candor_args(stack["simulator"], "server")
    assert simulator[:2] == ["candor", "simulate"]
    sim = build_parser().parse_args(simulator[1:])
    # The simulator reads what the trainer writes, through the volume both mount.
    rows = Path(stack["trainer"]["environment"]["CANDOR_DEMO_ROWS"])
    assert Path(sim.input) == rows
    shared = {src for target, src in mounts(stack["trainer"]).items() if rows.is_relative_to(target)}
    assert shared and shared == {src for target, src in mounts(stack["simulator"]).items() if rows.is_relative_to(target)}
    # The simulator talks to the server service on the server's gRPC port.
    host, port = sim.target.split(":")
    assert host == "server" and int(port) == Settings().grpc_port and args.grpc_port is None
    # The server's model repository is the volume the trainer fills.
    assert mounts(stack["server"])[args.model_repository] == mounts(stack["trainer"])["/models"]
    assert args.data_dir in mounts(stack["server"])  # feedback survives a container restart
    assert args.workers == 0  # --workers auto: a process per CPU the container may use, one metrics port for all
    assert candor_args(stack["trainer"], "trainer") == ["candor-train-once"]


def published(services: dict) -> list[str]:
    return [p for s in services.values() for p in s.get("ports", [])]


def test_every_published_port_is_on_loopback_unless_asked(config):
    """Auth is off and Recalibrate open in the demo stack: nothing listens beyond this machine by default."""
    for files in (BASE, GPU, ["compose.yaml", "compose.postgres.yaml"]):
        ports = published(resolved(files)["services"])
        assert sorted(p.split(":")[1] for p in ports) == ["3000", "8001", "8002", "9090"], files
        assert all(p.startswith("127.0.0.1:") for p in ports), ports
    exposed = published(resolved(BASE, {"CANDOR_PUBLISH_HOST": "0.0.0.0"})["services"])
    assert len(exposed) == 4 and all(p.startswith("0.0.0.0:") for p in exposed), exposed


def test_startup_order_waits_on_health_and_completion(stack):
    assert stack["server"]["depends_on"] == {"trainer": {"condition": "service_completed_successfully"}}
    assert stack["simulator"]["depends_on"]["server"]["condition"] == "service_healthy"
    # Monitoring starts on its own: a broken server must not hide its own scrape failures and alerts.
    assert "depends_on" not in stack["prometheus"]
    assert stack["grafana"]["depends_on"] == {"prometheus": {"condition": "service_started"}}
    health = stack["server"]["healthcheck"]["test"]
    assert health[0] == "CMD" and health[1:3] == ["candor", "health"]
    build_parser().parse_args(health[2:])
    for name in ("prometheus", "grafana"):
        assert "healthcheck" in stack[name]


def test_bind_mounts_exist_in_the_repo(stack):
    for name, service in stack.items():
        for source in mounts(service).values():
            if source.startswith("/"):
                assert Path(source).exists() and Path(source).resolve().is_relative_to(REPO_ROOT), f"{name}: {source}"


def test_prometheus_loads_the_repo_config_and_scrapes_the_server(stack):
    prom = stack["prometheus"]
    config_path = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    folder = Path(mounts(prom)[str(Path(config_path).parent)])
    config = yaml.safe_load((folder / Path(config_path).name).read_text())
    assert all((folder / f).is_file() for f in config["rule_files"])
    candor_job = next(j for j in config["scrape_configs"] if j["job_name"] == "candor")
    assert candor_job["static_configs"][0]["targets"] == [f"server:{Settings().metrics_port}"]


def test_grafana_is_provisioned_with_the_datasource_and_dashboard(stack):
    grafana = stack["grafana"]
    m = mounts(grafana)
    provisioning = Path(m["/etc/grafana/provisioning"])
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards/candor.yml").read_text())["providers"][0]
    dashboards = Path(m[provider["options"]["path"]])
    board = json.loads((dashboards / "candor.json").read_text())
    assert board["uid"] == "candor-calibration"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (Path(m[str(Path(home).parent)]) / Path(home).name).is_file()
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"  # viewing without login, editing with one


def test_named_volumes_hold_the_state(config):
    volumes = config["volumes"]
    assert {"models", "demo-data", "feedback", "prometheus-data", "grafana-data"} <= set(volumes)


def test_gpu_overlay_builds_the_cuda_image_and_reserves_a_gpu():
    services = resolved(GPU)["services"]
    server = services["server"]
    assert server["build"]["args"]["VARIANT"] == "gpu"
    assert server["environment"]["CANDOR_PROVIDER"] == "cuda"
    devices = server["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert server["image"] != services["simulator"]["image"]  # the simulator keeps the small CPU image


def test_a_broken_compose_file_is_refused(tmp_path):
    """The parse check can fail: an unknown dependency condition is an error."""
    text = (REPO_ROOT / "compose.yaml").read_text().replace("service_completed_successfully", "service_finished")
    (tmp_path / "compose.yaml").write_text(text)
    result = subprocess.run([shutil.which("docker-compose") or "docker-compose", "-f", str(tmp_path / "compose.yaml"), "config"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode != 0


def test_the_postgres_override_points_the_server_at_a_pinned_healthy_database():
    services = resolved(["compose.yaml", "compose.postgres.yaml"])["services"]
    db, server = services["postgres"], services["server"]
    assert db["image"].startswith("postgres:") and db["image"].split(":")[1][0].isdigit()
    assert "ports" not in db  # only the compose network reaches it
    store = server["environment"]["CANDOR_STORE"]
    assert store.startswith("postgresql://candor:") and store.endswith("@postgres:5432/candor")
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert db["environment"]["POSTGRES_PASSWORD"] in store
    # SQLite stays the default of the plain file.
    assert "CANDOR_STORE" not in resolved(["compose.yaml"])["services"]["server"].get("environment", {})
