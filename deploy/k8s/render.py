"""Kubernetes resources for serving a models directory with the tfship/TF Serving image.

:func:`render` returns plain dicts (one per resource) that tests inspect and validate; the YAML
and the kustomize directory are views of them::

    rendered = render("models", RenderOptions(image="registry.example.com/acme/models:1"))
    rendered.write("deploy/k8s")          # one file per resource + kustomization.yaml
    print(rendered.to_yaml())             # or one multi-document stream

Design notes (the traps each resource avoids) are in probes.py (readiness, termination),
resources.py (thread pools) and security.py; the README's "Kubernetes" section has the workflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tfship.deploy.docker.context import ModelSource, discover_models
from tfship.serving.config import (
    ModelEntry,
    MonitoringConfig,
    format_batching_parameters,
    format_model_config,
    format_monitoring_config,
    model_entries,
    read_batching_parameters_file,
    read_model_config_file,
)
from tfship.serving.config.monitoring import DEFAULT_PROMETHEUS_PATH

from tfship import __version__
from tfship.errors import ConfigError

from .options import RenderOptions, default_name
from .probes import probes, termination
from .resources import thread_flags
from .security import container_security_context, pod_security_context

__all__ = ["Rendered", "render", "server_args", "MODELS_MOUNT", "CONFIG_MOUNT", "SERVER_BINARY"]

#: where models are inside the container (baked: the image's /models; pvc: the claim's mount)
MODELS_MOUNT = "/models"
#: where the ConfigMap's files are mounted (not /etc/tfship: a baked image keeps its own there)
CONFIG_MOUNT = "/etc/tfship-k8s"
#: TF Serving's binary in the official image (and the stand-in); run directly, see probes.py
SERVER_BINARY = "/usr/bin/tensorflow_model_server"
CONTAINER = "tfserving"


@dataclass(frozen=True)
class Rendered:
    """The rendered resources, in apply order, and where each goes in a kustomize directory."""

    name: str
    namespace: str | None
    resources: tuple[dict[str, Any], ...]
    filenames: tuple[str, ...]

    def by_kind(self, kind: str) -> dict[str, Any]:
        """The one resource of ``kind`` (KeyError when absent or not unique)."""
        found = [r for r in self.resources if r["kind"] == kind]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources of kind {kind}")
        return found[0]

    def kinds(self) -> list[str]:
        return [r["kind"] for r in self.resources]

    def files(self) -> dict[str, str]:
        """filename -> YAML text, plus ``kustomization.yaml`` listing them."""
        out = {f: to_yaml(r) for f, r in zip(self.filenames, self.resources, strict=True)}
        kustomization: dict[str, Any] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
        }
        if self.namespace:
            kustomization["namespace"] = self.namespace
        kustomization["resources"] = list(self.filenames)
        out["kustomization.yaml"] = to_yaml(kustomization)
        return out

    def to_yaml(self) -> str:
        """Every resource as one multi-document YAML stream (``kubectl apply -f -``)."""
        return "---\n".join(to_yaml(r) for r in self.resources)

    def write(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write :meth:`files` into ``directory`` (created; existing files are replaced)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for filename, text in self.files().items():
            (out / filename).write_text(text)
            written.append(out / filename)
        return written


class _Dumper(yaml.SafeDumper):
    # Resources share label dicts; kubectl reads anchors fine but people reading the file do not.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(resource: dict[str, Any]) -> str:
    """Block-style YAML with keys in the order they were built (apiVersion, kind, metadata...)."""
    return yaml.dump(resource, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


def _model_config_text(models: list[ModelSource], options: RenderOptions, root: str) -> str:
    """The ModelServerConfig for the pods: every model at ``root/NAME``.

    With ``options.model_config_file`` its policies and labels are kept but base paths are
    rewritten to the storage, and every model in it must be in the models dir (and vice versa).
    """
    if options.model_config_file is None:
        return format_model_config([ModelEntry(m.name, f"{root}/{m.name}") for m in models])
    entries = model_entries(read_model_config_file(options.model_config_file))
    on_disk = {m.name for m in models}
    in_file = {e.name for e in entries}
    if in_file != on_disk:
        raise ConfigError(
            f"--model-config {options.model_config_file} serves {sorted(in_file)} but the models dir "
            f"holds {sorted(on_disk)}: list exactly the models you deploy."
        )
    return format_model_config([dataclasses.replace(e, base_path=f"{root}/{e.name}") for e in entries])


def _batching_text(options: RenderOptions) -> str | None:
    """The batching file, with ``num_batch_threads`` set from the CPU limit when it says nothing
    (TF Serving's default is the node's core count)."""
    if options.batching_file is None:
        return None
    from tfship.serving.config.batching import BatchingParametersProto
    from tfship.serving.config.textproto import parse_text, read_text_file

    params = read_batching_parameters_file(options.batching_file)
    raw = parse_text(read_text_file(options.batching_file), BatchingParametersProto(), options.batching_file)
    if not raw.HasField("num_batch_threads"):
        threads = thread_flags(options.resources.cpu_limit).intra_op
        params = dataclasses.replace(params, num_batch_threads=threads)
    return format_batching_parameters(params)


def _config_files(models: list[ModelSource], options: RenderOptions, root: str) -> dict[str, str]:
    """ConfigMap data: the server's config files, only those the flags alone cannot say."""
    files: dict[str, str] = {}
    if len(models) > 1 or options.model_config_file is not None:
        files["models.config"] = _model_config_text(models, options, root)
    batching = _batching_text(options)
    if batching is not None:
        files["batching.config"] = batching
    if options.monitoring:
        files["monitoring.config"] = format_monitoring_config(MonitoringConfig(True))
    return files


def _models_root(options: RenderOptions) -> str:
    return options.storage.uri if options.storage.kind == "uri" and options.storage.uri else MODELS_MOUNT


def server_args(models: list[ModelSource], options: RenderOptions, config_files: dict[str, str]) -> list[str]:
    """The server's flags: ports, models, health service, thread pools, batching, monitoring."""
    root = _models_root(options)
    args = [f"--port={options.grpc_port}", f"--rest_api_port={options.http_port}"]
    if "models.config" in config_files:
        args.append(f"--model_config_file={CONFIG_MOUNT}/models.config")
    else:
        # One model, no labels: the flags say it all (and `kubectl describe` shows it).
        args += [f"--model_name={models[0].name}", f"--model_base_path={root}/{models[0].name}"]
    args.append("--enable_grpc_healthcheck_service")
    args += thread_flags(options.resources.cpu_limit).args()
    if options.storage.kind == "baked":
        # The image never changes under a running pod: poll the filesystem once, at start.
        args.append("--file_system_poll_wait_seconds=0")
    if "batching.config" in config_files:
        args += ["--enable_batching", f"--batching_parameters_file={CONFIG_MOUNT}/batching.config"]
    if "monitoring.config" in config_files:
        args.append(f"--monitoring_config_file={CONFIG_MOUNT}/monitoring.config")
    return args


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "model-server"}


def _metadata(name: str, options: RenderOptions, **extra_labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if options.namespace:
        meta["namespace"] = options.namespace
    # the app name (options.name), not the resource's: "-config"/"-headless" are suffixes
    meta["labels"] = {**_labels(options.name or name), "app.kubernetes.io/managed-by": "tfship",
                      **extra_labels}
    return meta


def _ports(options: RenderOptions) -> list[dict[str, Any]]:
    return [
        # appProtocol kubernetes.io/h2c: gRPC is HTTP/2 cleartext (Gateway API, meshes route it
        # as such); the port *names* grpc/http are what older meshes look at.
        {"name": "grpc", "port": options.grpc_port, "targetPort": "grpc", "protocol": "TCP",
         "appProtocol": "kubernetes.io/h2c"},
        {"name": "http", "port": options.http_port, "targetPort": "http", "protocol": "TCP",
         "appProtocol": "http"},
    ]


def render(models_dir: str | os.PathLike[str], options: RenderOptions) -> Rendered:
    """The Kubernetes resources serving every model under ``models_dir`` with ``options.image``.

    Raises :class:`~tfship.errors.ConfigError` for a models dir with no models or options that
    contradict each other (the CLI exits 2).
    """
    models = discover_models(models_dir)
    name = options.name or default_name([m.name for m in models])
    options = dataclasses.replace(options, name=name)
    root = _models_root(options)
    config_files = _config_files(models, options, root)
    labels = _labels(name)
    threads = thread_flags(options.resources.cpu_limit)

    volumes: list[dict[str, Any]] = [
        # The only writable place: TensorFlow and Python may write temp files. Bounded, so a
        # runaway writer is evicted instead of filling the node.
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if config_files:
        volumes.append({"name": "config", "configMap": {"name": f"{name}-config"}})
        mounts.append({"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True})
    if options.storage.kind == "pvc":
        volumes.append({"name": "models", "persistentVolumeClaim": {
            "claimName": options.storage.claim, "readOnly": True}})
        mounts.append({"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True})

    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [SERVER_BINARY],
        "args": server_args(models, options, config_files),
        "ports": [
            {"name": "grpc", "containerPort": options.grpc_port, "protocol": "TCP"},
            {"name": "http", "containerPort": options.http_port, "protocol": "TCP"},
        ],
        "env": [
            # Thread pools TensorFlow creates outside a session read these.
            {"name": "TF_NUM_INTRAOP_THREADS", "value": str(threads.intra_op)},
            {"name": "TF_NUM_INTEROP_THREADS", "value": str(threads.inter_op)},
        ],
        "resources": options.resources.spec(),
        **probes(options.grpc_port, options.timing),
        "lifecycle": termination(options.timing),
        "securityContext": container_security_context(options.uid),
        "volumeMounts": mounts,
    }
    pod_annotations = {"tfship.io/version": __version__}
    if config_files:
        # A ConfigMap edit does not restart pods; a changed checksum in the template does.
        digest = hashlib.sha256(yaml.safe_dump(config_files, sort_keys=True).encode()).hexdigest()
        pod_annotations["tfship.io/config-sha256"] = digest
    spread = [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": labels}}
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, options),
        "spec": {
            # No `replicas`: the HorizontalPodAutoscaler owns it (minReplicas = --replicas);
            # a value here would reset the autoscaled count on every `kubectl apply`.
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "minReadySeconds": 5,
            "revisionHistoryLimit": 5,
            "template": {
                "metadata": {"labels": labels, "annotations": pod_annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(options.uid),
                    "terminationGracePeriodSeconds": options.timing.grace_seconds,
                    "topologySpreadConstraints": spread,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    resources: list[tuple[str, dict[str, Any]]] = []
    if config_files:
        resources.append(("configmap.yaml", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(f"{name}-config", options), "data": config_files,
        }))
    resources.append(("deployment.yaml", deployment))
    resources.append(("service.yaml", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(name, options, **{"tfship.io/service": "cluster-ip"}),
        "spec": {"type": "ClusterIP", "selector": labels, "ports": _ports(options)},
    }))
    resources.append(("service-headless.yaml", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(f"{name}-headless", options, **{"tfship.io/service": "headless"}),
        # One DNS A record per *ready* pod: gRPC clients balance over them themselves
        # (dns:///NAME-headless.NS.svc:8500); a ClusterIP pins each HTTP/2 connection to one pod.
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": False, "selector": labels,
                 "ports": _ports(options)},
    }))
    resources.append(("hpa.yaml", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(name, options),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": options.replicas,
            "maxReplicas": options.max_replicas or 3 * options.replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": options.cpu_target_percent}}}],
            # A new pod reloads every model: scale down slowly so load spikes do not thrash.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }))
    resources.append(("pdb.yaml", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _metadata(name, options),
        # maxUnavailable (not minAvailable = replicas) so node drains can always make progress;
        # an unready pod serves nothing, so evicting it never hurts.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels},
                 "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    }))
    resources.append(("networkpolicy.yaml", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _metadata(name, options),
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": options.grpc_port},
                                   {"protocol": "TCP", "port": options.http_port}]}],
        },
    }))
    if options.monitoring:
        resources.append(("servicemonitor.yaml", {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": _metadata(name, options),
            "spec": {
                # the ClusterIP Service only: selecting the headless one too would scrape twice
                "selector": {"matchLabels": {**labels, "tfship.io/service": "cluster-ip"}},
                "endpoints": [{"port": "http", "path": DEFAULT_PROMETHEUS_PATH,
                               "interval": "30s", "scheme": "http"}],
            },
        }))
    return Rendered(name, options.namespace, tuple(r for _, r in resources), tuple(f for f, _ in resources))
