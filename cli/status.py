"""``tfship status``: the versions of served models and their states."""

from __future__ import annotations

from pathlib import Path

import click
from tfship.cli.exit_codes import EXIT_CHECK_FAILED

from tfship.errors import ConfigError, NotFoundError, ServingError


def _names_from_dir(models_dir: str) -> list[str]:
    base = Path(models_dir)
    names = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise ConfigError(f"No model directories under {models_dir}.")
    return names


@click.command()
@click.option("--url", "urls", required=True, multiple=True,
              help="grpc://HOST:PORT or http(s)://HOST:PORT of the server. A fleet: repeat --url, or "
                   "grpc://a:8500,b:8500, or dns:///NAME:8500: versions per replica.")
@click.option("--model", "models", multiple=True, help="Model name (repeatable).")
@click.option("--models-dir", type=click.Path(file_okay=False, exists=True),
              help="Ask about every model directory under this base dir.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="The server's model config file: its models, and their version labels.")
@click.option("--timeout", type=float, default=10.0, show_default=True)
def status(urls: tuple[str, ...], models: tuple[str, ...], models_dir: str | None, config_file: str | None,
           timeout: float) -> None:
    """Show each model's versions and states (AVAILABLE, LOADING, END with its error ...) and labels.

    TF Serving has no "list models" or "list labels" call, so name the models (--model,
    repeatable), point --models-dir at the served base directory, or give the server's --config
    file: then its models are listed with every version label, and each label is checked against
    the version the server really resolves it to.

    A fleet is shown replica by replica, and a fleet whose replicas do not all answer with the
    same version (a rollout half done, a replica that failed to load) exits 1.

    \b
    Examples:
      tfship status --url grpc://127.0.0.1:8500 --config models/models.config
      tfship status --url dns:///mnist-headless.prod.svc:8500 --model mnist
    """
    from tfship.client import ClientConfig, connect
    from tfship.client.endpoints import parse_target

    url = ",".join(urls)

    labels = _labels_from_config(config_file) if config_file else {}
    names = list(models) + (_names_from_dir(models_dir) if models_dir else []) + [
        n for n in labels if n not in models]
    if not names:
        raise ConfigError("Name at least one model: --model NAME (repeatable), --models-dir DIR or "
                          "--config FILE. TF Serving has no API that lists models.")
    if parse_target(url).several:
        _fleet_status(url, names, timeout)
        return
    missing = 0
    with connect(url, ClientConfig(timeout=timeout)) as client:
        for name in names:
            try:
                versions = client.status(name)
            except NotFoundError as exc:
                click.echo(f"{name}: not served ({exc.message})")
                missing += 1
                continue
            for v in versions:
                error = f"  error: {v.error_message}" if v.error_message else ""
                click.echo(f"{name}  version {v.version}  {v.state}{error}")
            for label, version in sorted(labels.get(name, {}).items()):
                try:
                    served = client.metadata(name, label=label).version
                except ServingError as exc:
                    click.echo(f"{name}  label {label} -> {version}  NOT RESOLVED: {exc.message}")
                    missing += 1
                    continue
                note = "" if served == version else f"  (server resolves it to {served})"
                click.echo(f"{name}  label {label} -> {version}{note}")
    if missing:
        raise SystemExit(EXIT_CHECK_FAILED)


def _labels_from_config(path: str) -> dict[str, dict[str, int]]:
    """{model: {label: version}} from a model config file (needs tfship[tf] for the protos)."""
    from tfship.serving.config.model_config import model_entries, read_model_config_file

    return {e.name: dict(e.version_labels) for e in model_entries(read_model_config_file(path))}


def _fleet_status(url: str, names: list[str], timeout: float) -> None:
    """Each replica's versions; exit 1 when a replica is down or the replicas disagree."""
    from tfship.deploy.fleet import fleet_status

    disagree = 0
    for name in names:
        fleet = fleet_status(url, name, timeout=timeout)
        for replica in fleet.replicas:
            if replica.error is not None:
                click.echo(f"{name}  {replica.url}  NOT ANSWERING: {replica.error}")
            for v in replica.versions:
                error = f"  error: {v.error_message}" if v.error_message else ""
                click.echo(f"{name}  {replica.url}  version {v.version}  {v.state}{error}")
        if fleet.agrees:
            click.echo(f"{name}: {len(fleet.replicas)} replicas serve version {fleet.replicas[0].default}")
        else:
            served = ", ".join(f"{r.url}: {r.default if r.error is None else 'down'}" for r in fleet.replicas)
            click.secho(f"{name}: REPLICAS DISAGREE ({served})", fg="red")
            disagree += 1
    if disagree:
        raise SystemExit(EXIT_CHECK_FAILED)
