"""``tfship build``: a deployment image (Dockerfile.serving) for a models directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from tfship.deploy.docker.context import DEFAULT_BASE_IMAGE


@click.command()
@click.argument("models_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tag", "-t", help="Image tag to build, e.g. acme/mnist:1. Omit with --context-dir "
              "to only write the context (no Docker needed).")
@click.option("--base-image", default=DEFAULT_BASE_IMAGE, show_default=True,
              help="TF Serving image to build on; must be present locally (tfship never pulls).")
@click.option("--batching", "batching_file", type=click.Path(exists=True, dir_okay=False),
              help="BatchingParameters text file; enables --enable_batching in the image.")
@click.option("--monitoring", is_flag=True,
              help="Serve Prometheus metrics at /monitoring/prometheus/metrics on the REST port.")
@click.option("--context-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the build context here (kept). Alone, writes it for kaniko/buildx.")
def build(
    models_dir: Path,
    tag: str | None,
    base_image: str,
    batching_file: str | None,
    monitoring: bool,
    context_dir: Path | None,
) -> None:
    """Build a TF Serving image with the models in MODELS_DIR baked in.

    \b
    MODELS_DIR holds NAME/VERSION/ SavedModels (as written by `tfship export`):
      tfship build models --tag acme/models:1
      tfship build models --tag acme/models:1 --base-image tensorflow/serving:2.21.0-gpu
      tfship build models --context-dir build/ctx      # context only, no Docker
    """
    from tfship.deploy.docker.context import write_build_context

    if tag is None and context_dir is None:
        raise click.UsageError("pass --tag to build an image, or --context-dir to write the context")
    with tempfile.TemporaryDirectory(prefix="tfship-build-") as tmp:
        dest = context_dir if context_dir is not None else Path(tmp) / "context"
        ctx = write_build_context(
            models_dir, dest, base_image=base_image, batching_file=batching_file,
            monitoring=monitoring,
        )
        versions = ", ".join(f"{m.name} {'/'.join(m.versions)}" for m in ctx.models)
        click.echo(f"context: {ctx.path} (models: {versions})", err=True)
        if tag is None:
            click.echo(
                f"wrote {ctx.path}; build it with e.g. "
                f"docker build --build-arg BASE_IMAGE={base_image} -t TAG {ctx.path}"
            )
            return
        from tfship.deploy.docker.build import build_image

        built = build_image(
            ctx, tag, base_image=base_image, on_progress=lambda line: click.echo(line, err=True)
        )
        click.echo(f"built {built.tag} ({built.id[:19]}) in {built.seconds:.1f} s")
