"""``tfship serve MODELS_DIR``: serve every exported model with the embedded TF-Serving-compatible
server (thin layer over :func:`tfship.deploy.launch.start_local_server`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click


@click.command()
@click.argument("models_dir", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--model-config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Serve the models of this ModelServerConfig file instead of discovering MODELS_DIR.")
@click.option("--port", default=8500, show_default=True, help="gRPC port.")
@click.option("--rest-port", default=8501, show_default=True, help="REST port (0 disables REST).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; use 0.0.0.0 only when other machines must reach the server.")
@click.option("--batching/--no-batching", default=False, show_default=True,
              help="Merge concurrent requests into one model call (TF Serving's --enable_batching).")
@click.option("--poll-seconds", default=1, show_default=True,
              help="How often new/removed version dirs are picked up.")
@click.option("--timeout", default=300.0, show_default=True,
              help="Seconds to wait for every model to become AVAILABLE.")
@click.option("--flag", "extra_flags", multiple=True, metavar="--NAME=VALUE",
              help="Extra tensorflow_model_server flag passed through (repeatable).")
@click.option("--docker", is_flag=True,
              help="Run TF Serving in a container instead (models dir mounted read-only).")
@click.option("--image", default=None, metavar="TAG",
              help="With --docker: image to run (default tensorflow/serving:2.21.0); an image from "
                   "`tfship build` serves its baked-in models unless --mount.")
@click.option("--mount/--no-mount", default=None,
              help="With --docker: bind-mount MODELS_DIR read-only (default: unless the image has models).")
def serve(models_dir: Path | None, config_file: Path | None, port: int, rest_port: int, host: str,
          batching: bool, poll_seconds: int, timeout: float, extra_flags: tuple[str, ...],
          docker: bool, image: str | None, mount: bool | None) -> None:
    """Serve every model under MODELS_DIR (NAME/VERSION/ SavedModels) over gRPC and REST.

    Waits until every model reports a version AVAILABLE, prints the endpoints, and runs until
    Ctrl+C / SIGTERM (in-flight requests are drained first).
    """
    if docker:
        from tfship.deploy.docker.foreground import serve_in_docker

        code = serve_in_docker(models_dir, echo=click.echo, image=image, mount=mount, grpc_port=port,
                               rest_port=rest_port, host=host, timeout=timeout)
        raise SystemExit(0 if code in (None, 0, 143) else code)
    from tfship.deploy.launch import start_local_server

    if models_dir is None and config_file is None:
        raise click.UsageError("pass MODELS_DIR or --model-config")
    flags = [f"--file_system_poll_wait_seconds={poll_seconds}", *extra_flags]
    if batching:
        flags.append("--enable_batching")
    server = start_local_server(models_dir, config_file=config_file, host=host, port=port,
                                rest_port=rest_port, extra_flags=tuple(flags), timeout=timeout)

    def forward(signum: int, frame: Any) -> None:
        # only forward: the main thread is inside server.wait() and reaps the child
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    click.echo(f"Serving {len(server.models)} model(s): {', '.join(server.models)}")
    click.echo(f"  gRPC: {server.grpc_target}")
    if server.rest_url:
        for name in server.models:
            click.echo(f"  REST: {server.rest_url}/v1/models/{name}")
    click.echo("Press Ctrl+C to stop.", err=True)
    sys.stdout.flush()
    rc = server.wait()
    server.stop()
    raise SystemExit(0 if rc in (0, -signal.SIGTERM) else rc)
