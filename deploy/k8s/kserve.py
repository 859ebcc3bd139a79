"""KServe ``InferenceService`` resources (serving.kserve.io/v1beta1) for teams that run KServe.

KServe brings its own TF Serving runtime: it downloads ``storageUri`` into ``/mnt/models`` and
starts ``tensorflow_model_server`` with its own ports and probes, so the InferenceService says
only what KServe cannot know: the model format, where the model is, resources, TensorFlow's
thread pools for the CPU limit, autoscaling bounds and the same restricted security context
(as far as the CRD's predictor takes one). One InferenceService per model: KServe serves one
model per predictor.
"""

from __future__ import annotations

import os
from typing import Any

from tfship.deploy.docker.context import discover_models

from tfship.errors import ConfigError

from .options import RenderOptions, default_name, dns_label
from .render import Rendered
from .resources import thread_flags
from .security import container_security_context, pod_security_context

__all__ = ["render_kserve", "storage_uri"]


def storage_uri(options: RenderOptions, model: str) -> str:
    """The model's ``storageUri``: ``URI/NAME`` or ``pvc://CLAIM/NAME``."""
    storage = options.storage
    if storage.kind == "uri":
        return f"{storage.uri}/{model}"
    if storage.kind == "pvc":
        return f"pvc://{storage.claim}/{model}"
    raise ConfigError(
        "--kserve needs the models outside the image: KServe downloads them from storageUri. "
        "Pass --storage uri:SCHEME://PATH (e.g. gs://bucket/models) or --storage pvc:CLAIM."
    )


def render_kserve(models_dir: str | os.PathLike[str], options: RenderOptions) -> Rendered:
    """One InferenceService per model under ``models_dir`` (``options.image`` is not used:
    KServe picks the TF Serving runtime image for modelFormat ``tensorflow``)."""
    models = discover_models(models_dir)
    if options.batching_file is not None or options.model_config_file is not None:
        raise ConfigError("--batching and --model-config are not supported with --kserve: KServe's "
                          "TF Serving runtime writes the server's config itself.")
    threads = thread_flags(options.resources.cpu_limit)
    resources: list[dict[str, Any]] = []
    for model in models:
        name = options.name if options.name and len(models) == 1 else default_name([model.name])
        if name == "tfserving":
            name = dns_label(model.name.lower().replace("_", "-"), "model name")
        metadata: dict[str, Any] = {"name": name}
        if options.namespace:
            metadata["namespace"] = options.namespace
        metadata["labels"] = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "tfship"}
        resources.append({
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": metadata,
            "spec": {"predictor": {
                "minReplicas": options.replicas,
                "maxReplicas": options.max_replicas or 3 * options.replicas,
                "scaleMetric": "cpu",
                "scaleTarget": options.cpu_target_percent,
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": options.timing.grace_seconds,
                "securityContext": pod_security_context(options.uid),
                "model": {
                    "modelFormat": {"name": "tensorflow"},
                    "storageUri": storage_uri(options, model.name),
                    "args": threads.args(),
                    "resources": options.resources.spec(),
                    "securityContext": container_security_context(options.uid),
                },
            }},
        })
    filenames = tuple(f"inferenceservice-{r['metadata']['name']}.yaml" for r in resources)
    return Rendered(resources[0]["metadata"]["name"], options.namespace, tuple(resources), filenames)
