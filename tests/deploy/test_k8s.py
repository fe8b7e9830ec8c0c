"""Kubernetes manifests, validated offline: built-in kinds against the Kubernetes schemas
(kubernetes-validate, strict), custom resources against the schemas in tests/deploy/schemas,
plus the references between them, the GPU overlay's patch applied, and the rendered files fresh."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import jsonpatch
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


def manifests() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for path in kustomization["resources"] for doc in yaml.safe_load_all((K8S / path).read_text()) if doc]


def by_kind(kind: str, name: str = "") -> dict:
    (found,) = [d for d in manifests() if d["kind"] == kind and (not name or d["metadata"]["name"] == name)]
    return found


def validate(doc: dict, version: str) -> None:
    if doc["kind"] in CUSTOM:
        jsonschema.validate(doc, json.loads((SCHEMAS / CUSTOM[doc["kind"]]).read_text()))
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def gpu_deployment() -> dict:
    patch = yaml.safe_load((K8S / "gpu/gpu-patch.yaml").read_text())
    return jsonpatch.apply_patch(copy.deepcopy(by_kind("Deployment")), patch)


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml") if p.parent.name != "gpu" and p.name != "kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates(version):
    docs = manifests()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule",
                                         "ConfigMap", "PersistentVolumeClaim", "Job"}  # fmt: skip
    for doc in docs:
        validate(doc, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_gpu_overlay_validates_and_requests_a_gpu(version):
    overlay = yaml.safe_load((K8S / "gpu/kustomization.yaml").read_text())
    assert overlay["resources"] == [".."] and overlay["patches"][0]["target"]["kind"] == "Deployment"
    deployment = gpu_deployment()
    validate(deployment, version)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "CANDOR_PROVIDER", "value": "cuda"} in container["env"]
    assert container["image"].endswith("-gpu")


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
    assert container["readinessProbe"]["grpc"]["service"] == "digits"  # ready = the model serves
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
    assert "candor_queue_rows" in [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
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
    before = (tmp_path / "deploy/k8s/generated/prometheusrule.yaml").read_text()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "deploy/render.py"), "--check", "--root", str(tmp_path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and result.stdout.strip() == "stale: deploy/k8s/generated/prometheusrule.yaml"
    assert (tmp_path / "deploy/k8s/generated/prometheusrule.yaml").read_text() == before
