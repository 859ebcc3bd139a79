"""``tfship smoke``: served predictions vs the in-memory model, over one or two transports."""

from __future__ import annotations

import click
from tfship.cli.exit_codes import EXIT_CHECK_FAILED
from tfship.cli.predict import version_options

from tfship.errors import ConfigError


@click.command()
@click.option("--url", "urls", required=True, multiple=True,
              help="Server URL; give it twice (grpc:// and http://) to check both transports.")
@click.option("--model", required=True, help="Model name on the server.")
@version_options
@click.option("--manifest", "manifest_dir", type=click.Path(file_okay=False, exists=True),
              help="An exported version dir (BASE/NAME/VERSION): its samples are the reference.")
@click.option("--keras", "keras_file", type=click.Path(dir_okay=False, exists=True),
              help="A .keras file to compute reference outputs in memory (needs tfship[tf]).")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False, exists=True),
              help="Sample inputs for --keras (.npy/.npz/.jsonl/.csv); default: the manifest samples.")
@click.option("--timeout", type=float, default=60.0, show_default=True)
def smoke(urls: tuple[str, ...], model: str, model_version: int | None, label: str | None,
          signature: str | None, manifest_dir: str | None, keras_file: str | None,
          inputs_file: str | None, timeout: float) -> None:
    """Send sample inputs, compare served outputs with the reference; exit 1 on any mismatch.

    \b
    Example:
      tfship smoke --url grpc://127.0.0.1:8500 --url http://127.0.0.1:8501 \\
                   --model digits --manifest models/digits/1
    """
    from tfship.client import ClientConfig, check_parity, connect

    if (manifest_dir is None) == (keras_file is None):
        raise ConfigError("Give exactly one reference: --manifest VERSION_DIR or --keras FILE.")
    failed = False
    for url in urls:
        with connect(url, ClientConfig(timeout=timeout)) as client:
            kwargs = {"version": model_version, "label": label, "signature": signature}
            if manifest_dir is not None:
                report = check_parity(client, model, manifest_dir, **kwargs)
            else:
                report = check_parity(client, model, _load_keras(keras_file),
                                      inputs=_smoke_inputs(client, model, inputs_file, kwargs), **kwargs)
        click.echo(report.text())
        failed |= not report.ok
    if failed:
        raise SystemExit(EXIT_CHECK_FAILED)


def _load_keras(path: str | None):  # type: ignore[no-untyped-def]
    import keras  # only this option needs TensorFlow

    return keras.saving.load_model(path, safe_mode=True)


def _smoke_inputs(client, model, inputs_file, kwargs):  # type: ignore[no-untyped-def]
    if inputs_file is None:
        raise ConfigError("--keras needs --inputs FILE with sample rows (.npy/.npz/.jsonl/.csv).")
    from tfship.client.batch.formats import read_inputs

    sig = client.signature_info(model, **kwargs)
    return {k: v[:256] for k, v in read_inputs(inputs_file, sig).items()}
