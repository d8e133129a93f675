"""The Kubernetes manifests agree with the service: ports, probe paths, settings, labels."""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

import pytest

from service.settings import Settings
from tests.deploy.conftest import K8S, ROOT, load_yaml

PORT = 3000  # BentoML's default port, which the bento's image serves on
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)$")


def manifest(name: str) -> dict[str, Any]:
    return load_yaml(K8S / name)


def pod_spec() -> dict[str, Any]:
    return manifest("deployment.yaml")["spec"]["template"]["spec"]


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    return only


def env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in container()["env"]}


def test_container_service_and_scrape_annotation_use_one_port() -> None:
    """Guards against a Service or scrape config pointing at a port nothing listens on."""
    (port,) = container()["ports"]
    assert (port["name"], port["containerPort"]) == ("http", PORT)
    service = manifest("service.yaml")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == PORT
    annotations = manifest("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    (endpoint,) = manifest("servicemonitor.yaml")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (service_port["name"], "/metrics")


def test_probes_use_bentoml_health_endpoints() -> None:
    """Guards against a liveness probe on /readyz, which restarts pods that are only busy."""
    probes = {k: container()[k]["httpGet"] for k in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = container()["readinessProbe"]["httpGet"]
    assert {k: (v["path"], v["port"]) for k, v in probes.items()} == {
        "startupProbe": ("/livez", "http"),
        "livenessProbe": ("/livez", "http"),
        "readinessProbe": ("/readyz", "http"),
    }
    startup = container()["startupProbe"]
    # /livez does not answer until the model is loaded and warmed up: allow a minute.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_every_forecaster_env_name_is_a_setting() -> None:
    """Guards against a misspelt FORECASTER_* variable, which pydantic-settings ignores."""
    fields = {f"FORECASTER_{name.upper()}" for name in Settings.model_fields}
    ours = {name for name in env() if name.startswith("FORECASTER_")}
    assert ours, "the Deployment sets no FORECASTER_* variable"
    assert ours <= fields, f"not settings: {sorted(ours - fields)}; settings are {sorted(fields)}"
    for name in ours:
        field = name.removeprefix("FORECASTER_").lower()
        Settings(**{field: env()[name]})  # each value passes the setting's validation


def test_pod_runs_as_non_root_with_a_read_only_root() -> None:
    pod_security = pod_spec()["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert isinstance(pod_security["runAsUser"], int) and pod_security["runAsUser"] > 0
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    # BentoML writes to /tmp and creates its stores under BENTOML_HOME at start.
    assert {"/tmp", env()["BENTOML_HOME"]} <= set(mounts)
    empty_dirs = {v["name"] for v in pod_spec()["volumes"] if "emptyDir" in v}
    assert set(mounts.values()) <= empty_dirs


def test_resources_are_requested_for_the_autoscaler() -> None:
    """The HPA's CPU utilisation is relative to the request: without one it cannot scale."""
    resources = container()["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    hpa = manifest("hpa.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    deployment = manifest("deployment.yaml")
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert (metric["type"], metric["resource"]["name"]) == ("Resource", "cpu")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_labels_carry_the_model_version_and_selectors_match() -> None:
    """Guards against a Service selecting no pod, or a selector that changes with the model."""
    deployment = manifest("deployment.yaml")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for labels in (deployment["metadata"]["labels"], pod_labels):
        assert LABEL_VALUE.match(labels["forecaster.io/model-version"])
        assert labels["forecaster.io/model-name"]
    shipped = json.loads((ROOT / "models" / "m3-monthly" / "metadata.json").read_text())
    assert (
        deployment["metadata"]["labels"]["forecaster.io/model-version"]
        == pod_labels["forecaster.io/model-version"]
        == shipped["version"]
    ), "deploy/k8s/deployment.yaml must label the shipped model's version"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert "forecaster.io/model-version" not in selector  # selectors are immutable
    assert selector.items() <= pod_labels.items()
    assert manifest("service.yaml")["spec"]["selector"].items() <= pod_labels.items()
    monitor = manifest("servicemonitor.yaml")
    service_labels = manifest("service.yaml")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert set(monitor["spec"]["podTargetLabels"]) <= set(pod_labels)


def test_image_is_the_bento_built_by_bentoml_containerize() -> None:
    assert container()["image"] == "forecaster:latest"


@pytest.mark.skipif(
    importlib.util.find_spec("kubernetes_validate") is None,
    reason="kubernetes-validate not installed (pip install kubernetes-validate): "
    "manifests not checked against the Kubernetes schemas",
)
@pytest.mark.parametrize("name", ["deployment.yaml", "service.yaml", "hpa.yaml"])
def test_manifest_matches_the_kubernetes_schema(name: str) -> None:
    """Strict: an unknown or misplaced field (a typo kubectl would reject) fails here."""
    import kubernetes_validate

    kubernetes_validate.validate(manifest(name), "1.30", strict=True)
