"""``tfship k8s render``: Kubernetes (or KServe) manifests for a models directory."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def k8s() -> None:
    """Kubernetes deployment of a tfship/TF Serving image (render manifests; apply with kubectl)."""


@k8s.command()
@click.argument("models_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--image", required=True, metavar="REFERENCE",
              help="The serving image, e.g. registry.example.com/acme/models:1 (from `tfship build`). "
                   "Prefer an immutable tag or @sha256 digest.")
@click.option("--replicas", type=int, default=2, show_default=True,
              help="Minimum pods (the autoscaler's minReplicas).")
@click.option("--max-replicas", type=int, help="Autoscaler ceiling.  [default: 3 x --replicas]")
@click.option("--storage", default="baked", show_default=True, metavar="baked|pvc:CLAIM|uri:URI",
              help="Where pods read models: baked into the image; a PersistentVolumeClaim mounted "
                   "read-only at /models; or a store TF Serving reads (gs://, s3://), each holding "
                   "NAME/VERSION/ dirs.")
@click.option("--name", help="Resource name.  [default: the model's name, or 'tfserving']")
@click.option("--namespace", "-n", help="Namespace for every resource.  [default: kubectl's current]")
@click.option("--batching", "batching_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="BatchingParameters text file (num_batch_threads defaults to the CPU limit).")
@click.option("--model-config", "model_config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ModelServerConfig with version policies/labels to serve (base paths are rewritten "
                   "to the storage).")
@click.option("--monitoring", is_flag=True,
              help="Prometheus metrics on the http port and a prometheus-operator ServiceMonitor.")
@click.option("--cpu", default="2", show_default=True,
              help="CPU limit; TF's intra/inter-op threads are derived from it.")
@click.option("--cpu-request", help="CPU request.  [default: --cpu]")
@click.option("--memory", default="2Gi", show_default=True, help="Memory limit.")
@click.option("--memory-request", help="Memory request.  [default: --memory]")
@click.option("--startup-seconds", type=int, default=300, show_default=True,
              help="Longest model load the startup probe waits for.")
@click.option("--pre-stop-seconds", type=int, default=10, show_default=True,
              help="Delay before SIGTERM so endpoint removal propagates.")
@click.option("--uid", type=int, default=10001, show_default=True,
              help="Non-root uid/gid the server runs as (the image's USER).")
@click.option("--kserve", is_flag=True,
              help="Render KServe InferenceServices (one per model) instead; needs pvc: or uri: storage.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write a kustomize directory (one file per resource + kustomization.yaml) "
                   "instead of YAML on stdout.")
def render(
    models_dir: Path, image: str, replicas: int, max_replicas: int | None, storage: str,
    name: str | None, namespace: str | None, batching_file: Path | None, model_config_file: Path | None,
    monitoring: bool, cpu: str, cpu_request: str | None, memory: str, memory_request: str | None,
    startup_seconds: int, pre_stop_seconds: int, uid: int, kserve: bool, out_dir: Path | None,
) -> None:
    """Render Kubernetes manifests serving the models in MODELS_DIR with IMAGE.

    \b
    Resources: Deployment (rolling, spread over nodes, gRPC health probes that stay
    false until every model is AVAILABLE, drain on scale-down, restricted security
    context, read-only models), ClusterIP + headless Services, HorizontalPodAutoscaler,
    PodDisruptionBudget, NetworkPolicy, ConfigMap for the server's config files, and a
    ServiceMonitor with --monitoring.

    \b
    Examples:
      tfship k8s render models --image registry.example.com/acme/models:1 --out k8s/
      kubectl apply -k k8s/
      tfship k8s render models --image acme/tfs:2.21 --storage pvc:models -n ml --cpu 4
      tfship k8s render models --image x --kserve --storage uri:gs://bucket/models
    """
    from tfship.deploy.k8s import ProbeTiming, RenderOptions, Resources, parse_storage, render, render_kserve
    from tfship.deploy.k8s.options import is_mutable_reference

    options = RenderOptions(
        image=image, name=name, namespace=namespace, replicas=replicas, max_replicas=max_replicas,
        storage=parse_storage(storage), batching_file=batching_file, model_config_file=model_config_file,
        monitoring=monitoring,
        resources=Resources(cpu_limit=cpu, memory_limit=memory, cpu_request=cpu_request,
                            memory_request=memory_request),
        timing=ProbeTiming(startup_seconds=startup_seconds, pre_stop_seconds=pre_stop_seconds),
        uid=uid,
    )
    rendered = (render_kserve if kserve else render)(models_dir, options)
    if not kserve and is_mutable_reference(image):
        click.secho(f"warning: --image {image} has no tag (or :latest) and no digest: nodes keep whatever "
                    "they pulled under that name; use an immutable tag or @sha256 digest.", fg="yellow", err=True)
    if out_dir is None:
        click.echo(rendered.to_yaml(), nl=False)
        return
    written = rendered.write(out_dir)
    click.echo(f"wrote {len(written)} files to {out_dir} ({', '.join(rendered.kinds())}); "
               f"apply with: kubectl apply -k {out_dir}", err=True)
