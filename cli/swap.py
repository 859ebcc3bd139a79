"""``tfship swap`` and ``tfship rollback``: verified, zero-downtime version changes on a live server."""

from __future__ import annotations

from pathlib import Path

import click
from tfship.cli.exit_codes import exit_code

_common = [
    click.option("--url", "urls", required=True, multiple=True,
                 help="Live server, e.g. grpc://127.0.0.1:8500 (REST works for latest-N). A fleet: repeat --url, "
                      "or grpc://a:8500,b:8500, or dns:///NAME:8500; every replica must load and pass."),
    click.option("--min-replicas", type=click.IntRange(min=1), default=None,
                 help="Fleet: replicas that must answer when the swap starts (default: all); the others are "
                      "left out and load the shared storage's latest version when they return."),
    click.option("--label", default=None, help="Move this version label (e.g. stable) instead of relying on latest-N."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="The model config file the server reads (required with --label)."),
    click.option("--reload", type=click.Choice(["grpc", "poll"]), default="grpc", show_default=True,
                 help="Push config changes with HandleReloadConfigRequest, or rely on the server's config polling."),
    click.option("--timeout", type=float, default=120.0, show_default=True,
                 help="Seconds to wait for each server state change."),
]


def _with_common(func):  # type: ignore[no-untyped-def]
    for option in reversed(_common):
        func = option(func)
    return func


def _options(urls: tuple[str, ...], label: str | None, config_file: Path | None, reload: str, timeout: float,  # type: ignore[no-untyped-def]
             min_replicas: int | None, **extra):
    from tfship.deploy.swap import SwapOptions

    if label is not None and config_file is None:
        # a usage error (exit 2), found before SwapOptions would refuse it as a SwapError (exit 1)
        raise click.UsageError(f"--label {label} needs --config FILE, the model config file the server reads "
                               "(a server started with --model_base_path has no labels).")

    return SwapOptions(url=",".join(urls), label=label, config_file=config_file, reload=reload, timeout=timeout,
                       min_replicas=min_replicas, on_event=lambda message: click.echo(f"  {message}", err=True),
                       **extra)


def _report(record) -> None:  # type: ignore[no-untyped-def]
    label = f" label {record.label!r}" if record.label else ""
    click.echo(f"{record.outcome}: {record.model}{label} {record.from_version} -> {record.to_version}")
    if record.publish_to_serving_s is not None:
        click.echo(f"  publish-to-serving {record.publish_to_serving_s:.2f} s")
    if record.retired:
        click.echo(f"  retired versions {record.retired}")
    _report_replicas(record)


def _report_replicas(record) -> None:  # type: ignore[no-untyped-def]
    for replica in record.replicas or []:
        if replica.get("skipped"):
            click.echo(f"  {replica['url']}  skipped ({replica.get('error', 'down')})")
            continue
        state = "ok" if replica["ok"] else "FAILED"
        loaded = f"  AVAILABLE after {replica['available_s']:.2f} s" if replica.get("available_s") else ""
        parity = replica.get("parity")
        checked = f"  parity {'ok' if parity['ok'] else 'MISMATCH'}" if parity else ""
        error = f"  {replica['error']}" if replica.get("error") else ""
        click.echo(f"  {replica['url']}  {state}{loaded}{checked}{error}")


@click.command()
@click.argument("models_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("name")
@click.argument("new_model", required=False)
@click.option("--version", type=int, default=None, help="Swap to an already exported version instead of NEW_MODEL.")
@_with_common
@click.option("--retention", type=click.IntRange(min=1), default=2, show_default=True,
              help="Version dirs kept on disk (the serving one included) as rollback targets.")
@click.option("--allow-signature-change", is_flag=True, help="Accept a new version whose signature differs.")
@click.option("--unsafe", is_flag=True, help="Load NEW_MODEL with Keras safe mode off (Lambda layers).")
def swap(models_dir: Path, name: str, new_model: str | None, version: int | None, urls: tuple[str, ...],
         min_replicas: int | None, label: str | None, config_file: Path | None, reload: str, timeout: float,
         retention: int, allow_signature_change: bool, unsafe: bool) -> None:
    """Make a new version of NAME the served default, verified, dropping no request.

    \b
    NEW_MODEL (.keras, .h5 or SavedModel dir) is exported as the next version into
    MODELS_DIR/NAME; or pass --version N of a version exported before. The version is
    checked in-process against its reference samples, published atomically, and
    parity-checked on the server; only then does it become the default. A version that
    fails never becomes the default, is moved to MODELS_DIR/.tfship/quarantine, and the
    command exits 1. Every swap is recorded in MODELS_DIR/.tfship/swap-history.jsonl.

    \b
    Examples:
      tfship swap models mnist mnist_v2.keras --url grpc://127.0.0.1:8500
      tfship swap models mnist --version 7 --url grpc://127.0.0.1:8500 \\
          --label stable --config models/models.config
      tfship swap models mnist mnist_v2.keras --url dns:///mnist-headless.prod.svc:8500

    \b
    A fleet (several --url, a comma list or a dns:/// name): the version must become
    AVAILABLE and pass parity on every replica, or the swap fails and is rolled back on
    all of them; the record lists each replica's result.
    """
    from tfship.deploy.swap import swap as run_swap

    from tfship.errors import SwapError

    options = _options(urls, label, config_file, reload, timeout, min_replicas, retention=retention,
                       allow_signature_change=allow_signature_change)
    try:
        record = run_swap(models_dir, name, new_model, version=version, options=options,
                          export_kwargs={"safe_mode": not unsafe} if new_model else None)
    except SwapError as exc:
        click.secho(f"swap failed: {exc}", fg="red", err=True)
        if exc.record is not None:
            _report_replicas(exc.record)
        raise SystemExit(exit_code(exc)) from None
    _report(record)


@click.command()
@click.argument("models_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("name")
@click.option("--to", "to_version", type=int, default=None,
              help="Version to return to (default: the one the last swap replaced).")
@_with_common
def rollback(models_dir: Path, name: str, to_version: int | None, urls: tuple[str, ...], min_replicas: int | None,
             label: str | None, config_file: Path | None, reload: str, timeout: float) -> None:
    """Return NAME's default (or --label) to the previous good version.

    \b
    Example:
      tfship rollback models mnist --url grpc://127.0.0.1:8500
    """
    from tfship.deploy.swap import rollback as run_rollback

    from tfship.errors import SwapError

    try:
        options = _options(urls, label, config_file, reload, timeout, min_replicas)
        record = run_rollback(models_dir, name, options=options, to_version=to_version)
    except SwapError as exc:
        click.secho(f"rollback failed: {exc}", fg="red", err=True)
        raise SystemExit(exit_code(exc)) from None
    _report(record)
