"""Every rendered resource validates against the official Kubernetes OpenAPI schemas in strict mode
(unknown or misspelled fields are errors) for several Kubernetes minor versions, across option
combinations; the ServiceMonitor against the fields its CRD documents."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from servicemonitor_schema import SERVICE_MONITOR
from tfship.deploy.k8s import ProbeTiming, RenderOptions, Resources, parse_storage, render

#: the oldest and the newest minor the installed kubernetes-validate ships, and one between:
#: the native gRPC probe is GA since 1.27, PDB unhealthyPodEvictionPolicy since 1.31 (beta 1.27)
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0", "1.37.0")

COMBINATIONS: dict[str, dict[str, Any]] = {
    "baked-defaults": {},
    "baked-monitoring-batching-ns": {"monitoring": True, "namespace": "ml", "batching": True},
    "pvc-one-replica-small-cpu": {"storage": "pvc:models", "replicas": 1, "resources": Resources("500m", "512Mi")},
    "uri-two-models-requests": {"storage": "uri:gs://bucket/models", "two": True, "max_replicas": 20,
                                "resources": Resources("8", "16Gi", cpu_request="4", memory_request="8Gi")},
    "pvc-two-models-named-timing": {"storage": "pvc:models", "two": True, "name": "fleet", "monitoring": True,
                                    "timing": ProbeTiming(startup_seconds=1200, pre_stop_seconds=0), "uid": 2000},
}


def _render(combo: dict[str, Any], one_model: Path, two_models: Path, batching_file: Path) -> list[dict[str, Any]]:
    combo = dict(combo)
    models = two_models if combo.pop("two", False) else one_model
    if combo.pop("batching", False):
        combo["batching_file"] = batching_file
    if "storage" in combo:
        combo["storage"] = parse_storage(combo["storage"])
    return list(render(models, RenderOptions(image="registry.example.com/acme/models:1", **combo)).resources)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("combo", COMBINATIONS, ids=list(COMBINATIONS))
def test_rendered_resources_are_valid_kubernetes(
        combo: str, version: str, one_model: Path, two_models: Path, batching_file: Path) -> None:
    resources = _render(COMBINATIONS[combo], one_model, two_models, batching_file)
    for resource in resources:
        if resource["kind"] == "ServiceMonitor":
            jsonschema.validate(resource, SERVICE_MONITOR)
            # its metadata is a plain ObjectMeta: check it through a core kind's schema
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": resource["metadata"]}, version, strict=True)
        else:
            kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize(("path", "typo"), [
    (("spec", "template", "spec", "containers", 0, "securityContext"), "readOnlyRootFileSystem"),
    (("spec", "template", "spec", "containers", 0, "readinessProbe", "grpc"), "servce"),
    (("spec", "strategy", "rollingUpdate"), "maxUnavailible"),
])
def test_strict_validation_rejects_a_misspelled_field(one_model: Path, path: tuple, typo: str) -> None:
    deployment = copy.deepcopy(render(one_model, RenderOptions(image="acme/models:1")).by_kind("Deployment"))
    node: Any = deployment
    for key in path:
        node = node[key]
    node[typo] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(("mutate", "what"), [
    (lambda m: m["spec"]["endpoints"][0].update(pth="/metrics"), "unknown endpoint field"),
    (lambda m: m["spec"]["endpoints"][0].update(interval="30 seconds"), "bad duration"),
    (lambda m: m["spec"]["endpoints"][0].update(port=8501), "port must be the Service port's name"),
    (lambda m: m["spec"].pop("selector"), "selector is required"),
    (lambda m: m["spec"].update(selectr={}), "unknown spec field"),
])
def test_service_monitor_check_rejects_what_the_crd_does_not_document(one_model: Path, mutate: Any, what: str) -> None:
    monitor = copy.deepcopy(render(one_model, RenderOptions(image="acme/models:1", monitoring=True))
                            .by_kind("ServiceMonitor"))
    jsonschema.validate(monitor, SERVICE_MONITOR)
    mutate(monitor)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR)
