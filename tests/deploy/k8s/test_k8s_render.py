"""`render` builds the resources the issue asks for, each avoiding its TF Serving trap."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tfship.deploy.k8s import ProbeTiming, RenderOptions, Resources, parse_storage, render, thread_flags

from tfship.errors import ConfigError

IMAGE = "registry.example.com/acme/models:1"


def _container(rendered):  # type: ignore[no-untyped-def]
    [container] = rendered.by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_baked_single_model_runs_the_server_binary_with_flags_only(one_model: Path) -> None:
    rendered = render(one_model, RenderOptions(image=IMAGE))
    assert rendered.kinds() == ["Deployment", "Service", "Service", "HorizontalPodAutoscaler",
                                "PodDisruptionBudget", "NetworkPolicy"]
    container = _container(rendered)
    # the binary itself is PID 1 (the image's entrypoint script would swallow SIGTERM)
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    args = container["args"]
    assert "--model_name=half_plus_two" in args
    assert "--model_base_path=/models/half_plus_two" in args
    assert "--enable_grpc_healthcheck_service" in args
    assert "--file_system_poll_wait_seconds=0" in args
    assert not any(a.startswith("--model_config_file") for a in args)
    assert rendered.name == "half-plus-two"


def test_probes_use_the_grpc_health_service_and_startup_covers_the_load(one_model: Path) -> None:
    container = _container(render(one_model, RenderOptions(image=IMAGE, timing=ProbeTiming(startup_seconds=900))))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 8500}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900


def test_termination_waits_for_endpoints_then_drain(one_model: Path) -> None:
    rendered = render(one_model, RenderOptions(image=IMAGE, timing=ProbeTiming(pre_stop_seconds=15)))
    pod = rendered.by_kind("Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert pod["terminationGracePeriodSeconds"] > 15 + 30  # preStop + the server's 30 s drain


def test_rolling_update_never_drops_below_the_replica_count_and_spreads(one_model: Path) -> None:
    deployment = render(one_model, RenderOptions(image=IMAGE, replicas=3)).by_kind("Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    keys = {c["topologyKey"] for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys
    assert "replicas" not in deployment["spec"]  # owned by the autoscaler


@pytest.mark.parametrize(("cpu", "intra", "inter"), [("500m", 1, 1), ("1500m", 1, 1), ("2", 2, 1),
                                                      ("4", 4, 1), ("8", 8, 2), ("16.5", 16, 2)])
def test_thread_flags_follow_the_cpu_limit(one_model: Path, cpu: str, intra: int, inter: int) -> None:
    container = _container(render(one_model, RenderOptions(image=IMAGE, resources=Resources(cpu_limit=cpu))))
    assert f"--tensorflow_intra_op_parallelism={intra}" in container["args"]
    assert f"--tensorflow_inter_op_parallelism={inter}" in container["args"]
    assert container["resources"]["limits"]["cpu"] == cpu
    assert thread_flags(cpu).intra_op == intra


def test_security_context_is_restricted(one_model: Path) -> None:
    rendered = render(one_model, RenderOptions(image=IMAGE, uid=12345))
    pod = rendered.by_kind("Deployment")["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 12345
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # the only writable mount is the bounded /tmp emptyDir
    writable = [m for m in pod["containers"][0]["volumeMounts"] if not m.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["emptyDir"]["sizeLimit"]


def test_pvc_storage_mounts_the_claim_read_only(one_model: Path) -> None:
    rendered = render(one_model, RenderOptions(image=IMAGE, storage=parse_storage("pvc:shared-models")))
    pod = rendered.by_kind("Deployment")["spec"]["template"]["spec"]
    [models] = [v for v in pod["volumes"] if v["name"] == "models"]
    assert models["persistentVolumeClaim"] == {"claimName": "shared-models", "readOnly": True}
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    # new versions on shared storage must be picked up: keep TF Serving's polling
    assert not any(a.startswith("--file_system_poll_wait_seconds") for a in pod["containers"][0]["args"])


def test_uri_storage_points_the_server_at_the_store(one_model: Path) -> None:
    container = _container(render(one_model, RenderOptions(image=IMAGE, storage=parse_storage("uri:gs://b/m/"))))
    assert "--model_base_path=gs://b/m/half_plus_two" in container["args"]
    assert [m["name"] for m in container["volumeMounts"]] == ["tmp"]


def test_two_models_get_a_config_map_and_a_rollout_checksum(two_models: Path) -> None:
    rendered = render(two_models, RenderOptions(image=IMAGE, namespace="ml"))
    config = rendered.by_kind("ConfigMap")
    assert 'base_path: "/models/half_plus_three"' in config["data"]["models.config"]
    container = _container(rendered)
    assert "--model_config_file=/etc/tfship-k8s/models.config" in container["args"]
    template = rendered.by_kind("Deployment")["spec"]["template"]
    assert len(template["metadata"]["annotations"]["tfship.io/config-sha256"]) == 64
    assert {r["metadata"]["namespace"] for r in rendered.resources} == {"ml"}
    assert rendered.name == "tfserving"


def test_model_config_labels_are_kept_and_paths_rewritten(two_models: Path, tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "half_plus_two" base_path: "/somewhere/else" '
        'model_platform: "tensorflow" model_version_policy { specific { versions: 123 versions: 124 } } '
        'version_labels { key: "stable" value: 123 } } '
        'config { name: "half_plus_three" base_path: "/x" model_platform: "tensorflow" } }'
    )
    rendered = render(two_models, RenderOptions(image=IMAGE, model_config_file=config,
                                                storage=parse_storage("pvc:models")))
    text = rendered.by_kind("ConfigMap")["data"]["models.config"]
    assert 'key: "stable"' in text and "value: 123" in text
    assert 'base_path: "/models/half_plus_two"' in text and "/somewhere/else" not in text


def test_model_config_must_list_exactly_the_models_on_disk(two_models: Path, tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "other" base_path: "/x" model_platform: "tensorflow" } }')
    with pytest.raises(ConfigError, match="list exactly the models"):
        render(two_models, RenderOptions(image=IMAGE, model_config_file=config))


def test_batching_file_is_validated_and_threads_default_to_the_cpu_limit(
        one_model: Path, batching_file: Path, tmp_path: Path) -> None:
    rendered = render(one_model, RenderOptions(image=IMAGE, batching_file=batching_file))
    assert "num_batch_threads {\n  value: 8\n}" in rendered.by_kind("ConfigMap")["data"]["batching.config"]
    assert "--enable_batching" in _container(rendered)["args"]
    no_threads = tmp_path / "batching.txt"
    no_threads.write_text("max_batch_size { value: 32 }\n")
    rendered = render(one_model, RenderOptions(image=IMAGE, batching_file=no_threads,
                                               resources=Resources(cpu_limit="3")))
    assert "num_batch_threads {\n  value: 3\n}" in rendered.by_kind("ConfigMap")["data"]["batching.config"]


def test_monitoring_adds_a_service_monitor_on_the_cluster_ip_service_only(one_model: Path) -> None:
    rendered = render(one_model, RenderOptions(image=IMAGE, monitoring=True))
    monitor = rendered.by_kind("ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/monitoring/prometheus/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [r for r in rendered.resources if r["kind"] == "Service"]
    selected = [s["metadata"]["name"] for s in services
                if selector.items() <= s["metadata"]["labels"].items()]
    assert selected == ["half-plus-two"]
    assert "--monitoring_config_file=/etc/tfship-k8s/monitoring.config" in _container(rendered)["args"]


def test_services_name_ports_and_the_headless_one_lists_ready_pods_only(one_model: Path) -> None:
    rendered = render(one_model, RenderOptions(image=IMAGE))
    cluster_ip, headless = (r for r in rendered.resources if r["kind"] == "Service")
    assert [(p["name"], p["appProtocol"]) for p in cluster_ip["spec"]["ports"]] == [
        ("grpc", "kubernetes.io/h2c"), ("http", "http")]
    assert headless["metadata"]["name"] == "half-plus-two-headless"
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is False


def test_network_policy_admits_only_the_serving_ports(one_model: Path) -> None:
    policy = render(one_model, RenderOptions(image=IMAGE)).by_kind("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [8500, 8501]


def test_kustomize_directory_lists_every_file(two_models: Path, tmp_path: Path) -> None:
    rendered = render(two_models, RenderOptions(image=IMAGE, namespace="ml", monitoring=True))
    written = rendered.write(tmp_path / "out")
    kustomization = yaml.safe_load((tmp_path / "out" / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "ml"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in written if p.name != "kustomization.yaml")
    docs = [yaml.safe_load((tmp_path / "out" / f).read_text()) for f in kustomization["resources"]]
    assert docs == list(rendered.resources)
    assert "&id" not in rendered.to_yaml()  # no YAML anchors for people to decode
    assert list(yaml.safe_load_all(rendered.to_yaml())) == list(rendered.resources)


@pytest.mark.parametrize("image", ["acme/Models:1", "acme models:1", "acme/models:", ":1",
                                   "acme/models@sha256:abc", "-acme/models"])
def test_image_must_be_a_reference(one_model: Path, image: str) -> None:
    with pytest.raises(ConfigError, match="is not an image reference"):
        RenderOptions(image=image)


@pytest.mark.parametrize("image", ["models", "acme/models:1", "localhost:5000/acme/models:1.2-cpu",
                                   "registry.example.com/a/b/c@sha256:" + "ab" * 32])
def test_valid_references_are_accepted(image: str) -> None:
    assert RenderOptions(image=image).image == image


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"replicas": 0}, "at least 1 replica"),
    ({"replicas": 3, "max_replicas": 2}, "below --replicas"),
    ({"name": "Bad_Name"}, "not a valid Kubernetes name"),
    ({"namespace": "x" * 64}, "not a valid Kubernetes name"),
    ({"uid": 0}, "non-root"),
])
def test_bad_options_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RenderOptions(image=IMAGE, **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cpu_limit": "lots"}, "CPU quantity"),
    ({"memory_limit": "2GB"}, "Memory quantity"),
    ({"cpu_limit": "1", "cpu_request": "2"}, "cannot exceed"),
])
def test_bad_resources_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Resources(**kwargs)


@pytest.mark.parametrize("storage", ["pvc:", "uri:not-a-uri", "s3://x", "baked:x", "pvc:Bad_Claim"])
def test_bad_storage_names_the_accepted_forms(storage: str) -> None:
    with pytest.raises(ConfigError):
        parse_storage(storage)


def test_a_models_dir_without_models_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No models found"):
        render(tmp_path, RenderOptions(image=IMAGE))
